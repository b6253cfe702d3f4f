"""Tests of ``tnd suite``: every task trains on a tiny budget, the ODE-RNN on the irregular task,
the sweep runs locally and resumes, and on Ray gives the same cells as locally."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from tnd.apps.suite import ODERNN, SweepSpec, build_model, plan, run_cell, run_sweep
from tnd.apps.suite.models import model_from_spec
from tnd.apps.suite.sweep import (DEFAULT_MODELS, DEFAULT_SEEDS, DEFAULT_TASKS, FULL_MODELS, FULL_TASKS, TASK_OVERRIDES,
                                  load_cells, skip_reason, task_settings)
from tnd.apps.suite.train import ConstantPredictor, TrainConfig, reference_score, score, train_and_evaluate

pytest.importorskip("aeon")
pytest.importorskip("pmdarima")

TINY = {"max_updates": 2, "eval_every": 1, "patience": 1, "param_budget": 200}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_import_needs_no_ray():
    code = ("import sys; sys.modules['ray'] = None; import tnd.apps.suite, tnd.apps.suite.cli, tnd.apps.suite.sweep, tnd.apps.suite.tune; "
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


@pytest.mark.parametrize("name", ["tnd", "tnd_shared", "tnd_ct", "tnd_ct_shared", "lstm", "lstm_chrono", "cfc", "ltc",
                                  "transformer", "ode_rnn", "mlp"])
def test_models_are_parameter_matched(name):
    torch.manual_seed(0)
    model, spec = build_model(name, 12, 9, 2000, seq_len=29)
    assert abs(spec["params"] - 2000) / 2000 < 0.25, spec
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == spec["params"]
    y, _ = model(torch.randn(3, 7, 12))
    assert y.shape == (3, 7, 9)


def test_lstm_chrono_is_the_lstm_with_its_gate_biases_set_by_the_task_length():
    torch.manual_seed(0)
    plain, ps = build_model("lstm", 5, 3, 2000, seq_len=40)
    torch.manual_seed(0)
    chrono, cs = build_model("lstm_chrono", 5, 3, 2000, seq_len=40)
    assert cs["kwargs"] == {"chrono_init": 40.0} and cs["hidden_size"] == ps["hidden_size"] and cs["params"] == ps["params"]
    h = cs["hidden_size"]
    u = chrono.lstm.bias_ih_l0.detach()[h:2 * h].exp()
    assert float(u.min()) >= 1.0 - 1e-5 and float(u.max()) <= 39.0 + 1e-4
    # the weights and the other gates' biases are the plain LSTM's (the same RNG draws first)
    assert torch.equal(chrono.lstm.weight_hh_l0, plain.lstm.weight_hh_l0)
    assert torch.equal(chrono.lstm.bias_ih_l0[2 * h:], plain.lstm.bias_ih_l0[2 * h:])
    rebuilt = model_from_spec(cs)
    assert rebuilt.chrono_init == 40.0


def test_the_mlp_reference_has_no_memory():
    torch.manual_seed(0)
    model, spec = build_model("mlp", 4, 3, 2000, options={"layers": 1})
    assert spec["kwargs"] == {"frames": 1, "layers": 1} and abs(spec["params"] - 2000) < 500
    x = torch.randn(2, 6, 4)
    y, h = model(x)
    x2 = x.clone()
    x2[:, :-1] = torch.randn(2, 5, 4)  # every step but the last changes
    y2, _ = model(x2)
    assert h is None and torch.equal(y[:, -1], y2[:, -1]) and not torch.allclose(y[:, 0], y2[:, 0])
    with pytest.raises(ValueError, match="options: mlp takes layers"):
        build_model("mlp", 4, 3, 2000, options={"frames": 4})


def test_odernn_uses_timespans():
    torch.manual_seed(0)
    m = ODERNN(3, 2, 8)
    x = torch.randn(2, 5, 3)
    y1, _ = m(x)
    y2, _ = m(x, timespans=torch.ones(2, 5))
    y3, _ = m(x, timespans=torch.full((2, 5), 3.0))
    assert torch.allclose(y1, y2)
    assert not torch.allclose(y1, y3)
    # each sequence is evolved over its own elapsed time: batching does not mix them
    ts = torch.rand(2, 5) + 0.5
    yb, _ = m(x, timespans=ts)
    y0, _ = m(x[:1], timespans=ts[:1])
    assert torch.allclose(yb[:1], y0, atol=1e-6)


@pytest.mark.parametrize("task", FULL_TASKS)
def test_every_task_trains_tnd_and_lstm(task):
    for model in ("tnd", "lstm"):
        cell = {"task": task, "model": model, "topology": "small_world" if model == "tnd" else "na", "seed": 0,
                "cell_id": f"{task}-{model}", "key": "k",
                "settings": task_settings(task, quick=True, overrides=TINY)}
        r = run_cell(cell)
        assert r["status"] == "ok", r.get("traceback")
        metric = r["metric"]
        assert metric == ("accuracy" if ("copy" in task or "vowels" in task or task in ("multiscale", "italy_power_demand"))
                          else "mse")
        v = r[f"test_{metric}"]
        assert not math.isnan(v) and v >= 0  # finite (not NaN), non-negative
        if metric == "accuracy":
            assert v <= 1
        assert 1 <= r["updates"] <= TINY["max_updates"]
        assert r["hit_cap"] == (not r["stopped_early"]) and r["max_updates"] == TINY["max_updates"]
        ref = r["reference"]
        assert isinstance(ref["test_reference"], float) and ref["test_reference_name"]


def test_budgets_are_set_by_convergence():
    """Every task has its cap, validation interval and patience; the cap leaves room to stop early
    several times over, and --quick stays tiny."""
    assert set(TASK_OVERRIDES) == set(FULL_TASKS) and set(DEFAULT_TASKS) < set(FULL_TASKS)
    assert {"adding_100", "adding_1000", "copy_100", "copy_1000"} <= set(DEFAULT_TASKS)
    assert "electricity" not in DEFAULT_TASKS  # no model beats its reference (docs/SUITE.md)
    assert {f"{k}_{n}" for k in ("adding", "copy") for n in (100, 500, 1000)} <= set(FULL_TASKS)
    assert set(DEFAULT_MODELS) < set(FULL_MODELS) and {"mamba", "lru"} <= set(FULL_MODELS)
    assert DEFAULT_SEEDS == (0, 1, 2, 3, 4)
    for task in FULL_TASKS:
        s = task_settings(task)
        assert s["max_updates"] >= 4 * s["patience"] * s["eval_every"], task
        q = task_settings(task, quick=True)
        assert q["max_updates"] <= 3 and q["max_val"] <= 8 and q["small"]


def test_memory_tasks_stop_on_an_absolute_floor_and_others_keep_their_cell_keys():
    """Memory tasks count an improvement only above an absolute floor (their loss goes to ~1e-5);
    the other tasks do not set it, so their settings (and cell keys) are those of earlier runs, and
    the floor reaches the training config."""
    from tnd.apps.suite.sweep import train_config

    for task in FULL_TASKS:
        s = task_settings(task)
        memory = task.startswith(("adding", "copy"))
        assert ("min_abs_delta" in s) == memory, task
        assert train_config(s).min_abs_delta == (3e-4 if memory else 0.0)
    assert train_config(task_settings("adding_100"), lr=0.5).lr == 0.5


def test_format_metric_prints_small_errors_in_scientific_notation():
    from tnd.apps.suite.sweep import format_metric

    assert format_metric(0.9512, 0.025, "accuracy") == "95.1 ± 2.5 %"
    assert format_metric(0.9512, None, "accuracy", unit="") == "95.1"
    assert format_metric(0.0197, 0.0017, "mse") == "0.0197 ± 0.0017"
    assert format_metric(2.7e-5, 2.1e-5, "mse", sep="±") == "2.7e-05±2.1e-05"
    assert format_metric(2.7e-5, 0.0013, "mse") == "2.7e-05 ± 1.3e-03"  # std at the mean's precision


def test_zero_residual_scores_exactly_the_seasonal_naive_forecast():
    """Forecasts are residuals on the seasonal-naive forecast: a model whose output is zero scores its
    error, which the task computes independently (float64 numpy) from the raw series."""
    from tnd.apps.tasks import load_task

    task = load_task("electricity")
    base = task.base_forecast("test")
    # the base is the value one week earlier: with a one-week input window, the window's first 48 steps
    assert torch.equal(base, task.x_test[:, :48, 0])
    ref = reference_score(task, TrainConfig(max_test=None))
    assert ref["name"] == "seasonal naive"
    assert ref["value"] == pytest.approx(task.metadata["seasonal_naive_mse"], rel=1e-6)
    val = score(ConstantPredictor(torch.zeros(task.output_size)), task, "val")
    assert val["mse"] == pytest.approx(task.metadata["seasonal_naive_mse_val"], rel=1e-6)
    # a real model whose output is zero gets the base the same way, in evaluation and in training
    torch.manual_seed(0)
    model, _ = build_model("lstm", task.input_size, task.output_size, 500, seq_len=task.seq_len)
    with torch.no_grad():
        model.readout.weight.zero_()
        model.readout.bias.zero_()
    got = score(model, task, "test", 64)["mse"]
    assert got == pytest.approx(float(((task.y_test[:64] - base[:64]) ** 2).mean()), rel=1e-6)
    assert got == pytest.approx(reference_score(task, TrainConfig(max_test=64))["value"], rel=1e-6)
    cfg = TrainConfig(max_updates=1, batch_size=64, eval_every=1, max_train=64, max_val=8, max_test=8)
    r = train_and_evaluate(model, task, cfg, seed=0)
    want = float(((task.y_train[:64] - task.base_forecast("train")[:64]) ** 2).mean())
    assert r["history"][0]["train_loss"] == pytest.approx(want, rel=1e-5)  # one batch: the whole permutation


def test_references_are_scored_on_the_models_test_sequences():
    import numpy as np

    from tnd.apps.tasks import load_task

    copy = load_task("copy_100", small=True)
    r = reference_score(copy, TrainConfig(max_test=None))
    majority = np.bincount(copy.y_train.numpy().ravel()).argmax()
    assert r["name"].startswith("chance") and r["value"] == pytest.approx(float((copy.y_test.numpy() == majority).mean()))
    adding = load_task("adding_100", small=True)
    r = reference_score(adding, TrainConfig(max_test=8))
    mean = adding.y_train.numpy().mean()
    assert r["name"].startswith("constant")
    assert r["value"] == pytest.approx(float(((adding.y_test.numpy()[:8] - mean) ** 2).mean()), rel=1e-5)


def test_odernn_and_tnd_get_timespans_on_irregular_task():
    for model in ("ode_rnn", "tnd_ct", "cfc", "lstm"):
        cell = {"task": "irregular_japanese_vowels_50", "model": model,
                "topology": "small_world" if model.startswith("tnd") else "na", "seed": 1, "cell_id": model,
                "key": "k", "settings": task_settings("irregular_japanese_vowels_50", quick=True, overrides=TINY)}
        r = run_cell(cell)
        assert r["status"] == "ok", r.get("traceback")
        assert r["used_timespans"] == (model != "lstm")
        assert 0 <= r["test_accuracy"] <= 1


def test_training_is_seeded_and_restores_best():
    from tnd.apps.tasks import load_task

    task = load_task("italy_power_demand", small=True)
    cfg = TrainConfig(max_updates=6, batch_size=8, eval_every=2, patience=10, max_val=8, max_test=8)
    res = []
    for _ in range(2):
        torch.manual_seed(3)
        m, _ = build_model("tnd", task.input_size, task.output_size, 200, seq_len=task.seq_len)
        res.append(train_and_evaluate(m, task, cfg, seed=3))
    assert res[0]["test_accuracy"] == res[1]["test_accuracy"]
    assert res[0]["history"] == res[1]["history"]
    best = min(res[0]["history"], key=lambda h: h["val_loss"])  # early stopping watches the validation loss
    assert (res[0]["val_loss"], res[0]["val_accuracy"], res[0]["best_update"]) == (
        best["val_loss"], best["val_accuracy"], best["update"])
    assert res[0]["monitor"] == "loss"


def test_early_stopping_can_watch_the_metric_instead():
    from tnd.apps.tasks import load_task

    task = load_task("italy_power_demand", small=True)
    cfg = TrainConfig(max_updates=8, batch_size=8, eval_every=2, patience=10, max_val=8, max_test=8, monitor="metric")
    torch.manual_seed(3)
    m, _ = build_model("tnd", task.input_size, task.output_size, 200, seq_len=task.seq_len)
    res = train_and_evaluate(m, task, cfg, seed=3)
    best = max(res["history"], key=lambda h: h["val_accuracy"])  # the first of the best, as the loop keeps
    assert (res["val_accuracy"], res["best_update"]) == (best["val_accuracy"], best["update"])
    with pytest.raises(ValueError, match="monitor.*'loss', 'metric'.*'accuracy'"):
        TrainConfig(monitor="accuracy")


def test_skip_rules():
    assert skip_reason("copy_1000", "ltc")
    assert skip_reason("japanese_vowels", "ltc") is None
    assert skip_reason("multiscale", "ode_rnn")
    assert skip_reason("irregular_japanese_vowels_30", "ode_rnn") is None
    assert skip_reason("copy_1000", "tnd") is None and skip_reason("copy_1000", "lstm") is None
    assert skip_reason("copy_1000", "ltc", no_skip=True) is None


def _spec(**kw):
    base = {"tasks": ["italy_power_demand", "irregular_japanese_vowels_30"], "models": ["tnd", "lstm", "ode_rnn"],
            "seeds": [0, 1], "topologies": ["small_world", "ring"], "quick": True, "overrides": dict(TINY)}
    base.update(kw)
    return SweepSpec(**base)


def _metrics(results):
    return {r["cell_id"]: (r["metric"], r[f"test_{r['metric']}"], r["test_loss"], r["history"]) for r in results}


def test_sweep_local_runs_and_resumes(tmp_path):
    spec = _spec()
    cells, skipped = plan(spec)
    # tnd: 2 tasks x 2 topologies x 2 seeds; lstm: 2 tasks x 2 seeds; ode_rnn: irregular only x 2 seeds
    assert len(cells) == 8 + 4 + 2
    assert skipped == [("italy_power_demand", "ode_rnn", "ODE-RNN runs on the irregular tasks only")]
    out = tmp_path / "run"
    s1 = run_sweep(spec, out, backend="local", progress=False, log=lambda *_: None)
    assert (s1["ran"], s1["skipped_done"], s1["failed"], s1["planned"]) == (14, 0, 0, 14)
    files = sorted((out / "cells").glob("*.json"))
    assert len(files) == 14
    assert not list((out / "cells").glob(".*tmp"))  # atomic writes leave no temporaries
    report = (out / "report.md").read_text()
    assert "## italy_power_demand" in report and "## Summary" in report and "tnd/ring" in report
    results = json.loads((out / "results.json").read_text())
    assert results["finished"] == 14 and set(results["aggregate"]) == set(spec.tasks)
    agg = results["aggregate"]["irregular_japanese_vowels_30"]["tnd/small_world"]
    assert agg["n_seeds"] == 2
    # resume: everything is skipped, nothing is rewritten
    mtimes = {p.name: p.stat().st_mtime_ns for p in files}
    s2 = run_sweep(spec, out, backend="local", progress=False, log=lambda *_: None)
    assert (s2["ran"], s2["skipped_done"], s2["failed"]) == (0, 14, 0)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")} == mtimes
    assert _metrics(s2["results"]) == _metrics(s1["results"])
    # an interrupted sweep: delete two cells, only those rerun, with identical results
    files[0].unlink()
    files[5].unlink()
    s3 = run_sweep(spec, out, backend="local", progress=False, log=lambda *_: None)
    assert (s3["ran"], s3["skipped_done"]) == (2, 12)
    assert _metrics(s3["results"]) == _metrics(s1["results"])
    runs = json.loads((out / "runs.json").read_text())
    assert [r["ran"] for r in runs] == [14, 0, 2]
    # the report can be rebuilt from the cells alone
    from tnd.apps.suite.sweep import report_only

    (out / "report.md").unlink()
    assert report_only(spec, out) == 14
    assert "## Summary" in (out / "report.md").read_text()
    # changed settings invalidate the cells (no stale results are reused)
    s4 = run_sweep(_spec(tasks=["italy_power_demand"], models=["lstm"], seeds=[0],
                         overrides=dict(TINY, max_updates=3)), out, backend="local", progress=False,
                   log=lambda *_: None)
    assert s4["ran"] == 1


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed")
def test_sweep_on_ray_matches_local(tmp_path):
    import ray

    spec = _spec(tasks=["irregular_japanese_vowels_30"], models=["tnd_ct", "lstm", "ode_rnn"],
                 topologies=["small_world"])
    local = run_sweep(spec, tmp_path / "local", backend="local", progress=False, log=lambda *_: None)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_sweep(spec, tmp_path / "ray", backend="ray", progress=False, log=lambda *_: None)
        assert ray.is_initialized()  # an instance started by the caller is left running
    finally:
        ray.shutdown()
    assert remote["backend"] == "ray" and remote["ran"] == 6 and remote["failed"] == 0
    assert _metrics(remote["results"]) == _metrics(local["results"])
    assert len(load_cells(tmp_path / "ray")) == 6


def test_cli_quick_runs_one_task(tmp_path):
    from tnd.apps.cli import main

    out = tmp_path / "cli"
    rc = main(["suite", "--tasks", "italy_power_demand", "--models", "tnd,lstm", "--seeds", "0", "1", "2", "--quick",
               "--backend", "local", "--no-progress", "--max-updates", "2", "--out", str(out)])
    assert rc == 0
    assert len(list((out / "cells").glob("*.json"))) == 6
    assert (out / "report.md").exists() and (out / "results.json").exists()
    assert main(["suite", "--tasks", "nope", "--quick", "--out", str(out)]) == 2


# ---- mid-cell checkpoints ---------------------------------------------------------------------
SUITE_SCRIPT = """
import json, sys, time, torch
torch.set_num_threads(1)
from tnd.io import save_tensors
from tnd.apps.suite import build_model
from tnd.apps.suite.train import TrainConfig, train_and_evaluate
from tnd.apps.tasks import load_task
ckdir, out, resume, sleep = sys.argv[1], sys.argv[2], sys.argv[3] == "1", float(sys.argv[4])
task = load_task("multiscale", small=True)
torch.manual_seed(0)
model, _ = build_model("tnd", task.input_size, task.output_size, 200, seq_len=task.seq_len)
cfg = TrainConfig(max_updates=16, batch_size=8, eval_every=4, patience=10, max_val=8, max_test=8)
res = train_and_evaluate(model, task, cfg, seed=3, checkpoint_dir=None if ckdir == "-" else ckdir,
                         checkpoint_every=2, resume=resume, on_update=lambda u: time.sleep(sleep))
save_tensors(out + "/model.safetensors", model.state_dict())
for k in ("train_time_s", "eval_time_s", "sec_per_update", "wall_before_resume_s"):
    res.pop(k)
open(out + "/metrics.json", "w").write(json.dumps(res))
"""


def test_suite_training_sigkilled_mid_run_resumes_bit_identical(tmp_path, monkeypatch, sigkill_after_checkpoint):
    import runpy

    from tnd.io import load_tensors

    script = tmp_path / "run.py"
    script.write_text(SUITE_SCRIPT)
    ck, out, ref = tmp_path / "ck", tmp_path / "out", tmp_path / "ref"
    out.mkdir()
    ref.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(ck), str(out), "0", "0.2"])
    killed_at = sigkill_after_checkpoint(proc, ck, 6, 60)
    assert not (out / "metrics.json").exists()
    assert 6 <= killed_at < 16
    # resume in a fresh process; the uninterrupted run without checkpoints in this one
    subprocess.run([sys.executable, str(script), str(ck), str(out), "1", "0"], check=True, timeout=120)
    monkeypatch.setattr(sys, "argv", [str(script), "-", str(ref), "0", "0"])
    runpy.run_path(str(script), run_name="__main__")
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (out, ref))
    assert got == want and got["updates"] == 16 and len(got["history"]) == 4
    wa, wb = load_tensors(out / "model.safetensors"), load_tensors(ref / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_killed_sweep_resumes_mid_cell(tmp_path, die_after_checkpoint):
    spec = _spec(tasks=["multiscale"], models=["tnd"], seeds=[0], topologies=["small_world"],
                 overrides=dict(TINY, max_updates=6, eval_every=2, patience=5))
    quiet = {"backend": "local", "progress": False, "log": lambda *_: None}
    ref = run_sweep(spec, tmp_path / "ref", **quiet)
    spec.checkpoint_every = 1

    def run():
        return run_sweep(spec, tmp_path / "run", **quiet)

    # the sweep "dies" right after the cell's third checkpoint
    assert die_after_checkpoint.run_killed(run, 3) == [1, 2, 3]
    assert not list((tmp_path / "run" / "cells").glob("*.json"))
    res, loads = die_after_checkpoint.run_resumed(run)
    assert loads == [3]  # continued from the killed cell's last checkpoint
    assert (res["ran"], res["failed"]) == (1, 0)
    assert _metrics(res["results"]) == _metrics(ref["results"])
    assert not list((tmp_path / "run" / "checkpoints").iterdir())  # removed once the cell is done
    # the cell's wall time counts the killed process's training up to its checkpoint too
    (got,), (want,) = res["results"], ref["results"]
    assert want["wall_before_resume_s"] == 0.0 and got["wall_before_resume_s"] > 0.0
    assert got["wall_time_s"] > got["wall_before_resume_s"]


def test_non_finite_loss_ends_suite_training_there_and_scores_the_best_weights(tmp_path):
    """The suite's divergence rule, the same for every model: a NaN at update 5 ends training after
    update 4 (the last good checkpoint), the best weights are tested, and the cell says where it
    diverged (not early stopping, not the cap)."""
    from tnd.apps.checkpoint import MANIFEST_NAME
    from tnd.apps.tasks import load_task

    task = load_task("italy_power_demand", small=True)
    torch.manual_seed(0)
    model, _ = build_model("tnd", task.input_size, task.output_size, 200, seq_len=task.seq_len)
    calls = {"n": 0}
    real_forward = model.forward

    def poisoned(*a, **kw):  # the 5th update's forward produces NaN
        calls["n"] += model.training
        y = real_forward(*a, **kw)
        if model.training and calls["n"] == 5:
            y = (y[0] * float("nan"), *y[1:]) if isinstance(y, tuple) else y * float("nan")
        return y

    model.forward = poisoned
    cfg = TrainConfig(max_updates=8, batch_size=8, eval_every=2, patience=10, max_val=8, max_test=8)
    res = train_and_evaluate(model, task, cfg, seed=0, checkpoint_dir=tmp_path / "ck", checkpoint_every=100)
    assert (res["updates"], res["diverged_at"], res["stopped_early"], res["hit_cap"]) == (4, 5, False, False)
    assert res["best_update"] in (2, 4) and [h["update"] for h in res["history"]] == [2, 4]
    assert math.isfinite(res["test_accuracy"]) and res["n_test"] == 8
    assert json.loads((tmp_path / "ck" / MANIFEST_NAME).read_text())["step"] == 4  # the last good update


def test_report_names_the_cells_that_diverged(tmp_path):
    from tnd.apps.suite.sweep import aggregate, write_report

    cells = [_fake_cell("adding_100", "lstm", s, 0.1, 900, True) for s in (0, 1)]
    cells[1].update(stopped_early=False, hit_cap=False, diverged_at=901, updates=900, best_update=600)
    agg = aggregate(cells)["adding_100"]["lstm"]
    assert agg["diverged"] == [[1, 901, 600]] and agg["cap_hits"] == 0
    spec = SweepSpec(tasks=["adding_100"], models=["lstm"], seeds=[0, 1], quick=False)
    md = write_report(tmp_path, spec, cells, [], wall_time_s=1.0, backend="local", planned=2)
    assert "lstm seed 1 at update 901 (scored with its best weights, update 600)" in md
    assert "Diverged" not in write_report(tmp_path, spec, cells[:1], [], wall_time_s=1.0, backend="local", planned=1)


def test_plan_of_the_default_suite_and_of_full(capsys):
    from tnd.apps.cli import main

    assert main(["suite", "--list"]) == 0
    default = capsys.readouterr().out.split("\n")
    cells = [c for c in default if "__seed" in c]
    assert {c.split("__")[0] for c in cells} == set(DEFAULT_TASKS)
    assert {c.split("__")[1] for c in cells} == set(DEFAULT_MODELS)
    assert {c.rsplit("seed", 1)[1] for c in cells} == {"0", "1", "2", "3", "4"}
    assert main(["suite", "--list", "--full", "--seeds", "0"]) == 0
    full = [c for c in capsys.readouterr().out.split("\n") if "__seed" in c]
    assert {c.split("__")[0] for c in full} == set(FULL_TASKS)
    assert {c.split("__")[1] for c in full} == set(FULL_MODELS)
    assert main(["suite", "--list", "--tasks", "all", "--models", "lstm", "--seeds", "0"]) == 0
    assert len([c for c in capsys.readouterr().out.split("\n") if "__seed" in c]) == len(FULL_TASKS)
    assert main(["suite", "--list", "--full", "--tasks", "adding_500", "--models", "tnd,mamba", "--seeds", "0"]) == 0
    assert [c for c in capsys.readouterr().out.split("\n") if "__seed" in c] == [
        "adding_500__tnd__small_world__seed0", "adding_500__mamba__na__seed0"]
    assert main(["suite", "--list", "--tasks", "all", "multiscale"]) == 2
    assert "--tasks" in capsys.readouterr().err


def _fake_cell(task, model, seed, value, updates, stopped, metric="mse"):
    return {"task": task, "model": model, "topology": "na", "seed": seed, "metric": metric,
            "higher_is_better": metric == "accuracy", f"test_{metric}": value, "spec": {"params": 100, "hidden_size": 4},
            "wall_time_s": 1.0, "sec_per_update": 0.01, "updates": updates, "stopped_early": stopped,
            "hit_cap": not stopped, "best_update": updates // 2, "seq_len": 100, "status": "ok",
            "reference": {"test_reference": 0.16, "test_reference_name": "constant (mean target)",
                          "baseline_mse": 1 / 6}}


def test_report_rows_hold_ci_stopping_step_cap_hits_and_the_reference(tmp_path):
    from tnd.apps.suite.figures import mean_ci95
    from tnd.apps.suite.sweep import aggregate, write_report

    cells = [_fake_cell("adding_100", "lstm", s, v, u, st)
             for s, v, u, st in ((0, 0.10, 800, True), (1, 0.12, 5000, False), (2, 0.20, 1200, True))]
    agg = aggregate(cells)["adding_100"]["lstm"]
    _, lo, hi = mean_ci95([0.10, 0.12, 0.20])
    assert agg["ci95"] == [lo, hi] and lo < agg["mean"] < hi
    assert hi - agg["mean"] == pytest.approx(4.30265 * agg["std"] / math.sqrt(3))
    assert agg["updates"] == [800, 5000, 1200] and agg["cap_hits"] == 1
    spec = SweepSpec(tasks=["adding_100"], models=["lstm"], seeds=[0, 1, 2], quick=False)
    md = write_report(tmp_path, spec, cells, [], wall_time_s=1.0, backend="local", planned=3)
    row = next(line for line in md.splitlines() if line.startswith("| 1 | lstm"))
    assert "[" in row and "| 2333 (800-5000) | 1/3 |" in row, row
    assert "| - | *reference: constant (mean target)* | 0 | - | 0.1600 |" in md
    assert "capped at 30000 updates" in md and "after 25 validations without improvement" in md
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["aggregate"]["adding_100"]["lstm"]["cap_hits"] == 1
    # the memoryless reference: its own Summary column, and whether the best sequence model beats it
    mlp = [_fake_cell("adding_100", "mlp", s, v, 900, True) for s, v in ((0, 0.166), (1, 0.167), (2, 0.165))]
    md = write_report(tmp_path, spec, cells + mlp, [], wall_time_s=1.0, backend="local", planned=6)
    summary = next(line for line in md.splitlines() if line.startswith("| adding_100 | mse"))
    assert summary.endswith("| 0.1660 ± 0.0010 | yes |"), summary
    assert "`mlp` is the memoryless reference" in md
    worse = [_fake_cell("adding_100", "mlp", s, 0.13, 900, True) for s in (0, 1, 2)]
    md = write_report(tmp_path, spec, cells + worse, [], wall_time_s=1.0, backend="local", planned=6)
    summary = next(line for line in md.splitlines() if line.startswith("| adding_100 | mse"))
    assert summary.endswith("| 0.1300 ± 0.0000 | **no** |"), summary
    assert {c["seed"]: c["hit_cap"] for c in saved["cells"]} == {0: False, 1: True, 2: False}


def test_forecast_report_shows_the_linear_autoregression_beside_persistence(tmp_path):
    """sunspots carries a second, stronger simple reference (a ridge autoregression): the report
    prints it under the base forecast, with its weight count."""
    from tnd.apps.suite.sweep import write_report

    cells = [_fake_cell("sunspots", "lstm", s, 0.5, 800, True) for s in (0, 1)]
    for c in cells:
        c["reference"] = {"test_reference": 0.72, "test_reference_name": "persistence", "persistence_mse": 0.72,
                          "linear_ar_mse": 0.4367, "linear_ar_params": 1596}
    spec = SweepSpec(tasks=["sunspots"], models=["lstm"], seeds=[0, 1], quick=False)
    md = write_report(tmp_path, spec, cells, [], wall_time_s=1.0, backend="local", planned=2)
    assert "| - | *reference: persistence* | 0 | - | 0.7200 |" in md
    assert "| - | *reference: linear autoregression (ridge)* | 1596 | - | 0.4367 |" in md


def test_suite_matrix_shows_every_task_model_and_reference(tmp_path):
    root = Path(__file__).resolve().parents[1]
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, cells in ((a, [_fake_cell("adding_100", "lstm", s, v, u, st)
                               for s, v, u, st in ((0, 0.10, 800, True), (1, 0.12, 5000, False))]),
                          (b, [_fake_cell("adding_100", "mlp", s, 0.16, 900, True) for s in (0, 1)]
                           + [_fake_cell("adding_100", "lstm", 0, 0.5, 1, True)])):  # a duplicate: a's counts
        (folder / "cells").mkdir(parents=True)
        for c in cells:
            c["cell_id"] = f"{c['task']}__{c['model']}__na__seed{c['seed']}"
            (folder / "cells" / f"{c['cell_id']}.json").write_text(json.dumps(c))
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "suite_matrix.py"), str(a), str(b)],
                       capture_output=True, text=True, env={"PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "| task | lstm | mlp | reference |" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.startswith("| adding_100"))
    assert "**0.1100±0.0141** (2900, 1/2 cap, 2 seeds)" in row and "0.1600±0.0000 (900, 2 seeds)" in row, row
    assert row.endswith("| constant (mean target) 0.1600 |"), row


def test_recap_script_carries_cells_over_a_raised_cap_and_nothing_else(tmp_path):
    """docs/figures/suite_mem/p150/recap.py: a cell that stopped before the old cap is re-keyed with
    its scores; one that hit the old cap is not (its checkpoint continues); a checkpoint resumes
    under the new key with the cap raised in its fingerprint; any other difference is refused."""
    import subprocess
    import sys
    from pathlib import Path

    from tnd.apps.suite.sweep import plan

    (cell,), _ = plan(SweepSpec(tasks=["copy_1000"], models=["lstm"], seeds=[0]))
    old = {**cell.settings, "max_updates": 120000}
    src, new = tmp_path / "src", tmp_path / "new"
    (src / "cells").mkdir(parents=True)

    def write_cell(seed, updates, hit_cap, **changes):
        d = {"cell_id": f"copy_1000__lstm__na__seed{seed}", "status": "ok", "settings": {**old, **changes},
             "key": "old", "max_updates": 120000, "updates": updates, "hit_cap": hit_cap, "test_accuracy": 0.13}
        (src / "cells" / f"{d['cell_id']}.json").write_text(json.dumps(d))

    write_cell(0, 30200, False)
    write_cell(1, 120000, True)
    write_cell(2, 30200, False, lr=1e-3)
    ck = src / "checkpoints" / "copy_1000__lstm__na__seed1-old"
    ck.mkdir(parents=True)
    (ck / "t.safetensors").write_bytes(b"x")
    (ck / "checkpoint.json").write_text(json.dumps({"step": 118000, "tensors_file": "t.safetensors",
                                                    "fingerprint": {"suite_train": {"config": dict(old)}}}))
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "docs/figures/suite_mem/p150/recap.py"), str(new), str(src)],
                         capture_output=True, text=True, check=True).stdout
    assert sorted(p.name for p in (new / "cells").iterdir()) == ["copy_1000__lstm__na__seed0.json"]
    d = json.loads((new / "cells" / "copy_1000__lstm__na__seed0.json").read_text())
    assert (d["key"], d["max_updates"], d["settings"], d["test_accuracy"]) == (cell.key, 400000, cell.settings, 0.13)
    assert "seed2.json: differs in ['lr', 'max_updates']" in out and "seed1.json: ended at the old cap" in out
    (moved,) = (new / "checkpoints").iterdir()
    (c1,), _ = plan(SweepSpec(tasks=["copy_1000"], models=["lstm"], seeds=[1]))
    assert moved.name == f"{c1.cell_id}-{c1.key}" and (moved / "t.safetensors").read_bytes() == b"x"
    manifest = json.loads((moved / "checkpoint.json").read_text())
    assert manifest["step"] == 118000 and manifest["fingerprint"]["suite_train"]["config"]["max_updates"] == 400000
