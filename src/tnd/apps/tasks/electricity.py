"""``electricity``: multi-step forecasting of half-hourly electricity demand.

Data
----
Taylor (2003): half-hourly electricity demand in England and Wales, Monday 5 June
2000 to Sunday 27 August 2000 (12 weeks, 4032 values, megawatts), with a daily
(48-step) and a weekly (336-step) cycle.  It is bundled in the ``pmdarima`` wheel
as a literal array and loaded offline with ``pmdarima.datasets.load_taylor()``.

Windows and splits
------------------
* Chronological split of the *target* time axis at week boundaries: weeks 1-8
  (steps 0..2687) train, weeks 9-10 (2688..3359) validation, weeks 11-12
  (3360..4031) test.  A window's input (``input_len`` steps, default 336 = one
  week) may reach back before its split's start -- only the forecast targets are
  required to lie inside the split, so target sets are disjoint.
* Each sample: ``x`` = the ``input_len`` preceding normalised values,
  ``y`` = the next ``horizon`` values (default 48 = one day), shape
  ``(N, horizon)``; ``output_size = horizon``, ``kind = "forecast"``, per sequence.
  Windows are taken every ``stride`` steps (default 1).
* Normalisation: ``(v - mean) / std`` with mean/std of the training weeks only
  (``metadata["mean"]``, ``metadata["std"]`` to undo it).
* Residual forecasting: ``base_forecast_<split>`` holds each window's seasonal-naive forecast
  (the value one week earlier of every target step, always observed at forecast time since
  ``horizon <= WEEK``), and a model's prediction is that plus its output
  (:class:`~tnd.apps.tasks.base.SequenceTask`), so a model that outputs zero scores
  ``seasonal_naive_mse`` and beating it is possible. Every window's first target therefore lies
  at least a week into the series (windows start at ``max(input_len, WEEK)``).
* ``time_features=True`` appends 4 channels: sin/cos of the time-of-day and
  day-of-week phase of each input step (C = 5 instead of 1).

Reference scores (normalised units, on the test windows, in ``metadata``)
--------------------------------------------------------------------------
* ``seasonal_naive_mse``: predict each target by the value one week (336 steps)
  earlier;  ``seasonal_naive_mse_mw2`` is the same in MW^2.
* ``daily_naive_mse``: the value one day (48 steps) earlier (for horizon <= 48
  this is always an observed value at forecast time).
* ``last_value_mse``: repeat the last input value; ``mean_mse``: predict 0.

``metadata["target_start_<split>"]`` gives the absolute index of every window's
first target step.  ``small=True`` uses ``input_len=96``, ``horizon=12`` and
``stride=48`` (a few dozen windows per split).
"""

from __future__ import annotations

import numpy as np

from .base import SequenceTask, forecast_windows, pmdarima_series, register_task, to_x

__all__ = ["electricity_task", "load_taylor_series", "DAY", "WEEK"]

DAY = 48
WEEK = 336


def load_taylor_series() -> np.ndarray:
    """The 4032 half-hourly demand values (MW) as float64, loaded offline from pmdarima."""
    return pmdarima_series("load_taylor", "electricity")


def electricity_task(
    seed: int = 0,
    small: bool = False,
    input_len: int | None = None,
    horizon: int | None = None,
    stride: int | None = None,
    time_features: bool = False,
    train_weeks: int = 8,
    val_weeks: int = 2,
) -> SequenceTask:
    """Forecast the next ``horizon`` half-hours from the last ``input_len`` (see module doc).

    ``seed`` is accepted for a uniform API; the task is deterministic.
    """
    input_len = input_len or (96 if small else WEEK)
    horizon = horizon or (12 if small else DAY)
    stride = stride or (48 if small else 1)
    raw = load_taylor_series()
    n = len(raw)
    b1, b2 = train_weeks * WEEK, (train_weeks + val_weeks) * WEEK
    if not 1 <= horizon <= WEEK:
        raise ValueError(f"horizon must be in [1, {WEEK}] (the seasonal-naive base is a week old), got {horizon}")
    if not (input_len < b1 < b2 < n):
        raise ValueError("split boundaries / input_len do not fit the 4032-step series")
    mean, std = float(raw[:b1].mean()), float(raw[:b1].std())
    v = (raw - mean) / std

    t = np.arange(n)
    phase_d = 2 * np.pi * (t % DAY) / DAY
    phase_w = 2 * np.pi * (t % WEEK) / WEEK
    feats = np.stack([np.sin(phase_d), np.cos(phase_d), np.sin(phase_w), np.cos(phase_w)], axis=1)

    ranges = {"train": (input_len, b1), "val": (b1, b2), "test": (b2, n)}
    data, meta = {}, {}
    for s, (lo, hi) in ranges.items():
        lo = max(lo, input_len, WEEK)  # the seasonal-naive base needs the week before each target
        starts = np.arange(lo, hi - horizon + 1, stride)
        x, y, yi = forecast_windows(v, starts, input_len, horizon)
        x = x[:, :, None]
        if time_features:
            xi = starts[:, None] + np.arange(-input_len, 0)[None, :]
            x = np.concatenate([x, feats[xi]], axis=2)
        data[s] = (x, y, yi)
        meta[f"target_start_{s}"] = starts.tolist()

    # reference forecasts on the test windows
    _, y_te, yi_te = data["test"]
    week_ago = v[yi_te - WEEK]
    day_ago = v[yi_te - DAY]
    last = v[yi_te[:, :1] - 1]
    meta.update(
        seasonal_naive_mse=float(np.mean((y_te - week_ago) ** 2)),
        seasonal_naive_mse_mw2=float(np.mean((raw[yi_te] - raw[yi_te - WEEK]) ** 2)),
        seasonal_naive_mse_val=float(np.mean((data["val"][1] - v[data["val"][2] - WEEK]) ** 2)),
        daily_naive_mse=float(np.mean((y_te - day_ago) ** 2)),
        last_value_mse=float(np.mean((y_te - last) ** 2)),
        mean_mse=float(np.mean(y_te**2)),
        base_forecast="seasonal naive",
        mean=mean, std=std, units="MW", sampling="30 min",
        input_len=input_len, horizon=horizon, stride=stride, time_features=time_features,
        split_boundaries=[b1, b2, n], seed=seed, small=small, metric="mse (normalised units)",
        source="pmdarima.datasets.load_taylor",
        channels=["demand (normalised)"] + (
            ["sin day", "cos day", "sin week", "cos week"] if time_features else []),
    )
    return SequenceTask(
        name="electricity",
        kind="forecast",
        x_train=to_x(data["train"][0]), y_train=to_x(data["train"][1]),
        x_val=to_x(data["val"][0]), y_val=to_x(data["val"][1]),
        x_test=to_x(data["test"][0]), y_test=to_x(data["test"][1]),
        base_forecast_train=to_x(v[data["train"][2] - WEEK]), base_forecast_val=to_x(v[data["val"][2] - WEEK]),
        base_forecast_test=to_x(v[data["test"][2] - WEEK]),
        output_size=horizon,
        per_step=False,
        metadata=meta,
    )


register_task("electricity", electricity_task)
