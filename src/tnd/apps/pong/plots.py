"""The plots of a Pong run: scores per model, learning curves, the catch distribution, a frame strip.

Figures are built with :func:`tnd.apps.viz.new_figure` (no pyplot) and written by
:func:`tnd.apps.viz.save_figure`, so identical results give byte-identical PNGs. Legends sit
outside the data. Counts of consecutive catches are drawn on a linear axis up to
:data:`LINEAR_CATCHES_MAX`; above that (the cap can be 100 or more while most rounds end
after a few catches) on a symmetric-log axis with plain-number ticks 0, 1, 2, 5, 10, 20, ...
matplotlib is imported when a plot is made, not when this module is.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LINEAR_CATCHES_MAX",
    "catch_count_axis",
    "plot_bars",
    "plot_catch_distribution",
    "plot_learning_curves",
    "save_frame_strip",
]

LINEAR_CATCHES_MAX = 20  # a catch-count axis up to this is linear, above it symmetric-log
DPI = 110
TND_COLOR = "tab:blue"
BASELINE_COLOR = "tab:purple"
REFERENCE_COLORS = {"expert": "tab:green", "tracker": "tab:orange", "random": "tab:gray"}


def _ticks_1_2_5(top: float) -> list[float]:
    """0, 1, 2, 5, 10, 20, 50, ... up to ``top``, and ``top`` itself unless a tick lies close below it."""
    ticks = [0.0]
    for e in range(int(math.floor(math.log10(top))) + 1):
        ticks += [float(m * 10 ** e) for m in (1, 2, 5) if m * 10 ** e <= top]
    if top / ticks[-1] > 1.4:
        ticks.append(float(top))
    return ticks


def catch_count_axis(ax: Any, top: float, *, headroom: float = 1.12) -> None:
    """Scale ``ax``'s y axis for counts of consecutive catches in ``[0, top]`` (see the module docstring)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

    top = max(float(top), 1.0)
    if top <= LINEAR_CATCHES_MAX:
        ax.set_ylim(-0.03 * top, headroom * top)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        return
    ax.set_yscale("symlog", linthresh=1.0, linscale=0.6)
    ax.yaxis.set_major_locator(FixedLocator(_ticks_1_2_5(top)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylim(-0.05, top * headroom ** 3)  # log-like axis: the same headroom in pixels needs more range


def _viz():
    from tnd.apps import viz

    return viz


def _value(x: Any) -> float:
    return float("nan") if x is None else float(x)


def plot_bars(results: dict[str, Any], path: str | Path) -> None:
    """Catch rate and mean consecutive catches per model (bar: pooled over seeds, whisker: 95 %
    bootstrap CI over seeds, dots: seeds), then the reference policies as hatched bars; the
    value is written above every bar."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    viz = _viz()
    models = results["models"]
    refs = results.get("references", {})
    names = list(models) + list(refs)
    cap = results["config"]["max_catches"]
    fig = viz.new_figure((max(9.0, 1.1 * len(names) + 2.0), 4.8))
    axes = fig.subplots(1, 2)
    x = np.arange(len(names))
    for ax, key, ylabel in ((axes[0], "catch_rate", "catch rate (catches / (catches + misses))"),
                            (axes[1], "mean_consecutive_catches", "mean consecutive catches per round")):
        vals = np.array([_value(models[n][key]) for n in models] + [_value(r[key]) for r in refs.values()])
        cols = [TND_COLOR if n.startswith("tnd") else BASELINE_COLOR for n in models] + \
               [REFERENCE_COLORS.get(n, "0.5") for n in refs]
        ax.bar(x, vals, color=cols, alpha=0.85, edgecolor="black", linewidth=0.5,
               hatch=[""] * len(models) + ["//"] * len(refs))
        tops = vals.copy()
        for i, n in enumerate(models):
            ci = [_value(c) for c in models[n][key + "_ci"]]
            if all(math.isfinite(c) for c in ci) and math.isfinite(vals[i]):
                ax.errorbar([i], [vals[i]], yerr=[[max(vals[i] - ci[0], 0.0)], [max(ci[1] - vals[i], 0.0)]],
                            color="black", capsize=4, lw=1.2, zorder=3)
                tops[i] = max(vals[i], ci[1])
            seeds = models[n][key + "_per_seed"]
            ax.scatter(np.full(len(seeds), i), seeds, color="black", s=10, zorder=4)
        for i, (v, t) in enumerate(zip(vals, tops)):
            if math.isfinite(v):
                ax.annotate(f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}", (i, t), xytext=(0, 3), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7)
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        if key == "catch_rate":
            ax.set_ylim(0, 1.12)
            ax.set_title("catch rate (pooled over rounds and seeds)", fontsize=10)
        else:
            catch_count_axis(ax, max([cap] + [float(v) for v in tops if math.isfinite(v)]), headroom=1.15)
            ax.set_title(f"mean consecutive catches per round (cap {cap})", fontsize=10)
    handles = [Patch(color=TND_COLOR, alpha=0.85, label="TND model"),
               Patch(color=BASELINE_COLOR, alpha=0.85, label="baseline model"),
               Line2D([], [], color="black", marker="|", markersize=10, lw=1.2, label="95% bootstrap CI over seeds"),
               Line2D([], [], color="black", marker="o", markersize=3.5, linestyle="none", label="one training seed")]
    if refs:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="reference policy (no training)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle("Pong behaviour cloning: models (bars pooled over seeds) and reference policies", fontsize=11)
    viz.save_figure(fig, path, dpi=DPI)


def plot_learning_curves(results: dict[str, Any], path: str | Path) -> None:
    """Validation loss and accuracy against gradient steps (one line per seed, one colour per model)."""
    viz = _viz()
    models = results["models"]
    fig = viz.new_figure((11.0, 4.2))
    axes = fig.subplots(1, 2)
    palette = [f"C{k}" for k in range(10)]
    for k, (name, m) in enumerate(models.items()):
        for j, hist in enumerate(m["learning_curves"]):
            if not hist:
                continue
            st = [h["step"] for h in hist]
            kw = {"color": palette[k % 10], "alpha": 0.8, "lw": 1.2, "label": name if j == 0 else None}
            axes[0].plot(st, [h["val_loss"] for h in hist], **kw)
            axes[1].plot(st, [h["val_accuracy"] for h in hist], **kw)
    axes[0].set_ylabel("validation cross-entropy (lower is better)")
    axes[1].set_ylabel("validation action accuracy (higher is better)")
    for ax in axes:
        ax.set_xlabel("gradient step")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="model", title_fontsize=8)
    fig.suptitle("Learning curves on the validation windows (one line per training seed)", fontsize=11)
    viz.save_figure(fig, path, dpi=DPI)


def plot_catch_distribution(results: dict[str, Any], path: str | Path) -> None:
    """Consecutive catches of every evaluation round (pooled over seeds): a box per model and per
    reference policy, every round as a jittered dot, the cap as a dotted line."""
    viz = _viz()
    entries = [(n, m, False) for n, m in results["models"].items()] + \
              [(f"{n} (reference)", r, True) for n, r in results.get("references", {}).items()]
    data = [[x for r in e["per_round_catches"] for x in r] for _, e, _ in entries]
    cap = results["config"]["max_catches"]
    fig = viz.new_figure((max(8.0, 1.0 * len(entries) + 2.5), 4.4))
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    ax.boxplot(data, showfliers=False, widths=0.6, medianprops={"color": "black", "lw": 1.5})
    for i, (d, (_, _, is_ref)) in enumerate(zip(data, entries)):
        ax.scatter(i + 1 + rng.uniform(-0.2, 0.2, len(d)), d, s=6, alpha=0.4,
                   color="tab:gray" if is_ref else TND_COLOR, zorder=3)
    ax.set_xticks(np.arange(1, len(entries) + 1), [n for n, _, _ in entries], rotation=30, ha="right")
    ax.set_ylabel("consecutive catches in one round")
    ax.axhline(cap, ls=":", color="black", lw=1)
    ax.annotate(f"cap {cap}", (1.0, cap), xycoords=("axes fraction", "data"), xytext=(3, 0),
                textcoords="offset points", va="center", fontsize=8)
    catch_count_axis(ax, cap)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title("Consecutive catches per evaluation round, every round of every seed\n"
                 "(box: quartiles, black line: median, dots: rounds)", fontsize=10)
    viz.save_figure(fig, path, dpi=DPI)


def save_frame_strip(frames: list[np.ndarray], steps: list[int], path: str | Path, title: str,
                     n: int = 12) -> None:
    """A strip of ``n`` evenly spaced frames (rgb arrays) with their step numbers."""
    if not frames:
        raise ValueError("no frames to draw")
    viz = _viz()
    pick = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int))
    fig = viz.new_figure((1.5 * len(pick), 1.9))
    axes = np.atleast_1d(fig.subplots(1, len(pick)))
    for ax, i in zip(axes, pick):
        ax.imshow(frames[i])
        ax.set_title(f"step {steps[i]}", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    viz.save_figure(fig, path, dpi=DPI)
