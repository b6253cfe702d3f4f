# Pilot: does the LSTM leave multiscale's 75 % plateau if patience never ends training?
# The suite's multiscale protocol with patience 60 x 50 (longer than the 3,000-update cap).
from tnd.apps.suite.sweep import SweepSpec, run_sweep
run_sweep(SweepSpec(tasks=["multiscale"], models=["lstm"], seeds=[0, 1], overrides={"patience": 60}),
          "runs/pilot-ms-patience/out", backend="local", progress=False)
