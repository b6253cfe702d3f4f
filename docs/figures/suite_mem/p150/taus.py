# The time constants of a memory task's TND cells (copy_1000's here): at initialisation and at the best validation
# update of a training checkpoint (its "extra.best.*" tensors). Tests the guess that TND holds
# the symbols across 1,000 steps with slow leaky neurons (time constants of hundreds of steps).
# Usage (from the repository root): python docs/figures/suite_mem/p150/taus.py CHECKPOINT_DIR [...]
# (a cell's checkpoint folder is removed once the cell is done: keep a copy while it trains)
import glob
import json
import sys

import numpy as np
from safetensors.torch import load_file

from tnd.apps.suite.sweep import SweepSpec, build_cell_model, plan

Q = (0.0, 0.5, 0.9, 0.99, 1.0)
print("| cell | update (best) | tau at init: min / median / 90 % / 99 % / max | tau at best |")
print("|---|---|---|---|")
for d in sys.argv[1:]:
    manifest = json.loads(open(f"{d}/checkpoint.json").read())
    cfg = manifest["fingerprint"]["suite_train"]
    task_name, model_name = d.rstrip("/").split("/")[-1].split("__")[:2]
    (cell,), _ = plan(SweepSpec(tasks=[task_name], models=[model_name], seeds=[int(cfg["seed"])]))
    _, m, _ = build_cell_model(cell.to_dict())  # the cell's own init, as the sweep builds it
    init = m.cell.dynamics.tau().detach().flatten().numpy()
    last = sorted(glob.glob(f"{d}/ckpt-*.safetensors"))[-1]
    t = load_file(last)
    m.load_state_dict({k[len("extra.best."):]: v for k, v in t.items() if k.startswith("extra.best.")})
    best = m.cell.dynamics.tau().detach().flatten().numpy()
    fmt = lambda a: " / ".join(f"{v:.1f}" for v in np.quantile(a, Q))  # noqa: E731
    print(f"| {model_name}, seed {cfg['seed']} | {last.split('-')[-1].split('.')[0].lstrip('0')} "
          f"({manifest['state']['best_step']}) | {fmt(init)} | {fmt(best)} |")
