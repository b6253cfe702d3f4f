"""A generic, seeded training protocol for every task kind of :mod:`tnd.apps.tasks`: the suite's
adapter on the shared loop :func:`tnd.apps.training.train_loop` (it supplies the losses,
readouts, validation and checkpoint fingerprint; the loop does the steps, early stopping,
checkpoints and resume).

Protocol (the same for every model of a task)
---------------------------------------------
* Adam (``lr``), gradient-norm clipping at ``clip``, mini-batches of ``batch_size`` drawn
  without replacement from a per-seed permutation of the training set (a new permutation each
  epoch), for at most ``max_updates`` optimiser steps (a cap: the budget is set by convergence).
* Every ``eval_every`` updates (and after the last) the model is scored on the validation split
  (its first ``max_val`` sequences); the best state is kept and training stops early after
  ``patience`` evaluations without improvement (by more than ``min_rel_delta`` of the best
  score's magnitude and more than ``min_abs_delta``; ties keep the earlier state). The score
  watched is ``monitor``: ``"loss"``
  (the default), the validation loss -- the training loss on the validation split, smooth where an
  accuracy over a few dozen sequences moves in whole sequences and stops training while the model
  still learns -- or ``"metric"``, the task's metric (higher accuracy / lower MSE).
  The best state is restored and scored once on the test split (its first ``max_test``
  sequences).
* Losses and readouts:

  - classification, one label per sequence: cross-entropy of the logits at the sequence's last
    *valid* step (``lengths - 1``, padded data); metric: accuracy.
  - classification per step (copy): cross-entropy over the last ``K`` steps; metric: accuracy
    over all ``K`` steps of all sequences.
  - regression / forecast per sequence: MSE of the output at the last valid step (``output_size``
    values, e.g. a 48-step forecast); metric: MSE (in the task's normalised units).
  - forecast tasks with a reference forecast (``task.base_forecast``, the seasonal-naive one
    for electricity): the prediction is that reference plus the model's output (a residual), for
    every model alike, so a model that outputs zero scores exactly the reference.

* Irregular tasks: models that accept ``timespans`` get the task's elapsed times; others see
  only the observations (in order).

Everything random (initial weights, batch order) is fixed by ``seed``; with one torch thread the
result is bit-for-bit reproducible (which the test suite checks across backends).

Fault tolerance: with ``checkpoint_dir`` the loop writes a training checkpoint
(:mod:`tnd.apps.checkpoint`: weights, Adam state, the torch and numpy RNG states, the permutation and
position in it, history, best state and counters; safetensors + JSON, atomic) every
``checkpoint_every`` updates and when training ends; ``resume=True`` continues from it, so a
killed run ends with bit-identical weights and metrics (the timings aside). A checkpoint made
for another model, task data or protocol is refused (:class:`tnd.apps.checkpoint.CheckpointError`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..training import LOOP_FORMAT, EarlyStopping, NumpyPermutationBatches, train_loop
from ..tasks.base import SequenceTask

__all__ = ["MONITORS", "ConstantPredictor", "TrainConfig", "evaluate", "higher_is_better", "metric_name", "reference_score",
           "score", "train_and_evaluate"]

#: what early stopping watches on the validation split: its loss, or the task's metric
MONITORS = ("loss", "metric")


@dataclass
class TrainConfig:
    max_updates: int = 200
    batch_size: int = 32
    lr: float = 3e-3
    clip: float = 1.0
    eval_every: int = 25
    patience: int = 4
    min_rel_delta: float = 0.0
    min_abs_delta: float = 0.0
    max_train: int | None = None
    max_val: int | None = 256
    max_test: int | None = None
    eval_batch: int = 256
    monitor: str = "loss"

    def __post_init__(self) -> None:
        if self.monitor not in MONITORS:
            raise ValueError(f"TrainConfig.monitor: expected one of {', '.join(map(repr, MONITORS))}, got {self.monitor!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def metric_name(task: SequenceTask) -> str:
    return "accuracy" if task.kind == "classification" else "mse"


def higher_is_better(task: SequenceTask) -> bool:
    return task.kind == "classification"


def _forward(model: nn.Module, x: torch.Tensor, ts: torch.Tensor | None) -> torch.Tensor:
    y = model(x, timespans=ts)[0] if ts is not None else model(x)[0]
    return y


def _select(task: SequenceTask, y: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The outputs that carry a target: last valid step, or the last K steps (per step)."""
    if task.per_step:
        k = target.shape[1]
        return y[:, -k:]
    idx = (lengths - 1).clamp(min=0)
    return y[torch.arange(y.shape[0]), idx]


def _loss_and_stats(task: SequenceTask, out: torch.Tensor, target: torch.Tensor):
    """(mean loss, metric numerator, metric denominator) of a batch."""
    if task.kind == "classification":
        logits = out.reshape(-1, out.shape[-1])
        tgt = target.reshape(-1)
        loss = F.cross_entropy(logits, tgt)
        correct = (logits.argmax(-1) == tgt).sum().item()
        return loss, float(correct), float(tgt.numel())
    pred = out.reshape(target.shape)
    se = (pred - target).pow(2)
    return se.mean(), float(se.sum().item()), float(se.numel())


class _Split:
    def __init__(self, task: SequenceTask, which: str, limit: int | None, use_ts: bool) -> None:
        x, y = task.split(which)
        n = x.shape[0] if limit is None else min(int(limit), x.shape[0])
        self.x, self.y = x[:n], y[:n]
        self.lengths = task.lengths(which)[:n]
        self.ts = task.timespans(which)[:n] if (use_ts and task.is_irregular) else None
        base = task.base_forecast(which)
        self.base = base[:n] if base is not None else None
        self.n = n

    def batch(self, idx) -> tuple:
        ts = self.ts[idx] if self.ts is not None else None
        return self.x[idx], self.y[idx], self.lengths[idx], ts

    def predict(self, task: SequenceTask, model: nn.Module, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prediction, target)`` of the sequences ``idx``: the readout, plus the base forecast if any."""
        x, y, ln, ts = self.batch(idx)
        out = _select(task, _forward(model, x, ts), ln, y)
        if self.base is not None:
            out = out.reshape(y.shape) + self.base[idx]
        return out, y


@torch.no_grad()
def evaluate(model: nn.Module, task: SequenceTask, split: _Split, batch: int = 256) -> dict[str, float]:
    """Mean loss and metric of ``model`` on a prepared split."""
    was = model.training
    model.eval()
    tot_loss = num = den = 0.0
    for i in range(0, split.n, batch):
        idx = slice(i, min(i + batch, split.n))
        out, y = split.predict(task, model, idx)
        loss, a, b = _loss_and_stats(task, out, y)
        tot_loss += float(loss) * y.shape[0]
        num, den = num + a, den + b
    model.train(was)
    return {"loss": tot_loss / max(split.n, 1), metric_name(task): num / max(den, 1.0)}


class ConstantPredictor(nn.Module):
    """A reference model without parameters: the same ``value`` (``(output_size,)``) at every step."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("value", torch.as_tensor(value, dtype=torch.float32).reshape(-1))

    def forward(self, x: torch.Tensor, hx: Any = None, timespans: Any = None):
        return self.value.expand(x.shape[0], x.shape[1], -1), None


def reference_predictor(task: SequenceTask) -> tuple[str, ConstantPredictor]:
    """The task's reference as a model, scored by the same code as every model: zero on top of the
    base forecast (the seasonal-naive forecast, for electricity); else the most frequent training
    class (chance, for classification) or the mean training target (a constant predictor)."""
    y = task.split("train")[1]
    if task.base_forecast("train") is not None:
        return str(task.metadata.get("base_forecast", "base forecast")), ConstantPredictor(torch.zeros(task.output_size))
    if task.kind == "classification":
        counts = torch.bincount(y.reshape(-1), minlength=task.num_classes)
        return "chance (majority class)", ConstantPredictor(10.0 * F.one_hot(counts.argmax(), task.num_classes).float())
    return "constant (mean target)", ConstantPredictor(y.reshape(-1, task.output_size).float().mean(0))


def reference_score(task: SequenceTask, cfg: TrainConfig) -> dict[str, Any]:
    """``{"name", "metric", "value"}``: the reference predictor's score on the test sequences that the
    models of ``cfg`` are scored on."""
    name, model = reference_predictor(task)
    mname = metric_name(task)
    te = score(model, task, "test", cfg.max_test, batch=cfg.eval_batch)
    return {"name": name, "metric": mname, "value": float(te[mname])}


def score(model: nn.Module, task: SequenceTask, which: str = "test", limit: int | None = None, *,
          use_timespans: bool = False, batch: int = 256) -> dict[str, float]:
    """Mean loss and metric of ``model`` on the first ``limit`` sequences of split ``which`` (all:
    ``None``), read out and scored as in training (base forecast included)."""
    return evaluate(model, task, _Split(task, which, limit, use_timespans), batch)


def _split_hash(*splits: _Split) -> str:
    h = hashlib.sha256()
    for sp in splits:
        for t in (sp.x, sp.y, sp.lengths, sp.ts, sp.base):
            if t is None:
                h.update(b"none")
                continue
            t = torch.as_tensor(t).contiguous()
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def train_and_evaluate(model: nn.Module, task: SequenceTask, cfg: TrainConfig, seed: int, *,
                       use_timespans: bool = False,
                       on_update: Callable[[int], None] | None = None,
                       checkpoint_dir: str | os.PathLike | None = None,
                       checkpoint_every: int = 100,
                       resume: bool = False, test: bool = True) -> dict[str, Any]:
    """Train ``model`` on ``task`` with protocol ``cfg`` and return its scores (see module doc).

    ``checkpoint_dir``: write a training checkpoint there every ``checkpoint_every`` updates and
    when training ends; with ``resume=True`` continue from the checkpoint found there (a fresh
    start if there is none), with the same final weights and scores as an uninterrupted run
    (``train_time_s``, ``eval_time_s``, ``sec_per_update`` and ``wall_before_resume_s`` aside).
    ``wall_before_resume_s``: the wall seconds the training had run, up to its checkpoint, in the
    processes before a resume (0 on a fresh start), so a resumed cell's whole time can be told.

    ``updates`` in the result is the update at which training ended: by early stopping if
    ``stopped_early``, by a divergence if ``diverged_at`` is set (the update whose loss or gradient
    norm was not finite: training stops there and keeps its best weights, the same rule for every
    model, since a seeded cell that diverges diverges again on every retry), else by the cap
    ``cfg.max_updates`` (``hit_cap``); ``best_update`` the one whose weights are kept and tested.

    ``test=False`` (tuning, :mod:`tnd.apps.suite.tune`): the test split is never read; the result
    has the validation scores only (``test_<metric>``, ``test_loss`` and ``n_test`` are None)."""
    if checkpoint_dir is not None and (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
                                       or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive int, got {checkpoint_every!r}")
    torch.manual_seed(seed)
    train = _Split(task, "train", cfg.max_train, use_timespans)
    val = _Split(task, "val", cfg.max_val, use_timespans)
    test_split = _Split(task, "test", cfg.max_test, use_timespans) if test else None
    mname, better_high = metric_name(task), higher_is_better(task)
    batches = NumpyPermutationBatches(train.n, min(cfg.batch_size, train.n), seed)
    fingerprint: dict[str, Any] | None = None
    if checkpoint_dir is not None:
        fingerprint = {"suite_train": {"config": cfg.to_dict(), "seed": int(seed), "use_timespans": bool(use_timespans),
                                       "task": getattr(task, "name", type(task).__name__),
                                       "data_sha256": _split_hash(train, val)}}

    def loss_fn(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        out, y = train.predict(task, model, idx)
        return _loss_and_stats(task, out, y)[0]

    def grad_norm(model: nn.Module) -> torch.Tensor:
        if cfg.clip:
            return nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        return (torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads
                else torch.zeros(()))

    def record(step: int, mean_loss: float, last_loss: float, v: dict[str, Any]) -> dict[str, Any]:
        return {"update": step, "train_loss": last_loss, "val_loss": v["loss"], f"val_{mname}": v[mname]}

    r = train_loop(model, batches=batches, loss_fn=loss_fn, validate=lambda m: evaluate(m, task, val, cfg.eval_batch),
                   max_steps=cfg.max_updates, eval_every=cfg.eval_every, lr=cfg.lr, grad_norm=grad_norm,
                   early_stopping=EarlyStopping(monitor="loss" if cfg.monitor == "loss" else mname,
                                                mode="max" if better_high and cfg.monitor == "metric" else "min",
                                                patience=cfg.patience, replace_nonfinite_best=True,
                                                min_rel_delta=cfg.min_rel_delta, min_abs_delta=cfg.min_abs_delta),
                   record=record, on_update=on_update, checkpoint_dir=checkpoint_dir,
                   checkpoint_every=checkpoint_every, resume=resume, fingerprint=fingerprint,
                   name="tnd.apps.suite training", step_word="update", legacy_state=_legacy_state,
                   on_nonfinite="stop")
    t0 = time.perf_counter()
    te = evaluate(model, task, test_split, cfg.eval_batch) if test_split is not None else {"loss": None, mname: None}
    t_train, t_eval = r["train_time_s"], r["eval_time_s"] + (time.perf_counter() - t0)
    updates = r["stop_step"]
    return {
        "metric": mname,
        "higher_is_better": better_high,
        f"test_{mname}": te[mname],
        "test_loss": te["loss"],
        f"val_{mname}": None if r["best_val"] is None else r["best_val"][mname],
        "val_loss": None if r["best_val"] is None else r["best_val"]["loss"],
        "monitor": cfg.monitor,
        "best_update": r["best_step"],
        "updates": updates,
        "stopped_early": r["stopped_early"],
        "diverged_at": r["diverged_at"],
        "hit_cap": not r["stopped_early"] and r["diverged_at"] is None,
        "max_updates": cfg.max_updates,
        "final_train_loss": r["last_loss"],
        "train_time_s": t_train,
        "eval_time_s": t_eval,
        "sec_per_update": t_train / max(updates, 1),
        "wall_before_resume_s": r["wall_before_resume_s"],
        "n_train": train.n, "n_val": val.n, "n_test": None if test_split is None else test_split.n,
        "history": r["history"],
    }


def _legacy_state(st: dict[str, Any]) -> dict[str, Any]:
    """The loop state of a checkpoint written by this module before :mod:`tnd.apps.training` (which
    watched the metric: such a checkpoint resumes as ``monitor="metric"``); the best validation
    scores are read back from the history entry of the best update."""
    best = [h for h in st["history"] if h.get("update") == st["best_update"]]
    best_val = {k[len("val_"):]: v for k, v in best[0].items() if k.startswith("val_")} if best else None
    return {"loop": LOOP_FORMAT, "batches": {"pos": st["pos"], "numpy_rng": st["numpy_rng"]},
            "history": st["history"], "best_val": best_val, "best_score": st["best_metric"],
            "best_step": st["best_update"], "bad": st["bad_evals"], "stopped": st["stopped_early"],
            "run_loss": 0.0, "run_n": 0, "last_loss": st["last_loss"], "train_time_s": st["train_time_s"],
            "eval_time_s": st["eval_time_s"], "wall_time_s": 0.0}
