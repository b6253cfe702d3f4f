"""``tnd suite``: benchmarks beyond Pong -- multi-timescale, irregularly sampled and real data,
long-range memory -- over TND and its peers, with sweeps that run locally or on Ray.

* :mod:`.models` -- every model by name, parameter-matched (incl. the torchdiffeq ODE-RNN);
* :mod:`.train` -- the seeded training/evaluation protocol shared by all models;
* :mod:`.sweep` -- the resumable models x tasks x seeds x topologies grid (local or Ray);
* :mod:`.cli` -- the ``tnd suite`` command;
* :mod:`.tuning_spaces`, :mod:`.tune` -- every model's search space, and ``tnd suite tune``: the
  equal-budget search per (task, model) on the validation split (``tnd suite --tuned``).

Importing this package needs neither Ray nor the real-data packages (aeon, pmdarima).
"""

from .models import MODEL_NAMES, ODERNN, TND_NAMES, TOPOLOGIES, build_model
from .sweep import (DEFAULT_MODELS, DEFAULT_SEEDS, DEFAULT_TASKS, FULL_MODELS, FULL_TASKS, SweepSpec, plan, run_cell,
                    run_sweep)
from .train import TrainConfig, train_and_evaluate

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_SEEDS",
    "DEFAULT_TASKS",
    "FULL_MODELS",
    "FULL_TASKS",
    "MODEL_NAMES",
    "ODERNN",
    "TND_NAMES",
    "TOPOLOGIES",
    "SweepSpec",
    "TrainConfig",
    "build_model",
    "plan",
    "run_cell",
    "run_sweep",
    "train_and_evaluate",
]
