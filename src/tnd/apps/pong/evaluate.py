"""Closed-loop evaluation of a trained sequence model in :class:`SinglePlayerPong`.

Greedy actions; the hidden state is reset at each serve and carried through the round one
observation at a time (as trained). Round ``i`` is served by ``env.reset(seed=seed + i)``,
``seed`` defaulting to ``EVAL_SEED_BASE``: the rounds :func:`~tnd.apps.pong.policies.evaluate_policy`
plays with the reference policies. The rounds run in lockstep, batched over the still-running
ones, with per-round results identical to playing them one by one. Protocol: docs/PONG.md
(section 5).
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from tnd.checks import check_positive_int
from ..baselines import map_state
from .env import SinglePlayerPong
from .policies import EVAL_SEED_BASE

__all__ = ["play_rounds", "summarize_rounds", "record_frames"]


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
    ``progress(n)`` is called with the number of rounds that just finished.
    """
    check_positive_int("rounds", rounds)
    was_training = model.training
    model.eval()
    envs = [SinglePlayerPong(**(env_kwargs or {})) for _ in range(rounds)]
    obs = np.stack([env.reset(seed=int(seed) + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    per_round = [0] * rounds
    per_steps = [0] * rounds
    ended = [""] * rounds
    active = list(range(rounds))
    h: Any = None
    dtype = next(model.parameters()).dtype
    step = step_function(model)
    while active:
        x = torch.from_numpy(obs[active]).to(dtype)  # (A, C): one observation per active round
        logits, h = step(x, h)
        actions = logits.argmax(-1).tolist()
        keep: list[int] = []
        still: list[int] = []
        for j, (i, a) in enumerate(zip(active, actions)):
            o, _r, term, trunc, info = envs[i].step(int(a))
            obs[i] = o
            if term or trunc:
                per_round[i] = int(info["catches"])
                per_steps[i] = int(info["steps"])
                ended[i] = "miss" if term else ("cap" if info["catches"] >= envs[i].max_catches else "steps")
            else:
                keep.append(j)
                still.append(i)
        if len(still) < len(active):
            if progress is not None:
                progress(len(active) - len(still))
            if still:
                h = _select(h, torch.tensor(keep, dtype=torch.long))
        active = still
    model.train(was_training)
    out = summarize_rounds(per_round, ended.count("miss"), ended.count("cap"), envs[0].max_catches)
    out.update(per_round=per_round, per_round_steps=per_steps, rounds_step_limited=ended.count("steps"),
               seed=int(seed), total_steps=int(sum(per_steps)))
    return out


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
