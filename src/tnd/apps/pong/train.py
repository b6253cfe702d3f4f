"""Behaviour-cloning training, the same for every model: Pong's adapter on the shared loop
:func:`tnd.apps.training.train_loop` (it supplies the loss, the validation and the checkpoint
fingerprint; the loop does the steps, early stopping, checkpoints and resume).

Protocol: cross-entropy against the expert's action on **every step** of each window, Adam,
gradient-norm clipping, a fixed budget of gradient steps (``max_steps``: the same for every
model, so the budget does not depend on a model's speed), validation every ``eval_every``
steps and **early stopping** on the validation loss (stop after ``patience`` evaluations
without improvement; the best validation checkpoint is returned). Minibatches are drawn
epoch by epoch from a permutation of the training windows made by a ``torch.Generator``
seeded with the training seed, so a run is a pure function of its seed (single-threaded CPU).

Fault tolerance: with ``checkpoint_dir`` the loop writes a checkpoint (:mod:`tnd.apps.checkpoint`:
weights, Adam state, generator state, the current permutation and position in it, the running
train loss, history, best weights and metrics) every ``checkpoint_every`` steps and at the end;
``resume=True`` continues from it, so a killed run finishes with bit-identical weights and
metrics. A non-finite loss or gradient raises :class:`NonFiniteError` naming the step, before
the optimiser step and before any checkpoint write, so the last good checkpoint is kept.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import NonFiniteError
from ..training import LOOP_FORMAT, EarlyStopping, TorchPermutationBatches, clip_gradients, train_loop

__all__ = ["train_model", "evaluate_offline", "NonFiniteError"]


def _as_tensors(X: Any, Y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(Y), dtype=torch.long)
    if x.dim() != 3 or y.shape != x.shape[:2]:
        raise ValueError(f"expected X (W, T, C) and Y (W, T), got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def _data_hash(x: torch.Tensor, y: torch.Tensor) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in (x, y):
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def evaluate_offline(model: nn.Module, X: Any, Y: Any, batch_size: int = 256) -> dict[str, float]:
    """Mean per-step cross-entropy and greedy action accuracy of ``model`` on windows ``(X, Y)``
    (each window run from a zero state)."""
    x, y = _as_tensors(X, Y)
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for i in range(0, x.shape[0], batch_size):
        logits, _ = model(x[i:i + batch_size])
        yb = y[i:i + batch_size]
        total_loss += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum"))
        correct += int((logits.argmax(-1) == yb).sum())
        count += yb.numel()
    model.train(was_training)
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1)}


def train_model(
    model: nn.Module,
    train_X: Any,
    train_Y: Any,
    val_X: Any,
    val_Y: Any,
    *,
    max_steps: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    eval_every: int = 50,
    patience: int = 5,
    grad_clip: float = 1.0,
    seed: int = 0,
    progress: Callable[[int, dict[str, Any]], None] | None = None,
    checkpoint_dir: Any = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    step_hook: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place; load the best validation weights into it at the end.

    Returns a dict: ``history`` (list of ``{step, train_loss, val_loss, val_accuracy}``, one per
    validation), ``best_step``, ``best_val_loss``, ``val_accuracy`` (offline action accuracy at
    the best step), ``steps`` (gradient steps done: the step at which training ended, by early
    stopping if ``stopped_early``, else by the budget ``max_steps``), ``stopped_early``,
    ``train_time_s``.
    ``progress(step, info)`` is called after every gradient step (for progress bars).

    ``checkpoint_dir``: write a training checkpoint there every ``checkpoint_every`` steps and
    when training ends; with ``resume=True`` continue from the checkpoint found there (a fresh
    start if there is none); the result equals an uninterrupted run's (``train_time_s`` aside).
    A checkpoint made for another model, data or hyper-parameters, or a damaged one, raises
    :class:`tnd.apps.checkpoint.CheckpointError`. A non-finite loss or gradient raises
    :class:`NonFiniteError`.

    ``step_hook(step)`` is called after every optimiser step and that step's validation (e.g. a learnable topology's
    :meth:`tnd.apps.prune_regrow.PruneRegrow.after_step`); its state is not checkpointed, so it cannot be
    combined with ``checkpoint_dir``.
    """
    for name, v in (("max_steps", max_steps), ("batch_size", batch_size), ("eval_every", eval_every),
                    ("patience", patience)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if checkpoint_dir is not None and (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
                                       or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive int, got {checkpoint_every!r}")
    if step_hook is not None and checkpoint_dir is not None:
        raise ValueError("step_hook cannot be combined with checkpoint_dir: the hook's state is not checkpointed")
    x, y = _as_tensors(train_X, train_Y)
    if x.shape[0] == 0:
        raise ValueError("no training windows")
    fingerprint = None
    if checkpoint_dir is not None:
        fingerprint = {"train": {"max_steps": max_steps, "batch_size": batch_size, "lr": float(lr),
                                 "eval_every": eval_every, "patience": patience, "grad_clip": float(grad_clip or 0.0),
                                 "seed": int(seed), "train_shape": list(x.shape), "val_shape": list(np.shape(val_X)),
                                 "train_data_sha256": _data_hash(x, y),
                                 "val_data_sha256": _data_hash(*_as_tensors(val_X, val_Y))}}

    def loss_fn(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        logits, _ = model(x[idx])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].reshape(-1))

    def record(step: int, mean_loss: float, last_loss: float, val: dict[str, Any]) -> dict[str, Any]:
        return {"step": step, "train_loss": mean_loss, "val_loss": val["loss"], "val_accuracy": val["accuracy"]}

    def report(step: int, info: dict[str, Any]) -> None:
        out: dict[str, Any] = {"loss": info["loss"]}
        if "val" in info:
            out.update(val_loss=info["val"]["loss"], val_acc=info["val"]["accuracy"])
        progress(step, out)

    r = train_loop(model, batches=TorchPermutationBatches(x.shape[0], batch_size, seed), loss_fn=loss_fn,
                   validate=lambda m: evaluate_offline(m, val_X, val_Y), max_steps=max_steps, eval_every=eval_every,
                   early_stopping=EarlyStopping(monitor="loss", mode="min", patience=patience), lr=lr,
                   grad_norm=clip_gradients(grad_clip), record=record, step_hook=step_hook,
                   progress=report if progress is not None else None, checkpoint_dir=checkpoint_dir,
                   checkpoint_every=checkpoint_every, resume=resume, fingerprint=fingerprint, name="train_model",
                   legacy_state=_legacy_state)
    model.eval()
    return {
        "history": r["history"],
        "best_step": r["best_step"],
        "best_val_loss": r["best_score"],
        "val_accuracy": r["best_val"]["accuracy"] if r["best_val"] is not None else float("nan"),
        "steps": r["stop_step"],
        "stopped_early": r["stopped_early"],
        "train_time_s": r["wall_time_s"],
    }


def _legacy_state(st: dict[str, Any]) -> dict[str, Any]:
    """The loop state of a checkpoint written by this module before :mod:`tnd.apps.training`."""
    acc = st["best_acc"]
    return {"loop": LOOP_FORMAT, "batches": {"pos": st["pos"]}, "history": st["history"],
            "best_val": {"loss": st["best_val_loss"], "accuracy": acc} if st["best_step"] else None,
            "best_score": st["best_val_loss"], "best_step": st["best_step"], "bad": st["bad"],
            "stopped": st["stopped"], "run_loss": st["run_loss"], "run_n": st["run_n"], "last_loss": float("nan"),
            "train_time_s": 0.0, "eval_time_s": 0.0, "wall_time_s": st.get("train_time_s", 0.0)}
