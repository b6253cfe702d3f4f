"""``tnd suite``: run the benchmark suite (or part of it) as a resumable sweep.

Examples::

    tnd suite                                   # every task, every model, 3 seeds (~1 h on 2 cores)
    tnd suite --tasks multiscale --models tnd,lstm --seeds 3
    tnd suite --quick --out runs/smoke          # tiny budget, a smoke test
    tnd suite --backend ray --ray-address auto  # on an existing Ray cluster
    tnd suite --topologies small_world,random,ring --models tnd,tnd_shared --tasks multiscale

A rerun with the same ``--out`` and settings skips finished cells (resume); with
``--checkpoint-every N`` it also continues a killed cell from its last training checkpoint.

Invalid options are refused before anything runs: argparse's usage error for a count out of
range, or ``tnd suite: error: --option ...`` (exit code 2) for unknown names and bad folders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _csv(s: str) -> list:
    return [p.strip() for p in s.split(",") if p.strip()]


def _count(lo: int, hi: int = 2**31 - 1):
    """An argparse type: an int in [lo, hi] (counts stay C ints), else a usage error naming the option."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int in [{lo}, {hi}], got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected an int in [{lo}, {hi}], got {text!r}")
        return v

    parse.__name__ = "int"
    return parse


def _check_names(option: str, names: list, valid, allow_all: bool = True) -> None:
    if not names:
        raise ValueError(f"{option}: give at least one name (comma-separated)")
    bad = [n for n in names if n not in valid]
    if bad:
        raise ValueError(f"{option}: unknown {', '.join(map(repr, bad))}; valid: "
                         f"{'all, ' if allow_all else ''}{', '.join(sorted(valid))}")


def _check_out(out: str, must_exist: str | None) -> None:
    """``out`` must be (or become) a folder: its nearest existing ancestor is one."""
    path = Path(out)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"--out {out}: {p} is a file, not a folder")
            break
    if must_exist and not path.is_dir():
        raise ValueError(f"{must_exist}: the run folder --out {out} does not exist")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .models import MODEL_NAMES, TOPOLOGIES
    from .sweep import DEFAULT_MODELS, DEFAULT_TASKS

    parser.add_argument("--tasks", default="all",
                        help=f"comma-separated task names or 'all' (default: {','.join(DEFAULT_TASKS)})")
    parser.add_argument("--models", default="all",
                        help=f"comma-separated models or 'all' ({','.join(DEFAULT_MODELS)}); valid: {','.join(MODEL_NAMES)}")
    parser.add_argument("--seeds", type=_count(1, 10_000), default=3, help="number of seeds (0..N-1), default 3")
    parser.add_argument("--seed-offset", type=_count(0), default=0, help="first seed (default 0)")
    parser.add_argument("--topologies", default="small_world",
                        help=f"comma-separated TND graph families ({','.join(TOPOLOGIES)}); default small_world")
    parser.add_argument("--quick", action="store_true", help="tiny data and budget (smoke test, seconds per cell)")
    parser.add_argument("--out", default=None, help="run folder (default runs/suite, or runs/suite-quick with --quick)")
    parser.add_argument("--backend", choices=("auto", "ray", "local"), default="auto",
                        help="auto: Ray if importable, else local (sequential)")
    parser.add_argument("--ray-address", default=None,
                        help="address of an existing Ray cluster (e.g. 'auto' or 'ray://host:10001'); "
                             "default: start a local instance and shut it down at the end")
    parser.add_argument("--num-cpus", type=_count(1, 100_000), default=None,
                        help="CPUs of the local Ray instance (default: all)")
    parser.add_argument("--threads", type=_count(1, 4096), default=1, help="torch threads per cell (default 1)")
    parser.add_argument("--updates", type=_count(1), default=None, help="override the number of updates of every task")
    parser.add_argument("--param-budget", type=_count(1, 10**7), default=None, help="override the parameter budget")
    parser.add_argument("--batch-size", type=_count(1), default=None, help="override the batch size")
    parser.add_argument("--checkpoint-every", type=_count(0), default=0,
                        help="write a training checkpoint every N updates of a cell, so a killed sweep resumes "
                             "mid-cell (default 0: only finished cells are kept)")
    parser.add_argument("--no-skip", action="store_true",
                        help="run slow models at every length (by default LTC, continuous TND, the Transformer "
                             "are skipped beyond a length, ODE-RNN runs on irregular tasks only)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true", help="print the plan (cells and skips) and exit")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite report.md/results.json from the finished cells of --out; run nothing")


def run(args: argparse.Namespace) -> int:
    from ..tasks import TASKS
    from .models import MODEL_NAMES, TOPOLOGIES
    from .sweep import DEFAULT_MODELS, DEFAULT_TASKS, SweepSpec, plan, run_sweep

    tasks = list(DEFAULT_TASKS) if args.tasks == "all" else _csv(args.tasks)
    models = list(DEFAULT_MODELS) if args.models == "all" else _csv(args.models)
    out = args.out or ("runs/suite-quick" if args.quick else "runs/suite")
    try:
        _check_names("--tasks", tasks, TASKS)
        _check_names("--models", models, MODEL_NAMES)
        _check_names("--topologies", _csv(args.topologies), TOPOLOGIES, allow_all=False)
        if args.seed_offset + args.seeds > 2**31:
            raise ValueError(f"--seed-offset + --seeds must stay below 2**31, got {args.seed_offset} + {args.seeds}")
        _check_out(out, "--report-only" if args.report_only else None)
    except ValueError as exc:
        print(f"tnd suite: error: {exc}", file=sys.stderr)
        return 2
    overrides = {"updates": args.updates, "param_budget": args.param_budget, "batch_size": args.batch_size}
    spec = SweepSpec(tasks=tasks, models=models,
                     seeds=list(range(args.seed_offset, args.seed_offset + args.seeds)),
                     topologies=_csv(args.topologies), quick=args.quick,
                     overrides={k: v for k, v in overrides.items() if v is not None},
                     no_skip=args.no_skip, threads=args.threads, checkpoint_every=args.checkpoint_every)
    try:
        cells, skipped = plan(spec)
    except ValueError as exc:
        print(f"tnd suite: error: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for c in cells:
            print(c.cell_id)
        for t, m, r in skipped:
            print(f"skip {t} {m}: {r}")
        print(f"{len(cells)} cells, {len(skipped)} skipped model/task pairs")
        return 0
    if args.report_only:
        from .sweep import report_only

        n = report_only(spec, out)
        print(f"[suite] report of {n}/{len(cells)} finished cells: {out}/report.md, {out}/results.json")
        return 0
    summary = run_sweep(spec, out, backend=args.backend, ray_address=args.ray_address,
                        num_cpus=args.num_cpus, progress=not args.no_progress)
    print(f"[suite] ran {summary['ran']} cells, {summary['skipped_done']} already done, "
          f"{summary['failed']} failed, in {summary['wall_time_s']:.0f} s (backend {summary['backend']})")
    print(f"[suite] report: {out}/report.md, {out}/results.json")
    return 1 if summary["failed"] else 0
