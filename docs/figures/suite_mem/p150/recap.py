# Carry copy_1000's cells and checkpoints over a raise of the update cap (120,000 -> 400,000 on
# 2026-12-07) instead of training them again. Why this is exact: the cap only ends the loop
# (tnd.apps.training.train_loop has no schedule that reads it), so
#  - a finished cell that stopped before the old cap (early stopping or a divergence) would have
#    stopped at the same update, with the same scores, under the new one: its result is re-keyed;
#  - a cell that hit the old cap continues from its latest checkpoint (a snapshot kept by snap.sh);
#  - an unfinished cell's checkpoint is re-keyed and resumes where it was.
# Every other setting must be the protocol's; the script checks that and skips what differs.
# Usage (from the repository root): python docs/figures/suite_mem/p150/recap.py NEW_OUT SRC [SRC ...]
#   SRC: a sweep folder (its cells/ and checkpoints/) or a folder of checkpoint folders (snap.sh's)
import json
import shutil
import sys
from pathlib import Path

from tnd.apps.suite.sweep import SweepSpec, plan

new, sources = Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]]


def protocol_cell(cell_id: str):
    model, seed = cell_id.split("__")[1], int(cell_id.rsplit("seed", 1)[1])
    (cell,), _ = plan(SweepSpec(tasks=[cell_id.split("__")[0]], models=[model], seeds=[seed]))
    return cell


def only_the_cap_differs(old: dict, cell, name: str) -> bool:
    want = {k: v for k, v in cell.settings.items() if k in old}
    differ = {k for k in want if old[k] != want[k]}
    if differ - {"max_updates"}:
        print(f"{name}: differs in {sorted(differ)}; not carried over")
        return False
    return True


done = set()
for src in sources:
    for f in sorted((src / "cells").glob("*.json")) if (src / "cells").is_dir() else []:
        d = json.loads(f.read_text())
        if d.get("status") != "ok":
            continue
        cell = protocol_cell(d["cell_id"])
        if not only_the_cap_differs(d["settings"], cell, f.name):
            continue
        if d["hit_cap"] or d["updates"] >= cell.settings["max_updates"]:
            print(f"{f.name}: ended at the old cap ({d['updates']}); continues from its checkpoint instead")
            continue
        d.update(settings=dict(cell.settings), max_updates=cell.settings["max_updates"], key=cell.key)
        (new / "cells").mkdir(parents=True, exist_ok=True)
        (new / "cells" / f.name).write_text(json.dumps(d, indent=1))
        done.add(d["cell_id"])
        print(f"{f.name}: stopped at {d['updates']} before the old cap -> re-keyed {cell.key}")
for src in sources:
    root = src / "checkpoints" if (src / "checkpoints").is_dir() else src
    for ck in sorted(p for p in root.iterdir() if (p / "checkpoint.json").is_file()):
        cell_id = ck.name.rsplit("-", 1)[0]
        if cell_id in done:
            continue
        cell = protocol_cell(cell_id)
        manifest = json.loads((ck / "checkpoint.json").read_text())
        old = manifest["fingerprint"]["suite_train"]["config"]
        if not only_the_cap_differs(old, cell, ck.name) or manifest["step"] >= cell.settings["max_updates"]:
            continue
        dst = new / "checkpoints" / f"{cell.cell_id}-{cell.key}"
        if (dst / "checkpoint.json").is_file() and json.loads((dst / "checkpoint.json").read_text())["step"] >= manifest["step"]:
            continue  # a later checkpoint of this cell is there already
        old["max_updates"] = cell.settings["max_updates"]
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        shutil.copy2(ck / manifest["tensors_file"], dst / manifest["tensors_file"])
        (dst / "checkpoint.json").write_text(json.dumps(manifest, indent=1))
        print(f"{ck} -> {dst} (step {manifest['step']})")
