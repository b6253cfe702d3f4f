"""The Pong experiment end to end on a tiny budget: CLI smoke test, determinism, resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")
pytest.importorskip("ncps")
pytest.importorskip("matplotlib")

from tnd.apps.cli import main  # noqa: E402
from tnd.apps.pong import experiment  # noqa: E402
from tnd.apps.pong.data import make_windows  # noqa: E402
from tnd.apps.pong.evaluate import play_rounds  # noqa: E402
from tnd.apps.pong.models import MODEL_NAMES, build_model, model_from_spec  # noqa: E402
from tnd.apps.pong.report import bootstrap_ci  # noqa: E402
from tnd.apps.pong.data import generate_perturbed_demonstrations  # noqa: E402
from tnd.apps.pong.train import train_model  # noqa: E402

TINY = ["--protocol", "bc", "--max-steps", "4", "--eval-every", "2", "--eval-rounds", "3", "--demo-rounds", "6",
        "--demo-steps-per-round", "60", "--frame-steps", "20", "--no-progress"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pong") / "run"
    rc = main(["pong", "--quick", "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_cli_quick_run_writes_results_report_and_plots(quick_run):
    out = quick_run
    res = json.loads((out / "results.json").read_text())
    assert set(res["models"]) == set(experiment.PongConfig().models)  # the default list
    for name, m in res["models"].items():
        for key in ("catch_rate", "mean_consecutive_catches", "catch_rate_ci", "mean_consecutive_catches_ci",
                    "catch_rate_per_seed", "mean_consecutive_catches_per_seed", "median_consecutive_catches",
                    "rounds_at_cap", "offline_action_accuracy", "params", "train_time_s"):
            assert key in m, (name, key)
        assert 0.0 <= m["catch_rate"] <= 1.0
        assert m["mean_consecutive_catches"] >= 0
        assert m["catch_rate_ci"][0] <= m["catch_rate"] + 1e-9 <= m["catch_rate_ci"][1] + 2e-9
        assert len(m["catch_rate_per_seed"]) == len(res["config"]["seeds"])
        assert m["params"] > 0 and m["train_time_s"] >= 0
        # parameter-matched within 25% at the quick budget
        assert abs(m["params"] - m["param_budget"]) <= 0.25 * m["param_budget"], (name, m["params"])
    refs = res["references"]
    assert set(refs) == {"expert", "tracker", "random"}
    assert refs["expert"]["rounds_at_cap"] == refs["expert"]["rounds"]  # the expert reaches the cap
    report = (out / "report.md").read_text()
    assert "| tnd |" in report and "expert (reference)" in report and "## Protocol" in report
    for png in ("bars.png", "learning_curves.png", "catch_distribution.png", "frames.png"):
        p = out / png
        assert p.is_file() and p.stat().st_size > 1000, png
        assert p.read_bytes()[:4] == b"\x89PNG"
    for m in experiment.PongConfig().models:
        cell = out / "cells" / m / "seed-0"
        assert (cell / "model.safetensors").stat().st_size > 0
        assert json.loads((cell / "checkpoint.json").read_text())["spec"]["name"] == m


def test_resume_skips_finished_cells(quick_run, capsys):
    out = quick_run
    cell = out / "cells" / "rnn" / "seed-0"
    before = {f: (cell / f).stat().st_mtime_ns for f in ("model.safetensors", "metrics.json")}
    first = json.loads((out / "results.json").read_text())
    rc = main(["pong", "--quick", "--resume", "--out", str(out), "--models", "rnn", "lstm"])
    assert rc == 0
    assert "2 finished cell(s) kept, 0 to run" in capsys.readouterr().err
    after = {f: (cell / f).stat().st_mtime_ns for f in ("model.safetensors", "metrics.json")}
    assert before == after
    res = json.loads((out / "results.json").read_text())
    assert set(res["models"]) == {"rnn", "lstm"}
    assert res["models"]["rnn"]["mean_consecutive_catches_per_seed"] == \
        first["models"]["rnn"]["mean_consecutive_catches_per_seed"]


def test_resume_reruns_a_cell_with_changed_settings(tmp_path):
    out = tmp_path / "run"
    assert main(["pong", "--quick", "--out", str(out), "--models", "rnn", *TINY]) == 0
    cfg = experiment.config_from_args(_parse(["--quick", "--out", str(out), "--models", "rnn", *TINY]))
    assert experiment.cell_done(cfg, out, "rnn", 0) is not None
    changed = experiment.config_from_args(_parse(["--quick", "--out", str(out), "--models", "rnn", *TINY,
                                                  "--lr", "0.001"]))
    assert experiment.cell_done(changed, out, "rnn", 0) is None


def _parse(argv):
    import argparse

    p = argparse.ArgumentParser()
    experiment.add_arguments(p)
    return p.parse_args(argv)


def test_training_is_deterministic(tmp_path):
    def once():
        demos = generate_perturbed_demonstrations(6, max_steps_per_round=40, serve_perturb_max_len=5)
        X, Y = make_windows(demos, 16, stride=8)
        assert X.shape[0] >= 10
        torch.manual_seed(3)
        model, spec = build_model("tnd", 3, 3, 300, window=16)
        res = train_model(model, X[:8], Y[:8], X[8:10], Y[8:10], max_steps=5, batch_size=4, eval_every=2, seed=3)
        ev = play_rounds(model, rounds=3, env_kwargs={"max_catches": 2})
        return res["history"], torch.cat([p.detach().flatten() for p in model.parameters()]), ev["per_round"], spec

    h1, p1, e1, s1 = once()
    h2, p2, e2, s2 = once()
    assert h1 == h2 and e1 == e2 and s1 == s2
    assert torch.equal(p1, p2)


def test_cell_run_is_deterministic(tmp_path):
    cfg = experiment.config_from_args(_parse(["--quick", "--models", "lstm", *TINY]))
    data = experiment.prepare_data(cfg, tmp_path / "d")
    import dataclasses

    a = experiment.run_cell(dataclasses.asdict(cfg), "lstm", 1, str(data), str(tmp_path / "a"))
    b = experiment.run_cell(dataclasses.asdict(cfg), "lstm", 1, str(data), str(tmp_path / "b"))
    assert a["train"]["history"] == b["train"]["history"]
    assert a["eval"]["per_round"] == b["eval"]["per_round"]
    m = experiment.load_cell_model(tmp_path / "a", "lstm", 1)
    x = torch.rand(2, 5, 3)
    ref = model_from_spec(a["spec"])
    ref.load_state_dict(m.state_dict())
    assert torch.equal(m(x)[0], ref(x)[0])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_are_parameter_matched_and_stepwise_consistent(name):
    torch.manual_seed(0)
    model, spec = build_model(name, 3, 3, 1500, window=8)
    assert abs(spec["params"] - 1500) <= 0.15 * 1500, spec
    x = torch.rand(2, 12, 3)
    with torch.no_grad():
        y_full, _ = model(x)
        h, ys = None, []
        for t in range(12):
            y, h = model(x[:, t:t + 1], h)
            ys.append(y)
    torch.testing.assert_close(torch.cat(ys, 1), y_full, rtol=1e-4, atol=1e-5)


def test_lockstep_evaluation_equals_one_round_at_a_time():
    torch.manual_seed(0)
    model, _ = build_model("rnn", 3, 3, 300)
    together = play_rounds(model, rounds=4, env_kwargs={"max_catches": 3})
    alone = [play_rounds(model, rounds=1, seed=10_000_000 + i, env_kwargs={"max_catches": 3})["per_round"][0]
             for i in range(4)]
    assert together["per_round"] == alone


def test_bootstrap_ci():
    assert bootstrap_ci([1.0], np.mean) == [1.0, 1.0]
    lo, hi = bootstrap_ci([0.0, 1.0, 2.0], lambda v: float(np.mean(v)))
    assert 0.0 <= lo <= 1.0 <= hi <= 2.0
    assert all(math.isfinite(v) for v in (lo, hi))


def test_bad_options_are_rejected(tmp_path, capsys):
    assert main(["pong", "--quick", "--out", str(tmp_path), "--max-steps", "0"]) == 2
    assert "max-steps" in capsys.readouterr().err


def test_parallel_workers_give_the_same_numbers(tmp_path):
    runs = {}
    for w in ("1", "2"):
        out = tmp_path / f"w{w}"
        assert main(["pong", "--quick", "--out", str(out), "--models", "rnn", "sparse_rnn", "--workers", w, *TINY]) == 0
        runs[w] = json.loads((out / "results.json").read_text())["models"]
    for m in ("rnn", "sparse_rnn"):
        assert runs["1"][m]["per_round_catches"] == runs["2"][m]["per_round_catches"]
        assert runs["1"][m]["learning_curves"] == runs["2"][m]["learning_curves"]


def test_report_says_first_whether_the_frame_stacking_mlp_beats_the_sequence_models():
    from tnd.apps.pong.report import memory_headline

    def models(**scores):
        return {n: {"mean_consecutive_catches": s} for n, s in scores.items()}

    lines = [x for x in memory_headline(models(tnd=0.6, transformer=1.3, mlp=0.6, mlp_k=2.5)) if x]
    assert "beats every sequence model" in lines[0] and "last k observations" in lines[0] and "transformer" in lines[0]
    assert lines[1].startswith("The best sequence model, transformer")
    lines = [x for x in memory_headline(models(tnd=3.0, lstm=1.0, mlp=0.6, mlp_k=2.5)) if x]
    assert all("beats every sequence model" not in x for x in lines) and "tnd (3.00" in lines[0]
    assert memory_headline(models(tnd=1.0, lstm=2.0)) == []  # no references: nothing to say


def test_motion_observations_reach_data_models_play_and_keys(tmp_path):
    from tnd.apps.pong.cells import cell_key, data_settings, env_kwargs
    from tnd.apps.pong.config import PongConfig

    default, motion = PongConfig(obs_mode="positions"), PongConfig(obs_mode="motion")
    # the default's keys and data settings do not mention the new option (old runs stay valid)
    assert "obs_mode" not in env_kwargs(default) and "obs_mode" not in data_settings(default)
    assert env_kwargs(motion)["obs_mode"] == "motion"
    assert cell_key(default, "lstm", 0) != cell_key(motion, "lstm", 0)
    out = tmp_path / "run"
    rc = main(["pong", "--quick", "--obs-mode", "motion", "--models", "mlp", "lstm", "--out", str(out), *TINY])
    assert rc == 0
    for m in ("mlp", "lstm"):
        spec = json.loads((out / "cells" / m / "seed-0" / "checkpoint.json").read_text())["spec"]
        assert spec["input_size"] == 5, m  # positions + the displacement
    assert "displacement" in (out / "report.md").read_text()
    demos = np.load(out / "data" / "demos.npz")
    assert demos["observations"].shape[1] == 5
    rc = main(["pong", "--quick", "--obs-mode", "pixels", "--out", str(tmp_path / "bad"), *TINY])
    assert rc == 2


def test_a_config_from_before_a_setting_existed_reads_as_what_that_run_did():
    import dataclasses

    from tnd.apps.pong.config import ADDED_FIELDS, ADDED_FIELDS_BEFORE, PongConfig, stored_settings

    current = PongConfig(mlp_frames=6, shift_rounds=7)
    old = {k: v for k, v in dataclasses.asdict(PongConfig(max_catches=50)).items() if k not in ADDED_FIELDS}
    got = stored_settings(old, current)
    assert got["max_catches"] == 50  # a stored value wins
    for k, v in ADDED_FIELDS_BEFORE.items():  # what an old run did, not today's default
        assert got[k] == v and getattr(current, k) != v
    assert got["mlp_frames"] == 6 and got["shift_rounds"] == 7  # changes no old cell: this run's value
    assert stored_settings({**old, "obs_mode": "motion"}, current)["obs_mode"] == "motion"


def test_pong_cells_table_aggregates_finished_cells(tmp_path):
    """benchmarks/pong_cells_table.py: one row per model from the cells that finished, seeds
    listed, the bootstrap CI and the stopping of each cell (here two committed 20k TND cells)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for seed in (0, 1):
        src = root / "docs" / "figures" / "pong_20k" / "cells" / "tnd" / f"seed-{seed}"
        shutil.copytree(src, tmp_path / "cells" / "tnd" / f"seed-{seed}")
    (tmp_path / "cells" / "rnn").mkdir()  # a model with no finished cell: no row
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "pong_cells_table.py"), str(tmp_path)],
                       capture_output=True, text=True, env={"PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("| tnd |")]
    assert len(rows) == 2 + 2 and "| rnn" not in r.stdout  # main and shift tables, one per-seed row per seed
    cells = [json.loads((tmp_path / "cells" / "tnd" / f"seed-{s}" / "metrics.json").read_text()) for s in (0, 1)]
    mean = sum(sum(c["eval"]["per_round"]) for c in cells) / sum(len(c["eval"]["per_round"]) for c in cells)
    assert f" | {mean:.2f} [" in rows[0], rows[0]
    assert "- tnd (seeds 0, 1): every training stopped early" in r.stdout
