"""Where the CPU time of a `tnd pong` run goes, and how fast its main job could be at best.

Usage: python benchmarks/pong_pilots/main_job_bound.py RUN_FOLDER [CORES]   (default 2 cores)

From the finished cells' own records (no timing here; every number is the run's): per model the
training steps per cell (all DAgger iterations), the steps spent after each training's best
validation (the patience that early stopping needs to see the plateau), the CPU seconds per cell
and CPU ms per training step (cell CPU / steps: evaluation, rollouts and validation included).
Then three bounds on the main job's wall time on CORES cores (cells in parallel, perfectly
packed): as run; if every model trained at the fastest sequence model's cost per step (the
same steps: the convergence rule unchanged); and if, in addition, no step were spent on
patience (not allowed by the protocol: shows how much of the cost the convergence rule is).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from headline_table import cells_by_model, trainings  # this script's folder is on sys.path

SEQUENCE_MODELS = ("tnd", "tnd_shared", "rnn", "sparse_rnn", "lstm", "cfc", "transformer")


def main(run: Path, cores: int) -> None:
    cells = cells_by_model(run)
    order = [n for n in json.loads((run / "config.json").read_text())["models"] if n in cells]
    rows = {}
    for name in order:
        cs = cells[name]
        steps = sum(t["steps"] for c in cs for t in trainings(c))
        patience = sum(t["steps"] - t["best_step"] for c in cs for t in trainings(c))
        cpu = sum(c["cpu_time_s"] for c in cs)
        rows[name] = {"cells": len(cs), "steps": steps, "patience": patience, "cpu": cpu, "ms": 1000 * cpu / steps}
    print("| model | cells | training steps / cell | of them after the best (patience) | CPU s / cell | CPU ms / step |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        n = r["cells"]
        print(f"| {name} | {n} | {r['steps'] / n:,.0f} | {r['patience'] / n:,.0f} ({100 * r['patience'] / r['steps']:.0f} %) "
              f"| {r['cpu'] / n:.0f} | {r['ms']:.2f} |")
    total_cpu = sum(r["cpu"] for r in rows.values())
    steps = sum(r["steps"] for r in rows.values())
    patience = sum(r["patience"] for r in rows.values())
    seq = [n for n in rows if n in SEQUENCE_MODELS]
    fastest = min(seq, key=lambda n: rows[n]["ms"]) if seq else min(rows, key=lambda n: rows[n]["ms"])
    ms = rows[fastest]["ms"]
    res = run / "results.json"
    wall = json.loads(res.read_text()).get("wall_time_s") if res.is_file() else None
    print()
    print(f"cells: {sum(r['cells'] for r in rows.values())}; training steps: {steps:,}, of them after the best: "
          f"{patience:,} ({100 * patience / steps:.0f} %); CPU in the cells: {total_cpu:,.0f} s"
          + (f"; the run's wall time: {wall:,.0f} s ({wall / 60:.0f} min)" if wall else ""))
    print(f"main job on {cores} cores, at best (CPU / cores):")
    print(f"  as run:                                               {total_cpu / cores / 60:6.1f} min")
    print(f"  every model at {fastest}'s {ms:.2f} ms per step, same steps:    {steps * ms / 1000 / cores / 60:6.1f} min")
    print(f"  the same, and no patience steps (outside the protocol): {(steps - patience) * ms / 1000 / cores / 60:6.1f} min")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) == 3 else 2)
