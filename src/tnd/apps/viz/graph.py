"""Drawing a neuron graph G: neurons by role, edges by sign and learned |weight|, neurons
coloured by their learned time constant.

Layouts:

* ``"bands"``: input neurons in the left column, output neurons in the right column, hidden
  neurons in the columns between by their shortest-path hop distance from the inputs
  (networkx BFS); hidden neurons no input reaches get an extra "unreachable" column before
  the outputs. Neurons that are both input and output (role ``"both"``) sit in the input
  column below the pure inputs. Within a column, neurons are ordered by the mean height of
  their already placed in-neighbours (a barycentric pass that reduces crossings; ties and
  neurons without placed in-neighbours by id), so the layout is deterministic.
* ``"spring"``: ``networkx.spring_layout`` with the fixed seed :data:`SPRING_SEED`.
* ``"auto"``: bands up to :data:`BANDS_MAX_NEURONS` neurons, spring beyond.

Graphs with more than :data:`MAX_DRAWN_EDGES` edges are drawn with the strongest
:data:`MAX_DRAWN_EDGES` edges by ``|w|`` (or an evenly spaced subset when no weights are
given); the title says so. Neuron ids are written inside the markers (up to
:data:`LABEL_MAX_NEURONS` neurons) in white or black, whichever contrasts more with the
marker's colour (:func:`relative_luminance`), with a thin halo of the other colour. Up to :data:`ARROW_MAX_EDGES` drawn edges get arrowheads (curved
slightly so that reciprocal edges do not overlap); beyond that, edges are plain straight
lines (direction not shown) to keep drawing fast. Self-loops are drawn as small rings
above their neuron.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib import colormaps
from matplotlib.colors import LogNorm, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch
from matplotlib.patheffects import withStroke

from ._common import (
    EXCITATORY_COLOR,
    HIGHLIGHT_COLOR,
    INHIBITORY_COLOR,
    ROLE_COLORS,
    ROLE_MARKERS,
    ROLES,
    TAU_CMAP,
    UNSIGNED_COLOR,
    VizInputError,
    as_array,
    as_ids,
    check_ax,
    check_title,
    new_figure,
    plain_log_ticks,
)

__all__ = [
    "ARROW_MAX_EDGES",
    "BANDS_MAX_NEURONS",
    "GRAPH_SIZE",
    "MAX_DRAWN_EDGES",
    "SPRING_SEED",
    "DARK_LUMINANCE",
    "TAU_LABEL",
    "draw_graph",
    "neuron_roles",
    "relative_luminance",
]

GRAPH_SIZE = (8.0, 6.0)  # inches: 800 x 600 pixels at dpi=100
MAX_DRAWN_EDGES = 2000
BANDS_MAX_NEURONS = 150
ARROW_MAX_EDGES = 400
SPRING_SEED = 0
LABEL_MAX_NEURONS = 40  # neuron ids are written inside the markers up to this many neurons
TAU_LABEL = "time constant tau (steps)"
#: below this luminance a neuron's id is written in white (with a black halo), above in black;
#: 0.179 is where white and black text have the same contrast ratio (WCAG)
DARK_LUMINANCE = 0.179
LAYOUTS = ("auto", "bands", "spring")
MARKER_SCALE = {"input": 1.4, "both": 1.2}  # triangles and diamonds look smaller than circles of the same area


def relative_luminance(rgba: Any) -> float:
    """WCAG relative luminance (0 black .. 1 white) of an sRGB colour given as RGB(A) floats in [0, 1]."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (float(x) for x in rgba[:3])]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _check_graph(graph: Any) -> None:
    needed = ("num_neurons", "edge_index", "input_neurons", "output_neurons", "sign")
    if not all(hasattr(graph, a) for a in needed):
        raise VizInputError(f"graph must be a tnd.NeuronGraph, got {type(graph).__name__}")


def neuron_roles(graph: Any) -> list[str]:
    """Each neuron's role: ``"input"``, ``"output"``, ``"both"`` (input and output) or ``"hidden"``."""
    _check_graph(graph)
    ins = set(as_array("graph.input_neurons", graph.input_neurons, (1,)).astype(int).tolist())
    outs = set(as_array("graph.output_neurons", graph.output_neurons, (1,)).astype(int).tolist())
    roles = []
    for v in range(int(graph.num_neurons)):
        if v in ins and v in outs:
            roles.append("both")
        elif v in ins:
            roles.append("input")
        elif v in outs:
            roles.append("output")
        else:
            roles.append("hidden")
    return roles


def _nx_graph(n: int, src: np.ndarray, tgt: np.ndarray):
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(zip(src.tolist(), tgt.tolist()))
    return g


def _band_layout(n: int, src: np.ndarray, tgt: np.ndarray, roles: list[str]) -> tuple[np.ndarray, list[float], list[str]]:
    """Positions (N, 2) in [0, 1]^2, and the x and label of each column."""
    import networkx as nx

    g = _nx_graph(n, src, tgt)
    inputs = [v for v in range(n) if roles[v] in ("input", "both")]
    hop: dict[int, int] = {}
    for k, layer in enumerate(nx.bfs_layers(g, inputs)):
        for v in layer:
            hop[v] = k
    hidden = [v for v in range(n) if roles[v] == "hidden"]
    max_hop = max((hop[v] for v in hidden if v in hop), default=0)
    # column keys: 0 inputs, 1..max_hop hops, max_hop+1 unreachable, max_hop+2 outputs
    key_of = {}
    for v in range(n):
        if roles[v] in ("input", "both"):
            key_of[v] = 0
        elif roles[v] == "output":
            key_of[v] = max_hop + 2
        else:
            key_of[v] = hop.get(v, max_hop + 1)
    keys = sorted(set(key_of.values()))  # empty columns dropped
    labels = []
    for k in keys:
        labels.append("inputs" if k == 0 else "outputs" if k == max_hop + 2
                      else "unreachable" if k == max_hop + 1 else f"hop {k}")
    preds: list[list[int]] = [[] for _ in range(n)]
    for s, t in zip(src.tolist(), tgt.tolist()):
        preds[t].append(s)
    pos = np.zeros((n, 2))
    placed = np.zeros(n, dtype=bool)
    xs = [0.5] if len(keys) == 1 else [i / (len(keys) - 1) for i in range(len(keys))]
    for ci, k in enumerate(keys):
        members = [v for v in range(n) if key_of[v] == k]
        if k == 0:
            members.sort(key=lambda v: (roles[v] == "both", v))
        else:
            def bary(v: int) -> tuple[int, float, int]:
                ys = [pos[p, 1] for p in preds[v] if placed[p]]
                return (0, -float(np.mean(ys)), v) if ys else (1, 0.0, v)

            members.sort(key=bary)
        c = len(members)
        for i, v in enumerate(members):
            pos[v] = (xs[ci], 1.0 - (i + 0.5) / c)
            placed[v] = True
    return pos, xs, labels


def _spring_layout(n: int, src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    import networkx as nx

    g = _nx_graph(n, src, tgt)
    try:
        p = nx.spring_layout(g, seed=SPRING_SEED)
    except ImportError as e:  # networkx needs scipy for graphs of 500+ neurons
        raise ImportError(f"the spring layout of a {n}-neuron graph needs scipy ({e}); "
                          "install scipy or use layout='bands'") from e
    return np.array([p[v] for v in range(n)], dtype=np.float64)


def draw_graph(
    graph: Any,
    edge_weight: Any = None,
    time_constants: Any = None,
    *,
    layout: str = "auto",
    ax: Any = None,
    title: str | None = None,
    highlight: Sequence[int] | None = None,
) -> Figure:
    """Draw ``graph`` (a :class:`tnd.NeuronGraph`) by role, sign, learned weight and time constant.

    Args:
        graph: the neuron graph.
        edge_weight: optional ``(E,)`` or ``(E, d)`` learned weights aligned with
            ``graph.edge_index``; edge width is proportional to ``|w|`` summed over ``d``.
            Edge colour is the graph's sign if it is signed, else the sign of the summed
            weight: excitatory red, inhibitory blue (grey for unsigned graphs without
            weights, or a zero weight).
        time_constants: optional ``(N,)`` or ``(N, d)`` positive time constants (mean over
            ``d``); neurons are coloured on a log scale with a colourbar. Without them,
            neurons are coloured by role.
        layout: ``"auto"``, ``"bands"`` or ``"spring"`` (see the module docstring).
        ax: draw into this Axes (its figure is returned) instead of a new
            :data:`GRAPH_SIZE` figure.
        title: the title; a note is appended when only the strongest edges are drawn.
        highlight: optional neuron ids to outline (and label with their id).

    Marker shape shows the role: input triangle, output square, hidden circle, both
    (input and output) diamond. Returns the figure; never shows it.
    """
    _check_graph(graph)
    check_ax(ax)
    check_title(title)
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    n = int(graph.num_neurons)
    ei = as_array("graph.edge_index", graph.edge_index, (2,)).astype(np.int64)
    src, tgt = ei[0], ei[1]
    e = int(ei.shape[1])
    roles = neuron_roles(graph)

    # ---- edge weights and signs
    mag = None
    if edge_weight is not None:
        w = as_array("edge_weight", edge_weight, (1, 2))
        if w.shape[0] != e or (w.ndim == 2 and w.shape[1] < 1):
            raise ValueError(f"edge_weight must have shape ({e},) or ({e}, d) with d >= 1 "
                             f"(one row per edge; graph.num_edges={e}), got {tuple(w.shape)}")
        w = w if w.ndim == 2 else w[:, None]
        mag = np.abs(w).sum(axis=1)
        sign = np.sign(w.sum(axis=1))
    else:
        sign = np.zeros(e)
    if graph.sign is not None:
        sign = as_array("graph.sign", graph.sign, (1,))

    # ---- time constants
    tau = None
    if time_constants is not None:
        tau = as_array("time_constants", time_constants, (1, 2), positive=True)
        if tau.shape[0] != n or (tau.ndim == 2 and tau.shape[1] < 1):
            raise ValueError(f"time_constants must have shape ({n},) or ({n}, d) with d >= 1 "
                             f"(one row per neuron; graph.num_neurons={n}), got {tuple(tau.shape)}")
        tau = (tau if tau.ndim == 2 else tau[:, None]).mean(axis=1)

    hl = [] if highlight is None else as_ids("highlight", highlight, n)

    # ---- which edges to draw
    note = None
    keep = np.arange(e)
    if e > MAX_DRAWN_EDGES:
        if mag is not None:
            keep = np.sort(np.argsort(-mag, kind="stable")[:MAX_DRAWN_EDGES])
            note = f"showing the {MAX_DRAWN_EDGES} strongest of {e} edges (by |w|)"
        else:
            keep = (np.arange(MAX_DRAWN_EDGES, dtype=np.int64) * e) // MAX_DRAWN_EDGES
            note = f"showing {MAX_DRAWN_EDGES} of {e} edges (evenly spaced; no weights given)"
    if mag is not None:  # weak edges first, strong ones on top
        keep = keep[np.argsort(mag[keep], kind="stable")]

    # ---- layout
    chosen = ("bands" if n <= BANDS_MAX_NEURONS else "spring") if layout == "auto" else layout
    if chosen == "bands":
        pos, col_x, col_labels = _band_layout(n, src, tgt, roles)
    else:
        pos, col_x, col_labels = _spring_layout(n, src, tgt), [], []

    fig = ax.figure if ax is not None else new_figure(GRAPH_SIZE)
    if ax is None:
        ax = fig.add_subplot()

    span = np.ptp(pos, axis=0) if n > 1 else np.ones(2)
    span = np.where(span > 0, span, 1.0)
    node_s = float(np.clip(4000.0 / n, 10.0, 220.0))  # marker area in points^2
    radius_pt = np.sqrt(node_s) / 2.0 + 1.0

    # ---- edges
    drawn = len(keep)
    colors_all = np.where(sign > 0, EXCITATORY_COLOR, np.where(sign < 0, INHIBITORY_COLOR, UNSIGNED_COLOR))
    if mag is not None:
        mmax = float(mag.max()) if e and mag.max() > 0 else 1.0
        widths_all = 0.3 + 2.7 * mag / mmax
    else:
        widths_all = np.full(e, 0.8 if drawn <= ARROW_MAX_EDGES else 0.4)
    alpha = 0.75 if drawn <= ARROW_MAX_EDGES else 0.35
    loops = [i for i in keep if src[i] == tgt[i]]
    links = [i for i in keep if src[i] != tgt[i]]
    if drawn <= ARROW_MAX_EDGES:
        for i in links:
            ax.add_patch(FancyArrowPatch(
                tuple(pos[src[i]]), tuple(pos[tgt[i]]), arrowstyle="-|>", mutation_scale=7.0,
                shrinkA=radius_pt, shrinkB=radius_pt, connectionstyle="arc3,rad=0.12",
                linewidth=float(widths_all[i]), color=str(colors_all[i]), alpha=alpha, zorder=1))
    elif links:
        idx = np.asarray(links)
        segs = np.stack([pos[src[idx]], pos[tgt[idx]]], axis=1)
        ax.add_collection(LineCollection(segs, linewidths=widths_all[idx], colors=colors_all[idx].tolist(),
                                         alpha=alpha, zorder=1))
    if loops:
        idx = np.asarray(loops)
        lp = pos[src[idx]] + np.array([0.0, 0.03 * span[1]])
        ax.scatter(lp[:, 0], lp[:, 1], s=node_s * 0.5, marker="o", facecolors="none",
                   edgecolors=colors_all[idx].tolist(), linewidths=widths_all[idx], alpha=alpha, zorder=1)

    # ---- neurons
    norm = None
    if tau is not None:
        lo, hi = float(tau.min()), float(tau.max())
        if hi <= lo * (1 + 1e-9):
            lo, hi = lo / 1.2, hi * 1.2
        norm = LogNorm(vmin=lo, vmax=hi)
    role_arr = np.asarray(roles)
    for r in ROLES:
        m = role_arr == r
        if not m.any():
            continue
        kw: dict[str, Any] = {"c": tau[m], "cmap": TAU_CMAP, "norm": norm} if tau is not None else {"color": ROLE_COLORS[r]}
        ax.scatter(pos[m, 0], pos[m, 1], s=node_s * MARKER_SCALE.get(r, 1.0), marker=ROLE_MARKERS[r], edgecolors="black",
                   linewidths=0.5, zorder=3, **kw)
    if n <= LABEL_MAX_NEURONS:
        cmap = colormaps[TAU_CMAP]
        for v in range(n):
            face = cmap(norm(tau[v])) if tau is not None else to_rgba(ROLE_COLORS[roles[v]])
            ink, halo = ("white", "black") if relative_luminance(face) < DARK_LUMINANCE else ("black", "white")
            ax.text(pos[v, 0], pos[v, 1], str(v), fontsize=6.5, fontweight="bold", ha="center", va="center",
                    color=ink, zorder=5, path_effects=[withStroke(linewidth=1.5, foreground=halo, alpha=0.7)])
    if hl:
        h = np.asarray(hl)
        ax.scatter(pos[h, 0], pos[h, 1], s=node_s * 2.6, marker="o", facecolors="none",
                   edgecolors=HIGHLIGHT_COLOR, linewidths=2.0, zorder=4)
        if n > LABEL_MAX_NEURONS:
            for v in hl:
                ax.annotate(str(v), tuple(pos[v]), xytext=(5, 5), textcoords="offset points", fontsize=7,
                            color="#a0522d", fontweight="bold", zorder=6)
    if norm is not None:
        sm = ScalarMappable(norm=norm, cmap=TAU_CMAP)
        cbar = fig.colorbar(sm, ax=ax, label=TAU_LABEL, shrink=0.85)
        plain_log_ticks(cbar.ax.yaxis)

    # ---- legend, axes, title
    handles = []
    for r in ROLES:
        cnt = int((role_arr == r).sum())
        if cnt:
            face = ROLE_COLORS[r] if tau is None else "#d9d9d9"
            label = "input+output" if r == "both" else r
            handles.append(Line2D([], [], marker=ROLE_MARKERS[r], linestyle="none", markersize=7,
                                  markerfacecolor=face, markeredgecolor="black", label=f"{label} ({cnt})"))
    drawn_sign = sign[keep]
    if (drawn_sign > 0).any():
        handles.append(Line2D([], [], color=EXCITATORY_COLOR, lw=2, label="excitatory edge"))
    if (drawn_sign < 0).any():
        handles.append(Line2D([], [], color=INHIBITORY_COLOR, lw=2, label="inhibitory edge"))
    if (drawn_sign == 0).any():
        handles.append(Line2D([], [], color=UNSIGNED_COLOR, lw=2,
                              label="edge (zero weight)" if mag is not None else "edge"))
    if hl:
        handles.append(Line2D([], [], marker="o", linestyle="none", markersize=9, markerfacecolor="none",
                              markeredgecolor=HIGHLIGHT_COLOR, markeredgewidth=2, label=f"highlighted ({len(hl)})"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=min(4, len(handles)),
              fontsize=7, frameon=False)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_yticks([])
    if col_x:
        ax.set_xticks(col_x, col_labels, fontsize=7)
        ax.tick_params(axis="x", length=0)
    else:
        ax.set_xticks([])
    lo_xy, hi_xy = pos.min(axis=0), pos.max(axis=0)
    pad = 0.06 * span
    ax.set_xlim(lo_xy[0] - pad[0], hi_xy[0] + pad[0])
    ax.set_ylim(lo_xy[1] - pad[1], hi_xy[1] + pad[1] + (0.03 * span[1] if loops else 0.0))
    head = title if title is not None else f"neuron graph: {n} neurons, {e} edges ({chosen} layout)"
    ax.set_title(head if note is None else f"{head}\n{note}", fontsize=10)
    return fig
