"""The generalisation columns of ``tnd pong`` (``--shifts``): the shifted physics, the references in
each shift, every cell's shift results, the report's table, resume adding a shift without retraining."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("ncps")
pytest.importorskip("matplotlib")

from tnd.apps.cli import main  # noqa: E402
from tnd.apps.pong import experiment  # noqa: E402
from tnd.apps.pong.cells import cell_key, env_kwargs  # noqa: E402
from tnd.apps.pong.config import PongConfig  # noqa: E402
from tnd.apps.pong.env import DEFAULT_PHYSICS, SinglePlayerPong  # noqa: E402
from tnd.apps.pong.policies import EVAL_SEED_BASE, ExpertPolicy, TrackerPolicy, evaluate_policy  # noqa: E402
from tnd.apps.pong.shifts import SHIFT_NAMES, shift_overrides, shifted_env_kwargs  # noqa: E402

TINY = ["--max-steps", "4", "--eval-every", "2", "--eval-rounds", "3", "--demo-rounds", "6",
        "--demo-steps-per-round", "60", "--frame-steps", "20", "--no-progress"]
MODELS = ["rnn", "mlp"]


def _parse(argv):
    import argparse

    p = argparse.ArgumentParser()
    experiment.add_arguments(p)
    return experiment.config_from_args(p.parse_args(argv))


def _serves(kw, n=40):
    env = SinglePlayerPong(**kw)
    out = []
    for i in range(n):
        env.reset(seed=EVAL_SEED_BASE + i)
        out.append(env.get_state())
    return env, out


def test_the_shifted_envs_have_the_shifted_physics():
    base = env_kwargs(PongConfig())
    default_env, default_serves = _serves(base)
    assert SHIFT_NAMES == ("ball_fast", "paddle_short", "wide_serves")
    for name in SHIFT_NAMES:
        env, serves = _serves(shifted_env_kwargs(base, name))
        changed = {k for k in DEFAULT_PHYSICS if env.physics[k] != default_env.physics[k]}
        assert changed == set(shift_overrides(name)), name  # only the shift's keys differ
        assert env.physics["max_bounce_angle"] == DEFAULT_PHYSICS["max_bounce_angle"]
        assert env.max_catches == default_env.max_catches
        assert math.isfinite(env.max_steps) and env.max_steps >= 1
        speeds = [math.hypot(s.ball_vx, s.ball_vy) for s in serves]
        angles = [math.degrees(math.atan2(abs(s.ball_vy), -s.ball_vx)) for s in serves]
        if name == "ball_fast":
            np.testing.assert_allclose(speeds, 1.25 * DEFAULT_PHYSICS["ball_speed"], rtol=1e-12)
            # a faster ball crosses the field in fewer steps: the derived step limit shrinks with it
            assert env.max_steps < default_env.max_steps
        else:
            np.testing.assert_allclose(speeds, DEFAULT_PHYSICS["ball_speed"], rtol=1e-12)
        if name == "wide_serves":
            assert max(angles) > 60.0 >= max(math.degrees(math.atan2(abs(s.ball_vy), -s.ball_vx))
                                             for s in default_serves)
            assert max(angles) <= 70.0 + 1e-9
            assert env.max_steps > default_env.max_steps  # steeper serves: longer worst-case trips
        else:
            assert max(angles) <= 60.0 + 1e-9
        # the paddle's half-length is the shift's; its speed never changes
        want = 0.75 * DEFAULT_PHYSICS["paddle_half_length"] if name == "paddle_short" \
            else DEFAULT_PHYSICS["paddle_half_length"]
        assert env.physics["paddle_half_length"] == pytest.approx(want, rel=1e-12)
        y0 = env.get_state().paddle_y
        env.step(0)
        assert env.get_state().paddle_y - y0 == pytest.approx(DEFAULT_PHYSICS["paddle_speed"], rel=1e-9)


def test_motion_observations_keep_the_training_unit_in_a_faster_ball():
    kw = shifted_env_kwargs(env_kwargs(PongConfig(obs_mode="motion", obs_noise=0.0)), "ball_fast")
    assert kw["motion_unit"] == DEFAULT_PHYSICS["ball_speed"]
    env = SinglePlayerPong(**kw)
    env.reset(seed=EVAL_SEED_BASE)
    obs, *_ = env.step(1)
    assert math.hypot(obs[2], obs[3]) == pytest.approx(1.25, rel=1e-5)  # the faster ball reads faster
    plain = SinglePlayerPong(obs_mode="motion")
    plain.reset(seed=EVAL_SEED_BASE)
    obs, *_ = plain.step(1)
    assert math.hypot(obs[2], obs[3]) == pytest.approx(1.0, rel=1e-5)
    assert "motion_unit" not in shifted_env_kwargs(env_kwargs(PongConfig(obs_mode="positions")), "ball_fast")  # positions: no unit


@pytest.mark.parametrize("name", SHIFT_NAMES)
def test_the_expert_stays_good_in_each_shift(name):
    kw = shifted_env_kwargs({"max_catches": 8}, name)
    expert = evaluate_policy(lambda env: ExpertPolicy(env), 6, env_kwargs=kw)
    tracker = evaluate_policy(lambda env: TrackerPolicy(env), 6, env_kwargs=kw)
    assert expert["mean_catches"] >= 0.9 * 8, expert["per_round"]
    assert tracker["mean_catches"] < expert["mean_catches"]


def test_shift_options_follow_the_list_convention(capsys):
    assert _parse([]).shifts == SHIFT_NAMES
    assert _parse(["--shifts"]).shifts == ()
    assert _parse(["--shifts", "none"]).shifts == ()
    assert _parse(["--shifts", "wide_serves,ball_fast"]).shifts == ("wide_serves", "ball_fast")
    assert _parse([]).shift_eval_rounds == 100 and _parse(["--shift-rounds", "7"]).shift_eval_rounds == 7
    assert _parse(["--eval-rounds", "9"]).shift_eval_rounds == 9
    # evaluation only: the trained cells keep their keys
    assert cell_key(PongConfig(), "tnd", 0) == cell_key(PongConfig(shifts=(), shift_rounds=5), "tnd", 0)


@pytest.mark.parametrize("argv", [["--shifts", "bogus"], ["--shifts", "none", "ball_fast"],
                                  ["--shift-rounds", "0"]])
def test_bad_shift_options_give_one_clear_error(tmp_path, capsys, argv):
    assert main(["pong", "--quick", "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("--shifts" in err or "--shift-rounds" in err), err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="--shifts.*ball_fast"):
        shifted_env_kwargs({}, "bogus")


def test_tuning_plays_no_shifts():
    import argparse

    from tnd.apps.pong import tune

    p = argparse.ArgumentParser()
    tune.add_arguments(p)
    assert all("--shifts" not in a.option_strings for a in p._actions)
    cfg = tune.config_from_args(p.parse_args(["--quick"]))
    assert tune._pong_part(cfg)["shifts"] == ()
    assert "shifts" not in tune._fingerprint(cfg)  # old searches still resume


@pytest.fixture(scope="module")
def shifted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pongshift") / "run"
    assert main(["pong", "--quick", "--out", str(out), "--models", *MODELS, "--shift-rounds", "4", *TINY]) == 0
    return out


def test_every_cell_and_reference_has_each_shift_and_the_report_has_the_table(shifted_run):
    out = shifted_run
    res = json.loads((out / "results.json").read_text())
    for m in MODELS:
        metrics = json.loads((out / "cells" / m / "seed-0" / "metrics.json").read_text())
        assert list(metrics["shifts"]) == list(SHIFT_NAMES)
        for name, ev in metrics["shifts"].items():
            assert ev["rounds"] == 4 and len(ev["per_round"]) == 4 and ev["seed"] == EVAL_SEED_BASE
            assert ev["overrides"] == json.loads(json.dumps(shift_overrides(name)))
        agg = res["models"][m]["shifts"]
        assert list(agg) == list(SHIFT_NAMES)
        for name, a in agg.items():
            assert a["mean_consecutive_catches"] == pytest.approx(np.mean(metrics["shifts"][name]["per_round"]))
            lo, hi = a["mean_consecutive_catches_ci"]
            assert lo <= a["mean_consecutive_catches"] + 1e-9 <= hi + 2e-9
    for ref in ("expert", "tracker"):
        assert list(res["references"][ref]["shifts"]) == list(SHIFT_NAMES)
        for a in res["references"][ref]["shifts"].values():
            assert a["rounds"] == 4
    assert res["references"]["expert"]["shifts"]["ball_fast"]["rounds_at_cap"] == 4  # the quick cap: 3
    report = (out / "report.md").read_text()
    table = report.split("## Generalisation", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    header = rows[0]
    assert "default env" in header and all(n in header for n in SHIFT_NAMES)
    labels = [r.split("|")[1].strip() for r in rows[1:]]
    assert labels == [*MODELS, "*expert (reference)*", "*tracker (reference)*"]
    assert all(r.count("|") == len(SHIFT_NAMES) + 3 for r in rows)
    assert "Generalisation" in report.split("## Protocol", 1)[1]  # the protocol names the shifts


def test_resume_adds_a_missing_shift_without_retraining(shifted_run, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["pong", "--quick", "--out", str(out), "--models", "rnn", "--shift-rounds", "4", *TINY]
    assert main([*args, "--shifts", "ball_fast"]) == 0
    cell = out / "cells" / "rnn" / "seed-0"
    before = json.loads((cell / "metrics.json").read_text())
    assert list(before["shifts"]) == ["ball_fast"]
    mtime = {f: (cell / f).stat().st_mtime_ns for f in ("model.safetensors", "checkpoint.json")}
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "1 finished cell(s) kept, 0 to run" in err and "playing shift(s) paddle_short, wide_serves" in err
    assert {f: (cell / f).stat().st_mtime_ns for f in mtime} == mtime  # not retrained
    after = json.loads((cell / "metrics.json").read_text())
    assert list(after["shifts"]) == ["ball_fast", "paddle_short", "wide_serves"]
    assert after["shifts"]["ball_fast"] == before["shifts"]["ball_fast"]  # kept, not replayed
    assert after["train"] == before["train"] and after["eval"] == before["eval"]
    # the added shifts are what a run with every shift from the start computed (same cell settings)
    full = json.loads((shifted_run / "cells" / "rnn" / "seed-0" / "metrics.json").read_text())
    for name in SHIFT_NAMES:
        assert after["shifts"][name]["per_round"] == full["shifts"][name]["per_round"], name
    res = json.loads((out / "results.json").read_text())
    assert list(res["models"]["rnn"]["shifts"]) == list(SHIFT_NAMES)
    # more shift rounds on a later resume replay the shifts, still without training
    assert main([*args, "--resume", "--shift-rounds", "5"]) == 0
    again = json.loads((cell / "metrics.json").read_text())
    assert all(again["shifts"][n]["rounds"] == 5 for n in SHIFT_NAMES)
    assert {f: (cell / f).stat().st_mtime_ns for f in mtime} == mtime


def test_aggregation_and_table_with_seeds_and_a_missing_shift():
    from tnd.apps.pong.report import aggregate_shift, generalisation_table

    def ev(per_round, cap=5):
        return {"per_round": per_round, "misses": sum(r < cap for r in per_round), "rounds_at_cap": sum(
            r >= cap for r in per_round), "rounds": len(per_round), "mean_catches": float(np.mean(per_round))}

    seeds = [ev([0, 1, 2]), ev([3, 5, 4]), ev([1, 1, 1])]
    agg = aggregate_shift(seeds, n_boot=500)
    assert agg["mean_consecutive_catches"] == pytest.approx(np.mean([0, 1, 2, 3, 5, 4, 1, 1, 1]))
    lo, hi = agg["mean_consecutive_catches_ci"]
    assert 1.0 <= lo < agg["mean_consecutive_catches"] < hi <= 4.0  # between the seed means 1 and 4
    assert agg["mean_consecutive_catches_per_seed"] == [1.0, 4.0, 1.0] and agg["rounds_at_cap"] == 1
    results = {"config": {"shifts": ["ball_fast", "wide_serves"]},
               "models": {"lstm": {"mean_consecutive_catches": 2.0, "mean_consecutive_catches_ci": [1.0, 3.0],
                                   "shifts": {"ball_fast": agg}}},
               "references": {"expert": {"mean_consecutive_catches": 5.0, "shifts": {
                   "ball_fast": {"mean_consecutive_catches": 5.0}, "wide_serves": {"mean_consecutive_catches": 4.5}}},
                   "random": {"mean_consecutive_catches": 0.1}}}
    rows = generalisation_table(results).splitlines()
    assert rows[2] == f"| lstm | 2.00 [1.00, 3.00] | {agg['mean_consecutive_catches']:.2f} [{lo:.2f}, {hi:.2f}] | n/a |"
    assert rows[3] == "| *expert (reference)* | 5.00 | 5.00 | 4.50 |" and len(rows) == 4  # no random row
    assert generalisation_table({**results, "config": {"shifts": []}}) == ""
