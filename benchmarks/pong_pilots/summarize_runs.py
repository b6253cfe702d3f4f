"""One line per finished cell of `tnd pong` run folders: catches, stopping step, best step.

Usage: python benchmarks/pong_pilots/summarize_runs.py RUN_FOLDER [RUN_FOLDER ...]
"""
import json, sys
from pathlib import Path
for run in sys.argv[1:]:
    for m in sorted(Path(run, "cells").glob("*/seed-*/metrics.json")):
        d = json.loads(m.read_text()); tr = d["train"]; ev = d["eval"]
        dag = d.get("dagger")
        print(run.split("/")[-1], d["model"], d["seed"], "catches", ev["mean_catches"], "cap", ev.get("rounds_at_cap"), "stop", tr.get("steps"), "best", tr.get("best_step"),
              "early", tr.get("stopped_early"), "acc %.3f" % tr.get("val_accuracy", float("nan")), "dagger" if dag else "")
