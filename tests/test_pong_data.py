"""Tests for tnd.apps.pong.data (fast: a few seconds)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from tnd.apps.pong import EVAL_SEED_BASE, ExpertPolicy, SinglePlayerPong  # noqa: E402
from tnd.apps.pong.data import (  # noqa: E402
    ROUND_END_CAP,
    ROUND_END_RECORDING_CUT,
    generate_demonstrations,
    load_dataset,
    make_metadata,
    make_windows,
    save_dataset,
    train_val_split,
)


@pytest.fixture(scope="module")
def demos():
    return generate_demonstrations(6, seed=0, max_steps_per_round=400)


def test_shapes_and_dtypes(demos):
    s = demos["actions"].shape[0]
    assert s == 6 * 400  # the expert never misses: every round is cut at 400 steps
    assert demos["observations"].shape == (s, 3) and demos["observations"].dtype == np.float32
    assert demos["actions"].dtype == np.int64 and set(np.unique(demos["actions"])) <= {0, 1, 2}
    assert demos["states"].shape == (s, 5)
    assert demos["round_ids"].dtype == np.int64 and demos["episode_starts"].dtype == bool
    assert demos["episode_starts"].sum() == 6 and demos["episode_starts"][0]
    assert demos["round_seeds"].tolist() == list(range(6))
    assert (demos["round_end"] == ROUND_END_RECORDING_CUT).all()
    assert (demos["round_catches"] >= 2).all()
    assert demos["rewards"].sum() == demos["round_catches"].sum()


def test_round_ends_at_cap():
    d = generate_demonstrations(3, env_kwargs={"max_catches": 2}, max_steps_per_round=10_000)
    assert (d["round_end"] == ROUND_END_CAP).all() and (d["round_catches"] == 2).all()


def test_deterministic_and_seeded(demos):
    again = generate_demonstrations(6, seed=0, max_steps_per_round=400)
    for k in demos:
        assert np.array_equal(demos[k], again[k]), k
    other = generate_demonstrations(6, seed=100, max_steps_per_round=400)
    assert not np.array_equal(demos["observations"], other["observations"])


@pytest.mark.parametrize(
    "kwargs", [{}, {"obs_noise": 0.01}, {"obs_mode": "state", "obs_noise": 0.02}, {"obs_mode": "pixels"},
     {"obs_mode": "motion"}, {"obs_mode": "motion", "obs_noise": 0.01},
     {"obs_mode": "motion", "ball_speed": 0.0375, "motion_unit": 0.03}]
)
def test_matches_env_rollout(kwargs):
    d = generate_demonstrations(2, seed=11, env_kwargs=kwargs, max_steps_per_round=150)
    env = SinglePlayerPong(**kwargs)
    for i in range(2):
        obs, _ = env.reset(seed=11 + i)
        pol = ExpertPolicy(env)
        m = d["round_ids"] == i
        for o, a in zip(d["observations"][m], d["actions"][m]):
            assert np.array_equal(obs, o)
            assert pol.act(obs) == a
            obs, *_ = env.step(a)


def test_windows_never_cross_rounds(demos):
    X, Y, rounds, offsets = make_windows(demos, window=64, stride=50, random_per_round=3, seed=1, return_index=True)
    assert X.shape[1:] == (64, 3) and X.dtype == np.float32 and Y.dtype == np.int64 and Y.shape == X.shape[:2]
    starts = np.concatenate([[0], np.cumsum(demos["round_lengths"])[:-1]])
    for w in range(X.shape[0]):
        r = int(np.flatnonzero(demos["round_numbers"] == rounds[w])[0])
        g = starts[r] + offsets[w]
        assert offsets[w] + 64 <= demos["round_lengths"][r]
        assert (demos["round_ids"][g : g + 64] == rounds[w]).all()
        assert np.array_equal(X[w], demos["observations"][g : g + 64])
        assert np.array_equal(Y[w], demos["actions"][g : g + 64])
        assert not demos["episode_starts"][g + 1 : g + 64].any()
    for rnum in demos["round_numbers"]:  # every round has a window at its serve ...
        assert 0 in offsets[rounds == rnum]
        assert (offsets[rounds == rnum] > 0).any()  # ... and mid-round ones
    X2, _ = make_windows(demos, window=64, stride=50, random_per_round=3, seed=1)
    assert np.array_equal(X, X2)


def test_windows_bad_arguments(demos):
    with pytest.raises(ValueError, match="window"):
        make_windows(demos, window=0)
    with pytest.raises(ValueError, match="stride"):
        make_windows(demos, window=5, stride=0)
    with pytest.raises(ValueError, match="window=401"):
        make_windows(demos, window=401)


def test_split_has_no_round_leakage(demos):
    train, val = train_val_split(demos, val_fraction=0.34, seed=3)
    tr, va = set(train["round_numbers"].tolist()), set(val["round_numbers"].tolist())
    assert tr.isdisjoint(va) and tr | va == set(range(6)) and len(va) == 2
    assert set(np.unique(train["round_ids"]).tolist()) == tr
    assert set(np.unique(val["round_ids"]).tolist()) == va
    assert train["actions"].shape[0] + val["actions"].shape[0] == demos["actions"].shape[0]
    assert train["episode_starts"].sum() == 4
    t2, v2 = train_val_split(demos, val_fraction=0.34, seed=3)
    assert np.array_equal(v2["round_numbers"], val["round_numbers"])
    make_windows(val, window=32)  # splits stay valid datasets
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(demos, val_fraction=1.5)


def test_save_load_round_trip(demos, tmp_path):
    meta = make_metadata(6, 0, max_steps_per_round=400)
    p = save_dataset(tmp_path / "pong", demos, meta)
    assert p.name == "pong.npz" and (tmp_path / "pong.json").is_file()
    assert sorted(os.listdir(tmp_path)) == ["pong.json", "pong.npz"]  # no temp files left
    loaded, m = load_dataset(p)
    assert set(loaded) == set(demos)
    for k in demos:
        assert np.array_equal(loaded[k], demos[k]) and loaded[k].dtype == demos[k].dtype
    for key in ("env_kwargs", "seed", "num_rounds", "expert", "obs_mode", "tnd_version", "format_version"):
        assert key in m
    assert m["expert"] == "expert" and m["obs_mode"] == "positions" and m["num_rounds"] == 6
    with np.load(p, allow_pickle=False) as z:
        assert "observations" in z.files
    json.loads((tmp_path / "pong.json").read_text())


def test_load_errors(demos, tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_dataset(missing)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.npz"):
        load_dataset(bad)
    p = save_dataset(tmp_path / "ok.npz", demos, {})
    (tmp_path / "ok.json").unlink()
    with pytest.raises(FileNotFoundError, match="ok.json"):
        load_dataset(p)
    np.savez(tmp_path / "partial.npz", observations=np.zeros((3, 3)))
    (tmp_path / "partial.json").write_text("{}")
    with pytest.raises(ValueError, match="partial.npz.*missing keys"):
        load_dataset(tmp_path / "partial.npz")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_rounds": -1}, "num_rounds"),
        ({"num_rounds": 0}, "num_rounds"),
        ({"num_rounds": 2, "max_steps_per_round": 0}, "max_steps_per_round"),
        ({"num_rounds": 2, "env_kwargs": {"obs_mode": "bogus"}}, "obs_mode"),
        ({"num_rounds": 2, "expert": "oracle"}, "expert"),
        ({"num_rounds": 2, "seed": EVAL_SEED_BASE - 1}, "EVAL_SEED_BASE"),
    ],
)
def test_generate_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        generate_demonstrations(**kwargs)
