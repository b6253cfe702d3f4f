"""Behaviour-cloning training loop, the same for every model.

Protocol: cross-entropy against the expert's action on **every step** of each window, Adam,
gradient-norm clipping, a fixed budget of gradient steps (``max_steps``: the same for every
model, so the budget does not depend on a model's speed), validation every ``eval_every``
steps and **early stopping** on the validation loss (stop after ``patience`` evaluations
without improvement; the best validation checkpoint is returned). Minibatches are drawn
epoch by epoch from a permutation of the training windows made by a ``torch.Generator``
seeded with the training seed, so a run is a pure function of its seed (single-threaded CPU).
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

__all__ = ["train_model", "evaluate_offline", "generate_perturbed_demonstrations"]


def _as_tensors(X: Any, Y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(Y), dtype=torch.long)
    if x.dim() != 3 or y.shape != x.shape[:2]:
        raise ValueError(f"expected X (W, T, C) and Y (W, T), got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


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
) -> dict[str, Any]:
    """Train ``model`` in place; load the best validation weights into it at the end.

    Returns a dict: ``history`` (list of ``{step, train_loss, val_loss, val_accuracy}``, one per
    validation), ``best_step``, ``best_val_loss``, ``val_accuracy`` (offline action accuracy at
    the best step), ``steps`` (gradient steps done), ``stopped_early``, ``train_time_s``.
    ``progress(step, info)`` is called after every gradient step (for progress bars).
    """
    for name, v in (("max_steps", max_steps), ("batch_size", batch_size), ("eval_every", eval_every),
                    ("patience", patience)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
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
    while step < max_steps:
        if pos + batch_size > x.shape[0] and pos > 0:  # next epoch
            perm, pos = torch.randperm(x.shape[0], generator=gen), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        logits, _ = model(x[idx])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip and grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
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
        if progress is not None:
            progress(step, info)
        if stopped:
            break
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


def generate_perturbed_demonstrations(
    num_rounds: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    max_steps_per_round: int = 300,
    perturb_prob: float = 0.05,
    perturb_max_len: int = 8,
    serve_perturb_max_len: int = 0,
    noise_seed: int = 12345,
) -> dict[str, np.ndarray]:
    """Expert demonstrations with perturbed execution (DART-style noise injection).

    The **label** of every step is the expert's action for the recorded observation; the
    **executed** action is the expert's, except during perturbations: at each step outside a
    perturbation one starts with probability ``perturb_prob``, lasts ``U{1..perturb_max_len}``
    steps and executes one uniformly random action; in addition every round starts with a
    perturbation of ``U{0..serve_perturb_max_len}`` steps (a learner cannot know the ball's
    direction from the serve's first observation and hesitates there; the data must show what
    the expert does after such a hesitation). Why: in clean expert data the paddle's own
    motion (visible in the next observation) almost determines the next label, so a cloned
    policy learns to continue whatever the paddle was doing (the "copycat" shortcut) and never
    starts moving at a serve; clean data also never show how to recover from an off-target
    paddle. Perturbed execution breaks that correlation and covers recovery states while every
    label stays the expert's. ``perturb_prob=0`` gives the clean expert's demonstrations.

    Round ``i`` is served by ``env.reset(seed=seed + i)`` (seeds below ``EVAL_SEED_BASE``),
    the perturbations come from ``numpy.random.default_rng(noise_seed)``. Returns the same
    arrays as :func:`tnd.pong.data.generate_demonstrations` (so ``make_windows``,
    ``train_val_split`` and ``save_dataset`` apply); recording stops at a miss, the cap, the
    env's step limit or after ``max_steps_per_round`` steps.
    """
    from .data import ROUND_END_CAP, ROUND_END_MISS, ROUND_END_RECORDING_CUT, ROUND_END_STEP_LIMIT
    from .env import SinglePlayerPong
    from .policies import EVAL_SEED_BASE, ExpertPolicy

    if seed + num_rounds > EVAL_SEED_BASE:
        raise ValueError(f"seed + num_rounds must be <= EVAL_SEED_BASE={EVAL_SEED_BASE}")
    if not 0.0 <= perturb_prob <= 1.0:
        raise ValueError(f"perturb_prob must be in [0, 1], got {perturb_prob!r}")
    env = SinglePlayerPong(**(env_kwargs or {}))
    expert = ExpertPolicy(env)
    rng = np.random.default_rng(noise_seed)
    obs_l, act_l, rew_l, st_l = [], [], [], []
    lengths, catches_l, ends = [], [], []
    for i in range(int(num_rounds)):
        o, info = env.reset(seed=int(seed) + i)
        n = catches = 0
        left = int(rng.integers(0, serve_perturb_max_len + 1)) if serve_perturb_max_len > 0 else 0
        pa = int(rng.integers(3))
        end = ROUND_END_RECORDING_CUT
        while n < max_steps_per_round:
            label = expert.act(o)
            if left == 0 and perturb_prob > 0 and rng.random() < perturb_prob:
                left = int(rng.integers(1, perturb_max_len + 1))
                pa = int(rng.integers(3))
            executed = pa if left > 0 else label
            left = max(left - 1, 0)
            obs_l.append(np.asarray(o, dtype=np.float32))
            st_l.append(env.get_state().as_array())
            act_l.append(label)
            o, r, term, trunc, info = env.step(executed)
            rew_l.append(r)
            n += 1
            if r > 0:
                catches += 1
            if term:
                end = ROUND_END_MISS
                break
            if trunc:
                end = ROUND_END_CAP if info["catches"] >= env.max_catches else ROUND_END_STEP_LIMIT
                break
        lengths.append(n)
        catches_l.append(catches)
        ends.append(end)
    lengths_a = np.asarray(lengths, dtype=np.int64)
    rn = np.arange(int(num_rounds), dtype=np.int64)
    starts = np.zeros(int(lengths_a.sum()), dtype=bool)
    starts[np.concatenate([[0], np.cumsum(lengths_a)[:-1]])] = True
    return {
        "observations": np.stack(obs_l).astype(np.float32),
        "actions": np.asarray(act_l, dtype=np.int64),
        "rewards": np.asarray(rew_l, dtype=np.float32),
        "states": np.stack(st_l).astype(np.float32),
        "round_ids": np.repeat(rn, lengths_a),
        "episode_starts": starts,
        "round_numbers": rn,
        "round_seeds": int(seed) + rn,
        "round_lengths": lengths_a,
        "round_catches": np.asarray(catches_l, dtype=np.int64),
        "round_end": np.asarray(ends, dtype=np.int8),
    }
