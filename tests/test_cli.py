"""The command line's conventions (tnd.apps.settings) and run folders that are never overwritten.

* every sub-command's options come from a settings dataclass: every option has a description, no
  Python reprs or internal names in ``--help``, defaults shown as a user types them;
* lists take space- or comma-separated values in every command; a mistake is one line naming the
  option with an example of the right form;
* an ``--out`` that holds a run is refused (naming ``--resume`` and ``--force``), ``--resume`` with
  other settings is refused naming them, ``--force`` moves the old run aside; nothing is lost;
* the run-folder modules have no import circle and import no other module's private names.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import io
import json
import contextlib
from pathlib import Path

import pytest

from tnd.apps import settings
from tnd.apps.cli import COMMANDS, build_parser, main

TINY = ["--quick", "--models", "rnn", "--max-steps", "4", "--eval-every", "2", "--eval-rounds", "3",
        "--demo-rounds", "6", "--demo-steps-per-round", "60", "--frame-steps", "20", "--no-progress"]


def _run(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _subparser(cmd: str) -> argparse.ArgumentParser:
    parser = build_parser([cmd])
    return parser.commands[cmd]


# --------------------------------------------------------------------------- --help
@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_every_option_is_described_and_defaults_read_as_typed(cmd):
    p = _subparser(cmd)
    actions = [a for a in p._actions if not isinstance(a, argparse._HelpAction)]
    assert actions, cmd
    for a in actions:
        assert a.help and a.help != argparse.SUPPRESS and len(a.help) > 10, (cmd, a.option_strings, a.help)
    text = p.format_help()
    assert "EVAL_SEED_BASE" not in text and "(default: (" not in text and "(default: None" not in text, text
    assert "(default: [" not in text and "default: ()" not in text
    assert settings.LIST_CONVENTION.split(";")[0] in " ".join(text.split())  # the convention is in every --help


def test_defaults_print_as_typed():
    pong = " ".join(_subparser("pong").format_help().split())
    assert "(default: 0 1 2 3 4)" in pong and "(default: tnd tnd_shared rnn sparse_rnn lstm cfc transformer mlp mlp_k)" in pong
    topo = " ".join(_subparser("topology").format_help().split())
    assert "(default: 2 4 8)" in topo and "(default: 0.75)" in topo and "--no-learned" in topo and "--models" not in topo
    suite = " ".join(_subparser("suite").format_help().split())
    assert "--seeds SEED [SEED ...]" in suite and "(default: 0 1 2 3 4)" in suite and "--seed-offset" not in suite


def test_an_option_without_a_docstring_is_refused():
    @dataclasses.dataclass
    class Bad:
        documented: int = 1
        """a documented count"""
        undocumented: int = 2

    with pytest.raises(TypeError, match="undocumented"):
        settings.add_options(argparse.ArgumentParser(), Bad)


# --------------------------------------------------------------------------- lists and errors
@pytest.mark.parametrize("cmd, option, forms, parsed", [
    ("pong", "--seeds", [["0", "1", "2"], ["0,1,2"], ["0,1", "2"]], (0, 1, 2)),
    ("pong", "--models", [["tnd", "lstm"], ["tnd,lstm"]], ("tnd", "lstm")),
    ("topology", "--degrees", [["2", "4.5"], ["2,4.5"]], (2.0, 4.5)),
    ("suite", "--seeds", [["0", "1", "2"], ["0,1,2"]], (0, 1, 2)),
    ("suite", "--models", [["tnd", "lstm"], ["tnd,lstm"]], ("tnd", "lstm")),
    ("suite", "--tasks", [["multiscale", "adding_100"], ["multiscale,adding_100"]], ("multiscale", "adding_100")),
    ("bench", "--models", [["lstm", "rnn"], ["lstm,rnn"]], ("lstm", "rnn")),
])
def test_lists_take_spaces_or_commas_everywhere(cmd, option, forms, parsed):
    p = _subparser(cmd)
    dest = option[2:].replace("-", "_")
    extra = ["RUN", "--out", "x"] if cmd == "inspect" else []
    for form in forms:
        assert getattr(p.parse_args([*extra, option, *form]), dest) == parsed, form


@pytest.mark.parametrize("argv, starts, example", [
    (["pong", "--seeds", "0,x"], "tnd pong: error: --seeds: expected integers", "such as --seeds 0 1 2, got '0,x'"),
    (["pong", "--seeds"], "tnd pong: error: --seeds: expected integers", "got nothing"),
    (["pong", "--models", "tnd", "lsm"], "tnd pong: error: --models: expected names from tnd", "such as --models"),
    (["pong", "--max-steps", "0"], "tnd pong: error: --max-steps: expected an integer in [1, 2**31)",
     "such as --max-steps 30000"),
    (["pong", "--lr", "nan"], "tnd pong: error: --lr: expected a finite number > 0", "such as --lr 0.005"),
    (["pong", "--bogus"], "tnd pong: error: unrecognized arguments: --bogus", "see tnd pong --help"),
    (["topology", "--families", "hypercube"], "tnd topology: error: --families:", "such as --families"),
    (["suite", "--seeds", "-1"], "tnd suite: error: --seeds: expected integers", "such as --seeds 0 1 2"),
    (["suite", "--backend", "spark"], "tnd suite: error: --backend: expected one of auto, ray, local",
     "such as --backend auto"),
    (["demo", "--density", "0"], "tnd demo: error: --density: expected a finite number in (0, 1]",
     "such as --density 0.2"),
    (["bench", "--threads", "0"], "tnd bench: error: --threads: expected an integer in [1, 1024]", "--threads 2"),
    (["inspect", "x", "--out", "y", "--round", "-1"], "tnd inspect: error: --round:", "such as --round 0"),
])
def test_a_mistake_is_one_line_naming_the_option_with_an_example(argv, starts, example):
    rc, out, err = _run(argv)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith(starts) and example in lines[0], lines[0]
    assert "usage:" not in err and "Traceback" not in err


def test_presets_and_programmatic_settings_are_checked_too():
    from tnd.apps.pong.config import PongConfig

    with pytest.raises(settings.UsageError, match="--seeds: values must be distinct"):
        settings.check_values(PongConfig(seeds=(1, 1)))
    with pytest.raises(settings.UsageError, match="--window"):
        settings.check_values(PongConfig(window=500))  # longer than --demo-steps-per-round
    assert settings.command_args(PongConfig(seeds=(3, 4), progress=False), PongConfig()) == \
        ["--seeds", "3", "4", "--no-progress"]


# --------------------------------------------------------------------------- run folders
def test_pong_run_folder_is_never_overwritten_silently(tmp_path):
    out = tmp_path / "run"
    rc, _, err = _run(["pong", *TINY, "--out", str(out)])
    assert rc == 0, err
    before = _snapshot(out)

    rc, _, err = _run(["pong", *TINY, "--out", str(out)])  # the same command again
    assert rc == 2 and "--resume" in err and "--force" in err and str(out) in err, err
    assert len(err.strip().splitlines()) == 1
    assert _snapshot(out) == before

    rc, _, err = _run(["pong", *TINY, "--out", str(out), "--resume", "--lr", "0.001", "--patience", "3"])
    assert rc == 2 and "--lr 0.005 in the run, --lr 0.001 now" in err and "--patience" in err, err
    assert _snapshot(out) == before

    # --resume with the same settings: the message shows despite --no-progress; the cell is kept
    rc, _, err = _run(["pong", *TINY, "--out", str(out), "--resume"])
    assert rc == 0 and "resume: 1 finished cell(s) kept, 0 to run" in err, err
    cell = "cells/rnn/seed-0/metrics.json"
    assert _snapshot(out)[cell] == before[cell]

    # --force starts over; the old run is moved aside whole
    rc, _, err = _run(["pong", *TINY, "--out", str(out), "--force", "--lr", "0.001"])
    assert rc == 0 and "moved to" in err, err
    olds = list(tmp_path.glob("run.old-*"))
    assert len(olds) == 1
    moved = _snapshot(olds[0])
    assert {k: v for k, v in moved.items() if k.startswith("cells/")} == \
        {k: v for k, v in before.items() if k.startswith("cells/")}
    assert json.loads((out / "config.json").read_text())["lr"] == 0.001


def test_topology_refuses_a_folder_that_holds_a_run(tmp_path):
    from tnd.apps.pong.topology_sweep import TopologyConfig

    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(TopologyConfig(out=str(tmp_path)))))
    before = _snapshot(tmp_path)
    rc, _, err = _run(["topology", "--quick", "--out", str(tmp_path), "--no-progress"])
    assert rc == 2 and "--resume" in err and "--force" in err, err
    rc, _, err = _run(["topology", "--quick", "--out", str(tmp_path), "--no-progress", "--resume"])
    assert rc == 2 and "--max-steps 2500 in the run, --max-steps 12 now" in err, err
    assert _snapshot(tmp_path) == before


def test_suite_run_folder_is_never_overwritten_silently(tmp_path):
    out = tmp_path / "suite"
    argv = ["suite", "--tasks", "italy_power_demand", "--models", "lstm", "--seeds", "0", "--quick",
            "--backend", "local", "--no-progress", "--max-updates", "2", "--out", str(out)]
    rc, _, err = _run(argv)
    assert rc == 0, err
    before = _snapshot(out)
    rc, _, err = _run(argv)
    assert rc == 2 and "--resume" in err and "--force" in err, err
    rc, _, err = _run([*argv[:-4], "--max-updates", "3", "--out", str(out), "--resume"])
    assert rc == 2 and "--max-updates 2 in the run, --max-updates 3 now" in err, err
    assert _snapshot(out) == before
    rc, stdout, err = _run([*argv, "--resume", "--seeds", "0", "1"])  # more seeds: a resumed sweep may grow
    assert rc == 0 and "1 already done" in stdout, (stdout, err)
    cell = "cells/italy_power_demand__lstm__na__seed0.json"
    assert _snapshot(out)[cell] == before[cell]


# --------------------------------------------------------------------------- imports
MODULES = ["settings", "runs", "cli", "demo", "bench", "pong/config", "pong/cells", "pong/learner",
           "pong/experiment", "pong/topology_sweep", "pong/inspection", "suite/cli", "suite/sweep"]
APPS = Path(settings.__file__).parent


def _imports(rel: str) -> list[tuple[str, list[str]]]:
    """(module imported, names) for every import in the file, at any depth (lazy ones count)."""
    path = APPS / f"{rel}.py"
    pkg = ["tnd", "apps", *rel.split("/")[:-1]]
    res = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            res.append((mod, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            res += [(a.name, []) for a in node.names]
    return res


def test_run_folder_modules_have_no_import_circle_and_no_private_imports():
    names = {"tnd.apps." + m.replace("/", "."): m for m in MODULES}
    graph: dict[str, set[str]] = {}
    for mod, rel in names.items():
        graph[mod] = set()
        for target, imported in _imports(rel):
            for cand in [target, *(f"{target}.{n}" for n in imported)]:
                if cand in names and cand != mod:
                    graph[mod].add(cand)
            if target.startswith("tnd.") and target != mod.rsplit(".", 1)[0]:
                private = [n for n in imported if n.startswith("_") and not n.startswith("__")]
                assert not private, f"{mod} imports private {private} from {target}"

    assert "tnd.apps.pong.cells" in graph["tnd.apps.pong.experiment"]  # the walk sees the imports
    assert "tnd.apps.pong.learner" in graph["tnd.apps.pong.cells"]  # lazy ones too

    def visit(node, path):
        assert node not in path, f"import circle: {' -> '.join([*path, node])}"
        for nxt in graph[node]:
            visit(nxt, [*path, node])

    for mod in graph:
        visit(mod, [])
