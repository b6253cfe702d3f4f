"""The figures of a suite run (one PNG per group of tasks) and its headline table.

Groups (:func:`task_group`): ``memory`` (adding, copy, multiscale), ``classification``
(japanese_vowels, italy_power_demand), ``irregular`` (irregular_japanese_vowels_*),
``forecasting`` (electricity, sunspots), ``other`` (any other task). ``suite_<group>.png`` has one
panel per task of the group: each model's test metric, mean over seeds (filled dot: TND,
square: baseline), its 95 % confidence interval over seeds (Student t, so it is wide for few
seeds; none for one seed), every seed as a small hollow dot, and the task's reference score
(chance accuracy, constant or seasonal-naive MSE) as a dashed line. Models are sorted best
first; accuracy is drawn in percent on [0, 100], MSE on a log axis when it spans more than a
decade. The PNGs are written by :func:`tnd.apps.viz.save_figure` (byte-identical for the
same results). Without matplotlib no figure is written and the report says so.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "GROUPS",
    "figures_section",
    "headline_table",
    "mean_ci95",
    "plot_task_group",
    "task_group",
    "write_group_figures",
]

GROUPS = ("memory", "classification", "irregular", "forecasting", "other")
GROUP_TITLES = {
    "memory": "memory tasks (adding, copy, multiscale)",
    "classification": "time-series classification",
    "irregular": "irregularly sampled classification",
    "forecasting": "forecasting",
    "other": "other tasks",
}
DPI = 100
TND_COLOR = "#1f77b4"
BASELINE_COLOR = "#d95f02"
REFERENCE_COLOR = "#444444"
# two-sided 95 % Student t quantiles t_{0.975, df} for df = 1..30
_T975 = (12.70620, 4.30265, 3.18245, 2.77645, 2.57058, 2.44691, 2.36462, 2.30600, 2.26216, 2.22814, 2.20099,
         2.17881, 2.16037, 2.14479, 2.13145, 2.11991, 2.10982, 2.10092, 2.09302, 2.08596, 2.07961, 2.07387,
         2.06866, 2.06390, 2.05954, 2.05553, 2.05183, 2.04841, 2.04523, 2.04227)
ReferenceOf = Callable[[dict[str, Any], str], "tuple[str, float] | None"]


def task_group(task: str) -> str:
    """The figure group of ``task`` (see the module docstring)."""
    if not isinstance(task, str):
        raise TypeError(f"task must be a task name (str), got {type(task).__name__}")
    if task.startswith("irregular_"):
        return "irregular"
    if task.startswith(("adding", "copy", "multiscale")):
        return "memory"
    if task in ("japanese_vowels", "italy_power_demand"):
        return "classification"
    if task.startswith(("electricity", "sunspots")):
        return "forecasting"
    return "other"


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean and its two-sided 95 % Student t interval (lo = hi = mean for one value)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values must hold at least one number, got none")
    m = statistics.fmean(vals)
    if len(vals) == 1:
        return m, m, m
    df = len(vals) - 1
    t = _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df  # within 0.1 % of the exact quantile
    half = t * statistics.stdev(vals) / math.sqrt(len(vals))
    return m, m - half, m + half


def _reference_label(name: str, value: float, metric: str) -> str:
    return f"{name} {100 * value:.1f} %" if metric == "accuracy" else f"{name} {value:.4g}"


def _draw_task(ax: Any, task: str, rows: Mapping[str, dict[str, Any]], ref: tuple[str, float] | None) -> None:
    any_row = next(iter(rows.values()))
    metric, hib = any_row["metric"], bool(any_row["higher_is_better"])
    scale = 100.0 if metric == "accuracy" else 1.0
    ordered = sorted(rows.items(), key=lambda kv: (-kv[1]["mean"] if hib else kv[1]["mean"], kv[0]))
    shown: list[float] = []
    for y, (label, a) in enumerate(ordered):
        vals = [scale * float(v) for v in a["values"]]
        m, lo, hi = mean_ci95(vals)
        tnd = str(a["model"]).startswith("tnd")
        color = TND_COLOR if tnd else BASELINE_COLOR
        if hi > lo:
            ax.plot([lo, hi], [y, y], color=color, lw=1.6, solid_capstyle="butt", zorder=2)
            ax.plot([lo, hi], [y, y], color=color, lw=0, marker="|", markersize=7, zorder=2)
        ax.scatter(vals, [y] * len(vals), s=14, facecolors="none", edgecolors=color, linewidths=0.8, zorder=3)
        ax.scatter([m], [y], s=36, marker="o" if tnd else "s", color=color, edgecolors="black", linewidths=0.5,
                   zorder=4)
        shown += vals + [m]
    ax.set_yticks(range(len(ordered)), [label for label, _ in ordered], fontsize=7)
    ax.set_ylim(len(ordered) - 0.5, -0.5)  # best model on top
    if ref is not None:
        ax.axvline(scale * ref[1], color=REFERENCE_COLOR, ls="--", lw=1.1, zorder=1)
        shown.append(scale * ref[1])
    if metric == "accuracy":
        ax.set_xlim(0, 100)
        xlabel = "test accuracy (%), higher is better"
    else:
        positive = [v for v in shown if v > 0]
        if positive and max(positive) / min(positive) > 10:
            from matplotlib.ticker import FuncFormatter

            ax.set_xscale("log")
            ax.set_xlim(min(positive) / 1.5, max(positive) * 1.5)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))  # 0.01, not 10^-2
        else:
            lo_x, hi_x = min(shown), max(shown)
            pad = 0.08 * (hi_x - lo_x) if hi_x > lo_x else 0.1 * max(abs(hi_x), 1e-3)
            ax.set_xlim(min(0.0, lo_x - pad) if lo_x >= 0 else lo_x - pad, hi_x + pad)
        xlabel = f"test {metric}, lower is better"
    if ref is not None:
        xlabel += f"\n(dashed: {_reference_label(ref[0], ref[1], metric)})"
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    n_seeds = sorted({int(a["n_seeds"]) for a in rows.values()})
    seeds_txt = f"{n_seeds[0]} seed{'s' if n_seeds[0] != 1 else ''}" if len(n_seeds) == 1 else \
        f"{n_seeds[0]}-{n_seeds[-1]} seeds"
    ax.set_title(f"{task} (T = {any_row.get('seq_len')}, {seeds_txt})", fontsize=9)


def plot_task_group(group: str, tasks: Sequence[str], agg: Mapping[str, Mapping[str, dict[str, Any]]],
                    references: Mapping[str, tuple[str, float] | None] | None = None) -> Any:
    """One figure with a panel per task of ``tasks`` (the aggregate rows of :func:`tnd.apps.suite.sweep.aggregate`)."""
    from matplotlib.lines import Line2D

    from tnd.apps.viz import new_figure

    tasks = [t for t in tasks if t in agg and agg[t]]
    if not tasks:
        raise ValueError(f"tasks must name at least one task with results in agg, got {list(tasks)!r}")
    references = references or {}
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    most = max(len(agg[t]) for t in tasks)
    fig = new_figure((max(8.0, 4.3 * ncols + 0.6), nrows * (0.3 * most + 1.7) + 1.1))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        _draw_task(ax, task, agg[task], references.get(task))
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    handles = [Line2D([], [], marker="o", color=TND_COLOR, markeredgecolor="black", lw=1.6, label="TND model: mean, 95% CI"),
               Line2D([], [], marker="s", color=BASELINE_COLOR, markeredgecolor="black", lw=1.6,
                      label="baseline: mean, 95% CI"),
               Line2D([], [], marker="o", linestyle="none", markerfacecolor="none", markeredgecolor="0.3",
                      label="one seed")]
    if any(references.get(t) for t in tasks):
        handles.append(Line2D([], [], color=REFERENCE_COLOR, ls="--", label="reference score"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"Suite, {GROUP_TITLES.get(group, group)}: test metric per model, best on top\n"
                 "(mean over seeds; 95% CI: Student t over seeds, running off the axis where wider)", fontsize=10)
    return fig


def write_group_figures(out: str | os.PathLike, agg: Mapping[str, Mapping[str, dict[str, Any]]],
                        order: Sequence[str], reference_of: ReferenceOf | None = None) -> dict[str, Path] | str:
    """Write ``<out>/suite_<group>.png`` for every group with results; tasks in ``order`` (then
    the rest, sorted). ``reference_of(row["reference"], metric)`` gives a task's reference
    score. Returns ``{group: path}``, or the reason no figure was written (no matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "no figures: they need matplotlib (pip install 'tnd[viz]')"
    from tnd.apps.viz import save_figure

    tasks = [t for t in order if t in agg] + sorted(t for t in agg if t not in order)
    refs: dict[str, tuple[str, float] | None] = {}
    for t in tasks:
        row = next(iter(agg[t].values()), None)
        refs[t] = reference_of(row["reference"], row["metric"]) if reference_of and row else None
    paths: dict[str, Path] = {}
    for group in GROUPS:
        members = [t for t in tasks if task_group(t) == group and agg[t]]
        if members:
            paths[group] = save_figure(plot_task_group(group, members, agg, refs), Path(out) / f"suite_{group}.png",
                                       dpi=DPI)
    return paths


def figures_section(figures: Mapping[str, Path] | str) -> list[str]:
    """Markdown lines of the report's figure section (links relative to the report)."""
    lines = ["## Figures", ""]
    if isinstance(figures, str):
        return lines + [figures + ".", ""]
    for group, path in figures.items():
        lines += [f"![{GROUP_TITLES.get(group, group)}]({Path(path).name})", ""]
    return lines


def headline_table(report_md: str) -> str:
    """The ``## Summary`` table of a suite report (heading and table), to print at the end of a run."""
    lines = report_md.splitlines()
    try:
        start = lines.index("## Summary")
    except ValueError:
        return ""
    block, seen_table = [lines[start]], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen_table = True
        elif seen_table or line.startswith("## "):
            break
        block.append(line)
    return "\n".join(block).strip()
