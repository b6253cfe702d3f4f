"""The ``tnd`` command line. Each sub-command lives in its own module, imported only when
used (so ``tnd --help`` stays fast); a module defines ``add_arguments(parser)`` and
``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "demo": ("tnd.apps.demo", "train TND on a small built-in sequence task and print its metrics"),
    "pong": ("tnd.apps.pong.experiment", "the paper's experiment: Pong behaviour cloning against five baselines"),
    "bench": ("tnd.apps.bench", "speed and memory benchmark of TND against its peers"),
    "topology": ("tnd.apps.pong.topology_sweep", "Pong across graph families and densities at matched parameters, and a learned graph"),
    "inspect": ("tnd.apps.pong.inspection", "figures and an HTML report of a finished Pong or topology run: graph, timescales, "
                                    "activity, lesions"),
    "suite": ("tnd.apps.suite.cli", "benchmarks beyond Pong: multi-timescale, irregular, real data, memory; sweeps on Ray"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tnd", description="Topological Neural Dynamics")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Import only the module of the command that is being run.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
