"""The ``tnd`` command line. Each sub-command lives in its own module, imported only when
used (so ``tnd --help`` stays fast); a module defines ``add_arguments(parser)`` (its options, from
a settings dataclass through :mod:`tnd.apps.settings`) and ``run(args) -> int``.

Every command shares the conventions of :mod:`tnd.apps.settings` (lists, counts, one-line errors)
and, here in :func:`main`, the handling of what goes wrong outside the command's own checks:

* a refused command line: ``tnd <cmd>: error: <option>: ...`` (exit code 2);
* SIGINT / SIGTERM: one line at once, the run's workers stopped, finished work kept (the command
  writes what it can), exit code 128 + the signal number (130 for Ctrl-C);
* an output folder that cannot be written (permission denied, read-only: exit code 2) or a full
  disk (exit code 1): one line naming the folder, no traceback. Writes are atomic, so files
  written before stay intact.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path

COMMANDS = {
    "demo": ("tnd.apps.demo", "train TND on a small built-in sequence task and print its metrics"),
    "pong": ("tnd.apps.pong.experiment", "the paper's experiment: Pong (DAgger by default) against five baselines and two references"),
    "pong tune": ("tnd.apps.pong.tune", "equal-budget hyper-parameter search of every Pong model on validation "
                                        "serves, on Ray Tune; writes best_configs.json for tnd pong --tuned"),
    "bench": ("tnd.apps.bench", "speed and memory benchmark of TND against its peers"),
    "topology": ("tnd.apps.pong.topology_sweep", "Pong across graph families and densities at matched parameters, and a learned graph"),
    "inspect": ("tnd.apps.pong.inspection", "figures and an HTML report of a finished Pong or topology run: graph, timescales, "
                                    "activity, lesions"),
    "suite": ("tnd.apps.suite.cli", "benchmarks beyond Pong: multi-timescale, irregular, real data, memory; sweeps on Ray"),
    "suite tune": ("tnd.apps.suite.tune", "equal-budget hyper-parameter search of every suite model per task on the "
                                          "validation split, on Ray Tune; writes best_configs.json for tnd suite --tuned"),
}

RUN_FOLDER_COMMANDS = ("pong", "pong tune", "topology", "suite", "suite tune")  # the commands that resume a run folder


def _join_command(argv: list[str]) -> list[str]:
    """``tnd pong tune ...`` -> the command ``"pong tune"`` (a command of two words, such as
    ``"pong tune"`` in COMMANDS, is one sub-parser; its prog reads ``tnd pong tune``)."""
    i = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if i is not None and i + 1 < len(argv) and f"{argv[i]} {argv[i + 1]}" in COMMANDS:
        return argv[:i] + [f"{argv[i]} {argv[i + 1]}"] + argv[i + 2:]
    return argv


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    from .settings import LIST_CONVENTION, Parser

    parser = Parser(prog="tnd", description="Topological Neural Dynamics")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.commands = {}  # name -> its parser (for errors about unknown options)
    # Import only the module of the command that is being run.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=LIST_CONVENTION)
        parser.commands[name] = p
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    return parser


def _folder_of(exc: OSError, args: argparse.Namespace) -> str:
    """The folder a failed write was aimed at: the exception's path, else the command's --out."""
    for name in (exc.filename, exc.filename2):
        if name:
            p = Path(os.fsdecode(name))
            return str(p if p.is_dir() else p.parent)
    out = getattr(args, "out", None)
    return str(out) if out else "the output folder"


def main(argv: list[str] | None = None) -> int:
    from .runs import note, on_signals
    from .settings import UsageError

    argv = _join_command(sys.argv[1:] if argv is None else list(argv))
    parser = build_parser(argv)
    try:  # a refused command line (or --help) returns its exit code instead of raising SystemExit
        args, extra = parser.parse_known_args(argv)
        if args.command is None:
            if extra:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            parser.print_help()
            return 2
        if extra:  # named by the command's parser: "tnd pong: error: ..."
            parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    cmd = args.command
    restore = on_signals(cmd)
    try:
        return int(importlib.import_module(COMMANDS[cmd][0]).run(args) or 0)
    except UsageError as e:
        note(f"tnd {cmd}: error: {e}")
        return 2
    except KeyboardInterrupt as e:
        signum = int(getattr(e, "signum", 2))
        if getattr(e, "partial", None):
            note(f"tnd {cmd}: {e.partial}")
        elif not hasattr(e, "signum"):
            note(f"tnd {cmd}: interrupted")
        return 128 + signum
    except PermissionError as e:
        note(f"tnd {cmd}: error: cannot write to {_folder_of(e, args)}: permission denied; choose another --out "
             "or fix its permissions")
        return 2
    except OSError as e:
        if e.errno == errno.EROFS:
            note(f"tnd {cmd}: error: cannot write to {_folder_of(e, args)}: read-only file system; choose another --out")
            return 2
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            what = "no space left on the device of" if e.errno == errno.ENOSPC else "disk quota exceeded in"
            note(f"tnd {cmd}: error: {what} {_folder_of(e, args)}; the files written before are intact: free some space "
                 + ("and run the same command again with --resume" if cmd in RUN_FOLDER_COMMANDS else "and rerun"))
            return 1
        raise
    finally:
        restore()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
