"""The players on the lockstep batch: play_rounds gives the results of stepping a list of envs,
play_groups those of playing each group alone (the shifts and the evaluation in one batch), DAgger's
collect_rollouts the arrays of its scalar loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("gymnasium")

from tnd.apps.baselines import map_state  # noqa: E402
from tnd.apps.pong.config import DAGGER_SEED_BASE  # noqa: E402
from tnd.apps.pong.dagger import collect_rollouts  # noqa: E402
from tnd.apps.pong.env import PongState, SinglePlayerPong  # noqa: E402
from tnd.apps.pong.evaluate import play_groups, play_rounds, play_rounds_reference, step_function  # noqa: E402
from tnd.apps.pong.models import build_model  # noqa: E402
from tnd.apps.pong.policies import EVAL_SEED_BASE, ExpertPolicy, expert_actions  # noqa: E402
from tnd.apps.pong.shifts import SHIFT_NAMES, evaluate_shifts, evaluate_with_shifts, shifted_env_kwargs  # noqa: E402


class Tracker(nn.Module):
    """A deterministic policy with a state: towards the ball's height (channel 1 against the
    paddle's, the last), the stay logit nudged by the parity of the steps so far (so a wrong
    state selection changes actions). Elementwise: no row's result depends on the others'."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor, h: Any = None):
        h = torch.zeros(x.shape[0], dtype=x.dtype) if h is None else h
        d = (x[:, -1, 1] - x[:, -1, -1]) * self.gain
        stay = 0.0075 + 0.004 * torch.remainder(h, 2.0)
        logits = torch.stack([d - stay, torch.zeros_like(d), -d - stay], dim=-1)
        return logits[:, None], h + 1


def _lstm(dim: int) -> nn.Module:
    torch.manual_seed(3)
    return build_model("lstm", dim, 3, 600)[0]


@pytest.mark.parametrize("kw", [
    {"obs_mode": "motion", "obs_noise": 0.01, "max_catches": 8},
    {"obs_mode": "positions", "max_catches": 4},
    {"obs_mode": "state", "obs_noise": 0.01, "max_catches": 100, "max_steps": 200},
    shifted_env_kwargs({"obs_mode": "motion", "obs_noise": 0.01, "max_catches": 8}, "ball_fast"),
])
def test_play_rounds_equals_the_scalar_loop(kw):
    dim = 3 if kw.get("obs_mode", "positions") == "positions" else 5
    for model in (_lstm(dim), Tracker()):
        ev = play_rounds(model, 24, seed=EVAL_SEED_BASE + 7, env_kwargs=kw)
        per_round, per_steps, ended = play_rounds_reference(model, 24, EVAL_SEED_BASE + 7, kw)
        assert ev["per_round"] == per_round and ev["per_round_steps"] == per_steps
        assert (ev["misses"], ev["rounds_at_cap"], ev["rounds_step_limited"]) == \
               (ended.count("miss"), ended.count("cap"), ended.count("steps"))
        assert ev["total_steps"] == sum(per_steps) and ev["seed"] == EVAL_SEED_BASE + 7
        assert ev["cap"] == kw["max_catches"] and ev["rounds"] == 24
    assert ev["mean_catches"] > 0  # the tracker catches: the rounds are not all one step long


def test_play_rounds_keeps_its_keys_and_restores_training_mode():
    model = Tracker().train()
    ev = play_rounds(model, 3, env_kwargs={"max_catches": 2})
    assert list(ev) == ["catch_rate", "mean_catches", "median_catches", "rounds_at_cap", "misses", "rounds", "cap",
                        "per_round", "per_round_steps", "rounds_step_limited", "seed", "total_steps"]
    assert model.training
    seen = []
    play_rounds(model, 5, env_kwargs={"max_catches": 2}, progress=seen.append)
    assert sum(seen) == 5


def test_play_groups_equals_each_group_alone():
    base = {"obs_mode": "motion", "obs_noise": 0.01, "max_catches": 10}
    groups = [(base, 20, EVAL_SEED_BASE)] + [(shifted_env_kwargs(base, n), 12, EVAL_SEED_BASE + 3) for n in SHIFT_NAMES]
    groups.append((dict(base, obs_noise=0.0, max_steps=150), 6, 77))
    for model in (Tracker(), _lstm(5).double()):  # float64: no near-tie for a batch's rounding to flip
        seen: dict[int, int] = {}
        together = play_groups(model, groups, progress=lambda g, n: seen.__setitem__(g, seen.get(g, 0) + n))
        assert seen == {g: n for g, (_, n, _) in enumerate(groups)}
        for (kw, n, seed), ev in zip(groups, together):
            assert ev == play_rounds(model, n, seed=seed, env_kwargs=kw)
        if isinstance(model, Tracker):  # every ending: misses, the cap, the step limit
            assert together[0]["rounds_at_cap"] and together[0]["misses"] and together[-1]["rounds_step_limited"]


def test_evaluation_and_shifts_in_one_batch_equal_separate_plays():
    base = {"obs_mode": "motion", "obs_noise": 0.01, "max_catches": 6}
    model = Tracker()
    ev, t_eval, shifted = evaluate_with_shifts(model, 10, SHIFT_NAMES, 8, base)
    assert ev == play_rounds(model, 10, env_kwargs=base)
    alone = evaluate_shifts(model, SHIFT_NAMES, 8, base)
    assert list(shifted) == list(SHIFT_NAMES) == list(alone)
    for name in SHIFT_NAMES:
        expected = play_rounds(model, 8, env_kwargs=shifted_env_kwargs(base, name))
        for out in (shifted[name], alone[name]):
            assert {k: v for k, v in out.items() if k not in ("overrides", "eval_time_s")} == expected
            assert out["eval_time_s"] >= 0.0 and set(out) == set(expected) | {"overrides", "eval_time_s"}
    assert t_eval >= 0.0
    none, _, empty = evaluate_with_shifts(model, 4, (), 8, base)
    assert empty == {} and none["rounds"] == 4


def test_play_groups_errors_name_the_argument():
    model = Tracker()
    with pytest.raises(ValueError, match="groups"):
        play_groups(model, [])
    with pytest.raises(ValueError, match=r"groups\[0\]"):
        play_groups(model, [({}, 3)])
    with pytest.raises(ValueError, match=r"groups\[1\] rounds"):
        play_groups(model, [({}, 3, 0), ({}, 0, 0)])
    with pytest.raises(ValueError, match="observation layout"):
        play_groups(model, [({}, 2, 0), ({"obs_mode": "motion"}, 2, 0)])


# ----------------------------------------------------------------------------- DAgger rollouts on the batch
def test_expert_actions_are_the_expert_policy_bit_for_bit():
    rng = np.random.default_rng(0)
    for kw in ({}, {"paddle_half_length": 0.06, "paddle_speed": 0.02}, {"paddle_x": 0.1}):
        env = SinglePlayerPong(**kw)
        expert = ExpertPolicy(env)
        n = 3000
        s = np.stack([rng.random(n), rng.random(n), rng.uniform(-0.03, 0.03, n), rng.uniform(-0.03, 0.03, n),
                      rng.uniform(0.05, 0.95, n)], axis=1)
        s[:50, 2] = 0.0  # vx == 0: the target is the ball's height
        s[50:100, 4] = s[50:100, 1]  # on the dead band's edges and inside it
        c = env.core
        got = expert_actions(*s.T, c.paddle_x, c.half, 0.5 * c.paddle_speed)
        assert got.dtype == np.int64
        assert got.tolist() == [expert.act(PongState(*row)) for row in s.tolist()]


def test_mix_draw_blocks_are_the_single_draws():
    a, b = np.random.default_rng([5, 20_000_003]), np.random.default_rng([5, 20_000_003])
    single = np.array([a.random() for _ in range(600)])
    blocks = np.concatenate([b.random(256), b.random(256), b.random(88)])
    assert np.array_equal(single.view(np.uint64), blocks.view(np.uint64))


@torch.inference_mode()
def scalar_rollouts(model: nn.Module, rounds: int, seed: int, beta: float, mix_seed: int, env_kwargs: dict,
                    max_steps_per_round: int) -> dict[str, np.ndarray]:
    """collect_rollouts' loop before the batch: envs stepped one by one, ExpertPolicy labels, one
    ``rng.random()`` per step when 0 < beta < 1 (the arrays it recorded, by round)."""
    envs = [SinglePlayerPong(**env_kwargs) for _ in range(rounds)]
    obs = np.stack([e.reset(seed=seed + j)[0] for j, e in enumerate(envs)]).astype(np.float32)
    experts = [ExpertPolicy(e) for e in envs]
    mix = [np.random.default_rng([mix_seed, seed + j]) for j in range(rounds)]
    rec = [{"o": [], "a": [], "r": [], "s": []} for _ in range(rounds)]
    active, h, step = list(range(rounds)), None, step_function(model)
    while active:
        logits, h = step(torch.from_numpy(obs[active]), h)
        keep, still = [], []
        for k, (j, a) in enumerate(zip(active, logits.argmax(-1).tolist())):
            label = experts[j].act(obs[j])
            expert_acts = beta >= 1.0 or (beta > 0.0 and mix[j].random() < beta)
            rec[j]["o"].append(obs[j].copy())
            rec[j]["s"].append(envs[j].get_state().as_array())
            rec[j]["a"].append(label)
            o, rew, term, trunc, _info = envs[j].step(label if expert_acts else int(a))
            obs[j] = o
            rec[j]["r"].append(rew)
            if not (term or trunc or len(rec[j]["a"]) >= max_steps_per_round):
                keep.append(k)
                still.append(j)
        if len(still) < len(active) and still:
            h = map_state(h, lambda t, idx=torch.tensor(keep): t.index_select(0, idx))
        active = still
    return {"observations": np.concatenate([np.stack(r["o"]) for r in rec]),
            "actions": np.concatenate([np.asarray(r["a"], dtype=np.int64) for r in rec]),
            "rewards": np.concatenate([np.asarray(r["r"], dtype=np.float32) for r in rec]),
            "states": np.concatenate([np.stack(r["s"]) for r in rec]),
            "round_lengths": np.array([len(r["a"]) for r in rec], dtype=np.int64)}


@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
def test_collect_rollouts_equals_the_scalar_loop(beta):
    kw = {"obs_mode": "motion", "obs_noise": 0.01, "max_catches": 6}
    for model in (_lstm(5), Tracker()):
        data, stats = collect_rollouts(model, 16, seed=DAGGER_SEED_BASE, beta=beta, mix_seed=9, env_kwargs=kw,
                                       max_steps_per_round=250)
        ref = scalar_rollouts(model, 16, DAGGER_SEED_BASE, beta, 9, kw, 250)
        for k, v in ref.items():
            assert data[k].dtype == v.dtype and np.array_equal(data[k], v), k
        assert stats["steps"] == int(ref["round_lengths"].sum())
    assert ref["round_lengths"].max() == 250  # the recording cut, too
