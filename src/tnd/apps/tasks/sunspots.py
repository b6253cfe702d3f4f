"""``sunspots``: forecasting the monthly sunspot number a year ahead.

Data
----
The monthly mean sunspot number, January 1749 to December 1983 (2,820 months), with the ~11-year
(~132-month) solar cycle of varying length and amplitude and month-to-month noise about a fifth of
the cycle's range. It is bundled in the ``pmdarima`` wheel and loaded offline with
``pmdarima.datasets.load_sunspots()``.

Windows and splits
------------------
* Chronological split of the *target* time axis at whole years: 1749-1912 train (months
  0..1967), 1913-1947 validation (1968..2387), 1948-1983 test (2388..2819; holds cycle 19, the
  largest on record, so the test years are harder than the training ones). A window's input
  (``input_len`` months, default 132 = one solar cycle) may reach back before its split's start;
  only the targets must lie inside it, so target sets are disjoint.
* ``train_years``/``val_years``/``test_years`` move the forecast origin: ``sunspots_1913`` (a
  second origin, 35 years earlier: train 1749-1877, validation 1878-1912, test 1913-1947) asks
  whether a ranking on the default test years, which hold cycle 19, carries to ordinary cycles.
* Each sample: ``x`` = the ``input_len`` preceding normalised values, ``y`` = the next
  ``horizon`` values (default 12 = one year), ``output_size = horizon``, ``kind = "forecast"``.
  Windows every ``stride`` months (default 1).
* Normalisation: ``(v - mean) / std`` with mean/std of the training months only.
* Residual forecasting: ``base_forecast_<split>`` is the persistence forecast (the last observed
  month, repeated over the horizon), so a model that outputs zero scores ``persistence_mse``.

Reference scores (normalised units, test windows, in ``metadata``)
------------------------------------------------------------------
* ``persistence_mse`` (and ``persistence_mse_val``): the base forecast.
* ``linear_ar_mse``: a linear autoregression on the same input window (ridge, the residual on
  persistence, fit on the training windows, its penalty chosen on validation among
  ``LINEAR_AR_PENALTIES``; ``linear_ar_params`` weights): the simple model a learned one should
  also beat.
* ``cycle_naive_mse``: the value one nominal cycle (132 months) earlier; ``mean_mse``: predict 0.

``small=True`` uses ``input_len=24``, ``horizon=6``, ``stride=12`` (a few dozen windows per split).
"""

from __future__ import annotations

from functools import partial

import numpy as np

from tnd.checks import check_positive_int

from .base import SequenceTask, forecast_windows, pmdarima_series, register_task, to_x

__all__ = ["sunspots_task", "load_sunspots_series", "CYCLE", "LINEAR_AR_PENALTIES"]

#: nominal solar cycle in months
CYCLE = 132
#: ridge penalties the linear-autoregression reference chooses among (on validation)
LINEAR_AR_PENALTIES = (0.1, 1.0, 10.0, 100.0, 1000.0)
_YEAR = 12


def load_sunspots_series() -> np.ndarray:
    """The 2,820 monthly sunspot numbers (1749-1983) as float64, loaded offline from pmdarima."""
    return pmdarima_series("load_sunspots", "sunspots")


def _linear_ar(data: dict, base: dict) -> tuple[float, float, float]:
    """``(test MSE, validation MSE, penalty)`` of the ridge autoregression reference."""
    def design(x):
        return np.concatenate([x, np.ones((len(x), 1))], axis=1)

    a = design(data["train"][0])
    r = data["train"][1] - base["train"]
    best = None
    for lam in LINEAR_AR_PENALTIES:
        w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ r)
        val = float(np.mean((base["val"] + design(data["val"][0]) @ w - data["val"][1]) ** 2))
        if best is None or val < best[1]:
            test = float(np.mean((base["test"] + design(data["test"][0]) @ w - data["test"][1]) ** 2))
            best = (test, val, lam)
    return best


def sunspots_task(
    seed: int = 0,
    small: bool = False,
    input_len: int | None = None,
    horizon: int | None = None,
    stride: int | None = None,
    train_years: int = 164,
    val_years: int = 35,
    test_years: int | None = None,
) -> SequenceTask:
    """Forecast the next ``horizon`` months from the last ``input_len`` (see module doc).

    ``seed`` is accepted for a uniform API; the task is deterministic. ``test_years=None``: the
    test split runs to the end of the series (1983).
    """
    input_len = (24 if small else CYCLE) if input_len is None else input_len
    horizon = (6 if small else _YEAR) if horizon is None else horizon
    stride = (_YEAR if small else 1) if stride is None else stride
    raw = load_sunspots_series()
    for name, value in (("input_len", input_len), ("horizon", horizon), ("stride", stride)):
        check_positive_int(name, value)
    if test_years is not None:
        check_positive_int("test_years", test_years)
    b1, b2 = train_years * _YEAR, (train_years + val_years) * _YEAR
    n = len(raw) if test_years is None else b2 + test_years * _YEAR
    if not (max(input_len, CYCLE) < b1 < b2 < n - horizon and n <= len(raw)):
        raise ValueError(f"train_years/val_years/test_years/input_len: the splits must fit the {len(raw)}-month "
                         f"series with room for the inputs ({max(input_len, CYCLE)} months) and a test horizon, "
                         f"got boundaries {b1}, {b2}, {n}")
    mean, std = float(raw[:b1].mean()), float(raw[:b1].std())
    v = (raw - mean) / std

    ranges = {"train": (0, b1), "val": (b1, b2), "test": (b2, n)}
    data, base, meta = {}, {}, {}
    for s, (lo, hi) in ranges.items():
        lo = max(lo, input_len, CYCLE)  # the cycle-naive reference needs the cycle before each target
        starts = np.arange(lo, hi - horizon + 1, stride)
        data[s] = forecast_windows(v, starts, input_len, horizon)
        base[s] = np.repeat(v[starts - 1][:, None], horizon, axis=1)
        meta[f"target_start_{s}"] = starts.tolist()

    y_te, yi_te = data["test"][1], data["test"][2]
    ar_test, ar_val, ar_lam = _linear_ar(data, base)
    meta.update(
        persistence_mse=float(np.mean((y_te - base["test"]) ** 2)),
        persistence_mse_val=float(np.mean((data["val"][1] - base["val"]) ** 2)),
        linear_ar_mse=ar_test, linear_ar_mse_val=ar_val, linear_ar_penalty=ar_lam,
        linear_ar_params=(input_len + 1) * horizon,
        cycle_naive_mse=float(np.mean((y_te - v[yi_te - CYCLE]) ** 2)),
        mean_mse=float(np.mean(y_te**2)),
        base_forecast="persistence",
        mean=mean, std=std, units="sunspot number", sampling="1 month",
        input_len=input_len, horizon=horizon, stride=stride,
        split_boundaries=[b1, b2, n], seed=seed, small=small, metric="mse (normalised units)",
        source="pmdarima.datasets.load_sunspots", channels=["sunspot number (normalised)"],
    )
    return SequenceTask(
        name="sunspots",
        kind="forecast",
        x_train=to_x(data["train"][0][:, :, None]), y_train=to_x(data["train"][1]),
        x_val=to_x(data["val"][0][:, :, None]), y_val=to_x(data["val"][1]),
        x_test=to_x(data["test"][0][:, :, None]), y_test=to_x(data["test"][1]),
        base_forecast_train=to_x(base["train"]), base_forecast_val=to_x(base["val"]),
        base_forecast_test=to_x(base["test"]),
        output_size=horizon,
        per_step=False,
        metadata=meta,
    )


register_task("sunspots", sunspots_task)
# the second forecast origin (module doc): 35 years of test, as the default's 36
register_task("sunspots_1913", partial(sunspots_task, train_years=129, val_years=35, test_years=35))
