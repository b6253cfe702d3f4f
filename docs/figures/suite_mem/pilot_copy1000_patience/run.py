# Pilot: does a model leave copy_1000's chance plateau if patience never ends training?
# The suite's copy_1000 protocol with patience 150 x 200 updates, run 2026-12-07 while the cap
# was 30,000 (cells lstm 0, tnd 1) and 60,000 (lstm 1; tnd 2 and tnd_shared 0, stopped unfinished:
# unfinished_histories.json). Since then patience 150 is the protocol itself (cap 120,000).
# Usage: python run.py MODEL SEED [SEED ...]   (cells in runs/pilot-copy1000-patience/)
import sys

from tnd.apps.suite.sweep import SweepSpec, run_sweep

run_sweep(SweepSpec(tasks=["copy_1000"], models=[sys.argv[1]], seeds=[int(s) for s in sys.argv[2:]],
                    overrides={"patience": 150}, checkpoint_every=5000),
          "runs/pilot-copy1000-patience", backend="local", progress=False)
