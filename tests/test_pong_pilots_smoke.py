"""benchmarks/pong_pilots: every pilot script compiles, and the cheap ones run end to end."""

from __future__ import annotations

import json
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

from tnd.apps.cli import main

ROOT = Path(__file__).resolve().parents[1]
PILOTS = ROOT / "benchmarks" / "pong_pilots"


def _run(*args: str) -> str:
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_every_pilot_script_compiles_and_says_how_to_run_it():
    scripts = sorted(PILOTS.glob("*.py"))
    assert len(scripts) >= 5
    for p in scripts:
        py_compile.compile(str(p), doraise=True)
        assert "Usage: python benchmarks/pong_pilots/" in p.read_text(), p.name


def test_the_tuned_files_are_valid_chosen_configurations():
    from tnd.apps.pong.tuning_spaces import load_tuned

    for p in PILOTS.glob("*.json"):
        assert set(load_tuned(p)) == {"tnd"}, p.name


def test_step_cost_times_every_model():
    out = _run(str(PILOTS / "step_cost.py"), "1")
    from tnd.apps.pong.config import PongConfig

    for label in ("lstm", "mlp_k", "transformer", "cfc", "tnd-p1", "tnd-p2", "tnd_shared-p2"):
        assert label in out
    assert out.count("ms/step") == len(PongConfig().models) + 1


def test_summarize_runs_reads_a_run_folder(tmp_path):
    out = tmp_path / "run"
    assert main(["pong", "--quick", "--out", str(out), "--models", "mlp", "--no-progress", "--shifts", "none"]) == 0
    text = _run(str(PILOTS / "summarize_runs.py"), str(out))
    assert "mlp 0 catches" in text and "stop" in text
    m = json.loads((out / "cells" / "mlp" / "seed-0" / "metrics.json").read_text())
    assert f"catches {m['eval']['mean_catches']}" in text


def test_play_cost_compares_the_batch_with_the_old_loop():
    out = _run(str(PILOTS / "play_cost.py"), "2")  # it asserts that both give the same rounds
    assert out.count("play_rounds: before") == 2 and "env only:" in out


def test_main_job_bound_reads_the_committed_tuned_run():
    run = ROOT / "docs" / "figures" / "pong_tuned"
    text = _run(str(PILOTS / "main_job_bound.py"), str(run), "2")
    cells = [json.loads(p.read_text()) for p in run.glob("cells/*/seed-*/metrics.json")]
    steps = sum(it["train"]["steps"] for c in cells for it in c["dagger"]["iterations"])
    cpu = sum(c["cpu_time_s"] for c in cells)
    assert f"training steps: {steps:,}" in text and f"{cpu / 2 / 60:6.1f} min" in text
    lstm = [c for c in cells if c["model"] == "lstm"]
    ms = 1000 * sum(c["cpu_time_s"] for c in lstm) / sum(it["train"]["steps"] for c in lstm for it in c["dagger"]["iterations"])
    assert f"at lstm's {ms:.2f} ms per step" in text  # the fastest sequence model of that run
    assert f"{steps * ms / 1000 / 2 / 60:6.1f} min" in text
