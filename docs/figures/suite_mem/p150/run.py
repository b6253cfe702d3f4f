# copy_1000 under the memory protocol of 2026-12-07 (patience 150 x 200 updates; cap 120,000, since
# that night 400,000: recap.py carries cells over),
# one model's seeds into OUT, with a checkpoint every 2,000 updates so a killed run resumes mid-cell.
# Usage (from the repository root): python docs/figures/suite_mem/p150/run.py OUT MODEL SEED [SEED ...]
# Two processes (one per core) wrote runs/c1000-p150-A and -B; the report merges them:
#   tnd suite --report-only --out DIR --tasks copy_1000 --models tnd tnd_shared lstm lstm_chrono mlp --tuned none
# To resume the unfinished cells: copy docs/figures/suite_mem/p150/checkpoints/* into OUT/checkpoints/ first.
import sys

from tnd.apps.suite.sweep import SweepSpec, run_sweep

run_sweep(SweepSpec(tasks=["copy_1000"], models=[sys.argv[2]], seeds=[int(s) for s in sys.argv[3:]],
                    checkpoint_every=2000), sys.argv[1], backend="local", progress=False)
