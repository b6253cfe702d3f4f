# Pilot: does the LSTM leave copy_100's chance plateau if patience never ends training?
# The suite's copy_100 protocol with patience 150 x 200 updates (longer than the 30,000-update cap).
from tnd.apps.suite.sweep import SweepSpec, run_sweep
run_sweep(SweepSpec(tasks=["copy_100"], models=["lstm"], seeds=[0, 1], overrides={"patience": 150}),
          "runs/pilot-copy-patience", backend="local", progress=False)
