"""tnd.apps.pong.lockstep_draws: block draws read in lockstep are each round's single draws, in order."""

from __future__ import annotations

import numpy as np
import pytest

from tnd.apps.pong.lockstep_draws import LockstepDraws


def _bits(x) -> np.ndarray:
    return np.ascontiguousarray(x).view(np.uint64)


@pytest.mark.parametrize("kind", ["random", "normal"])
def test_block_draws_are_the_single_draws_with_rounds_leaving(kind):
    seeds, block, steps = [3, 11, 42, 7], 5, 23  # steps not a multiple of block: a partial last block
    if kind == "random":
        shape, one = (), lambda g: g.random()
        draws = [np.random.default_rng(s).random for s in seeds]
    else:
        shape, one = (3,), lambda g: g.normal(0.0, 0.1, size=3)
        draws = [lambda k, g=np.random.default_rng(s): g.normal(0.0, 0.1, size=(k, 3)) for s in seeds]
    singles = [np.random.default_rng(s) for s in seeds]
    lock = LockstepDraws(draws, block, shape)
    rows = np.arange(len(seeds))
    for t in range(steps):
        if t == 7:
            rows = rows[[0, 2, 3]]  # round 1 ends mid-block
        if t == 10:
            rows = rows[[1, 2]]  # then round 0, at a block's start (t = 2 * block)
        got = lock.next(rows)
        assert got.shape == (rows.size, *shape)
        want = np.stack([np.asarray(one(singles[r]), dtype=np.float64) for r in rows.tolist()])
        assert np.array_equal(_bits(got), _bits(want)), (t, rows)


def test_a_wrong_block_shape_names_the_round():
    lock = LockstepDraws([lambda k: np.zeros(k), lambda k: np.zeros(k + 1)], 4)
    with pytest.raises(ValueError, match=r"draws\[1\]"):
        lock.next(np.arange(2))
    with pytest.raises(ValueError, match="block"):
        LockstepDraws([np.random.default_rng(0).random], 0)
