"""Behaviour-cloning training loop, the same for every model.

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

import copy
import math
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import NonFiniteError

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
    the best step), ``steps`` (gradient steps done), ``stopped_early``, ``train_time_s``.
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
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    t0 = time.perf_counter()
    history: list[dict[str, Any]] = []
    best = {"val_loss": math.inf, "step": 0, "state": copy.deepcopy(model.state_dict()), "acc": float("nan")}
    perm, pos = torch.randperm(x.shape[0], generator=gen), 0
    run_loss, run_n, bad, step, stopped = 0.0, 0, 0, 0, False
    fingerprint = None
    if checkpoint_dir is not None:
        from ..checkpoint import has_checkpoint, load_checkpoint, save_checkpoint

        fingerprint = {"train": {"max_steps": max_steps, "batch_size": batch_size, "lr": float(lr),
                                 "eval_every": eval_every, "patience": patience, "grad_clip": float(grad_clip or 0.0),
                                 "seed": int(seed), "train_shape": list(x.shape), "val_shape": list(np.shape(val_X)),
                                 "train_data_sha256": _data_hash(x, y),
                                 "val_data_sha256": _data_hash(*_as_tensors(val_X, val_Y))}}
        if resume and has_checkpoint(checkpoint_dir):
            ck = load_checkpoint(checkpoint_dir, model=model, optimizer=opt, fingerprint=fingerprint)
            try:
                st, ex = ck["state"], ck["tensors"]
                gen.set_state(ck["rng"]["generator"])
                perm, pos, step = ex["perm"], int(st["pos"]), int(ck["step"])
                run_loss, run_n, bad, stopped = float(st["run_loss"]), int(st["run_n"]), int(st["bad"]), bool(st["stopped"])
                history = st["history"]
                best = {"val_loss": float(st["best_val_loss"]), "step": int(st["best_step"]), "acc": float(st["best_acc"]),
                        "state": {k[len("best."):]: v for k, v in ex.items() if k.startswith("best.")}}
            except (KeyError, TypeError, ValueError, RuntimeError) as e:
                from ..checkpoint import CheckpointError

                raise CheckpointError(f"checkpoint in {checkpoint_dir} is not a train_model checkpoint "
                                      f"(its training-loop state lacks or garbles {e})") from e
            t0 -= float(st.get("train_time_s", 0.0))

    def write_checkpoint() -> None:
        save_checkpoint(checkpoint_dir, step=step, model=model, optimizer=opt, fingerprint=fingerprint,
                        rng={"generator": gen.get_state()},
                        tensors={"perm": perm, **{f"best.{k}": v for k, v in best["state"].items()}},
                        state={"pos": pos, "run_loss": run_loss, "run_n": run_n, "bad": bad, "stopped": stopped,
                               "history": history, "best_val_loss": best["val_loss"], "best_step": best["step"],
                               "best_acc": best["acc"], "train_time_s": time.perf_counter() - t0})

    while step < max_steps and not stopped:
        if pos + batch_size > x.shape[0] and pos > 0:  # next epoch
            perm, pos = torch.randperm(x.shape[0], generator=gen), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        logits, _ = model(x[idx])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].reshape(-1))
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss.detach()):
            raise NonFiniteError(f"non-finite training loss ({float(loss.detach())}) at step {step + 1}; "
                                 "the last good checkpoint (if any) is kept", step + 1)
        loss.backward()
        if grad_clip and grad_clip > 0:
            gnorm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        else:
            grads = [p.grad.detach().flatten() for p in model.parameters() if p.grad is not None]
            gnorm = torch.cat(grads).norm() if grads else torch.zeros(())
        if not torch.isfinite(gnorm):
            raise NonFiniteError(f"non-finite gradients (norm {float(gnorm)}) at step {step + 1}; "
                                 "the last good checkpoint (if any) is kept", step + 1)
        opt.step()
        step += 1
        loss_value = float(loss.detach())
        run_loss += loss_value
        run_n += 1
        info: dict[str, Any] = {"loss": loss_value}
        if step % eval_every == 0 or step == max_steps:
            val = evaluate_offline(model, val_X, val_Y)
            history.append({"step": step, "train_loss": run_loss / run_n, "val_loss": val["loss"],
                            "val_accuracy": val["accuracy"]})
            run_loss, run_n = 0.0, 0
            info.update(val_loss=val["loss"], val_acc=val["accuracy"])
            if val["loss"] < best["val_loss"]:
                best = {"val_loss": val["loss"], "step": step, "state": copy.deepcopy(model.state_dict()),
                        "acc": val["accuracy"]}
                bad = 0
            else:
                bad += 1
                if bad >= patience:
                    stopped = True
        if step_hook is not None:  # after validation: a hook that rewires the model acts on the next steps
            step_hook(step)
        if checkpoint_dir is not None and (step % checkpoint_every == 0 or stopped or step >= max_steps):
            write_checkpoint()
        if progress is not None:
            progress(step, info)
    model.load_state_dict(best["state"])
    model.eval()
    return {
        "history": history,
        "best_step": best["step"],
        "best_val_loss": best["val_loss"],
        "val_accuracy": best["acc"],
        "steps": step,
        "stopped_early": stopped,
        "train_time_s": time.perf_counter() - t0,
    }
