"""Per-round random draws taken a block at a time and read in lockstep by the still-running rounds.

A lockstep batch of rounds (:class:`~tnd.apps.pong.batch_env.PongBatch`'s observation noise,
:func:`~tnd.apps.pong.dagger.collect_rollouts`' expert-or-learner draws) needs, at every step,
one draw from each still-running round's own numpy Generator, the numbers that round would draw
alone. Drawing them one call per round and step is slow; a block ``rng.random(size=k)`` or
``rng.normal(size=(k, W))`` is the same numbers in the same order as ``k`` single draws (numpy
fills a block element by element), so :class:`LockstepDraws` draws ``block`` steps of every
round at once and hands out one step's row at a time.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from tnd.checks import check_int

__all__ = ["LockstepDraws"]


class LockstepDraws:
    """Round ``r``'s draws ``draws[r](block)`` (an array of shape ``(block, *shape)``: ``block``
    steps' draws from that round's Generator), read one step at a time by the rounds still running.

    Every call to :meth:`next` is one step of every round in ``rows``; the rounds leave (a subset
    of the earlier ``rows``) but never skip a step, so one cursor serves them all. The over-draw
    past a round's end is never used.
    """

    def __init__(self, draws: Sequence[Callable[[int], np.ndarray]], block: int, shape: tuple[int, ...] = ()) -> None:
        self.draws = list(draws)
        if not self.draws:
            raise ValueError("draws: expected one callable per round, got none")
        self.block = check_int("block", block, 1)
        self.shape = tuple(shape)
        self._table = np.zeros((len(self.draws), self.block, *self.shape))
        self._cursor = self.block  # empty: the first step draws

    def next(self, rows: np.ndarray) -> np.ndarray:
        """The next step's draws of the rounds ``rows`` (indices into ``draws``, the still-running
        rounds), shape ``(len(rows), *shape)``."""
        if self._cursor == self.block:
            want = (self.block, *self.shape)
            for r in rows.tolist():
                b = self.draws[r](self.block)
                if b.shape != want:  # a silent broadcast would repeat one draw over the block
                    raise ValueError(f"draws[{r}]: expected a block of shape {want}, got {b.shape}")
                self._table[r] = b
            self._cursor = 0
        self._cursor += 1
        return self._table[rows, self._cursor - 1]
