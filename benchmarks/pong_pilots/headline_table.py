"""The README's Pong headline table from a `tnd pong` run folder (finished cells; partial runs too).

Usage: python benchmarks/pong_pilots/headline_table.py RUN_FOLDER

One row per model with at least one finished cell: parameters, pooled catch rate and mean
consecutive catches with percentile-bootstrap CIs over seeds (the run report's own aggregation,
`tnd.apps.pong.report.aggregate_model`), the per-seed scores, rounds at the cap, the shifted
environments, how the DAgger trainings ended (every iteration of every seed: ended by early
stopping or at the step cap; the longest one in steps), the kept DAgger iteration per seed and
the CPU seconds per cell. The reference policies (expert, tracker, random) come from the run's
results.json when it has one.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tnd.apps.pong import report
from tnd.apps.pong.shifts import SHIFT_NAMES as SHIFTS


def ci(entry: dict, nd: int = 2) -> str:
    return report.format_number(entry["mean_consecutive_catches"], nd) + report.format_ci(
        entry.get("mean_consecutive_catches_ci"), nd)


def cells_by_model(run: Path) -> dict[str, list[dict]]:
    """Every finished cell's metrics.json of the run folder, by model."""
    cells: dict[str, list[dict]] = {}
    for m in sorted(run.glob("cells/*/seed-*/metrics.json")):
        c = json.loads(m.read_text())
        cells.setdefault(c["model"], []).append(c)
    return cells


def trainings(cell: dict) -> list[dict]:
    """A cell's training records: one per DAgger iteration, or its one behaviour-cloning training."""
    dag = cell.get("dagger")
    return [it["train"] for it in dag["iterations"]] if dag else [cell["train"]]


def main(run: Path) -> None:
    cells = cells_by_model(run)
    order = json.loads((run / "config.json").read_text())["models"]
    order = order + sorted(set(cells) - set(order))  # cells of a resume that added models
    print("| model | params | catch rate [95% CI] | mean consecutive catches [95% CI] | per seed | rounds at cap "
          "| ball x1.25 | paddle x0.75 | serves to 70° | trainings ended early | longest training (steps) "
          "| kept iteration | CPU s / cell |")
    print("|---|---:|---|---|---|---:|---|---|---|---:|---:|---|---:|")
    for name in [n for n in order if n in cells]:
        cs = sorted(cells[name], key=lambda c: c["seed"])
        a = report.aggregate_model(name, cs)
        iters = [t for c in cs for t in trainings(c)]
        early = sum(bool(t["stopped_early"]) for t in iters)
        kept = "/".join(str((c.get("dagger") or {}).get("selected_iteration", "-")) for c in cs)
        per_seed = " / ".join(f"{x:.1f}" for x in a["mean_consecutive_catches_per_seed"])
        cpu = [c["cpu_time_s"] for c in cs]
        seeds = "" if len(cs) == 5 else f" ({len(cs)} seeds)"
        print(f"| {name}{seeds} | {a['params']} | {report.format_number(a['catch_rate'])}"
              f"{report.format_ci(a['catch_rate_ci'], 3)} | {ci(a)} | {per_seed} | {a['rounds_at_cap']}/{a['rounds']} | "
              + " | ".join(ci(a["shifts"][s]) if s in a["shifts"] else "n/a" for s in SHIFTS)
              + f" | {early}/{len(iters)} | {max(t['steps'] for t in iters):,} | {kept} | "
              f"{min(cpu):.0f}-{max(cpu):.0f} |")
    res = run / "results.json"
    if res.is_file():
        for name, r in json.loads(res.read_text()).get("references", {}).items():
            sh = r.get("shifts") or {}
            print(f"| *{name}* | - | {report.format_number(r['catch_rate'])} | {r['mean_consecutive_catches']:.2f} | - | "
                  f"{r['rounds_at_cap']}/{r['rounds']} | "
                  + " | ".join(f"{sh[s]['mean_consecutive_catches']:.2f}" if s in sh else "n/a" for s in SHIFTS)
                  + " | - | - | - | - |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
