"""Suite pilot (docs/SUITE.md, "Budgets"): one seed-0 cell of a suite task with another budget.

Usage: python benchmarks/pong_pilots/suite_memory_cell.py TASK MODEL MAX_UPDATES EVAL_EVERY PATIENCE
  e.g. suite_memory_cell.py adding_100 lstm 30000 200 25
"""
import json, sys
from tnd.apps.suite.sweep import run_cell, task_settings
task, model, maxu, ev, pat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = task_settings(task, overrides={"max_updates": maxu, "eval_every": ev, "patience": pat})
s["threads"] = 1
r = run_cell({"task": task, "model": model, "topology": "na" if not model.startswith("tnd") else "small_world", "seed": 0, "settings": s})
keep = {k: r.get(k) for k in ("status", "error", "updates", "best_update", "stopped_early", "hit_cap", "wall_time_s")}
keep.update({k: v for k, v in r.items() if k.startswith(("test_", "val_", "best_val"))})
print(task, model, json.dumps(keep, default=str)[:600], flush=True)
