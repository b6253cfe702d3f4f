"""Per-cell cost of ``tnd suite``: seconds per update and per validation of each (task, model).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/suite_timing.py [--full] [--updates 5]
        [--tasks T ...] [--models M ...] [--out timing.json]
    python benchmarks/suite_timing.py --from timing.json [--full | --tasks ... --models ...]

For every cell of the plan (the default suite, or ``--full``; one seed, one topology) it builds
the task at full size and trains ``--updates`` updates of the task's batch size through the
suite's own code path (:func:`tnd.apps.suite.sweep.run_cell`), then validates once on the task's
validation cap. From these two numbers and the task's budget (``max_updates``, ``eval_every``,
``patience``) it bounds the cell's time: at least ``(patience + 1) * eval_every`` updates (training
stops early at the earliest), at most ``max_updates`` (the cap), plus the cell's fixed cost
(loading the data, building the model: measured) and its test (a validation's time scaled to the
test sequences), and sums the bounds over the seeds of the plan. ``--from`` measures nothing:
it recomputes the bounds of the plan from saved measurements with today's budgets. docs/SUITE.md quotes its output. One torch thread per cell, as the suite runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from tnd.apps.tasks import load_task
from tnd.apps.suite.sweep import (DEFAULT_MODELS, DEFAULT_SEEDS, DEFAULT_TASKS, FULL_MODELS, FULL_TASKS, SweepSpec,
                                  plan, run_cell)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="time the --full plan (default: the default suite)")
    ap.add_argument("--tasks", nargs="*", default=None)
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--updates", type=int, default=5, help="updates timed per cell")
    ap.add_argument("--seeds", type=int, default=len(DEFAULT_SEEDS), help="seeds per cell of the estimate")
    ap.add_argument("--cores", type=int, default=2, help="cells run in parallel in the estimate")
    ap.add_argument("--out", default=None, help="write the measurements as JSON here")
    ap.add_argument("--from", dest="saved", default=None, help="recompute the bounds from this --out file")
    a = ap.parse_args(argv)
    spec = SweepSpec(tasks=tuple(a.tasks or (FULL_TASKS if a.full else DEFAULT_TASKS)),
                     models=tuple(a.models or (FULL_MODELS if a.full else DEFAULT_MODELS)), seeds=(0,))
    cells, _ = plan(spec)
    if a.saved:
        with open(a.saved) as f:
            saved = {(r["task"], r["model"]): r for r in json.load(f)["rows"]}
        rows = []
        for c in cells:
            r = dict(saved[(c.task, c.model)])
            s = c.settings
            lo_updates = min(s["max_updates"], (s["patience"] + 1) * s["eval_every"])
            extra = r.get("fixed_s", 0.0) + r.get("test_s", 0.0)
            r.update({k: s[k] for k in ("max_updates", "eval_every", "patience")},
                     **{key: u * r["sec_per_update"] + (u // s["eval_every"]) * r["sec_per_validation"] + extra
                        for key, u in (("cell_s_min", lo_updates), ("cell_s_cap", s["max_updates"]))})
            rows.append(r)
        cells = []
    else:
        rows = []
    for c in cells:
        s = dict(c.settings)
        n = a.updates
        budget = {k: s[k] for k in ("max_updates", "eval_every", "patience")}
        s.update(max_updates=n, eval_every=n, patience=1, max_test=8)
        d = dict(c.to_dict(), settings=s)
        t0 = time.perf_counter()
        r = run_cell(d)
        wall = time.perf_counter() - t0
        if r["status"] != "ok":
            print(f"{c.cell_id}: {r['error']}", file=sys.stderr)
            continue
        per_update = float(r["sec_per_update"])
        per_val = float(r["eval_time_s"])  # one validation (+ a test of 8 sequences)
        fixed = max(0.0, wall - float(r["train_time_s"]) - per_val)
        n_test = load_task(c.task).sizes()["test"]
        n_test = n_test if c.settings["max_test"] is None else min(n_test, int(c.settings["max_test"]))
        test = per_val * n_test / max(int(r["n_val"]), 1)
        lo_updates = min(budget["max_updates"], (budget["patience"] + 1) * budget["eval_every"])
        cost = {u: u * per_update + (u // budget["eval_every"]) * per_val + fixed + test
                for u in (lo_updates, budget["max_updates"])}
        rows.append({"task": c.task, "model": c.model, "sec_per_update": per_update, "sec_per_validation": per_val,
                     **budget, "cell_s_min": cost[lo_updates], "cell_s_cap": cost[budget["max_updates"]],
                     "fixed_s": fixed, "test_s": test, "measured_wall_s": wall})
        print(f"{c.task:32s} {c.model:14s} {per_update:7.3f} s/update {per_val:7.2f} s/val  "
              f"cell {cost[lo_updates]:7.0f}..{cost[budget['max_updates']]:7.0f} s", flush=True)
    lo = sum(r["cell_s_min"] for r in rows) * a.seeds / a.cores
    hi = sum(r["cell_s_cap"] for r in rows) * a.seeds / a.cores
    print(f"\n{len(rows)} cells x {a.seeds} seeds on {a.cores} cores: {lo / 60:.0f} min (every cell stops at its "
          f"earliest) .. {hi / 60:.0f} min (every cell hits its cap)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"updates_timed": a.updates, "seeds": a.seeds, "cores": a.cores, "rows": rows,
                       "minutes_min": lo / 60, "minutes_cap": hi / 60}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
