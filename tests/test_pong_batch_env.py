"""tnd.apps.pong.batch_env: the lockstep batch steps every round bit for bit as its SinglePlayerPong alone."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from tnd.apps.pong.batch_env import PongBatch  # noqa: E402
from tnd.apps.pong.env import SinglePlayerPong  # noqa: E402
from tnd.apps.pong.policies import ExpertPolicy  # noqa: E402
from tnd.apps.pong.shifts import SHIFT_NAMES, shifted_env_kwargs  # noqa: E402


def _bits(x) -> np.ndarray:
    """The bit patterns (so -0.0 != 0.0 and every last bit counts)."""
    x = np.ascontiguousarray(x)
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint64)


def _groups(mode: str, noise: str) -> list[dict]:
    """Env keywords covering the physics the batch must follow: caps, the step limit, the shifts,
    absolute deflection, another motion unit; ``noise``: "mixed" (noiseless and noisy rounds in
    one batch), "none" or "all"."""
    base = {"obs_mode": mode, "max_catches": 6, "obs_noise": 0.01}
    groups = [dict(base, obs_noise=0.0), base]
    groups += [shifted_env_kwargs(base, n) for n in SHIFT_NAMES]
    groups += [dict(base, max_catches=100, max_steps=120), dict(base, deflection="absolute"),
               dict(base, obs_noise=0.02, motion_unit=0.05, deflection_gain=0.8)]
    if noise != "mixed":
        groups = [dict(g, obs_noise=0.0 if noise == "none" else 0.01) for g in groups]
    return groups


def _compare(kwargs: list[dict], seeds: list[int], eps: list[float], action_seed: int,
             noise_block: int = 16) -> dict[str, int]:
    """Step reference envs one by one and a batch of twins together with the same actions (the
    expert's on the true state, a random one with probability ``eps[i]`` in round ``i``); assert bit-identity of
    every observation, ending, counter and true state. Returns the number of steps compared and
    of rounds ended by a miss, the cap and the step limit."""
    refs = [SinglePlayerPong(**kw) for kw in kwargs]
    ref_obs = [e.reset(seed=s)[0] for e, s in zip(refs, seeds)]
    batch, obs = PongBatch.serve(kwargs, seeds, noise_block=noise_block)
    assert np.array_equal(_bits(obs), _bits(np.stack(ref_obs)))
    experts = [ExpertPolicy(e) for e in refs]
    rng = np.random.default_rng(action_seed)
    counts = {"steps": 0, "miss": 0, "cap": 0, "limit": 0}
    while len(batch):
        rows = batch.rows.copy()
        acts = np.array([experts[i].act(None) if rng.random() >= eps[i] else int(rng.integers(3)) for i in rows])
        obs, term, trunc, catches, steps = batch.step(acts)
        for k, i in enumerate(rows.tolist()):
            o, _r, ref_term, ref_trunc, info = refs[i].step(int(acts[k]))
            assert np.array_equal(_bits(obs[k]), _bits(o)), (i, info["steps"], obs[k], o)
            assert (bool(term[k]), bool(trunc[k]), int(catches[k]), int(steps[k])) == \
                   (ref_term, ref_trunc, info["catches"], info["steps"]), (i, info)
            counts["steps"] += 1
            if ref_term or ref_trunc:
                end = "miss" if ref_term else ("cap" if info["catches"] >= refs[i].max_catches else "limit")
                counts[end] += 1
        for k, i in enumerate(batch.rows.tolist()):  # the true state of the rounds still running
            s = refs[i].get_state().as_array()
            mine = np.array([batch.bx[k], batch.by[k], batch.vx[k], batch.vy[k], batch.py[k]])
            assert np.array_equal(_bits(mine), _bits(s)), (i, mine, s)
        assert set(batch.rows.tolist()) == {i for i in rows.tolist() if not refs[i].done}
    assert all(e.done for e in refs)
    return counts


@pytest.mark.parametrize("mode", ["positions", "motion", "state", "pixels"])
@pytest.mark.parametrize("noise", ["mixed", "none", "all"])
def test_batch_is_bit_identical_to_stepping_each_env(mode, noise):
    kwargs = [g for g in _groups(mode, noise) for _ in range(2 if mode == "pixels" else 4)]
    seeds = [1000 * len(mode) + 17 * j for j in range(len(kwargs))]
    eps = [1.0 if j % 4 == 3 else 0.1 for j in range(len(kwargs))]  # every fourth round plays at random
    counts = _compare(kwargs, seeds, eps, action_seed=len(noise))
    assert counts["steps"] > 500 and min(counts["miss"], counts["cap"], counts["limit"]) > 0, counts


@pytest.mark.parametrize("mode", ["positions", "motion"])
def test_batch_is_bit_identical_over_many_serves_and_long_rounds(mode):
    # the expert alone reaches the cap: many catches (the per-row math branch) in every round
    kw = {"obs_mode": mode, "obs_noise": 0.01, "max_catches": 12}
    counts = _compare([kw] * 60 + [dict(kw, obs_noise=0.0, deflection="absolute")] * 20, list(range(5000, 5080)),
                      [0.02] * 80, action_seed=3, noise_block=128)
    assert counts["steps"] > 30_000 and counts["cap"] > 20, counts


def test_noise_blocks_are_the_per_observation_draws():
    for seed, scale, width in ((0, 0.01, 3), (12345, 0.02, 5), (10_000_007, 1.0, 3)):
        one = SinglePlayerPong(obs_noise=scale)
        one.reset(seed=seed)
        two = SinglePlayerPong(obs_noise=scale)
        two.reset(seed=seed)
        each = np.stack([one.np_random.normal(0.0, scale, size=width) for _ in range(300)])
        blocks = np.concatenate([two.np_random.normal(0.0, scale, size=(k, width)) for k in (128, 128, 44)])
        assert np.array_equal(_bits(each), _bits(blocks))


def test_batch_from_envs_after_set_state_keeps_their_counters():
    envs = []
    for j in range(3):
        e = SinglePlayerPong(max_catches=5, obs_mode="motion", obs_noise=0.01)
        e.reset(seed=j)
        e.set_state(0.5, 0.5, 0.03, 0.01, 0.5, catches=5 if j == 1 else 2)
        envs.append(e)
    batch = PongBatch(envs)
    assert batch.catches.tolist() == [2, 5, 2]
    _obs, term, trunc, catches, steps = batch.step(np.ones(3, dtype=np.int64))
    assert trunc.tolist() == [False, True, False] and not term.any()  # the env truncates at the cap, too
    assert steps.tolist() == [1, 1, 1] and batch.rows.tolist() == [0, 2]


def test_drop_removes_rounds_without_ending_them():
    batch, _ = PongBatch.serve([{}] * 4, [0, 1, 2, 3])
    batch.drop(np.array([False, True, False, True]))
    assert batch.rows.tolist() == [0, 2] and len(batch) == 2
    obs, *_ = batch.step(np.array([0, 2]))
    assert obs.shape == (2, 3) and obs.dtype == np.float32
    with pytest.raises(ValueError, match="mask"):
        batch.drop(np.array([True]))


def test_batch_errors_name_the_argument():
    with pytest.raises(ValueError, match="envs"):
        PongBatch([])
    a, b = SinglePlayerPong(), SinglePlayerPong(obs_mode="motion")
    a.reset(seed=0)
    b.reset(seed=0)
    with pytest.raises(ValueError, match=r"envs\[1\].*observation layout"):
        PongBatch([a, b])
    with pytest.raises(TypeError, match=r"envs\[0\]"):
        PongBatch([object()])
    with pytest.raises(ValueError, match=r"envs\[0\].*reset"):
        PongBatch([SinglePlayerPong(obs_mode="motion")])
    with pytest.raises(ValueError, match="env_kwargs and seeds"):
        PongBatch.serve([{}], [0, 1])
    batch, _ = PongBatch.serve([{}] * 2, [0, 1])
    for bad in (np.array([0, 3]), np.array([-1, 0]), np.array([0.0, 1.0]), np.array([0])):
        with pytest.raises(ValueError, match="actions"):
            batch.step(bad)
    done = SinglePlayerPong(max_steps=1)
    done.reset(seed=0)
    done.step(1)
    with pytest.raises(ValueError, match="ended"):
        PongBatch([done])
    batch, _ = PongBatch.serve([{"max_steps": 1}], [0])
    batch.step(np.array([1]))
    with pytest.raises(ValueError, match="ended"):
        batch.step(np.array([], dtype=np.int64))
