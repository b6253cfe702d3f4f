"""Ctrl-C and SIGTERM on a real ``tnd pong`` subprocess: one line at once, workers stopped, the
finished cells kept, a partial report written, exit code 128 + the signal, and ``--resume`` from
the named command finishes the run without redoing the kept cells."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("matplotlib")

SRC = str(Path(__file__).resolve().parents[1] / "src")
ARGV = ["--quick", "--models", "tnd", "rnn", "lstm", "--seeds", "0", "1", "--max-steps", "6", "--eval-rounds", "3",
        "--frame-steps", "20", "--no-progress"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _interrupt(out: Path, workers: int, sig: int):
    proc = subprocess.Popen([sys.executable, "-m", "tnd.apps.cli", "pong", *ARGV, "--workers", str(workers),
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.time() + 240
        while not list(out.glob("cells/*/seed-*/metrics.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no cell finished"
            time.sleep(0.05)
        kids = _children(proc.pid)
        kept = {str(p.relative_to(out)): p.read_bytes() for p in out.glob("cells/*/seed-*/*") if p.is_file()}
        t0 = time.time()
        proc.send_signal(sig)
        first = proc.stderr.readline()
        first_after = time.time() - t0
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, first, first_after, err, kids, kept


@pytest.mark.parametrize("workers, sig", [(2, signal.SIGINT), (1, signal.SIGTERM)])
def test_interrupt_keeps_finished_cells_and_names_resume(tmp_path, workers, sig):
    out = tmp_path / "run"
    rc, first, first_after, err, kids, kept = _interrupt(out, workers, sig)
    assert rc == 128 + sig, (rc, first, err)
    assert first_after < 1.0, first_after
    assert first.startswith("tnd pong: interrupted") and "--resume" in first, first
    assert "Traceback" not in first + err, err
    if workers > 1:
        assert kids, "the pool had no worker processes"
    time.sleep(0.3)
    assert not [k for k in kids if _alive(k)], "worker processes survived the interrupt"
    # the cells finished before the signal are intact; the partial report covers the finished ones
    assert kept and all((out / k).read_bytes() == v for k, v in kept.items() if k.endswith("metrics.json"))
    res = json.loads((out / "results.json").read_text())
    finished = len(list(out.glob("cells/*/seed-*/metrics.json")))
    assert res["partial"]["finished_cells"] == finished < 6
    assert (out / "report.md").is_file() and "interrupted" in (out / "report.md").read_text()
    # the named command finishes the run and keeps the cells that were done
    resume = first.split("continue with: ", 1)[1].strip()
    assert resume.startswith("tnd pong ") and resume.endswith(" --resume")
    done_before = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/seed-*/metrics.json")}
    r = subprocess.run([sys.executable, "-m", "tnd.apps.cli", *resume.split()[1:]], capture_output=True, text=True,
                       env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resume: {finished} finished cell(s) kept" in r.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in done_before.items())
    final = json.loads((out / "results.json").read_text())
    assert "partial" not in final and set(final["models"]) == {"tnd", "rnn", "lstm"}


def test_workers_exit_when_the_parent_is_killed(tmp_path):
    """SIGKILL leaves no handler to run: the workers notice their parent is gone and exit."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "tnd.apps.cli", "pong", *ARGV, "--workers", "2", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        deadline = time.time() + 240
        while not list(out.glob("cells/*/seed-*/metrics.json")):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        kids = _children(proc.pid)
        assert kids
    finally:
        proc.kill()
        proc.wait()
    deadline = time.time() + 5
    while [k for k in kids if _alive(k)] and time.time() < deadline:
        time.sleep(0.1)
    assert not [k for k in kids if _alive(k)], "workers outlived their killed parent"


def test_suite_interrupt_writes_a_partial_report(tmp_path):
    out = tmp_path / "suite"
    argv = ["suite", "--quick", "--tasks", "italy_power_demand", "--models", "lstm", "tnd", "--seeds", "0,1",
            "--backend", "local", "--no-progress", "--max-updates", "2", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "tnd.apps.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.time() + 240
        while not list(out.glob("cells/*.json")):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.05)
        t0 = time.time()
        proc.send_signal(signal.SIGINT)
        first = proc.stderr.readline()
        assert time.time() - t0 < 1.0
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert first.startswith("tnd suite: interrupted (SIGINT)") and first.strip().endswith("--resume"), first
    finished = len(list(out.glob("cells/*.json")))
    assert f"{finished} of 4 cells finished" in err
    res = json.loads((out / "results.json").read_text())
    assert res["finished"] == finished < 4
    resume = first.split("continue with: ", 1)[1].split()
    r = subprocess.run([sys.executable, "-m", "tnd.apps.cli", *resume[1:]], capture_output=True, text=True,
                       env=_env(), timeout=300)
    assert r.returncode == 0 and f"{finished} already done" in r.stdout, (r.stdout, r.stderr)
