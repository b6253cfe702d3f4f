"""Closed-loop evaluation of a trained sequence model in :class:`SinglePlayerPong`.

Greedy actions; the hidden state is reset at each serve and carried through the round one
observation at a time (as trained). Round ``i`` is served by ``env.reset(seed=seed + i)``,
``seed`` defaulting to ``EVAL_SEED_BASE``: the rounds :func:`~tnd.apps.pong.policies.evaluate_policy`
plays with the reference policies. The rounds run in lockstep, batched over the still-running
ones (:class:`~tnd.apps.pong.batch_env.PongBatch`, the env's rounds bit for bit), with per-round
results identical to playing them one by one; :func:`play_groups` plays several groups (the
evaluation and its shifts) in one batch. Protocol: docs/PONG.md
(section 5).
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from tnd.checks import check_int, check_positive_int
from ..baselines import map_state
from .batch_env import PongBatch
from .env import SinglePlayerPong
from .policies import EVAL_SEED_BASE

__all__ = ["play_rounds", "play_groups", "play_rounds_reference", "summarize_rounds", "record_frames"]

_MISS, _CAP, _STEPS = 1, 2, 3  # how a round ended


def summarize_rounds(per_round: list[int], misses: int, at_cap: int, cap: int) -> dict[str, Any]:
    """The metrics of a list of rounds (same keys as ``evaluate_policy``'s)."""
    total = int(sum(per_round))
    denom = total + int(misses)
    return {
        "catch_rate": total / denom if denom else float("nan"),
        "mean_catches": total / len(per_round) if per_round else float("nan"),
        "median_catches": float(statistics.median(per_round)) if per_round else float("nan"),
        "rounds_at_cap": int(at_cap),
        "misses": int(misses),
        "rounds": len(per_round),
        "cap": int(cap),
    }


def _select(h: Any, keep: torch.Tensor) -> Any:
    return map_state(h, lambda t: t.index_select(0, keep))


def step_function(model: nn.Module) -> Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]:
    """``step(x, h) -> (logits, h)`` for one observation per sequence, ``x`` ``(B, C)``.

    A TND (bare or inside ``ScaledInput``) steps through :meth:`tnd.TND.step`, the lean
    control-loop call (the same logits and state as ``model(x[:, None], h)``, up to rounding);
    every other model is called on a one-step sequence."""
    from tnd.model import TND
    from .models import ScaledInput

    inner = model.inner if isinstance(model, ScaledInput) else model
    if isinstance(inner, TND):
        stepper = inner.stepper()
        if inner is model:
            return stepper
        center, scale = model.center, model.scale
        return lambda x, h: stepper((x - center) * scale, h)  # ScaledInput.forward's change of units

    def step(x: torch.Tensor, h: Any):
        logits, h = model(x.unsqueeze(1), h)
        return logits[:, -1], h

    return step


@torch.inference_mode()
def play_rounds(
    model: nn.Module,
    rounds: int = 100,
    seed: int = EVAL_SEED_BASE,
    env_kwargs: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Play ``rounds`` rounds with ``model`` (greedy, state reset at each serve).

    Returns :func:`summarize_rounds`'s metrics plus ``per_round`` (catches per round, in round
    order), ``per_round_steps``, ``rounds_step_limited``, ``seed`` and ``total_steps``.
    ``progress(n)`` is called with the number of rounds that just finished. The rounds run in one
    :class:`~tnd.apps.pong.batch_env.PongBatch` (:func:`play_groups` with one group): the results
    of stepping a list of envs, the model seeing the same batches of observation rows.
    """
    check_positive_int("rounds", rounds)
    report = None if progress is None else (lambda _g, n: progress(n))
    return play_groups(model, [(env_kwargs, rounds, seed)], progress=report)[0]


@torch.inference_mode()
def play_groups(
    model: nn.Module,
    groups: Sequence[tuple[dict[str, Any] | None, int, int]],
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Play several groups of rounds with ``model`` in ONE lockstep batch.

    ``groups``: ``(env_kwargs, rounds, seed)`` each; round ``i`` of a group is served by
    ``SinglePlayerPong(**env_kwargs).reset(seed=seed + i)``; the groups must share the observation
    layout (e.g. the evaluation and its shifts, :func:`tnd.apps.pong.shifts.evaluate_with_shifts`).
    Returns one :func:`play_rounds` result per group, in order. ``progress(g, n)`` is called when
    ``n`` rounds of group ``g`` just finished.

    A round's observations, actions and results are those of playing its group alone, except that
    the model steps a larger batch of rows: a batched matrix product may round differently from a
    smaller one, so a logit may differ in its last bits, which changes an action only at an
    (almost) exact tie. A model whose rows do not interact in rounding (elementwise policies) gives
    the same ``per_round`` lists as :func:`play_rounds` per group; the models of this package agree
    in practice (tests/test_pong_play_batch.py).
    """
    if not groups:
        raise ValueError("groups: expected at least one (env_kwargs, rounds, seed), got none")
    kwargs_rows: list[dict[str, Any]] = []
    seeds: list[int] = []
    for g, item in enumerate(groups):
        if not (isinstance(item, (tuple, list)) and len(item) == 3):
            raise ValueError(f"groups[{g}]: expected (env_kwargs, rounds, seed), got {item!r}")
        kw, n, seed = item
        if kw is not None and not isinstance(kw, dict):
            raise ValueError(f"groups[{g}]: env_kwargs must be a dict or None, got {type(kw).__name__}")
        check_positive_int(f"groups[{g}] rounds", n)
        check_int(f"groups[{g}] seed", seed, 0)
        kwargs_rows += [dict(kw or {})] * n
        seeds += [int(seed) + i for i in range(n)]
    group_of = np.repeat(np.arange(len(groups)), [n for _, n, _ in groups])
    was_training = model.training
    model.eval()
    batch, obs = PongBatch.serve(kwargs_rows, seeds)
    caps = batch.max_catches.copy()
    total = len(seeds)
    per_round = np.zeros(total, dtype=np.int64)
    per_steps = np.zeros(total, dtype=np.int64)
    ended = np.zeros(total, dtype=np.int8)  # _MISS, _CAP or _STEPS once a round ends
    h: Any = None
    dtype = next(model.parameters()).dtype
    step = step_function(model)
    try:
        while len(batch):
            logits, h = step(torch.from_numpy(obs).to(dtype), h)  # (A, C): one observation per running round
            rows = batch.rows
            obs, term, trunc, catches, steps = batch.step(logits.argmax(-1).cpu().numpy())
            done = term | trunc
            if done.any():
                r = rows[done]
                per_round[r], per_steps[r] = catches[done], steps[done]
                ended[r] = np.where(term[done], _MISS, np.where(catches[done] >= caps[r], _CAP, _STEPS))
                if progress is not None:
                    for g, n in zip(*np.unique(group_of[r], return_counts=True)):
                        progress(int(g), int(n))
                keep = np.flatnonzero(~done)
                if keep.size:
                    obs = obs[keep]
                    h = _select(h, torch.from_numpy(keep))
    finally:
        model.train(was_training)
    out = []
    for g, (_, _, seed) in enumerate(groups):
        sel = group_of == g
        pr, ps, end = per_round[sel].tolist(), per_steps[sel].tolist(), ended[sel]
        m = summarize_rounds(pr, int(np.sum(end == _MISS)), int(np.sum(end == _CAP)), int(caps[sel][0]))
        m.update(per_round=pr, per_round_steps=ps, rounds_step_limited=int(np.sum(end == _STEPS)), seed=int(seed),
                 total_steps=int(sum(ps)))
        out.append(m)
    return out


@torch.inference_mode()
def play_rounds_reference(model: nn.Module, rounds: int, seed: int = EVAL_SEED_BASE,
                          env_kwargs: dict[str, Any] | None = None) -> tuple[list[int], list[int], list[str]]:
    """The readable definition :func:`play_rounds` is tested against: a list of envs, one
    ``env.step`` per round per step, the model stepping the still-running rounds' observations
    together. Returns ``(catches, steps, how each round ended: "miss", "cap" or "steps")`` per round."""
    envs = [SinglePlayerPong(**(env_kwargs or {})) for _ in range(rounds)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]).astype(np.float32)
    per_round, per_steps, ended = [0] * rounds, [0] * rounds, [""] * rounds
    active, h = list(range(rounds)), None
    dtype = next(model.parameters()).dtype
    step = step_function(model)
    while active:
        logits, h = step(torch.from_numpy(obs[active]).to(dtype), h)
        keep, still = [], []
        for j, (i, a) in enumerate(zip(active, logits.argmax(-1).tolist())):
            o, _r, term, trunc, info = envs[i].step(int(a))
            obs[i] = o
            if term or trunc:
                per_round[i], per_steps[i] = info["catches"], info["steps"]
                ended[i] = "miss" if term else ("cap" if info["catches"] >= envs[i].max_catches else "steps")
            else:
                keep.append(j)
                still.append(i)
        if len(still) < len(active) and still:
            h = _select(h, torch.tensor(keep))
        active = still
    return per_round, per_steps, ended


@torch.inference_mode()
def record_frames(
    model: nn.Module,
    seed: int = EVAL_SEED_BASE,
    env_kwargs: dict[str, Any] | None = None,
    max_steps: int = 400,
    render_size: int = 96,
) -> tuple[list[np.ndarray], list[int], dict[str, Any]]:
    """Play one round with ``model`` and return its ``rgb_array`` frames (the first
    ``max_steps`` steps, frame 0 = the serve), the step index of each frame, and the round's
    ``info`` at the last recorded step."""
    kw = dict(env_kwargs or {})
    kw.update(render_mode="rgb_array", render_size=render_size)
    env = SinglePlayerPong(**kw)
    obs, info = env.reset(seed=int(seed))
    frames, steps = [env.render()], [0]
    dtype = next(model.parameters()).dtype
    h: Any = None
    was_training = model.training
    model.eval()
    step = step_function(model)
    for t in range(1, max_steps + 1):
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).to(dtype).reshape(1, -1)
        logits, h = step(x, h)
        obs, _r, term, trunc, info = env.step(int(logits[0].argmax()))
        frames.append(env.render())
        steps.append(t)
        if term or trunc:
            break
    model.train(was_training)
    return frames, steps, dict(info)
