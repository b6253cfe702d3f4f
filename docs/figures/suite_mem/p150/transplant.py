# Carry the two unfinished patience pilots (tnd seed 2 at update 30,000; tnd_shared seed 0 at
# 35,000) into copy_1000's protocol (patience 150 x 200, cap 120,000) instead of training them again.
# Why this is exact: the cap only ends the loop (tnd.apps.training.fit has no schedule that reads
# it), and every other setting of the pilot is the protocol's; this script checks that, then
# writes the checkpoint under the protocol's cell key with the cap raised in its fingerprint.
# Usage (from the repository root): python docs/figures/suite_mem/p150/transplant.py PILOT_OUT NEW_OUT
import json
import shutil
import sys
from pathlib import Path

from tnd.apps.suite.sweep import SweepSpec, plan

pilot, new = Path(sys.argv[1]), Path(sys.argv[2])
for src in sorted((pilot / "checkpoints").iterdir()):
    cell_id = src.name.rsplit("-", 1)[0]
    model, seed = cell_id.split("__")[1], int(cell_id.rsplit("seed", 1)[1])
    (cell,), _ = plan(SweepSpec(tasks=["copy_1000"], models=[model], seeds=[seed]))
    manifest = json.loads((src / "checkpoint.json").read_text())
    old = manifest["fingerprint"]["suite_train"]["config"]
    want = {k: v for k, v in cell.settings.items() if k in old}
    differ = {k for k in want if old[k] != want[k]}
    if differ != {"max_updates"} or manifest["step"] >= want["max_updates"]:
        sys.exit(f"{src.name}: differs in {sorted(differ)} (step {manifest['step']}); not carried over")
    old["max_updates"] = want["max_updates"]
    dst = new / "checkpoints" / f"{cell.cell_id}-{cell.key}"
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / manifest["tensors_file"], dst / manifest["tensors_file"])
    (dst / "checkpoint.json").write_text(json.dumps(manifest, indent=1))
    print(f"{src.name} -> {dst} (step {manifest['step']})")
