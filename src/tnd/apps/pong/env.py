"""Single-player Pong: one paddle on the left, walls at the top, bottom and right.

:class:`SinglePlayerPong` is the Gymnasium environment (``tnd/SinglePlayerPong-v0``): the unit
square, a point ball at constant speed, a paddle moving at half the ball's speed (so the agent
must anticipate), additive deflection off the paddle (so that a reactive tracker falls behind),
one serve per round (only reachable serves), a round ending at the first miss or a cap of
consecutive catches. Observations are positions only by default (the velocity must be inferred
from history), or the full state, or a small image. :class:`PongCore` is the physics shared with
the demonstration generator. The physics, the limits and why each was chosen: docs/PONG.md.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tnd.checks import check_int

__all__ = [
    "ACTION_UP",
    "ACTION_STAY",
    "ACTION_DOWN",
    "OBS_MODES",
    "motion_from_positions",
    "PongState",
    "PongCore",
    "SinglePlayerPong",
    "pixels_from_positions",
    "check_action",
]

ACTION_UP = 0
ACTION_STAY = 1
ACTION_DOWN = 2
OBS_MODES = ("positions", "state", "pixels", "motion")
DEFLECTIONS = ("additive", "absolute")

#: default physics; every key is a constructor keyword of :class:`SinglePlayerPong`
MAX_DEFAULT_STEPS = 10**9  # a longer default episode means the settings are degenerate
DEFAULT_PHYSICS: dict[str, Any] = {
    "paddle_x": 0.05,
    "paddle_half_length": 0.08,
    "paddle_speed": 0.015,
    "paddle_start_y": 0.5,
    "ball_speed": 0.03,
    "serve_x": 0.75,
    "serve_y_range": (0.2, 0.8),
    "serve_angle_range": (20.0, 60.0),
    "max_bounce_angle": 60.0,
    "deflection": "additive",
    "deflection_gain": 0.5,
}

EVENT_NONE = 0
EVENT_CATCH = 1
EVENT_MISS = 2
_EVENT_NAMES = {EVENT_NONE: None, EVENT_CATCH: "catch", EVENT_MISS: "miss"}


@dataclass(frozen=True)
class PongState:
    """The true state of the game (what the expert may read)."""

    ball_x: float
    ball_y: float
    ball_vx: float
    ball_vy: float
    paddle_y: float

    def as_array(self) -> np.ndarray:
        """``(ball_x, ball_y, ball_vx, ball_vy, paddle_y)`` as float64."""
        return np.array(
            [self.ball_x, self.ball_y, self.ball_vx, self.ball_vy, self.paddle_y], dtype=np.float64
        )


def _fold(y: float) -> tuple[float, float]:
    """Fold an unfolded coordinate into ``[0, 1]`` (walls at 0 and 1).

    Returns the folded coordinate and the sign (+1/-1) the velocity has there.
    """
    m = y % 2.0
    if m <= 1.0:
        return m, 1.0
    return 2.0 - m, -1.0


def check_action(action: Any) -> int:
    if isinstance(action, (bool, np.bool_)):
        raise ValueError(f"action must be an integer in {{0, 1, 2}} (0=up, 1=stay, 2=down), got {action!r}")
    try:
        a = operator.index(action)
    except TypeError:
        arr = np.asarray(action) if not isinstance(action, (str, bytes)) else None
        if arr is not None and arr.shape == () and np.issubdtype(arr.dtype, np.integer):
            a = int(arr)
        else:
            raise ValueError(
                f"action must be an integer in {{0, 1, 2}} (0=up, 1=stay, 2=down), got {action!r}"
            ) from None
    if a not in (0, 1, 2):
        raise ValueError(f"action must be an integer in {{0, 1, 2}} (0=up, 1=stay, 2=down), got {action!r}")
    return a


class PongCore:
    """Pure-Python physics of one round (no Gymnasium, no RNG).

    Shared by :class:`SinglePlayerPong` and the fast demonstration generator so both
    produce bit-identical trajectories (physics: docs/PONG.md).
    """

    __slots__ = (
        "paddle_x", "half", "paddle_speed", "ball_speed", "max_angle", "gain", "absolute",
        "pmin", "pmax", "bx", "by", "vx", "vy", "py",
    )

    def __init__(
        self,
        paddle_x: float,
        paddle_half_length: float,
        paddle_speed: float,
        ball_speed: float,
        max_bounce_angle: float,
        deflection: str,
        deflection_gain: float,
    ) -> None:
        self.paddle_x = float(paddle_x)
        self.half = float(paddle_half_length)
        self.paddle_speed = float(paddle_speed)
        self.ball_speed = float(ball_speed)
        self.max_angle = math.radians(float(max_bounce_angle))
        self.gain = float(deflection_gain)
        self.absolute = deflection == "absolute"
        self.pmin = self.half
        self.pmax = 1.0 - self.half
        self.bx = self.by = self.vx = self.vy = 0.0
        self.py = 0.5

    def state(self) -> PongState:
        return PongState(self.bx, self.by, self.vx, self.vy, self.py)

    def step(self, action: int) -> int:
        """Advance one step with a validated action; return ``EVENT_*``."""
        # 1. paddle
        if action == 0:
            py = self.py + self.paddle_speed
        elif action == 2:
            py = self.py - self.paddle_speed
        else:
            py = self.py
        if py < self.pmin:
            py = self.pmin
        elif py > self.pmax:
            py = self.pmax
        self.py = py
        # 2. ball
        bx, by, vx, vy = self.bx, self.by, self.vx, self.vy
        nx = bx + vx
        if vx < 0.0 and nx <= self.paddle_x:
            t = (bx - self.paddle_x) / -vx  # fraction of the step until the plane
            yc, sgn = _fold(by + t * vy)
            if abs(yc - py) <= self.half:
                u = (yc - py) / self.half
                if self.absolute:
                    ang = self.max_angle * u
                else:
                    a_in = math.atan2(sgn * vy, -vx)  # specular reflection of the incoming angle
                    ang = a_in + self.gain * self.max_angle * u
                    if ang > self.max_angle:
                        ang = self.max_angle
                    elif ang < -self.max_angle:
                        ang = -self.max_angle
                vx = self.ball_speed * math.cos(ang)
                vy = self.ball_speed * math.sin(ang)
                rest = 1.0 - t
                self.bx = self.paddle_x + rest * vx
                self.by, s2 = _fold(yc + rest * vy)
                self.vx, self.vy = vx, s2 * vy
                return EVENT_CATCH
            # miss: the ball flies on past the plane (x clipped at the field's left edge 0)
            self.bx = max(nx, 0.0)
            self.by, s2 = _fold(by + vy)
            self.vy = s2 * vy
            return EVENT_MISS
        if nx > 1.0:
            nx = 2.0 - nx
            vx = -vx
        self.bx = nx
        self.vx = vx
        self.by, s2 = _fold(by + vy)
        self.vy = s2 * vy
        return EVENT_NONE


def pixels_from_positions(
    ball_x: np.ndarray | float,
    ball_y: np.ndarray | float,
    paddle_y: np.ndarray | float,
    *,
    size: int = 16,
    paddle_x: float = 0.05,
    paddle_half_length: float = 0.08,
) -> np.ndarray:
    """Render ``(N,)`` positions into ``(N, size * size)`` float32 frames in ``[0, 1]``.

    Row 0 is the top of the field (``y = 1``); the ball is splatted bilinearly on the
    pixel centres, the paddle column holds each row's covered fraction of the paddle;
    overlapping values take the maximum.
    """
    bx = np.atleast_1d(np.asarray(ball_x, dtype=np.float64))
    by = np.atleast_1d(np.asarray(ball_y, dtype=np.float64))
    pyv = np.atleast_1d(np.asarray(paddle_y, dtype=np.float64))
    n = bx.shape[0]
    ball = np.zeros((n, size + 2, size + 2), dtype=np.float64)  # 1-pixel border absorbs spill
    cx = np.clip(bx * size - 0.5, -1.0, size)  # column coordinate of the ball
    cr = np.clip((1.0 - by) * size - 0.5, -1.0, size)
    c0 = np.floor(cx)
    r0 = np.floor(cr)
    fc = cx - c0
    fr = cr - r0
    c0 = c0.astype(np.int64) + 1
    r0 = r0.astype(np.int64) + 1
    idx = np.arange(n)
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            rr = np.clip(r0 + dr, 0, size + 1)
            cc = np.clip(c0 + dc, 0, size + 1)
            np.add.at(ball, (idx, rr, cc), wr * wc)
    frame = ball[:, 1:-1, 1:-1]
    # paddle: fraction of each row interval covered by [py - h, py + h]
    rows = np.arange(size)
    row_top = 1.0 - rows / size  # y of each row's upper edge
    row_bot = 1.0 - (rows + 1) / size
    lo = (pyv - paddle_half_length)[:, None]
    hi = (pyv + paddle_half_length)[:, None]
    cover = np.clip(np.minimum(hi, row_top[None]) - np.maximum(lo, row_bot[None]), 0.0, None) * size
    col = min(max(int(paddle_x * size), 0), size - 1)
    frame[:, :, col] = np.maximum(frame[:, :, col], cover)
    return np.clip(frame, 0.0, 1.0).reshape(n, size * size).astype(np.float32)


class SinglePlayerPong(gym.Env):
    """Single-player Pong as a Gymnasium environment (id ``tnd/SinglePlayerPong-v0``).

    Physics, observation modes and the design decisions: docs/PONG.md (section 1).

    Parameters (all keyword): the physics keys of ``DEFAULT_PHYSICS`` (``paddle_x``,
    ``paddle_half_length``, ``paddle_speed``, ``paddle_start_y``, ``ball_speed``,
    ``serve_x``, ``serve_y_range``, ``serve_angle_range`` (degrees),
    ``max_bounce_angle`` (degrees), ``deflection`` (``"additive"``/``"absolute"``),
    ``deflection_gain``), plus ``obs_mode`` (``"positions"``, ``"state"``,
    ``"pixels"``), ``obs_noise`` (std, default 0), ``pixel_size`` (default 16),
    ``max_catches`` (default 100), ``max_steps`` (default derived: a limit the cap always beats),
    ``reachable_serves_only`` (default True: redraw unreachable serves),
    ``render_mode`` (``None`` or ``"rgb_array"``), ``render_size`` (default 128) and
    ``motion_unit`` (``"motion"`` mode: the unit of the displacement, default ``ball_speed``; a
    shifted ball speed keeps the training unit, :mod:`tnd.apps.pong.shifts`).

    ``info`` always holds ``catches`` (consecutive catches this round), ``ball``
    (``(x, y)``), ``ball_velocity`` (``(vx, vy)``), ``paddle_y``, ``steps`` and
    ``event`` (``"catch"``, ``"miss"`` or ``None``).

    Use :meth:`get_state` / :meth:`set_state` for the true state (tests, expert). ``core`` is
    the round's :class:`PongCore` and :meth:`draw_serve` the serve draw of :meth:`reset`; the
    demonstration generator plays and replays rounds through them.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        *,
        obs_mode: str = "positions",
        obs_noise: float = 0.0,
        pixel_size: int = 16,
        max_catches: int = 100,
        max_steps: int | None = None,
        reachable_serves_only: bool = True,
        render_mode: str | None = None,
        render_size: int = 128,
        motion_unit: float | None = None,
        paddle_x: float = DEFAULT_PHYSICS["paddle_x"],
        paddle_half_length: float = DEFAULT_PHYSICS["paddle_half_length"],
        paddle_speed: float = DEFAULT_PHYSICS["paddle_speed"],
        paddle_start_y: float = DEFAULT_PHYSICS["paddle_start_y"],
        ball_speed: float = DEFAULT_PHYSICS["ball_speed"],
        serve_x: float = DEFAULT_PHYSICS["serve_x"],
        serve_y_range: tuple[float, float] = DEFAULT_PHYSICS["serve_y_range"],
        serve_angle_range: tuple[float, float] = DEFAULT_PHYSICS["serve_angle_range"],
        max_bounce_angle: float = DEFAULT_PHYSICS["max_bounce_angle"],
        deflection: str = DEFAULT_PHYSICS["deflection"],
        deflection_gain: float = DEFAULT_PHYSICS["deflection_gain"],
    ) -> None:
        super().__init__()
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
        if deflection not in DEFLECTIONS:
            raise ValueError(f"deflection must be one of {DEFLECTIONS}, got {deflection!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        if not (isinstance(obs_noise, (int, float)) and math.isfinite(obs_noise) and obs_noise >= 0):
            raise ValueError(f"obs_noise must be a finite float >= 0, got {obs_noise!r}")
        for name, value in (("paddle_x", paddle_x), ("paddle_half_length", paddle_half_length),
                            ("paddle_speed", paddle_speed), ("paddle_start_y", paddle_start_y),
                            ("ball_speed", ball_speed), ("serve_x", serve_x), ("max_bounce_angle", max_bounce_angle),
                            ("deflection_gain", deflection_gain)):
            _finite_number(name, value)
        for name, value in (("serve_y_range", serve_y_range), ("serve_angle_range", serve_angle_range)):
            if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list, np.ndarray)) or len(value) != 2:
                raise ValueError(f"{name} must be a (lo, hi) pair of numbers, got {value!r}")
            for v in value:
                _finite_number(name, v)
        check_int("max_catches", max_catches, 1)
        check_int("pixel_size", pixel_size, 1)
        check_int("render_size", render_size, 1)
        if max_steps is not None:
            check_int("max_steps", max_steps, 1)
        if motion_unit is not None:
            _finite_number("motion_unit", motion_unit)
            if not motion_unit > 0:
                raise ValueError(f"motion_unit must be > 0, got {motion_unit!r}")
        _in_open_unit("paddle_x", paddle_x, upper=0.5)
        if not (0.0 < paddle_half_length < 0.5):
            raise ValueError(f"paddle_half_length must be in (0, 0.5), got {paddle_half_length!r}")
        if not (paddle_speed > 0):
            raise ValueError(f"paddle_speed must be > 0, got {paddle_speed!r}")
        if not (0.0 < ball_speed < 0.5):
            raise ValueError(f"ball_speed must be in (0, 0.5) per step, got {ball_speed!r}")
        _in_open_unit("serve_x", serve_x)
        if serve_x <= paddle_x:
            raise ValueError(f"serve_x must be > paddle_x={paddle_x}, got {serve_x!r}")
        lo, hi = serve_y_range
        if not (0.0 <= lo <= hi <= 1.0):
            raise ValueError(f"serve_y_range must satisfy 0 <= lo <= hi <= 1, got {serve_y_range!r}")
        alo, ahi = serve_angle_range
        if not (0.0 <= alo <= ahi < 90.0):
            raise ValueError(f"serve_angle_range must satisfy 0 <= lo <= hi < 90 degrees, got {serve_angle_range!r}")
        if not (0.0 <= max_bounce_angle < 90.0):
            raise ValueError(f"max_bounce_angle must be in [0, 90) degrees, got {max_bounce_angle!r}")
        if not (0.0 <= paddle_start_y <= 1.0):
            raise ValueError(f"paddle_start_y must be in [0, 1], got {paddle_start_y!r}")

        self.obs_mode = obs_mode
        self.reachable_serves_only = bool(reachable_serves_only)
        self.obs_noise = float(obs_noise)
        self.pixel_size = int(pixel_size)
        self.max_catches = int(max_catches)
        self.render_mode = render_mode
        self.render_size = int(render_size)
        self.motion_unit = float(ball_speed if motion_unit is None else motion_unit)
        self.physics = {
            "paddle_x": float(paddle_x),
            "paddle_half_length": float(paddle_half_length),
            "paddle_speed": float(paddle_speed),
            "paddle_start_y": float(paddle_start_y),
            "ball_speed": float(ball_speed),
            "serve_x": float(serve_x),
            "serve_y_range": (float(lo), float(hi)),
            "serve_angle_range": (float(alo), float(ahi)),
            "max_bounce_angle": float(max_bounce_angle),
            "deflection": deflection,
            "deflection_gain": float(deflection_gain),
        }
        self.max_steps = int(max_steps) if max_steps is not None else self.default_max_steps()
        self.core = PongCore(
            paddle_x, paddle_half_length, paddle_speed, ball_speed, max_bounce_angle, deflection, deflection_gain
        )
        self.core.py = min(max(float(paddle_start_y), self.core.pmin), self.core.pmax)
        self.action_space = spaces.Discrete(3)
        self.observation_space = self._make_obs_space()
        self._catches = 0
        self._steps = 0
        self._event = EVENT_NONE
        self._done = False
        self._prev_obs = None

    # ------------------------------------------------------------------ helpers
    def default_max_steps(self) -> int:
        """Step limit that the catch cap always beats (worst-case trip lengths, +20%)."""
        p = self.physics
        steep = math.radians(max(p["serve_angle_range"][1], p["max_bounce_angle"]))
        vx_min = p["ball_speed"] * math.cos(steep)
        serve = (p["serve_x"] - p["paddle_x"]) / vx_min
        trip = 2.0 * (1.0 - p["paddle_x"]) / vx_min
        steps = 1.2 * (serve + self.max_catches * trip)
        if not steps <= MAX_DEFAULT_STEPS:  # also catches inf/nan from a vanishing ball speed
            raise ValueError(f"ball_speed={p['ball_speed']!r} is too slow: an episode could last {steps:.3g} steps "
                             f"(limit {MAX_DEFAULT_STEPS}); use a faster ball or pass max_steps")
        return int(math.ceil(steps))

    @property
    def obs_dim(self) -> int:
        return int(self.observation_space.shape[0])

    # read-only views of the round's counters, for :class:`tnd.apps.pong.batch_env.PongBatch`
    @property
    def catches(self) -> int:
        """Consecutive catches this round."""
        return self._catches

    @property
    def steps(self) -> int:
        """Steps taken this round."""
        return self._steps

    @property
    def done(self) -> bool:
        """Whether the round has ended (a miss, the cap or the step limit)."""
        return self._done

    @property
    def motion_previous(self) -> np.ndarray | None:
        """``"motion"`` mode: the (noisy) positions behind the last observation (the next one's
        displacement is measured from them); None before the first observation."""
        return None if self._prev_obs is None else self._prev_obs.copy()

    def _make_obs_space(self) -> spaces.Box:
        if self.obs_mode == "pixels":
            n = self.pixel_size * self.pixel_size
            return spaces.Box(0.0, 1.0, shape=(n,), dtype=np.float32)
        if self.obs_mode == "positions":
            low = np.zeros(3)
            high = np.ones(3)
        elif self.obs_mode == "motion":
            # a step's displacement in units of the ball's speed; noise on both positions widens it
            s = self.physics["ball_speed"]
            d = (1.0 + 12.0 * self.obs_noise / s) * (s / self.motion_unit)  # x 1.0 exactly by default
            return spaces.Box(np.array([-6 * self.obs_noise, -6 * self.obs_noise, -d, -d, -6 * self.obs_noise],
                                       dtype=np.float32),
                              np.array([1 + 6 * self.obs_noise, 1 + 6 * self.obs_noise, d, d, 1 + 6 * self.obs_noise],
                                       dtype=np.float32), dtype=np.float32)
        else:
            s = self.physics["ball_speed"]
            low = np.array([0.0, 0.0, -s, -s, 0.0])
            high = np.array([1.0, 1.0, s, s, 1.0])
        margin = 6.0 * self.obs_noise
        return spaces.Box(
            (low - margin).astype(np.float32), (high + margin).astype(np.float32), dtype=np.float32
        )

    def get_state(self) -> PongState:
        """The true state (ball x, y, vx, vy, paddle y)."""
        return self.core.state()

    def set_state(
        self,
        ball_x: float,
        ball_y: float,
        ball_vx: float,
        ball_vy: float,
        paddle_y: float,
        catches: int | None = None,
    ) -> np.ndarray:
        """Overwrite the true state (for tests/analysis); returns the new observation.

        The ball position must lie in the field and the paddle is clipped to its range.
        """
        if not (0.0 <= ball_x <= 1.0 and 0.0 <= ball_y <= 1.0):
            raise ValueError(f"ball position must lie in [0, 1]^2, got ({ball_x!r}, {ball_y!r})")
        c = self.core
        c.bx, c.by, c.vx, c.vy = float(ball_x), float(ball_y), float(ball_vx), float(ball_vy)
        c.py = min(max(float(paddle_y), c.pmin), c.pmax)
        if catches is not None:
            self._catches = int(catches)
        self._done = False
        self._prev_obs = None
        return self._obs()

    def _state_obs(self) -> np.ndarray:
        c = self.core
        if self.obs_mode in ("positions", "motion"):
            return np.array([c.bx, c.by, c.py], dtype=np.float64)
        return np.array([c.bx, c.by, c.vx, c.vy, c.py], dtype=np.float64)

    def _obs(self) -> np.ndarray:
        c = self.core
        if self.obs_mode == "pixels":
            return pixels_from_positions(
                c.bx, c.by, c.py, size=self.pixel_size,
                paddle_x=c.paddle_x, paddle_half_length=c.half,
            )[0]
        o = self._state_obs()
        if self.obs_noise > 0.0:
            o = o + self.np_random.normal(0.0, self.obs_noise, size=o.shape)
        if self.obs_mode == "motion":
            o, self._prev_obs = motion_from_positions(o[None], self._prev_obs, self.motion_unit)[0], o
        return np.clip(o, self.observation_space.low, self.observation_space.high).astype(np.float32)

    def _info(self) -> dict[str, Any]:
        c = self.core
        return {
            "catches": self._catches,
            "ball": (c.bx, c.by),
            "ball_velocity": (c.vx, c.vy),
            "paddle_y": c.py,
            "steps": self._steps,
            "event": _EVENT_NAMES[self._event],
        }

    # ------------------------------------------------------------------ gym API
    def draw_serve(self, rng: np.random.Generator) -> tuple[float, float, float]:
        """Serve height, angle (radians) and vertical sign, drawn in this fixed order."""
        p = self.physics
        for _ in range(10_000):
            y = float(rng.uniform(*p["serve_y_range"]))
            ang = math.radians(rng.uniform(*p["serve_angle_range"]))
            sign = 1.0 if rng.random() < 0.5 else -1.0
            if not self.reachable_serves_only or self.serve_is_reachable(y, ang, sign):
                return y, ang, sign
        raise ValueError(  # the settings admit (almost) no catchable serve
            "could not draw a reachable serve in 10000 tries; widen serve_y_range/serve_angle_range, "
            "speed up the paddle or pass reachable_serves_only=False"
        )

    def serve_is_reachable(self, y: float, ang: float, sign: float) -> bool:
        """Whether a paddle starting at ``paddle_start_y`` can catch this serve.

        The ball crosses the paddle plane during step ``k = ceil((serve_x - paddle_x) /
        |vx|)``; by then the paddle can be anywhere in ``paddle_start_y +- k *
        paddle_speed`` (clipped). Reachable iff that interval comes within
        ``paddle_half_length`` (minus a 1e-9 safety margin) of the crossing height.
        """
        p = self.physics
        vx = p["ball_speed"] * math.cos(ang)
        vy = sign * p["ball_speed"] * math.sin(ang)
        dist = p["serve_x"] - p["paddle_x"]
        k = math.ceil(dist / vx - 1e-12)
        yc, _ = _fold(y + vy * dist / vx)
        c = self.core
        start = min(max(p["paddle_start_y"], c.pmin), c.pmax)
        lo = max(c.pmin, start - k * p["paddle_speed"])
        hi = min(c.pmax, start + k * p["paddle_speed"])
        gap = lo - yc if yc < lo else (yc - hi if yc > hi else 0.0)
        return gap <= p["paddle_half_length"] - 1e-9

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start a round: serve from ``serve_x``, paddle at ``paddle_start_y``."""
        super().reset(seed=seed)
        p = self.physics
        y, ang, sign = self.draw_serve(self.np_random)
        c = self.core
        c.bx = p["serve_x"]
        c.by = float(y)
        c.vx = -p["ball_speed"] * math.cos(ang)
        c.vy = sign * p["ball_speed"] * math.sin(ang)
        c.py = min(max(p["paddle_start_y"], c.pmin), c.pmax)
        self._catches = 0
        self._steps = 0
        self._event = EVENT_NONE
        self._done = False
        self._prev_obs = None
        return self._obs(), self._info()

    def step(self, action):
        a = check_action(action)
        self._event = ev = self.core.step(a)
        self._steps += 1
        reward = 0.0
        terminated = False
        if ev == EVENT_CATCH:
            reward = 1.0
            self._catches += 1
        elif ev == EVENT_MISS:
            reward = -1.0
            terminated = True
        truncated = (not terminated) and (self._catches >= self.max_catches or self._steps >= self.max_steps)
        self._done = terminated or truncated
        return self._obs(), reward, terminated, truncated, self._info()

    def render(self):
        """``rgb_array``: uint8 ``(render_size, render_size, 3)`` frame drawn with numpy."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; use render_mode='rgb_array'")
            return None
        s = self.render_size
        img = np.full((s, s, 3), 20, dtype=np.uint8)
        w = max(1, s // 64)
        img[:w, :, :] = 160  # top wall
        img[-w:, :, :] = 160  # bottom wall
        img[:, -w:, :] = 160  # right wall
        c = self.core

        def row(y: float) -> int:
            return int(min(max((1.0 - y) * s, 0), s - 1))

        def col(x: float) -> int:
            return int(min(max(x * s, 0), s - 1))

        pc = col(c.paddle_x)
        r_top, r_bot = row(c.py + c.half), row(c.py - c.half)
        img[r_top : r_bot + 1, max(pc - w, 0) : pc + 1, :] = (240, 240, 240)
        br, bc = row(c.by), col(c.bx)
        rad = max(1, s // 64)
        img[max(br - rad, 0) : br + rad + 1, max(bc - rad, 0) : bc + rad + 1, :] = (250, 200, 40)
        return img


def motion_from_positions(positions: np.ndarray, previous: np.ndarray | None, ball_speed: float) -> np.ndarray:
    """``"motion"`` observations from one round's (noisy) ``positions`` rows ``(n, 3)`` = (ball x,
    ball y, paddle y): ``(ball x, ball y, dx, dy, paddle y)`` with ``(dx, dy)`` the ball's
    displacement since the previous row divided by ``ball_speed`` (0 at the round's first row,
    when ``previous`` is None). The layout of ``"state"``, with the displacement in the velocity's
    slots (unclipped)."""
    pos = np.asarray(positions, dtype=np.float64)
    before = np.empty_like(pos)
    before[1:] = pos[:-1]
    before[0] = pos[0] if previous is None else np.asarray(previous, dtype=np.float64)
    d = (pos[:, :2] - before[:, :2]) / float(ball_speed)
    return np.concatenate([pos[:, :2], d, pos[:, 2:3]], axis=1)


def _finite_number(name: str, value: Any) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _in_open_unit(name: str, value: Any, upper: float = 1.0) -> None:
    if not (isinstance(value, (int, float)) and 0.0 < value < upper):
        raise ValueError(f"{name} must be in (0, {upper}), got {value!r}")
