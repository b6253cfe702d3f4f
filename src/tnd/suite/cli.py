"""``tnd suite``: run the benchmark suite (or part of it) as a resumable sweep.

Examples::

    tnd suite                                   # every task, every model, 3 seeds (~1 h on 2 cores)
    tnd suite --tasks multiscale --models tnd,lstm --seeds 3
    tnd suite --quick --out runs/smoke          # tiny budget, a smoke test
    tnd suite --backend ray --ray-address auto  # on an existing Ray cluster
    tnd suite --topologies small_world,random,ring --models tnd,tnd_shared --tasks multiscale

A rerun with the same ``--out`` and settings skips finished cells (resume).
"""

from __future__ import annotations

import argparse
import sys


def _csv(s: str) -> list:
    return [p.strip() for p in s.split(",") if p.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .models import MODEL_NAMES, TOPOLOGIES
    from .sweep import DEFAULT_MODELS, DEFAULT_TASKS

    parser.add_argument("--tasks", default="all",
                        help=f"comma-separated task names or 'all' (default: {','.join(DEFAULT_TASKS)})")
    parser.add_argument("--models", default="all",
                        help=f"comma-separated models or 'all' ({','.join(DEFAULT_MODELS)}); valid: {','.join(MODEL_NAMES)}")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1), default 3")
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--topologies", default="small_world",
                        help=f"comma-separated TND graph families ({','.join(TOPOLOGIES)}); default small_world")
    parser.add_argument("--quick", action="store_true", help="tiny data and budget (smoke test, seconds per cell)")
    parser.add_argument("--out", default=None, help="run folder (default runs/suite, or runs/suite-quick with --quick)")
    parser.add_argument("--backend", choices=("auto", "ray", "local"), default="auto",
                        help="auto: Ray if importable, else local (sequential)")
    parser.add_argument("--ray-address", default=None,
                        help="address of an existing Ray cluster (e.g. 'auto' or 'ray://host:10001'); "
                             "default: start a local instance and shut it down at the end")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per cell (default 1)")
    parser.add_argument("--updates", type=int, default=None, help="override the number of updates of every task")
    parser.add_argument("--param-budget", type=int, default=None, help="override the parameter budget")
    parser.add_argument("--batch-size", type=int, default=None, help="override the batch size")
    parser.add_argument("--no-skip", action="store_true",
                        help="run slow models at every length (by default LTC, continuous TND, the Transformer "
                             "are skipped beyond a length, ODE-RNN runs on irregular tasks only)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true", help="print the plan (cells and skips) and exit")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite report.md/results.json from the finished cells of --out; run nothing")


def run(args: argparse.Namespace) -> int:
    from .sweep import DEFAULT_MODELS, DEFAULT_TASKS, SweepSpec, plan, run_sweep

    tasks = list(DEFAULT_TASKS) if args.tasks == "all" else _csv(args.tasks)
    models = list(DEFAULT_MODELS) if args.models == "all" else _csv(args.models)
    overrides = {"updates": args.updates, "param_budget": args.param_budget, "batch_size": args.batch_size}
    spec = SweepSpec(tasks=tasks, models=models,
                     seeds=list(range(args.seed_offset, args.seed_offset + args.seeds)),
                     topologies=_csv(args.topologies), quick=args.quick,
                     overrides={k: v for k, v in overrides.items() if v is not None},
                     no_skip=args.no_skip, threads=args.threads)
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
    out = args.out or ("runs/suite-quick" if args.quick else "runs/suite")
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
