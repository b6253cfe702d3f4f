"""The command line under property tests (issue 7): random invalid options for every sub-command.

Each example is a valid command line of ``tnd <command>`` with one to three options made invalid
(zero, negative or huge counts, NaN/Inf/words for floats, unknown model or task names, an
``--out`` that is a file or lies under one, ``--resume``/``--report-only`` on a run folder that
does not exist, ...). ``tnd.apps.cli.main(argv)`` must refuse it before any work starts: argparse's
usage error (SystemExit 2) or a return code 2 with a one-line ``error:`` message, and either way
the message names one of the invalid options. The work itself (training, the sweep, timing) is
replaced by a function that raises ``_WouldRun``: a command line that gets that far was accepted
and fails the test, as does any other exception (a traceback from deep inside torch, ...).

Examples per entry point (max_examples, derandomized) are in EXAMPLES.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tnd.apps.cli import main

EXAMPLES = {"demo": 300, "pong": 300, "suite": 300, "bench": 150, "topology": 200, "inspect": 100}
SEEN: dict[str, int] = {}  # entry point -> examples run (for the report)

_TMP = Path(tempfile.mkdtemp(prefix="tnd_cli_props_"))
A_FILE = _TMP / "a-file.txt"
A_FILE.write_text("not a folder\n")
MISSING = _TMP / "no-such-run"


def _settings(name: str):
    return settings(max_examples=EXAMPLES[name], deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


class _WouldRun(Exception):
    """Raised instead of the work: the command line was accepted."""


def _no_work(*_a, **_kw):
    raise _WouldRun


@contextlib.contextmanager
def _patched():
    """Replace the work of every command (and bench's kernel build) by :func:`_no_work`."""
    import tnd.apps.bench
    import tnd.apps.demo
    import tnd.fast
    import tnd.apps.pong.experiment
    import tnd.apps.pong.topology_sweep
    import tnd.apps.suite.sweep

    targets = [(tnd.apps.demo, "run_demo"), (tnd.apps.pong.experiment, "run_experiment"), (tnd.apps.suite.sweep, "run_sweep"),
               (tnd.apps.suite.sweep, "report_only"), (tnd.apps.bench, "measure"), (tnd.fast, "c_available"),
               (tnd.apps.pong.topology_sweep, "run_sweep")]
    saved = [(m, n, getattr(m, n)) for m, n in targets]
    threads = torch.get_num_threads()
    try:
        for m, n in targets:
            setattr(m, n, _no_work)
        yield
    finally:
        for m, n, f in saved:
            setattr(m, n, f)
        torch.set_num_threads(threads)  # demo/bench set it before their work


def _run(argv: list[str]) -> tuple[str, int | None, str]:
    err, out = io.StringIO(), io.StringIO()
    with _patched(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as e:
            return "exit", e.code, err.getvalue()
        except _WouldRun:
            return "ran", None, err.getvalue()
    return "return", rc, err.getvalue()


def _check_refused(cmd: str, argv: list[str], bad: list[str]) -> None:
    SEEN[cmd] = SEEN.get(cmd, 0) + 1
    kind, code, err = _run([cmd, *argv])
    assert kind != "ran", f"accepted invalid options {bad}: tnd {cmd} {argv}"
    assert code == 2, f"exit code {code!r} (expected 2) for tnd {cmd} {argv}; stderr: {err!r}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and "error:" in lines[-1] and "Traceback" not in err, err
    msg = lines[-1]
    assert any(b in msg for b in bad), f"error does not name any of {bad}: {msg!r} (tnd {cmd} {argv})"


# --------------------------------------------------------------------------- strategies
HUGE = st.integers(min_value=2**31, max_value=10**30)
WORDS = st.sampled_from(["abc", "", "1.5", "1e3", "0x10", "nan", "inf", "two", "--", "1_0x"])
FLOAT_WORDS = st.sampled_from(["nan", "NaN", "inf", "Infinity", "abc", "", "1,5", "0x1p3x"])


def bad_count(minimum: int = 1):
    """A value for an int option that must be >= ``minimum`` (and < 2**31)."""
    return st.one_of(st.integers(-10**6, minimum - 1), HUGE, WORDS).map(str)


def good_count(hi: int = 5, lo: int = 1):
    return st.integers(lo, hi).map(str)


def bad_float(lo: float | None, hi: float | None, lo_ok: bool = False, hi_ok: bool = True):
    """NaN/Inf/words, or a number outside the valid range from ``lo`` to ``hi`` (``lo_ok``/``hi_ok``:
    whether that end itself is valid)."""
    outside = []
    if lo is not None:
        outside.append(st.floats(-1e6, lo, exclude_max=lo_ok))
    if hi is not None:
        outside.append(st.floats(hi, 1e6, exclude_min=hi_ok))
    return st.one_of(FLOAT_WORDS, *outside).map(lambda v: v if isinstance(v, str) else repr(float(v)))


def _command(valid: dict, invalid: dict, extra_bad=None):
    """argv with some valid options and 1-3 invalid ones; returns (argv, names of the invalid options)."""

    @st.composite
    def build(draw):
        names = draw(st.lists(st.sampled_from(sorted(invalid)), min_size=1, max_size=3, unique=True))
        goods = draw(st.lists(st.sampled_from(sorted(valid)), max_size=3, unique=True))
        argv: list[str] = []
        for g in goods:
            if g not in names:
                v = draw(valid[g])
                argv += [g] if v is None else [g, *([v] if isinstance(v, str) else v)]
        bad = []
        for n in names:
            v = draw(invalid[n])
            if isinstance(v, tuple):  # (argv fragment, names the error may cite)
                argv += v[0]
                bad += v[1]
            else:
                argv += [n, v]
                bad.append(n)
        return argv, bad

    return build()


# --------------------------------------------------------------------------- tnd demo
DEMO_VALID = {"--seed": good_count(9, 0), "--num-neurons": good_count(40, 2), "--density": st.just("0.3"),
              "--steps": good_count(), "--batch": good_count(), "--length": good_count()}
DEMO_INVALID = {"--seed": bad_count(0), "--num-neurons": bad_count(2), "--density": bad_float(0.0, 1.0),
                "--steps": bad_count(), "--batch": bad_count(), "--length": bad_count()}


@_settings("demo")
@given(case=_command(DEMO_VALID, DEMO_INVALID))
def test_demo_refuses_invalid_options(case):
    _check_refused("demo", *case)


# --------------------------------------------------------------------------- tnd pong
POS_INT = ["--workers", "--param-budget", "--window", "--batch-size", "--max-steps", "--eval-every", "--patience",
           "--demo-rounds", "--demo-steps-per-round", "--val-windows", "--eval-rounds", "--max-catches",
           "--frame-steps", "--perturb-max-len"]
PONG_VALID = {"--quick": st.none(), "--no-progress": st.none(), "--workers": good_count(2),
              "--models": st.sampled_from([["lstm"], ["rnn", "tnd"]]), "--seeds": st.sampled_from([["0"], ["1", "2"]]),
              "--lr": st.just("0.01"), "--max-steps": good_count(), "--checkpoint-every": good_count(4, 0),
              "--perturb-prob": st.just("0.5"), "--obs-noise": st.just("0.1")}
PONG_INVALID = {
    **{k: bad_count(1) for k in POS_INT},
    "--checkpoint-every": bad_count(0), "--serve-perturb-max-len": bad_count(0),
    "--data-seed": bad_count(0), "--graph-seed": bad_count(0),
    "--lr": bad_float(0.0, None), "--grad-clip": bad_float(0.0, None, lo_ok=True),
    "--val-fraction": bad_float(0.0, 1.0, hi_ok=False),
    "--perturb-prob": bad_float(0.0, 1.0, lo_ok=True),
    "--obs-noise": bad_float(0.0, None, lo_ok=True),
    "--models": st.one_of(st.sampled_from(["bogus", "LSTM", "tnd,lstm", ""]).map(lambda m: (["--models", m], ["--models"])),
                          st.just((["--models"], ["--models"]))),
    "--seeds": st.one_of(
        st.lists(st.sampled_from(["-1", "x", "1.5", str(2**40), "nan"]), min_size=1, max_size=2).map(
            lambda s: (["--seeds", *s], ["--seeds"])),
        st.just((["--seeds", "3", "3"], ["--seeds"])), st.just((["--seeds"], ["--seeds"]))),
    "--out": st.sampled_from([(["--out", str(A_FILE)], ["--out"]), (["--out", str(A_FILE / "sub")], ["--out"])]),
    "--resume": st.just((["--resume", "--out", str(MISSING)], ["--resume", "--out"])),
}


@_settings("pong")
@given(case=_command(PONG_VALID, PONG_INVALID))
def test_pong_refuses_invalid_options(case):
    _check_refused("pong", *case)


# --------------------------------------------------------------------------- tnd suite
SUITE_VALID = {"--tasks": st.sampled_from(["multiscale", "all", "adding_100,copy_100", ["adding_100", "copy_100"]]),
               "--models": st.sampled_from(["tnd,lstm", "all", ["tnd", "lstm"]]),
               "--seeds": st.sampled_from([["0"], ["1", "2"], "0,1,2"]),
               "--quick": st.none(), "--no-progress": st.none(), "--list": st.none(),
               "--backend": st.just("local"), "--max-updates": good_count(), "--threads": good_count(2)}
SUITE_INVALID = {
    "--seeds": PONG_INVALID["--seeds"], "--num-cpus": bad_count(1), "--threads": bad_count(1),
    "--max-updates": bad_count(1), "--param-budget": bad_count(1), "--batch-size": bad_count(1),
    "--checkpoint-every": bad_count(0),
    "--tasks": st.sampled_from(["bogus", "multiscale,nope", ",", "ALL"]).map(lambda t: (["--tasks", t], ["--tasks"])),
    "--models": st.sampled_from(["bogus", "tnd,LSTM", ",", "tnd;lstm"]).map(lambda m: (["--models", m], ["--models"])),
    "--topologies": st.sampled_from(["bogus", "ring,", "x"]).map(lambda t: (["--topologies", t], ["--topologies"])),
    "--backend": st.sampled_from(["spark", ""]).map(lambda b: (["--backend", b], ["--backend"])),
    "--out": st.sampled_from([(["--out", str(A_FILE)], ["--out"]), (["--out", str(A_FILE / "sub")], ["--out"])]),
    "--report-only": st.just((["--report-only", "--out", str(MISSING)], ["--report-only", "--out"])),
}


@_settings("suite")
@given(case=_command(SUITE_VALID, SUITE_INVALID))
def test_suite_refuses_invalid_options(case):
    _check_refused("suite", *case)


# --------------------------------------------------------------------------- tnd bench
BENCH_VALID = {"--quick": st.none(), "--threads": good_count(2), "--steps": good_count(8), "--repeats": good_count(2),
               "--cpu-time": st.none(), "--models": st.just("lstm")}
BENCH_INVALID = {
    "--threads": bad_count(1), "--steps": bad_count(1), "--repeats": bad_count(1),
    "--models": st.sampled_from(["bogus", ",", "nothing-like-this"]).map(lambda m: (["--models", m], ["--models"])),
    "--out": st.sampled_from([(["--out", str(_TMP)], ["--out"]), (["--out", str(A_FILE / "sub.md")], ["--out"])]),
    "--json": st.sampled_from([(["--json", str(_TMP)], ["--json"]), (["--json", str(A_FILE / "x.json")], ["--json"])]),
}


@_settings("bench")
@given(case=_command(BENCH_VALID, BENCH_INVALID))
def test_bench_refuses_invalid_options(case):
    _check_refused("bench", *case)


# --------------------------------------------------------------------------- sanity of the harness
@pytest.mark.parametrize("argv", [["demo", "--steps", "2"], ["pong", "--quick", "--no-progress"],
                                  ["suite", "--quick", "--tasks", "multiscale", "--models", "tnd", "--no-progress"],
                                  ["bench", "--quick", "--models", "lstm"]])
def test_valid_command_lines_reach_the_work(argv, tmp_path):
    """The harness can tell acceptance from refusal: valid command lines get to the (replaced) work."""
    if argv[0] in ("pong", "suite"):
        argv = [*argv, "--out", str(tmp_path / "run")]
    kind, code, err = _run(argv)
    assert kind == "ran", (kind, code, err)


@pytest.mark.parametrize("argv, bad", [
    (["demo", "--num-neurons", "8"], "--num-neurons"),  # density 0.2: an output neuron is unreachable
    (["pong", "--window", "64", "--demo-steps-per-round", "32"], "--demo-steps-per-round"),
    (["pong", "--param-budget", str(10**8)], "--param-budget"),
    (["suite", "--list", "--report-only"], "--report-only"),
])
def test_combinations_refused_after_parsing(argv, bad):
    """Options valid one by one but not together are refused with a one-line error naming one."""
    _check_refused(argv[0], argv[1:], [bad])


# --------------------------------------------------------------------------- tnd topology
TOPO_VALID = {**{k: v for k, v in PONG_VALID.items() if k != "--models"},
              "--families": st.sampled_from([["ring"], ["random", "layered"]]),
              "--degrees": st.sampled_from([["2"], ["2", "4.5"]]), "--no-learned": st.none(),
              "--learn-every": good_count()}
TOPO_INVALID = {
    **{k: v for k, v in PONG_INVALID.items() if k not in ("--models", "--frame-steps")},
    "--families": st.sampled_from([(["--families", "hypercube"], ["--families"]), (["--families"], ["--families"]),
                                   (["--families", "ring", "ring"], ["--families"])]),
    "--degrees": st.one_of(bad_float(1.0, None, lo_ok=True).map(lambda v: (["--degrees", v], ["--degrees"])),
                           st.just((["--degrees", "2", "2"], ["--degrees"])), st.just((["--degrees"], ["--degrees"])),
                           st.just((["--degrees", "inf"], ["--degrees"]))),
    "--learn-every": bad_count(1),
    "--learn-drop-fraction": bad_float(0.0, 1.0, lo_ok=True),
    "--learn-stop": bad_float(0.0, 1.0),
}


@_settings("topology")
@given(case=_command(TOPO_VALID, TOPO_INVALID))
def test_topology_refuses_invalid_options(case):
    _check_refused("topology", *case)


# --------------------------------------------------------------------------- tnd inspect
# Numeric options are checked before the run folder is opened, so a missing RUN_DIR still lets
# every bad option be named; with only valid options the error names RUN_DIR.
INSPECT_VALID = {"--round": good_count(3, 0), "--activity-steps": good_count(50), "--lesion-rounds": good_count(4, 0),
                 "--lesion-edges": good_count(4, 0), "--max-lesion-units": good_count(50)}
INSPECT_INVALID = {"--round": bad_count(0), "--activity-steps": bad_count(1), "--lesion-rounds": bad_count(0),
                   "--lesion-edges": bad_count(0), "--max-lesion-units": bad_count(1),
                   "RUN_DIR": st.just(([], ["RUN_DIR"]))}  # no option invalid: the missing folder is named


@_settings("inspect")
@given(case=_command(INSPECT_VALID, INSPECT_INVALID))
def test_inspect_refuses_invalid_options(case):
    argv, bad = case
    # the run folder's error may only stand in when every option is valid
    _check_refused("inspect", [str(MISSING), "--out", str(_TMP / "inspect-out"), *argv], bad)
