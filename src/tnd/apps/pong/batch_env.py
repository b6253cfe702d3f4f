"""A lockstep batch of :class:`~tnd.apps.pong.env.SinglePlayerPong` rounds: the fast path of closed-loop play.

:class:`PongBatch` holds ``R`` rounds' states in numpy arrays and steps every still-running round
at once, with the observations, catches and step counts of stepping each round's env alone, bit
for bit. The env stays the definition (the readable reference); the batch is tested against it
(tests/test_pong_batch_env.py). Why the batch is exact:

* the common step, no contact with the paddle plane (paddle move and clip to ``[h, 1 - h]``, ball
  advance, the right wall ``x -> 2 - x``, the top and bottom walls ``y -> fold(y) = y mod 2`` or
  ``2 - (y mod 2)``), uses only ``+ - * /``, ``%`` and comparisons on float64, which numpy rounds
  exactly as Python does (its ``%`` is Python's floored remainder, signed zeros included);
* the step in which the ball crosses the paddle plane (a catch or a miss, about one step in
  fifty) runs the round's own :meth:`PongCore.step`, because ``math.atan2/cos/sin`` and numpy's
  may differ in the last bit;
* observation noise: the env draws ``np_random.normal(0, obs_noise, size=W)`` per observation;
  the batch draws blocks ``(K, W)`` from the same Generator, which are the same numbers in the
  same order (numpy draws a block element by element), so it plays the env's noise;
* the clip to the env's ``observation_space`` bounds and the float32 cast, and ``"motion"``
  mode's displacement ``(p_t - p_{t-1}) / motion_unit``, are elementwise, as in the env.

Rounds may come from different env keywords (physics, cap, step limit, noise; the shifts of
:mod:`tnd.apps.pong.shifts`), as long as they share the observation layout.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tnd.checks import check_int
from .env import EVENT_CATCH, EVENT_MISS, SinglePlayerPong, pixels_from_positions
from .lockstep_draws import LockstepDraws

__all__ = ["PongBatch", "NOISE_BLOCK"]

#: observations of noise drawn per round at a time (the over-draw at a round's end is never used)
NOISE_BLOCK = 128

# the per-round arrays that follow the still-running rounds (compacted when rounds end)
_PER_ROW = ("rows", "cores", "bx", "by", "vx", "vy", "py", "catches", "steps", "max_catches", "max_steps",
            "paddle_x", "paddle_speed", "pmin", "pmax", "unit", "low", "high", "noisy", "prev", "pixel_group")


class PongBatch:
    """``R`` rounds of :class:`SinglePlayerPong` stepped in lockstep.

    ``envs``: already reset (or ``set_state``) envs, one per round; the batch reads their state,
    counters, physics, observation bounds and ``np_random`` (it draws the rest of each round's
    noise from it), and runs their ``core`` on contact steps: the envs are used up (their state
    is stale, their generator further on) and should not be stepped afterwards. They must share
    ``obs_mode`` and the observation size. ``noise_block``: noise rows drawn per round at a time.

    Attributes (over the still-running rounds, in round order): ``rows`` (the rounds' indices in
    ``envs``), the true state ``bx, by, vx, vy, py`` (float64), ``catches``, ``steps``,
    ``max_catches``, ``max_steps`` (int64), and the physics ``paddle_x``, ``paddle_speed``,
    ``pmin``, ``pmax`` (the paddle centre's range; ``pmin`` is the half-length).
    """

    def __init__(self, envs: Sequence[SinglePlayerPong], noise_block: int = NOISE_BLOCK) -> None:
        envs = [getattr(e, "unwrapped", e) for e in envs]
        if not envs:
            raise ValueError("envs: expected at least one SinglePlayerPong, got none")
        for i, e in enumerate(envs):
            if not isinstance(e, SinglePlayerPong):
                raise TypeError(f"envs[{i}]: expected a SinglePlayerPong (or a wrapper of one), got {type(e).__name__}")
            if e.done:
                raise ValueError(f"envs[{i}]: the round has ended; reset it first")
            if (e.obs_mode, e.obs_dim) != (envs[0].obs_mode, envs[0].obs_dim):
                raise ValueError(f"envs[{i}]: observations {e.obs_mode!r} of size {e.obs_dim} differ from envs[0]'s "
                                 f"({envs[0].obs_mode!r}, {envs[0].obs_dim}); a batch holds one observation layout")
            if e.obs_mode == "motion" and e.motion_previous is None:
                raise ValueError(f"envs[{i}]: no observation yet (a 'motion' round needs its previous positions); "
                                 "reset it first")
        self.noise_block = check_int("noise_block", noise_block, 1)
        self.obs_mode = envs[0].obs_mode
        self.obs_dim = envs[0].obs_dim
        r = len(envs)

        def col(get, dtype=np.float64) -> np.ndarray:
            return np.array([get(e) for e in envs], dtype=dtype)

        self.rows = np.arange(r)
        self.cores = np.empty(r, dtype=object)
        self.cores[:] = [e.core for e in envs]
        self.bx, self.by = col(lambda e: e.core.bx), col(lambda e: e.core.by)
        self.vx, self.vy = col(lambda e: e.core.vx), col(lambda e: e.core.vy)
        self.py = col(lambda e: e.core.py)
        self.catches, self.steps = col(lambda e: e.catches, np.int64), col(lambda e: e.steps, np.int64)
        self.max_catches, self.max_steps = col(lambda e: e.max_catches, np.int64), col(lambda e: e.max_steps, np.int64)
        self.paddle_x, self.paddle_speed = col(lambda e: e.core.paddle_x), col(lambda e: e.core.paddle_speed)
        self.pmin, self.pmax = col(lambda e: e.core.pmin), col(lambda e: e.core.pmax)
        self.unit = col(lambda e: e.motion_unit)
        self.low = np.stack([e.observation_space.low for e in envs])  # float32, as the env clips with
        self.high = np.stack([e.observation_space.high for e in envs])
        pixels = self.obs_mode == "pixels"
        self.noisy = col(lambda e: e.obs_noise > 0.0 and not pixels, bool)  # the env adds no noise to pixels
        self.prev = (np.stack([e.motion_previous for e in envs]) if self.obs_mode == "motion"
                     else np.zeros((r, 0)))
        # pixels: one render call per (paddle x, half-length) of the batch
        keys = [(e.core.paddle_x, e.core.half) for e in envs]
        self._pixel_keys = list(dict.fromkeys(keys))
        self.pixel_group = np.array([self._pixel_keys.index(k) for k in keys], dtype=np.int64)
        self._pixel_size = envs[0].pixel_size
        # noise: a (K, W) block per round from its env's Generator, read in lockstep
        width = 5 if self.obs_mode == "state" else 3
        self._noise = LockstepDraws(
            [lambda k, g=e.np_random, s=e.obs_noise: g.normal(0.0, s, size=(k, width)) for e in envs],
            self.noise_block, (width,)) if self.noisy.any() else None

    @classmethod
    def serve(cls, env_kwargs: Sequence[dict[str, Any]], seeds: Sequence[int],
              noise_block: int = NOISE_BLOCK) -> tuple["PongBatch", np.ndarray]:
        """Round ``i`` = ``SinglePlayerPong(**env_kwargs[i]).reset(seed=seeds[i])``: the batch and
        the serves' observations ``(R, C)`` float32."""
        if len(env_kwargs) != len(seeds):
            raise ValueError(f"env_kwargs and seeds: expected one of each per round, got {len(env_kwargs)} and "
                             f"{len(seeds)}")
        envs = [SinglePlayerPong(**kw) for kw in env_kwargs]
        obs = [e.reset(seed=int(s))[0] for e, s in zip(envs, seeds)]
        batch = cls(envs, noise_block)  # checks the layouts before they are stacked
        return batch, np.stack(obs).astype(np.float32)

    def __len__(self) -> int:
        """The number of still-running rounds."""
        return int(self.rows.shape[0])

    def drop(self, mask: np.ndarray) -> None:
        """Remove the still-running rounds where ``mask`` (one bool per round, in ``rows`` order)
        is True, without ending them (e.g. a recording cut)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.rows.shape:
            raise ValueError(f"mask: expected shape {self.rows.shape} (one per running round), got {mask.shape}")
        if mask.any():
            self._compact(~mask)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One step of every still-running round, ``actions[k]`` for round ``rows[k]`` (0 = up, 1 =
        stay, 2 = down). Returns, for those rounds in that order: ``obs`` ``(A, C)`` float32,
        ``terminated`` (a miss), ``truncated`` (the cap or the step limit), ``catches`` and
        ``steps`` (after the step); the rounds that ended leave the batch."""
        n = len(self)
        if n == 0:
            raise ValueError("step: every round of the batch has ended")
        a = np.asarray(actions)
        # one reduction checks both bounds: a negative action wraps to a huge unsigned one
        if a.shape != (n,) or a.dtype.kind not in "iu" or a.astype(np.uint64).max() > 2:
            raise ValueError(f"actions: expected {n} integers in {{0, 1, 2}} (0=up, 1=stay, 2=down), one per running "
                             f"round, got {a.dtype} of shape {a.shape}")
        # 1. paddle, as PongCore.step: py + speed (up), py - speed (down; the same as py + (-speed)) or py
        # (py + 0.0, py > 0), then clipped to [pmin, pmax] (pmin < pmax)
        py0 = self.py
        py = np.minimum(np.maximum(py0 + self.paddle_speed * (1 - a), self.pmin), self.pmax)
        # 2. ball without contact: right wall, then the top/bottom fold
        bx, by, vx, vy = self.bx, self.by, self.vx, self.vy
        nx = bx + vx
        contact = np.flatnonzero((vx < 0.0) & (nx <= self.paddle_x))
        right = nx > 1.0
        new_bx = np.where(right, 2.0 - nx, nx)
        new_vx = np.where(right, -vx, vx)
        m = np.remainder(by + vy, 2.0)
        down = m > 1.0
        new_by = np.where(down, 2.0 - m, m)
        new_vy = np.where(down, -vy, vy)  # the env's s * vy with s = +-1, exactly
        self.steps = self.steps + 1
        terminated = np.zeros(n, dtype=bool)
        if contact.size:
            # 3. the rare step that crosses the paddle plane: the round's own core (math.atan2/cos/sin)
            events = np.zeros(n, dtype=np.int8)
            for k in contact.tolist():
                c = self.cores[k]
                c.bx, c.by, c.vx, c.vy, c.py = float(bx[k]), float(by[k]), float(vx[k]), float(vy[k]), float(py0[k])
                events[k] = c.step(int(a[k]))
                new_bx[k], new_by[k], new_vx[k], new_vy[k], py[k] = c.bx, c.by, c.vx, c.vy, c.py
            self.catches = self.catches + (events == EVENT_CATCH)
            terminated = events == EVENT_MISS
        self.bx, self.by, self.vx, self.vy, self.py = new_bx, new_by, new_vx, new_vy, py
        truncated = ~terminated & ((self.catches >= self.max_catches) | (self.steps >= self.max_steps))
        out = (self._observe(), terminated, truncated, self.catches, self.steps)
        done = terminated | truncated
        if done.any():
            self._compact(~done)
        return out

    def _compact(self, keep: np.ndarray) -> None:
        for name in _PER_ROW:
            setattr(self, name, getattr(self, name)[keep])

    # ------------------------------------------------------------------ observations
    def _observe(self) -> np.ndarray:
        """The still-running rounds' observations, as ``SinglePlayerPong._obs`` makes them."""
        if self.obs_mode == "pixels":
            out = np.empty((len(self), self.obs_dim), dtype=np.float32)
            for g in np.unique(self.pixel_group).tolist():
                sel = self.pixel_group == g
                px, half = self._pixel_keys[g]
                out[sel] = pixels_from_positions(self.bx[sel], self.by[sel], self.py[sel], size=self._pixel_size,
                                                 paddle_x=px, paddle_half_length=half)
            return out
        state = self.obs_mode == "state"
        cols = (self.bx, self.by, self.vx, self.vy, self.py) if state else (self.bx, self.by, self.py)
        o = np.empty((len(self), len(cols)))
        for j, c in enumerate(cols):  # cheaper than np.stack on short rows
            o[:, j] = c
        if self._noise is not None and self.noisy.any():
            if self.noisy.all():
                o += self._noise.next(self.rows)
            else:  # a noiseless round adds nothing (not even 0.0, which would turn -0.0 into 0.0)
                o[self.noisy] += self._noise.next(self.rows[self.noisy])
        if self.obs_mode == "motion":
            m = np.empty((len(self), 5))
            m[:, :2] = o[:, :2]
            np.divide(o[:, :2] - self.prev[:, :2], self.unit[:, None], out=m[:, 2:4])
            m[:, 4] = o[:, 2]
            self.prev, o = o, m
        return np.clip(o, self.low, self.high).astype(np.float32)
