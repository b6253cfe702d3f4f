"""Neuron activity during a sequence (e.g. one Pong round), aligned under the task's state.

Panels, all on one time axis (``step * dt``): the ball's x/y and the paddle's y positions
(if given), the raster of neuron states (neurons x time, diverging colour map on [-1, 1];
values outside are drawn at the end colours), and the chosen actions (if given); events
such as catches and misses are vertical lines across all panels. A coloured strip left of
the raster shows each neuron's role.

States with ``d > 1`` components per neuron are flattened to ``N * d`` rows, neuron-major
(row ``k * d + c`` is component ``c`` of the ``k``-th neuron shown); nothing is hidden. Rows
are labelled ``n4 c0`` (neuron 4, component 0) when there are at most :data:`ROW_LABEL_MAX`
of them, else each neuron's block of ``d`` rows is labelled ``n4`` (every neuron up to
:data:`ROW_LABEL_MAX` neurons, evenly spaced ones beyond) and thin lines separate the blocks.
All legends sit in one row below the panels, outside the data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ._common import (
    ROLE_COLORS,
    ROLES,
    STATE_CMAP,
    VizInputError,
    as_array,
    as_ids,
    check_title,
    new_figure,
)

__all__ = ["ACTION_NAMES", "ACTIVITY_SIZE", "plot_activity"]

ACTIVITY_SIZE = (10.0, 8.0)  # inches: 1000 x 800 pixels at dpi=100
ACTION_NAMES = ("up", "stay", "down")  # action ids 0, 1, 2 of SinglePlayerPong
ROW_LABEL_MAX = 40  # every raster row is labelled up to this many rows
ROLE_ALIASES = {"input+output": "both"}


def _check_roles(roles: Any, n: int) -> list[str]:
    if isinstance(roles, (str, bytes)) or not hasattr(roles, "__len__"):
        raise ValueError(f"roles must be a sequence of {n} role strings, got {type(roles).__name__}")
    roles = list(roles)
    if len(roles) != n:
        raise ValueError(f"roles must have shape ({n},) (one per neuron of states), got ({len(roles)},)")
    out = []
    for i, r in enumerate(roles):
        r = ROLE_ALIASES.get(r, r) if isinstance(r, str) else r
        if r not in ROLES:
            raise ValueError(f"roles[{i}] must be one of {ROLES}, got {r!r}")
        out.append(r)
    return out


def _check_events(events: Any, t_steps: int) -> list[tuple[float, str]]:
    if isinstance(events, (str, bytes, dict)) or not hasattr(events, "__iter__"):
        raise ValueError(f"events must be a list of (t, label) pairs, got {type(events).__name__}")
    out = []
    for i, ev in enumerate(events):
        if isinstance(ev, (str, bytes)) or not hasattr(ev, "__len__") or len(ev) != 2:
            raise ValueError(f"events[{i}] must be a (t, label) pair, got {ev!r}")
        t, label = ev
        if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not math.isfinite(t):
            raise ValueError(f"events[{i}] time must be a finite number (a step index), got {t!r}")
        if not 0 <= t <= t_steps:
            raise ValueError(f"events[{i}] time must lie in [0, {t_steps}] (step index; states has T={t_steps}), got {t}")
        if not isinstance(label, str):
            raise VizInputError(f"events[{i}] label must be a str, got {type(label).__name__}")
        out.append((float(t), label))
    return out


def _event_color(label: str, palette_index: int) -> str:
    low = label.lower()
    if "miss" in low:
        return "#d62728"
    if "catch" in low or "hit" in low:
        return "#2ca02c"
    return ("#000000", "#9467bd", "#8c564b", "#e377c2", "#bcbd22")[palette_index % 5]


def plot_activity(
    states: Any,
    *,
    ball: Any = None,
    paddle: Any = None,
    actions: Any = None,
    events: Sequence[tuple[float, str]] | None = None,
    neuron_order: Sequence[int] | None = None,
    roles: Sequence[str] | None = None,
    dt: float = 1.0,
    title: str | None = None,
) -> Figure:
    """A raster of neuron states over time, aligned under the task's state and actions.

    Args:
        states: ``(T, N)`` or ``(T, N, d)`` finite neuron states (``d > 1``: ``N * d`` rows).
        ball: optional ``(T, 2)`` ball x, y positions.
        paddle: optional ``(T,)`` paddle y positions.
        actions: optional ``(T,)`` action ids in {0: up, 1: stay, 2: down} (a step plot).
        events: optional ``(t, label)`` pairs, ``t`` a step index in ``[0, T]`` (drawn at
            ``t * dt``); labels containing "miss" are red, "catch"/"hit" green.
        neuron_order: optional neuron ids giving the rows top to bottom: a permutation of
            ``0..N-1``, or a subset of them to show only those neurons.
        roles: optional ``(N,)`` strings "input", "hidden", "output" or "both"
            ("input+output" is accepted for "both"), shown as a strip left of the raster.
        dt: the time between steps (the x axis shows ``step * dt``).
        title: the figure title.

    Returns an :data:`ACTIVITY_SIZE` figure; never shows it.
    """
    check_title(title)
    x = as_array("states", states, (2, 3))
    if x.ndim == 2:
        x = x[:, :, None]
    t_steps, n, d = x.shape
    if t_steps < 1 or n < 1 or d < 1:
        raise ValueError(f"states must have at least one step, neuron and component, got shape {tuple(x.shape)}")
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be a positive finite number, got {dt!r}")
    order = list(range(n)) if neuron_order is None else as_ids("neuron_order", neuron_order, n)
    if not order:
        raise ValueError("neuron_order must name at least one neuron, got an empty list")
    role_list = None if roles is None else _check_roles(roles, n)
    ball_a = paddle_a = act_a = None
    if ball is not None:
        ball_a = as_array("ball", ball, (2,))
        if ball_a.shape != (t_steps, 2):
            raise ValueError(f"ball must have shape ({t_steps}, 2) (x, y per step of states), got {tuple(ball_a.shape)}")
    if paddle is not None:
        paddle_a = as_array("paddle", paddle, (1,))
        if paddle_a.shape != (t_steps,):
            raise ValueError(f"paddle must have shape ({t_steps},) (one per step of states), got {tuple(paddle_a.shape)}")
    if actions is not None:
        act_a = as_array("actions", actions, (1,))
        if act_a.shape != (t_steps,):
            raise ValueError(f"actions must have shape ({t_steps},) (one per step of states), got {tuple(act_a.shape)}")
        bad = act_a[~np.isin(act_a, (0, 1, 2))]
        if bad.size:
            raise ValueError(f"actions must hold action ids 0 (up), 1 (stay), 2 (down), got {bad[:5].tolist()}")
    ev = [] if events is None else _check_events(events, t_steps)

    # ---- data
    raster = np.transpose(x[:, order, :], (1, 2, 0)).reshape(len(order) * d, t_steps)
    rows = raster.shape[0]
    if d == 1:
        row_names = [str(v) for v in order]
    else:
        row_names = [f"n{v} c{c}" for v in order for c in range(d)]
    t = np.arange(t_steps) * float(dt)
    xlim = (-0.5 * dt, (t_steps - 0.5) * dt)

    # ---- layout
    fig = new_figure(ACTIVITY_SIZE)
    has_top = ball_a is not None or paddle_a is not None
    kinds = (["top"] if has_top else []) + ["raster"] + (["actions"] if act_a is not None else [])
    ratios = {"top": 2.0, "raster": 6.0, "actions": 1.0}
    gs = fig.add_gridspec(len(kinds), 3, height_ratios=[ratios[k] for k in kinds], width_ratios=(0.35, 12, 0.3))
    r_raster = kinds.index("raster")
    ax_r = fig.add_subplot(gs[r_raster, 1])
    main = {"raster": ax_r}
    for k in kinds:
        if k != "raster":
            main[k] = fig.add_subplot(gs[kinds.index(k), 1], sharex=ax_r)

    im = ax_r.imshow(raster, aspect="auto", interpolation="nearest", cmap=STATE_CMAP, vmin=-1.0, vmax=1.0,
                     extent=(xlim[0], xlim[1], rows - 0.5, -0.5))
    cbar = fig.colorbar(im, cax=fig.add_subplot(gs[r_raster, 2]))
    cbar.set_label("state (colours clipped to [-1, 1])", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    if rows <= ROW_LABEL_MAX:
        ticks, tick_names = list(range(rows)), row_names
    elif d == 1:
        ticks = sorted(set(np.linspace(0, rows - 1, 12).round().astype(int).tolist()))
        tick_names = [row_names[i] for i in ticks]
    else:  # one label per neuron block: row k*d .. k*d+d-1 is neuron order[k]
        blocks = range(len(order)) if len(order) <= ROW_LABEL_MAX else \
            sorted(set(np.linspace(0, len(order) - 1, 12).round().astype(int).tolist()))
        ticks = [k * d + (d - 1) / 2 for k in blocks]
        tick_names = [f"n{order[k]}" for k in blocks]
    label_ax = ax_r
    handles: list[Any] = []
    if role_list is not None:
        ax_s = fig.add_subplot(gs[r_raster, 0], sharey=ax_r)
        codes = np.array([[ROLES.index(role_list[v])] for v in order for _ in range(d)], dtype=float)
        ax_s.imshow(codes, aspect="auto", interpolation="nearest", cmap=ListedColormap([ROLE_COLORS[r] for r in ROLES]),
                    vmin=-0.5, vmax=len(ROLES) - 0.5, extent=(0, 1, rows - 0.5, -0.5))
        ax_s.set_xticks([])
        ax_s.set_xlabel("role", fontsize=7)
        ax_r.tick_params(labelleft=False)
        label_ax = ax_s
        present = [r for r in ROLES if r in {role_list[v] for v in order}]
        handles += [Patch(color=ROLE_COLORS[r], label=("input+output" if r == "both" else r) + " neuron")
                    for r in present]
    label_ax.set_yticks(ticks, tick_names)
    label_ax.tick_params(axis="y", labelsize=6 if len(ticks) > 20 else 7)
    if d == 1:
        label_ax.set_ylabel("neuron", fontsize=8)
    elif rows <= ROW_LABEL_MAX:
        label_ax.set_ylabel(f"neuron n, state component c ({d} per neuron)", fontsize=8)
    else:
        label_ax.set_ylabel(f"neuron n ({d} rows each: its state components)", fontsize=8)
        for a in [ax_r] + ([ax_s] if role_list is not None else []):
            for k in range(1, len(order)):
                a.axhline(k * d - 0.5, color="0.25", lw=0.35, alpha=0.6)
    ax_r.set_ylim(rows - 0.5, -0.5)

    if has_top:
        ax_t = main["top"]
        if ball_a is not None:
            ax_t.plot(t, ball_a[:, 0], color="#ff7f0e", lw=1.2, label="ball x")
            ax_t.plot(t, ball_a[:, 1], color="#1f77b4", lw=1.2, label="ball y")
        if paddle_a is not None:
            ax_t.plot(t, paddle_a, color="black", lw=1.5, label="paddle y")
        ax_t.set_ylabel("position", fontsize=8)
        handles = ax_t.get_legend_handles_labels()[0] + handles
    if act_a is not None:
        ax_a = main["actions"]
        ax_a.step(t, act_a, where="mid", color="black", lw=1.0)
        ax_a.set_yticks([0, 1, 2], list(ACTION_NAMES))
        ax_a.set_ylim(2.5, -0.5)
        ax_a.set_ylabel("action", fontsize=8)

    labels = sorted({lab for _, lab in ev})
    colors = {lab: _event_color(lab, i) for i, lab in enumerate(labels)}
    for a in main.values():
        for te, lab in ev:
            a.axvline(te * dt, color=colors[lab], lw=1.0, ls="--", alpha=0.85, zorder=5)
    handles += [Line2D([], [], color=colors[lab], ls="--", label=f"event: {lab}") for lab in labels]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", fontsize=7, frameon=False,
                   ncol=len(handles) if len(handles) <= 8 else math.ceil(len(handles) / 2))

    bottom = main[kinds[-1]]
    for k in kinds:
        main[k].tick_params(labelsize=7)
        if main[k] is not bottom:
            main[k].tick_params(labelbottom=False)
    bottom.set_xlabel("step" if dt == 1 else f"time (step x {dt:g})", fontsize=8)
    ax_r.set_xlim(*xlim)
    shape = f"{n} neurons" if d == 1 else f"{n} neurons x {d} components"
    shown = "" if len(order) == n else f", {len(order)} shown"
    fig.suptitle(title if title is not None else f"neuron activity: {shape}{shown}, {t_steps} steps", fontsize=11)
    return fig
