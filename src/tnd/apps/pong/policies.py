"""Reference policies for :class:`~tnd.apps.pong.env.SinglePlayerPong` and their evaluation.

Every policy has ``reset()`` (called at the start of each round) and ``act(obs_or_state) -> int``
(0 = up / increasing y, 1 = stay, 2 = down), optionally ``attach(env)`` (called by
:func:`evaluate_policy` before the first round).

* :class:`ExpertPolicy` -- the data-generating expert: reads the true state and moves to where
  the ball will next cross the paddle plane (:func:`predict_intercept`).
* :class:`TrackerPolicy` -- reactive, positions only: moves towards the ball's current ``y``.
* :class:`RandomPolicy` -- uniform random actions from its own seeded RNG.

Evaluation round ``i`` uses ``env.reset(seed=EVAL_SEED_BASE + i)``, demonstrations
``DATA_SEED_BASE + i`` (kept below ``EVAL_SEED_BASE``), so training data never contain an
evaluation serve. The policies' calibration and the seed protocol: docs/PONG.md (section 2).
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from tnd.checks import check_int

from .env import PongState, SinglePlayerPong, check_action

__all__ = [
    "EVAL_SEED_BASE",
    "DATA_SEED_BASE",
    "ExpertPolicy",
    "TrackerPolicy",
    "RandomPolicy",
    "predict_intercept",
    "expert_actions",
    "evaluate_policy",
]

#: base seed of evaluation rounds (round i uses EVAL_SEED_BASE + i)
EVAL_SEED_BASE = 10_000_000
#: base seed of demonstration rounds (round i uses DATA_SEED_BASE + i); must stay < EVAL_SEED_BASE
DATA_SEED_BASE = 0


def predict_intercept(
    ball_x: float, ball_y: float, ball_vx: float, ball_vy: float, paddle_x: float = 0.05
) -> float:
    """Height at which the ball will next cross the plane ``x = paddle_x``.

    Bounces off the top/bottom walls are unfolded (reflection = folding the straight
    line back into ``[0, 1]``); a ball moving right first travels to the right wall and
    back (the right wall only flips ``vx``). A ball with ``vx == 0`` returns ``ball_y``.
    """
    if ball_vx < 0.0:
        t = (ball_x - paddle_x) / -ball_vx
    elif ball_vx > 0.0:
        t = ((1.0 - ball_x) + (1.0 - paddle_x)) / ball_vx
    else:
        return ball_y
    m = (ball_y + t * ball_vy) % 2.0
    return m if m <= 1.0 else 2.0 - m


def expert_actions(ball_x: np.ndarray, ball_y: np.ndarray, ball_vx: np.ndarray, ball_vy: np.ndarray,
                   paddle_y: np.ndarray, paddle_x: np.ndarray | float, half: np.ndarray | float,
                   dead_band: np.ndarray | float) -> np.ndarray:
    """:meth:`ExpertPolicy.act` over arrays of true states (one per row; the physics per row or
    shared: ``half`` = ``paddle_half_length``, ``dead_band`` = ``paddle_speed / 2``): int64
    actions, the same as the policy's bit for bit, since :func:`predict_intercept`, the clip of
    the target to ``[half, 1 - half]`` and the dead band use only ``+ - * /``, ``%`` and
    comparisons, which numpy rounds as Python does."""
    bx, by, vx, vy, py = (np.asarray(v, dtype=np.float64) for v in (ball_x, ball_y, ball_vx, ball_vy, paddle_y))
    with np.errstate(divide="ignore", invalid="ignore"):  # vx == 0 rows take ball_y below
        t = np.where(vx < 0.0, (bx - paddle_x) / -vx, ((1.0 - bx) + (1.0 - paddle_x)) / vx)
        m = np.remainder(by + t * vy, 2.0)
    y = np.where(vx == 0.0, by, np.where(m <= 1.0, m, 2.0 - m))
    d = np.minimum(np.maximum(y, half), 1.0 - half) - py  # Python's min(max(y, h), 1 - h), h < 1 - h
    return np.where(d > dead_band, 0, np.where(d < -np.asarray(dead_band), 2, 1)).astype(np.int64)


def _move_towards(target: float, paddle_y: float, dead_band: float) -> int:
    d = target - paddle_y
    if d > dead_band:
        return 0
    if d < -dead_band:
        return 2
    return 1


class _EnvReader:
    """Shared bits: physics constants and optional access to an attached env."""

    def __init__(self, env: Any = None) -> None:
        self.env = None
        self.paddle_x = 0.05
        self.half = 0.08
        self.speed = 0.015
        self.obs_mode = "positions"
        if env is not None:
            self.attach(env)

    def attach(self, env: Any) -> None:
        """Read physics constants (and, if needed, the true state) from ``env``."""
        base = env.unwrapped if hasattr(env, "unwrapped") else env
        if not isinstance(base, SinglePlayerPong):
            raise TypeError(f"env must be a SinglePlayerPong (or a wrapper of one), got {type(env).__name__}")
        self.env = base
        self.paddle_x = base.physics["paddle_x"]
        self.half = base.physics["paddle_half_length"]
        self.speed = base.physics["paddle_speed"]
        self.obs_mode = base.obs_mode

    def reset(self) -> None:
        pass

    def _true_state(self, obs_or_state: Any, what: str) -> PongState:
        if isinstance(obs_or_state, PongState):
            return obs_or_state
        if self.env is not None:
            return self.env.get_state()
        arr = np.asarray(obs_or_state, dtype=np.float64).reshape(-1)
        if arr.shape == (5,):
            return PongState(*arr.tolist())
        raise ValueError(
            f"{type(self).__name__}.act needs {what}: pass a PongState, a 5-dim 'state' observation, "
            f"or attach(env) first; got an observation of shape {np.shape(obs_or_state)}"
        )


class ExpertPolicy(_EnvReader):
    """Analytic intercept expert: moves its centre to :func:`predict_intercept` (dead band
    ``paddle_speed / 2``); needs the true state.

    ``ExpertPolicy(env)`` reads the env's true state every step; ``act`` ignores the
    observation then. Without an env, ``act`` needs a ``PongState`` or a 5-dim
    ``"state"`` observation.
    """

    name = "expert"
    needs_state = True

    def target(self, s: PongState) -> float:
        y = predict_intercept(s.ball_x, s.ball_y, s.ball_vx, s.ball_vy, self.paddle_x)
        return min(max(y, self.half), 1.0 - self.half)

    def act(self, obs_or_state: Any) -> int:
        s = self._true_state(obs_or_state, "the true state (velocity)")
        return _move_towards(self.target(s), s.paddle_y, 0.5 * self.speed)


class TrackerPolicy(_EnvReader):
    """Reactive tracker: move the paddle centre towards the ball's current ``y``.

    Uses positions only: from a ``"positions"`` (3-dim) or ``"state"`` (5-dim)
    observation, a ``PongState``, or the attached env's state (needed for pixels).
    Pass ``env`` or call ``attach`` to use non-default paddle speed.
    """

    name = "tracker"
    needs_state = False

    def act(self, obs_or_state: Any) -> int:
        if isinstance(obs_or_state, PongState):
            by, py = obs_or_state.ball_y, obs_or_state.paddle_y
        else:
            arr = np.asarray(obs_or_state, dtype=np.float64).reshape(-1)
            if arr.shape == (3,):
                by, py = arr[1], arr[2]
            elif arr.shape == (5,):
                by, py = arr[1], arr[4]
            elif self.env is not None:
                st = self.env.get_state()
                by, py = st.ball_y, st.paddle_y
            else:
                raise ValueError(
                    "TrackerPolicy.act needs a 3-dim 'positions' or 5-dim 'state' observation, a PongState, "
                    f"or attach(env) first; got an observation of shape {np.shape(obs_or_state)}"
                )
        return _move_towards(float(by), float(py), 0.5 * self.speed)


class RandomPolicy:
    """Uniformly random actions from ``numpy.random.default_rng(seed)`` (created once)."""

    name = "random"
    needs_state = False

    def __init__(self, seed: int | None = 0) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(
                f"seed must be an int or None, got {type(seed).__name__} (as a factory for evaluate_policy "
                "use `lambda env: RandomPolicy(seed)`)"
            )
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def act(self, obs_or_state: Any) -> int:
        return int(self.rng.integers(3))


def evaluate_policy(
    policy: Any,
    rounds: int = 100,
    seed: int = EVAL_SEED_BASE,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Play ``rounds`` rounds; round ``i`` uses ``env.reset(seed=seed + i)``.

    ``policy`` is either a policy object (``reset()``, ``act(obs)``, optional
    ``attach(env)``; the same object plays every round and is reset before each) or a
    factory ``callable(env) -> policy`` called once per round (e.g. ``ExpertPolicy``).

    Returns a dict: ``catch_rate`` (pooled: total catches / (total catches + misses);
    ``nan`` if neither happened), ``mean_catches`` and ``median_catches`` (consecutive
    catches per round), ``rounds_at_cap``, ``misses``, ``rounds_step_limited``,
    ``rounds``, ``cap`` (``max_catches``), ``seed``, ``total_steps``, ``per_round``
    (list of catches per round) and ``per_round_steps``.
    """
    check_int("rounds", rounds, 1)
    check_int("seed", seed, 0)
    if env_kwargs is not None and not isinstance(env_kwargs, dict):
        raise ValueError(f"env_kwargs must be a dict or None, got {type(env_kwargs).__name__}")
    env = SinglePlayerPong(**(env_kwargs or {}))
    is_factory = isinstance(policy, type) or (callable(policy) and not hasattr(policy, "act"))
    if not is_factory:
        if not hasattr(policy, "act"):
            raise ValueError(f"policy must have act(obs) or be a factory callable(env), got {policy!r}")
        if hasattr(policy, "attach"):
            policy.attach(env)
    per_round: list[int] = []
    per_steps: list[int] = []
    misses = at_cap = step_limited = 0
    for i in range(int(rounds)):
        obs, info = env.reset(seed=int(seed) + i)
        pol: Any = policy(env) if is_factory else policy
        if hasattr(pol, "reset"):
            pol.reset()
        terminated = truncated = False
        while not (terminated or truncated):
            a = check_action(pol.act(obs))
            obs, _r, terminated, truncated, info = env.step(a)
        per_round.append(int(info["catches"]))
        per_steps.append(int(info["steps"]))
        if terminated:
            misses += 1
        elif info["catches"] >= env.max_catches:
            at_cap += 1
        else:
            step_limited += 1
    total = sum(per_round)
    denom = total + misses
    return {
        "catch_rate": total / denom if denom else float("nan"),
        "mean_catches": total / len(per_round),
        "median_catches": float(statistics.median(per_round)),
        "rounds_at_cap": at_cap,
        "misses": misses,
        "rounds_step_limited": step_limited,
        "rounds": int(rounds),
        "cap": env.max_catches,
        "seed": int(seed),
        "total_steps": sum(per_steps),
        "per_round": per_round,
        "per_round_steps": per_steps,
    }

