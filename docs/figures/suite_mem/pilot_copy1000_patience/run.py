# Pilot: does a model leave copy_1000's chance plateau if patience never ends training?
# The suite's copy_1000 protocol with patience 150 x 200 updates (longer than the 30,000-update
# cap, so every cell runs to the cap).
# Usage: python run.py MODEL SEED [SEED ...]   (cells in runs/pilot-copy1000-patience/)
import sys

from tnd.apps.suite.sweep import SweepSpec, run_sweep

run_sweep(SweepSpec(tasks=["copy_1000"], models=[sys.argv[1]], seeds=[int(s) for s in sys.argv[2:]],
                    overrides={"patience": 150}, checkpoint_every=5000),
          "runs/pilot-copy1000-patience", backend="local", progress=False)
