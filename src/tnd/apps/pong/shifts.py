"""Shifted environments for the generalisation columns of ``tnd pong`` (``--shifts``).

Each trained model is evaluated closed loop, on the evaluation serves (``10 000 000 + i``), in the
training environment and then in each shifted one; so are the expert and the tracker, so a reader
sees what each shift costs a policy that knows the physics. A shift changes the physics at test
time only: training never sees it. Why these three and what they test: docs/PONG.md, section 8.

:data:`SHIFTS`, name -> (what it is, the overrides of :class:`~tnd.apps.pong.env.SinglePlayerPong`
keywords on top of ``DEFAULT_PHYSICS``):

* ``ball_fast``: ball speed x1.25 (0.03 -> 0.0375 per step). A model that inferred the velocity
  from the observation history should scale its intercept; one that memorised the training
  trajectories should not.
* ``paddle_short``: paddle half-length x0.75 (0.08 -> 0.06): the same balls, a smaller target;
  the intercept must be more precise.
* ``wide_serves``: serve angles up to 70 degrees (``serve_angle_range`` (20, 60) -> (20, 70)):
  steeper serves with more wall bounces than any demonstration's serve.

``max_bounce_angle`` stays 60 degrees. The env redraws unreachable serves and derives its step
limit from the physics (``SinglePlayerPong.default_max_steps``), so every shift keeps catchable
serves and a cap that ends a perfect round. With ``obs_mode="motion"`` the displacement stays in
units of the training ball speed (``motion_unit``): the sensor is the one trained on, only the
ball is faster.
"""

from __future__ import annotations

from typing import Any, Callable

from .env import DEFAULT_PHYSICS

__all__ = ["SHIFTS", "SHIFT_NAMES", "shift_overrides", "shifted_env_kwargs", "describe_shift", "evaluate_shifts",
           "evaluate_with_shifts", "evaluate_reference_shifts", "stored_shift_is_current"]


def _scaled(key: str, factor: float) -> float:
    return round(DEFAULT_PHYSICS[key] * factor, 12)  # 0.0375, not 0.037500000000000006


#: name -> (description, env keyword overrides); the order is the report's column order
SHIFTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ball_fast": ("ball speed x1.25", {"ball_speed": _scaled("ball_speed", 1.25)}),
    "paddle_short": ("paddle half-length x0.75", {"paddle_half_length": _scaled("paddle_half_length", 0.75)}),
    "wide_serves": ("serve angles up to 70 degrees", {"serve_angle_range": (DEFAULT_PHYSICS["serve_angle_range"][0],
                                                                            70.0)}),
}
SHIFT_NAMES = tuple(SHIFTS)


def _check(name: str) -> None:
    if name not in SHIFTS:
        raise ValueError(f"--shifts: unknown shift {name!r}; expected one of {', '.join(SHIFT_NAMES)} (or none)")


def shift_overrides(name: str) -> dict[str, Any]:
    """The env keyword overrides of shift ``name`` (a copy)."""
    _check(name)
    return dict(SHIFTS[name][1])


def describe_shift(name: str) -> str:
    """One line, e.g. ``ball speed x1.25``."""
    _check(name)
    return SHIFTS[name][0]


def shifted_env_kwargs(base: dict[str, Any], name: str) -> dict[str, Any]:
    """``base`` (a run's env keywords: cap, noise, observation mode) with shift ``name`` on top.

    A faster ball in ``"motion"`` mode keeps the displacement unit of the training ball speed, so
    the model's velocity channel reads the faster ball as faster (what a fixed sensor would see)."""
    kw = {**base, **shift_overrides(name)}
    if kw.get("obs_mode") == "motion" and "ball_speed" in SHIFTS[name][1] and "motion_unit" not in base:
        kw["motion_unit"] = base.get("ball_speed", DEFAULT_PHYSICS["ball_speed"])
    return kw


def evaluate_shifts(model: Any, names: tuple[str, ...], rounds: int, base: dict[str, Any],
                    progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """``play_rounds`` of ``model`` in each shift of ``names`` (``rounds`` evaluation serves each),
    the shifts played together in one lockstep batch (:func:`~tnd.apps.pong.evaluate.play_groups`):
    name -> its metrics plus ``overrides`` (the shift's env keywords) and ``eval_time_s`` (the
    batch's wall time split in proportion to the shifts' env steps). ``progress(name)`` is called
    as each shift's last round ends."""
    return evaluate_with_shifts(model, None, names, rounds, base, progress)[2]


def evaluate_with_shifts(model: Any, eval_rounds: int | None, names: tuple[str, ...], rounds: int,
                         base: dict[str, Any], progress: Callable[[str], None] | None = None):
    """The evaluation (``eval_rounds`` evaluation serves in ``base``; None: none) and the shifts of
    ``names`` (``rounds`` serves each), all in ONE lockstep batch
    (:func:`~tnd.apps.pong.evaluate.play_groups`; each group's results are those of playing it
    alone with ``play_rounds``). Returns ``(evaluation metrics or None, its time, shifts)``, the
    shifts as :func:`evaluate_shifts` returns them. The times: the batch's wall time split among
    the groups in proportion to their env steps (they sum to the whole; a group's time is its share
    of the shared play, not the time it would take alone)."""
    import time

    from .evaluate import play_groups
    from .policies import EVAL_SEED_BASE

    groups = [] if eval_rounds is None else [(dict(base), eval_rounds, EVAL_SEED_BASE)]
    groups += [(shifted_env_kwargs(base, n), rounds, EVAL_SEED_BASE) for n in names]
    if not groups:
        return None, 0.0, {}
    first = 0 if eval_rounds is None else 1
    report = None
    if progress is not None:
        left = [n for _, n, _ in groups]

        def report(g: int, n: int) -> None:
            left[g] -= n
            if not left[g] and g >= first:
                progress(names[g - first])

    t0 = time.perf_counter()
    evs = play_groups(model, groups, progress=report)
    whole = time.perf_counter() - t0
    steps = sum(ev["total_steps"] for ev in evs)
    share = [whole * ev["total_steps"] / steps if steps else whole / len(evs) for ev in evs]
    shifted = {n: {**ev, "overrides": shift_overrides(n), "eval_time_s": t}
               for n, ev, t in zip(names, evs[first:], share[first:])}
    return (None, 0.0, shifted) if eval_rounds is None else (evs[0], share[0], shifted)


def evaluate_reference_shifts(names: tuple[str, ...], rounds: int, base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The expert and the tracker in each shift: policy name -> shift name -> ``evaluate_policy``'s metrics."""
    from .policies import ExpertPolicy, TrackerPolicy, evaluate_policy

    policies = {"expert": lambda env: ExpertPolicy(env), "tracker": lambda env: TrackerPolicy(env)}
    return {p: {n: evaluate_policy(make, rounds, env_kwargs=shifted_env_kwargs(base, n)) for n in names}
            for p, make in policies.items()}


def stored_shift_is_current(stored: dict[str, Any] | None, name: str, rounds: int) -> bool:
    """Whether a cell's stored result of shift ``name`` was played with this shift and ``rounds`` rounds."""
    return (isinstance(stored, dict) and stored.get("rounds") == rounds
            and _jsonish(stored.get("overrides")) == _jsonish(shift_overrides(name)))


def _jsonish(d: Any) -> Any:
    """Tuples as lists (metrics.json stores the overrides as JSON)."""
    if isinstance(d, dict):
        return {k: _jsonish(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonish(v) for v in d]
    return d
