"""One line per finished cell of `tnd pong` run folders: catches, stopping step, best step.

Usage: python benchmarks/pong_pilots/summarize_runs.py RUN_FOLDER [RUN_FOLDER ...]

For a DAgger cell the line shows its last training (the iteration's own stopping step).
"""
from __future__ import annotations

import sys
from pathlib import Path

from headline_table import cells_by_model, trainings  # this script's folder is on sys.path


def main(runs: list[str]) -> None:
    for run in map(Path, runs):
        for model, cells in cells_by_model(run).items():
            for d in sorted(cells, key=lambda c: c["seed"]):
                tr, ev = trainings(d)[-1], d["eval"]
                print(run.name, model, d["seed"], "catches", ev["mean_catches"], "cap", ev.get("rounds_at_cap"),
                      "stop", tr.get("steps"), "best", tr.get("best_step"), "early", tr.get("stopped_early"),
                      "acc %.3f" % tr.get("val_accuracy", float("nan")), "dagger" if d.get("dagger") else "")


if __name__ == "__main__":
    main(sys.argv[1:])
