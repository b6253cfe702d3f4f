"""One seeded, resumable training loop shared by every experiment (Pong behaviour cloning, the suite).

:func:`train_loop` runs, for at most ``max_steps`` optimiser steps:

1. ``idx = batches.next()`` -- mini-batch indices (:class:`TorchPermutationBatches`,
   :class:`NumpyPermutationBatches`: epoch by epoch from seeded permutations);
2. ``loss = loss_fn(model, idx)``; ``opt.zero_grad``; a non-finite loss is a divergence
   (before the backward pass);
3. ``loss.backward()``; ``gnorm = grad_norm(model)`` (clips, if the protocol does, and returns
   the total norm; default :func:`clip_gradients`); a non-finite norm is a divergence (before the
   optimiser step, so the weights and the last checkpoint stay good). On a divergence,
   ``on_nonfinite="raise"`` raises :class:`~tnd.apps.checkpoint.NonFiniteError`;
   ``on_nonfinite="stop"`` ends training there like early stopping does (the best weights are
   loaded, ``diverged_at`` names the step that diverged), as Keras' ``TerminateOnNaN`` with
   ``restore_best_weights`` does: a seeded run that diverges would diverge again on every retry;
4. ``opt.step()``; ``on_update(step)``;
5. every ``eval_every`` steps and after the last: ``validate(model) -> dict``; the entry
   ``record(step, mean train loss since the last validation, last loss, scores)`` goes into the
   history; :class:`EarlyStopping` keeps the best weights (a copy of the state dict) and stops
   after ``patience`` validations without improvement;
6. ``step_hook(step)``; a checkpoint every ``checkpoint_every`` steps and when training ends;
   ``progress(step, info)``.

At the end the best weights are loaded into the model. The result holds ``stop_step``: the last
step taken, when training ended by early stopping (``stopped_early``), a divergence
(``diverged_at``, not ``None``) or the budget (neither).

Checkpoints (:mod:`tnd.apps.checkpoint`) hold the weights, the optimiser state, the batch
source (permutation, position, RNG), the global torch RNG, the history, the best weights and
the counters; ``resume=True`` continues from one so a killed run ends bit-identically. Its loop
state is checked before anything is loaded (a garbled one raises
:class:`~tnd.apps.checkpoint.CheckpointError` and leaves the model and optimiser untouched).
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from . import checkpoint as ckmod
from .checkpoint import CheckpointError, NonFiniteError

__all__ = ["LOOP_FORMAT", "ON_NONFINITE", "EarlyStopping", "PermutationBatches", "TorchPermutationBatches", "NumpyPermutationBatches",
           "clip_gradients", "train_loop"]

LOOP_FORMAT = "tnd.training/1"
#: what :func:`train_loop` does when a loss or gradient norm is not finite
ON_NONFINITE = ("raise", "stop")


def _count(name: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class EarlyStopping:
    """Which validation score to watch and when to stop.

    ``monitor``: key of the ``validate`` dict; ``mode``: ``"min"`` or ``"max"``; a strictly
    better score is an improvement (ties keep the earlier weights); ``patience``: stop after this
    many validations in a row without one. ``replace_nonfinite_best``: a best score that is not
    finite (before the first validation, or a NaN score) is replaced by the next one whatever it is.
    ``min_rel_delta``: an improvement must beat the best by more than this fraction of its
    magnitude (0: any strictly better score), so a noisy plateau does not reset the patience by
    ever smaller steps. ``min_abs_delta``: an improvement must also beat the best by more than this
    absolute amount (0: no floor), for scores that approach zero, where a relative margin shrinks
    with the score and counts noise as progress (a solved memory task at MSE 1e-5)."""

    monitor: str = "loss"
    mode: str = "min"
    patience: int = 5
    replace_nonfinite_best: bool = False
    min_rel_delta: float = 0.0
    min_abs_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping.mode must be 'min' or 'max', got {self.mode!r}")
        if not isinstance(self.monitor, str):
            raise TypeError(f"EarlyStopping.monitor must be a str, got {type(self.monitor).__name__}")
        _count("EarlyStopping.patience", self.patience, 0)
        d = self.min_rel_delta
        if isinstance(d, bool) or not isinstance(d, numbers.Real) or not 0 <= d < 1:
            raise ValueError(f"EarlyStopping.min_rel_delta must be a number in [0, 1), got {d!r}")
        a = self.min_abs_delta
        if isinstance(a, bool) or not isinstance(a, numbers.Real) or not (0 <= a < math.inf):
            raise ValueError(f"EarlyStopping.min_abs_delta must be a finite number >= 0, got {a!r}")

    def initial(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def improved(self, score: float, best: float) -> bool:
        margin = max(self.min_rel_delta * abs(best), self.min_abs_delta) if math.isfinite(best) else 0.0
        better = (score > best + margin) if self.mode == "max" else (score < best - margin)
        return better or (self.replace_nonfinite_best and not math.isfinite(best))


class PermutationBatches:
    """Mini-batches of ``batch_size`` indices drawn without replacement from a permutation of
    ``range(n)``, a new permutation when the next batch would not fit (a first batch larger than
    ``n`` is the whole permutation). Subclasses say where permutations come from
    (``_permutation``) and how their state is saved (``state``) and restored (``_restorer``)."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n = _count("n", n, 1)
        self.batch_size = _count("batch_size", batch_size, 1)
        self.pos = 0

    def next(self):
        if self.pos + self.batch_size > self.n and self.pos > 0:  # next epoch
            self.perm, self.pos = self._permutation(), 0
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return self._index(idx)

    def _index(self, idx):
        return idx

    def check_state(self, state: dict[str, Any], tensors: dict[str, torch.Tensor],
                    rng: dict[str, torch.Tensor]) -> Callable[[], None]:
        """Check a checkpointed state (raising KeyError/TypeError/ValueError) and return the
        function that restores it."""
        pos = state["pos"]
        if isinstance(pos, bool) or not isinstance(pos, int) or pos < 0:
            raise ValueError(f"batches.pos {pos!r}")
        perm = tensors["perm"]
        if perm.shape != (self.n,) or perm.dtype != torch.int64:
            raise ValueError(f"perm of shape {tuple(perm.shape)} and dtype {perm.dtype}, expected ({self.n},) int64")
        return self._restorer(pos, perm, state, rng)


class TorchPermutationBatches(PermutationBatches):
    """Permutations from a ``torch.Generator`` seeded with ``seed``; indices are int64 tensors."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        super().__init__(n, batch_size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.perm = self._permutation()

    def _permutation(self) -> torch.Tensor:
        return torch.randperm(self.n, generator=self.generator)

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return {"pos": self.pos}, {"perm": self.perm}, {"generator": self.generator.get_state()}

    def _restorer(self, pos, perm, state, rng):
        g = rng["generator"]
        probe = torch.Generator()
        probe.set_state(g)  # raises RuntimeError on a state of the wrong size or type

        def restore() -> None:
            self.generator.set_state(g)
            self.perm, self.pos = perm, pos
        return restore


class NumpyPermutationBatches(PermutationBatches):
    """Permutations from ``numpy.random.default_rng(seed)``; indices are int64 tensors."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        super().__init__(n, batch_size)
        self.rng = np.random.default_rng(seed)
        self.perm = self._permutation()

    def _permutation(self) -> np.ndarray:
        return self.rng.permutation(self.n)

    def _index(self, idx):
        return torch.from_numpy(idx)

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return ({"pos": self.pos, "numpy_rng": self.rng.bit_generator.state},
                {"perm": torch.from_numpy(np.asarray(self.perm))}, {})

    def _restorer(self, pos, perm, state, rng):
        st = state["numpy_rng"]
        probe = np.random.default_rng(0)
        probe.bit_generator.state = st  # raises TypeError/ValueError on a garbled state

        def restore() -> None:
            self.rng.bit_generator.state = st
            self.perm, self.pos = perm.numpy().copy(), pos
        return restore


def clip_gradients(max_norm: float | None) -> Callable[[nn.Module], torch.Tensor]:
    """The default ``grad_norm``: clip the total gradient norm at ``max_norm`` (if it is > 0)
    and return the norm before clipping."""
    def grad_norm(model: nn.Module) -> torch.Tensor:
        if max_norm and max_norm > 0:
            return nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        grads = [p.grad.detach().flatten() for p in model.parameters() if p.grad is not None]
        return torch.cat(grads).norm() if grads else torch.zeros(())
    return grad_norm


def _default_record(step: int, mean_loss: float, last_loss: float, val: dict[str, Any]) -> dict[str, Any]:
    return {"step": step, "train_loss": mean_loss, **{f"val_{k}": v for k, v in val.items()}}


def _num(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} {v!r} is not a number")
    return float(v)


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{name} {v!r} is not a non-negative int")
    return v


def train_loop(model: nn.Module, *, batches: PermutationBatches,
               loss_fn: Callable[[nn.Module, Any], torch.Tensor],
               validate: Callable[[nn.Module], dict[str, Any]],
               max_steps: int, eval_every: int, early_stopping: EarlyStopping,
               lr: float = 3e-3,
               optimizer: Callable[[Any], torch.optim.Optimizer] | None = None,
               grad_norm: Callable[[nn.Module], torch.Tensor] | None = None,
               seed: int | None = None,
               record: Callable[[int, float, float, dict[str, Any]], dict[str, Any]] | None = None,
               on_update: Callable[[int], None] | None = None,
               step_hook: Callable[[int], None] | None = None,
               progress: Callable[[int, dict[str, Any]], None] | None = None,
               checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 100,
               resume: bool = False, fingerprint: dict[str, Any] | None = None,
               name: str = "tnd.apps.training", step_word: str = "step",
               legacy_state: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
               on_nonfinite: str = "raise") -> dict[str, Any]:
    """Train ``model`` in place (see the module doc for the order of a step) and return
    ``{"history", "stop_step", "best_state", "stopped_early", "best_step", "best_score",
    "best_val", "last_loss", "train_time_s", "eval_time_s", "wall_time_s", "resumed_from",
    "wall_before_resume_s", "diverged_at"}``.

    ``stop_step`` is the last step taken: training ended by early stopping (``stopped_early``),
    by a divergence (``diverged_at``: the step whose loss or gradient norm was not finite; only
    with ``on_nonfinite="stop"``, else it raises) or at the budget ``max_steps``; ``best_state`` the best weights (already loaded into the model);
    ``resumed_from`` the step of the checkpoint it continued from (``None``: a fresh start),
    ``wall_before_resume_s`` the wall seconds the processes before it had run up to that
    checkpoint (0 on a fresh start; ``wall_time_s`` includes them).

    ``optimizer(params)`` builds the optimiser (default ``Adam(params, lr=lr)``); ``seed``, if
    given, seeds the global torch RNG first (dropout and the like). ``best_val`` is the
    ``validate`` dict of the best step (``None`` before any improvement), ``best_score`` its
    monitored value; ``train_time_s`` counts the steps only, ``eval_time_s`` the validations,
    ``wall_time_s`` everything (all three include the time before a resume). ``record`` makes a
    history entry (default ``{"step", "train_loss" (mean since the last validation), "val_<key>"
    ...}``); ``progress`` gets ``{"loss"}`` plus ``{"val": scores}`` after a validation.
    ``fingerprint`` is what a resumed checkpoint must match (hyper-parameters, data hashes);
    ``name`` and ``step_word`` appear in error messages; ``legacy_state`` converts the loop state
    of a checkpoint written before this loop existed (it has no ``"loop"`` key)."""
    max_steps = _count("max_steps", max_steps, 0)
    eval_every = _count("eval_every", eval_every, 1)
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite: expected one of {', '.join(map(repr, ON_NONFINITE))}, got {on_nonfinite!r}")
    if not isinstance(early_stopping, EarlyStopping):
        raise TypeError(f"early_stopping must be an EarlyStopping, got {type(early_stopping).__name__}")
    if checkpoint_dir is not None:
        checkpoint_every = _count("checkpoint_every", checkpoint_every, 1)
    if step_hook is not None and checkpoint_dir is not None:
        raise ValueError("step_hook cannot be combined with checkpoint_dir: the hook's state is not checkpointed")
    es = early_stopping
    grad_norm = grad_norm if grad_norm is not None else clip_gradients(1.0)
    record = record if record is not None else _default_record
    if seed is not None:
        torch.manual_seed(seed)
    opt = optimizer(model.parameters()) if optimizer is not None else torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    t0 = time.perf_counter()
    history: list[dict[str, Any]] = []
    best_state = copy.deepcopy(model.state_dict())
    best_score, best_step, best_val = es.initial(), 0, None
    run_loss, run_n, bad, step, stopped = 0.0, 0, 0, 0, False
    diverged_at: int | None = None
    last_loss = float("nan")
    t_train = t_eval = 0.0
    resumed_from = None
    wall_before_resume = 0.0

    if checkpoint_dir is not None and resume and ckmod.has_checkpoint(checkpoint_dir):
        parsed: dict[str, Any] = {}

        def check(ck: dict[str, Any]) -> None:  # runs before load_checkpoint loads anything
            try:
                st, ex = ck["state"], ck["tensors"]
                if not isinstance(st, dict):
                    raise TypeError("state is not an object")
                if "loop" not in st and legacy_state is not None:
                    st = legacy_state(st)
                if st.get("loop") != LOOP_FORMAT:
                    raise ValueError(f"loop format {st.get('loop')!r}, expected {LOOP_FORMAT!r}")
                restore = batches.check_state(st["batches"], ex, ck["rng"])
                msd = model.state_dict()
                bs = {k[len("best."):]: v for k, v in ex.items() if k.startswith("best.")}
                if bs.keys() != msd.keys():
                    raise KeyError("best.*")
                for k, v in bs.items():
                    if v.shape != msd[k].shape or v.dtype != msd[k].dtype:
                        raise ValueError(f"best.{k} of shape {tuple(v.shape)} {v.dtype}")
                hist = st["history"]
                if not isinstance(hist, list) or not all(isinstance(h, dict) for h in hist):
                    raise TypeError("history is not a list of objects")
                bv = st["best_val"]
                if bv is not None and not isinstance(bv, dict):
                    raise TypeError("best_val is not an object")
                if not isinstance(st["stopped"], bool):
                    raise TypeError(f"stopped {st['stopped']!r}")
                dv = st.get("diverged_at")  # absent in checkpoints from before the divergence rule
                if dv is not None and (_int(dv, "diverged_at") < 1 or not st["stopped"]):
                    raise ValueError(f"diverged_at {dv!r} (stopped {st['stopped']!r})")
                parsed.update(
                    restore=restore, best_state=bs, history=list(hist), best_val=bv,
                    best_score=_num(st["best_score"], "best_score"), best_step=_int(st["best_step"], "best_step"),
                    bad=_int(st["bad"], "bad"), stopped=st["stopped"], run_loss=_num(st["run_loss"], "run_loss"),
                    run_n=_int(st["run_n"], "run_n"), diverged_at=dv, last_loss=_num(st["last_loss"], "last_loss"),
                    train_time_s=_num(st["train_time_s"], "train_time_s"),
                    eval_time_s=_num(st["eval_time_s"], "eval_time_s"),
                    wall_time_s=_num(st["wall_time_s"], "wall_time_s"))
            except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
                raise CheckpointError(f"checkpoint in {checkpoint_dir} is not a {name} checkpoint "
                                      f"(its training-loop state lacks or garbles {e})") from e

        ck = ckmod.load_checkpoint(checkpoint_dir, model=model, optimizer=opt, fingerprint=fingerprint, check=check)
        parsed["restore"]()
        step = resumed_from = int(ck["step"])
        history, best_state, best_val = parsed["history"], parsed["best_state"], parsed["best_val"]
        best_score, best_step, bad, stopped = parsed["best_score"], parsed["best_step"], parsed["bad"], parsed["stopped"]
        run_loss, run_n, last_loss = parsed["run_loss"], parsed["run_n"], parsed["last_loss"]
        diverged_at = parsed["diverged_at"]
        t_train, t_eval = parsed["train_time_s"], parsed["eval_time_s"]
        wall_before_resume = parsed["wall_time_s"]
        t0 -= wall_before_resume

    def write_checkpoint() -> None:
        bst, btensors, brng = batches.state()
        ckmod.save_checkpoint(
            checkpoint_dir, step=step, model=model, optimizer=opt, fingerprint=fingerprint, rng=brng,
            tensors={**btensors, **{f"best.{k}": v for k, v in best_state.items()}},
            state={"loop": LOOP_FORMAT, "batches": bst, "history": history, "best_val": best_val,
                   "best_score": best_score, "best_step": best_step, "bad": bad, "stopped": stopped,
                   "diverged_at": diverged_at,
                   "run_loss": run_loss, "run_n": run_n, "last_loss": last_loss, "train_time_s": t_train,
                   "eval_time_s": t_eval, "wall_time_s": time.perf_counter() - t0})

    def diverge(what: str) -> None:
        nonlocal stopped, diverged_at
        if on_nonfinite == "raise":
            raise NonFiniteError(f"{what} at {step_word} {step + 1}; the last good checkpoint (if any) is kept", step + 1)
        # the weights are those after step `step`: the failed step changed nothing
        stopped, diverged_at = True, step + 1
        opt.zero_grad(set_to_none=True)
        if checkpoint_dir is not None:
            write_checkpoint()

    while step < max_steps and not stopped:
        ts = time.perf_counter()
        idx = batches.next()
        loss = loss_fn(model, idx)
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss.detach()):
            diverge(f"non-finite training loss ({float(loss.detach())})")
            break
        loss.backward()
        gnorm = grad_norm(model)
        if not torch.isfinite(gnorm):
            diverge(f"non-finite gradients (norm {float(gnorm)})")
            break
        opt.step()
        step += 1
        last_loss = float(loss.detach())
        run_loss += last_loss
        run_n += 1
        t_train += time.perf_counter() - ts
        if on_update is not None:
            on_update(step)
        info: dict[str, Any] = {"loss": last_loss}
        if step % eval_every == 0 or step == max_steps:
            te = time.perf_counter()
            val = validate(model)
            t_eval += time.perf_counter() - te
            history.append(record(step, run_loss / run_n, last_loss, val))
            run_loss, run_n = 0.0, 0
            info["val"] = val
            score = val[es.monitor]
            if es.improved(score, best_score):
                best_score, best_step, best_val, bad = score, step, val, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
                if bad >= es.patience:
                    stopped = True
        if step_hook is not None:  # after validation: a hook that rewires the model acts on the next steps
            step_hook(step)
        if checkpoint_dir is not None and (step % checkpoint_every == 0 or stopped or step >= max_steps):
            write_checkpoint()
        if progress is not None:
            progress(step, info)
    model.load_state_dict(best_state)
    return {"history": history, "stop_step": step, "best_state": best_state,
            "stopped_early": stopped and diverged_at is None, "diverged_at": diverged_at, "best_step": best_step,
            "best_score": best_score, "best_val": best_val, "last_loss": last_loss, "train_time_s": t_train,
            "eval_time_s": t_eval, "wall_time_s": time.perf_counter() - t0, "resumed_from": resumed_from,
            "wall_before_resume_s": wall_before_resume}
