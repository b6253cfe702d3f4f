"""Benchmark tasks for neuron-wise sequence models (data side).

Usage::

    from tnd.apps.tasks import load_task, TASKS
    task = load_task("adding", seed=0, length=500)
    x, y = task.split("train")          # (N, T, C) float32, targets
    ts = task.timespans("train")        # (N, T) elapsed times (ones if regular)

Registered names (``sorted(TASKS)``):

* ``multiscale`` -- synthetic fast+slow memory classification (:mod:`.multiscale`)
* ``japanese_vowels``, ``italy_power_demand`` -- real data bundled in ``aeon`` (:mod:`.uea`)
* ``irregular_japanese_vowels`` (``drop=``), ``irregular_japanese_vowels_{30,50,70}``
  (:mod:`.irregular`)
* ``electricity`` -- Taylor half-hourly demand forecasting, bundled in ``pmdarima``
  (:mod:`.electricity`)
* ``sunspots`` -- monthly sunspot number a year ahead, bundled in ``pmdarima`` (:mod:`.sunspots`);
  ``sunspots_1913`` the same with the forecast origin 35 years earlier
* ``adding``, ``copy`` (``length=``), ``adding_{100,500,1000}``, ``copy_{100,500,1000}``
  (:mod:`.memory`)

The real-data tasks import ``aeon`` / ``pmdarima`` lazily, only when built, so
``import tnd.apps.tasks`` needs only torch and numpy.
"""

from .base import SPLITS, TASKS, SequenceTask, list_tasks, load_task, register_task
from . import electricity, irregular, memory, multiscale, sunspots, uea  # noqa: F401  (registration)
from .electricity import electricity_task
from .irregular import irregular_japanese_vowels_task
from .memory import adding_task, copy_task
from .multiscale import multiscale_task
from .sunspots import sunspots_task
from .uea import italy_power_demand_task, japanese_vowels_task

__all__ = [
    "SPLITS",
    "TASKS",
    "SequenceTask",
    "list_tasks",
    "load_task",
    "register_task",
    "multiscale_task",
    "japanese_vowels_task",
    "italy_power_demand_task",
    "irregular_japanese_vowels_task",
    "electricity_task",
    "sunspots_task",
    "adding_task",
    "copy_task",
]
