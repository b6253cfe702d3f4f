"""Faults outside the command line: an output folder that cannot be written and a full disk give
one ``tnd <cmd>: error:`` line naming the folder (no traceback), and a full disk damages nothing
written before (every write is atomic)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("matplotlib")

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = ["--quick", "--max-steps", "4", "--eval-every", "2", "--eval-rounds", "3", "--demo-rounds", "6",
        "--demo-steps-per-round", "60", "--frame-steps", "20", "--no-progress"]


def _tnd(*argv, prefix: tuple[str, ...] = ()):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([*prefix, sys.executable, "-m", "tnd.apps.cli", *argv], capture_output=True, text=True,
                          env=env, timeout=300)


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(r, cmd: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tnd {cmd}: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def test_unwritable_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:  # root writes anywhere: drop the capability that lets it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: permissions cannot be enforced")
        prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
    try:
        r = _tnd("pong", *TINY, "--models", "rnn", "--out", str(locked / "run"), prefix=prefix)
    finally:
        locked.chmod(0o755)
    assert r.returncode == 2, r.stderr
    line = _one_error_line(r, "pong")
    assert str(locked) in line and "permission denied" in line, line
    assert not (locked / "run").exists()


@pytest.fixture
def small_disk(tmp_path):
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"mount is not allowed here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_full_disk_is_one_line_and_damages_nothing(small_disk):
    out = small_disk / "run"
    r = _tnd("pong", *TINY, "--models", "rnn", "--out", str(out))
    assert r.returncode == 0, r.stderr
    before = _snapshot(out)
    filler = _fill(small_disk)
    r = _tnd("pong", *TINY, "--models", "rnn", "lstm", "--out", str(out), "--resume")
    assert r.returncode == 1, r.stderr
    line = _one_error_line(r, "pong")
    assert "no space left" in line and str(out) in line and "--resume" in line, line
    after = _snapshot(out)
    assert {k: after.get(k) for k in before} == before  # every file written before is intact
    assert not [k for k in after if k.endswith(".tmp")]  # no half-written leftovers
    # once there is room again, the same command finishes the run
    filler.unlink()
    r = _tnd("pong", *TINY, "--models", "rnn", "lstm", "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert _snapshot(out)["cells/rnn/seed-0/metrics.json"] == before["cells/rnn/seed-0/metrics.json"]
