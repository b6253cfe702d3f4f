"""Single-player Pong: environment, reference policies and expert demonstrations.

Needs the ``pong`` extra (gymnasium, numpy). Importing this package registers the
environment with Gymnasium (``import tnd`` does not), so either of these works::

    import tnd.apps.pong; gymnasium.make("tnd/SinglePlayerPong-v0")
    gymnasium.make("tnd.apps.pong:tnd/SinglePlayerPong-v0")   # Gymnasium imports the module

* :mod:`tnd.apps.pong.env` -- :class:`SinglePlayerPong` (physics and design decisions:
  docs/PONG.md).
* :mod:`tnd.apps.pong.policies` -- :class:`ExpertPolicy`, :class:`TrackerPolicy`,
  :class:`RandomPolicy`, :func:`evaluate_policy`, seed constants.
* :mod:`tnd.apps.pong.data` -- :func:`generate_demonstrations`, :func:`make_windows`,
  :func:`train_val_split`, :func:`save_dataset`, :func:`load_dataset`.
"""

from __future__ import annotations

ENV_ID = "tnd/SinglePlayerPong-v0"
ENTRY_POINT = "tnd.apps.pong.env:SinglePlayerPong"


def register_envs() -> None:
    """Register ``tnd/SinglePlayerPong-v0`` with Gymnasium; safe to call repeatedly."""
    import gymnasium

    if ENV_ID in gymnasium.registry:
        return
    gymnasium.register(id=ENV_ID, entry_point=ENTRY_POINT)


register_envs()

from .env import (  # noqa: E402
    ACTION_DOWN,
    ACTION_STAY,
    ACTION_UP,
    OBS_MODES,
    PongState,
    SinglePlayerPong,
    pixels_from_positions,
)
from .data import (  # noqa: E402
    generate_demonstrations,
    load_dataset,
    make_metadata,
    make_windows,
    save_dataset,
    train_val_split,
)
from .policies import (  # noqa: E402
    DATA_SEED_BASE,
    EVAL_SEED_BASE,
    ExpertPolicy,
    RandomPolicy,
    TrackerPolicy,
    evaluate_policy,
    predict_intercept,
)

__all__ = [
    "ENV_ID",
    "register_envs",
    "ACTION_UP",
    "ACTION_STAY",
    "ACTION_DOWN",
    "OBS_MODES",
    "PongState",
    "SinglePlayerPong",
    "pixels_from_positions",
    "DATA_SEED_BASE",
    "EVAL_SEED_BASE",
    "ExpertPolicy",
    "TrackerPolicy",
    "RandomPolicy",
    "evaluate_policy",
    "predict_intercept",
    "generate_demonstrations",
    "make_metadata",
    "make_windows",
    "train_val_split",
    "save_dataset",
    "load_dataset",
]
