"""The spectrum of learned time constants: did the neurons specialise to different timescales?

``spectra`` maps a label to an ``(N,)`` or ``(N, d)`` array of positive time constants. A
2-D array contributes all its ``N * d`` values (each neuron has ``d`` time constants); the
annotation says so. Values are counted as distinct when they differ by more than a relative
:data:`DISTINCT_RTOL` (so float noise in a shared F still counts as one value).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ._common import (
    VizInputError,
    as_array,
    check_ax,
    check_title,
    new_figure,
    plain_log_ticks,
)
from .graph import TAU_LABEL

__all__ = ["DISTINCT_RTOL", "TIMESCALES_SIZE", "plot_time_constants", "time_constant_stats"]

TIMESCALES_SIZE = (10.0, 6.0)  # inches: 1000 x 600 pixels at dpi=100, whatever the number of labels
DISTINCT_RTOL = 1e-6
HIST_BINS = 30
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def time_constant_stats(values: Any, name: str = "values") -> dict[str, float | int]:
    """``n``, ``distinct``, ``min``, ``median``, ``max`` and ``ratio`` (max/min) of positive time constants."""
    v = np.sort(as_array(name, values, (1, 2), positive=True).ravel())
    if v.size == 0:
        raise ValueError(f"{name} must hold at least one time constant, got an empty array")
    distinct = 1 + int(np.count_nonzero(v[1:] > v[:-1] * (1.0 + DISTINCT_RTOL)))
    return {"n": int(v.size), "distinct": distinct, "min": float(v[0]), "median": float(np.median(v)),
            "max": float(v[-1]), "ratio": float(v[-1] / v[0])}


def _collect(spectra: Any) -> dict[str, tuple[np.ndarray, bool]]:
    if not isinstance(spectra, dict) or not spectra:
        got = "an empty dict" if isinstance(spectra, dict) else type(spectra).__name__
        raise ValueError(f"spectra must be a non-empty dict label -> (N,) or (N, d) time constants, got {got}")
    out = {}
    for label, values in spectra.items():
        if not isinstance(label, str):
            raise VizInputError(f"spectra keys must be str labels, got {type(label).__name__} {label!r}")
        arr = as_array(f"spectra[{label!r}]", values, (1, 2), positive=True)
        if arr.size == 0:
            raise ValueError(f"spectra[{label!r}] must hold at least one time constant, got shape {tuple(arr.shape)}")
        out[label] = (np.sort(arr.ravel()), arr.ndim == 2 and arr.shape[1] > 1)
    return out


def _annotation(st: dict[str, Any], flat: bool) -> str:
    return (f"n = {st['n']}{' (N x d values)' if flat else ''}, distinct = {st['distinct']}\n"
            f"min {st['min']:.3g}, median {st['median']:.3g}, max {st['max']:.3g}\n"
            f"max/min = {st['ratio']:.3g}")


def plot_time_constants(spectra: dict[str, Any], *, ax: Any = None, title: str | None = None) -> Figure:
    """Side-by-side spectra of learned time constants, one column per label.

    Top row: the sorted spectrum (rank vs tau, shared log y axis), annotated with the number
    of values and of distinct values, min/median/max and max/min. Bottom row: a histogram
    (fraction of values per log-spaced bin, shared log x axis). With ``ax``, all spectra
    are overlaid in that one Axes instead (rank as a fraction of N, statistics in the
    legend) and its figure is returned.
    """
    check_ax(ax)
    check_title(title)
    data = _collect(spectra)
    stats = {label: time_constant_stats(v, f"spectra[{label!r}]") for label, (v, _) in data.items()}
    lo = min(s["min"] for s in stats.values())
    hi = max(s["max"] for s in stats.values())
    if hi <= lo * (1.0 + DISTINCT_RTOL):
        lo, hi = lo / 1.5, hi * 1.5
    lim = (lo / 1.15, hi * 1.15)

    if ax is not None:
        for i, (label, (v, flat)) in enumerate(data.items()):
            st = stats[label]
            ax.plot((np.arange(v.size) + 0.5) / v.size, v, color=PALETTE[i % len(PALETTE)], lw=1.5,
                    marker="o" if v.size <= 64 else None, ms=3,
                    label=f"{label}: {st['distinct']} distinct, max/min {st['ratio']:.3g}")
        ax.set_yscale("log")
        ax.set_ylim(*lim)
        plain_log_ticks(ax.yaxis)
        ax.set_xlabel("rank / N (sorted)")
        ax.set_ylabel(TAU_LABEL)
        ax.legend(fontsize=7)
        ax.set_title(title if title is not None else "learned time constants", fontsize=10)
        return ax.figure

    fig = new_figure(TIMESCALES_SIZE)
    k = len(data)
    gs = fig.add_gridspec(2, k, height_ratios=(3, 2))
    bins = np.geomspace(lo, hi, HIST_BINS + 1)
    top0 = bot0 = None
    for i, (label, (v, flat)) in enumerate(data.items()):
        color = PALETTE[i % len(PALETTE)]
        top = fig.add_subplot(gs[0, i], sharey=top0)
        bot = fig.add_subplot(gs[1, i], sharex=bot0, sharey=bot0)
        top0, bot0 = top0 or top, bot0 or bot
        top.plot(np.arange(1, v.size + 1), v, color=color, lw=1.5, marker="o" if v.size <= 64 else None, ms=3)
        top.set_yscale("log")
        top.set_title(label, fontsize=9)
        top.set_xlabel("rank (sorted)", fontsize=8)
        top.text(0.03, 0.97, _annotation(stats[label], flat), transform=top.transAxes, fontsize=7, va="top",
                 ha="left", bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "#bbbbbb"})
        bot.hist(v, bins=bins, weights=np.full(v.size, 1.0 / v.size), color=color, alpha=0.8)
        bot.set_xscale("log")
        bot.set_xlabel(TAU_LABEL, fontsize=8)
        if i == 0:
            top.set_ylabel(TAU_LABEL, fontsize=8)
            bot.set_ylabel("fraction of values", fontsize=8)
        else:
            top.tick_params(labelleft=False)
            bot.tick_params(labelleft=False)
        for a in (top, bot):
            a.tick_params(labelsize=7, which="both")
    top0.set_ylim(*lim)
    plain_log_ticks(top0.yaxis)
    bot0.set_xlim(*lim)
    plain_log_ticks(bot0.xaxis)
    fig.suptitle(title if title is not None else "learned time constants", fontsize=11)
    return fig
