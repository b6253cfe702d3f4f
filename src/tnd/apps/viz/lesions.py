"""Lesion analysis: how much does the behaviour drop when one neuron, one edge or one group
of neurons is removed?

``result`` is a dict::

    {"metric": "mean consecutive catches", "baseline": 0.58,
     "neurons": [{"id": 3, "role": "hidden", "score": 0.1, "drop": 0.48}, ...],
     "edges": [{"source": 3, "target": 7, "weight": 0.42, "score": 0.3, "drop": 0.28}, ...],
     "groups": [{"name": "hidden 0-15", "role": "hidden", "score": ..., "drop": ...}, ...]}  # optional

Each panel is a horizontal bar chart of the metric after the lesion (``score``; computed as
``baseline - drop`` when missing), the ``top`` entries with the largest drop first, the
baseline as a dashed vertical line and each bar annotated with its drop. Neuron and group
bars are coloured by role, edge bars by the sign of the weight. An empty list gives an
annotated empty panel. A third panel appears when ``groups`` is present (and not None).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ._common import (
    EXCITATORY_COLOR,
    INHIBITORY_COLOR,
    ROLE_COLORS,
    ROLES,
    UNSIGNED_COLOR,
    VizInputError,
    check_title,
    new_figure,
)

__all__ = ["LESIONS_SIZE", "plot_lesions"]

LESIONS_SIZE = (12.0, 6.0)  # inches: 1200 x 600 pixels at dpi=100 (2 or 3 panels)
ROLE_ALIASES = {"input+output": "both"}


def _num(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _entries(result: dict, key: str, baseline: float) -> list[dict[str, Any]]:
    items = result.get(key)
    if items is None:
        return []
    if not isinstance(items, (list, tuple)):
        raise VizInputError(f"result[{key!r}] must be a list of dicts, got {type(items).__name__}")
    ident = {"neurons": ("id",), "edges": ("source", "target"), "groups": ("name",)}[key]
    out = []
    for i, item in enumerate(items):
        where = f"result[{key!r}][{i}]"
        if not isinstance(item, dict):
            raise VizInputError(f"{where} must be a dict, got {type(item).__name__}")
        missing = [k for k in (*ident, "drop") if k not in item]
        if missing:
            raise ValueError(f"{where} is missing {missing} (has {sorted(item)})")
        e = dict(item)
        e["drop"] = _num(f"{where}['drop']", item["drop"])
        e["score"] = _num(f"{where}['score']", item["score"]) if item.get("score") is not None else baseline - e["drop"]
        if key == "groups":
            if not isinstance(item["name"], str):
                raise ValueError(f"{where}['name'] must be a str, got {item['name']!r}")
        else:
            for k in ident:
                v = item[k]
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                    raise ValueError(f"{where}[{k!r}] must be a non-negative int neuron id, got {v!r}")
        if key == "edges":
            e["weight"] = _num(f"{where}['weight']", item["weight"]) if item.get("weight") is not None else None
        else:
            role = item.get("role", "hidden")
            role = ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
            if role not in ROLES:
                raise ValueError(f"{where}['role'] must be one of {ROLES}, got {role!r}")
            e["role"] = role
        out.append(e)
    return out


def _label(key: str, e: dict[str, Any]) -> str:
    if key == "neurons":
        return f"neuron {e['id']} ({e['role']})"
    if key == "groups":
        return e["name"]
    w = "" if e["weight"] is None else f" (w={e['weight']:+.2g})"
    return f"{e['source']} -> {e['target']}{w}"


def _color(key: str, e: dict[str, Any]) -> str:
    if key != "edges":
        return ROLE_COLORS[e["role"]]
    if e["weight"] is None or e["weight"] == 0:
        return UNSIGNED_COLOR
    return EXCITATORY_COLOR if e["weight"] > 0 else INHIBITORY_COLOR


def _sort_key(key: str, e: dict[str, Any]) -> tuple:
    ident = (e["id"],) if key == "neurons" else (e["source"], e["target"]) if key == "edges" else (e["name"],)
    return (-e["drop"], *ident)


def _panel(ax: Any, key: str, entries: list[dict[str, Any]], baseline: float, metric: str, top: int) -> None:
    noun = {"neurons": "neuron", "edges": "edge", "groups": "group"}[key]
    count = f"top {min(top, len(entries))} of {len(entries)} by drop" if entries else "none"
    ax.set_title(f"{noun} lesions ({count})", fontsize=9)
    if not entries:
        ax.text(0.5, 0.5, f"no {noun} lesions in this result", transform=ax.transAxes, ha="center", va="center",
                fontsize=9, color="#555555")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    shown = sorted(entries, key=lambda e: _sort_key(key, e))[:top]
    y = np.arange(len(shown))
    scores = np.array([e["score"] for e in shown])
    ax.barh(y, scores, color=[_color(key, e) for e in shown], edgecolor="black", linewidth=0.4, height=0.75)
    ax.axvline(baseline, color="black", ls="--", lw=1.2)
    ax.set_yticks(y, [_label(key, e) for e in shown])
    ax.set_ylim(max(len(shown), min(top, 10)) - 0.5, -0.5)  # largest drop on top; few bars stay slim
    lo = min(0.0, float(scores.min()), baseline)
    hi = max(0.0, float(scores.max()), baseline)
    span = (hi - lo) or 1.0
    ax.set_xlim(lo - 0.02 * span, hi + 0.22 * span)
    for yi, e in zip(y, shown):
        ax.text(max(e["score"], 0.0) + 0.01 * span, yi, f"drop {e['drop']:+.3g}", va="center", fontsize=6.5)
    ax.set_xlabel(f"{metric} after lesion", fontsize=8)
    ax.tick_params(labelsize=7 if len(shown) <= 20 else 5.5)


def plot_lesions(result: dict[str, Any], *, top: int = 20, title: str | None = None) -> Figure:
    """Bar panels of the metric after lesioning each neuron, each strong edge (and each group).

    See the module docstring for the ``result`` format. ``top``: how many entries each panel
    shows (largest drop first). Returns a :data:`LESIONS_SIZE` figure; never shows it.
    """
    check_title(title)
    if not isinstance(result, dict):
        raise VizInputError(f"result must be a dict with keys 'metric', 'baseline', 'neurons', 'edges', "
                         f"got {type(result).__name__}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive int, got {top!r}")
    missing = [k for k in ("metric", "baseline", "neurons", "edges") if k not in result]
    if missing:
        raise ValueError(f"result is missing keys {missing} (has {sorted(result)})")
    metric = result["metric"]
    if not isinstance(metric, str):
        raise VizInputError(f"result['metric'] must be a str, got {metric!r}")
    baseline = _num("result['baseline']", result["baseline"])
    panels = [("neurons", _entries(result, "neurons", baseline)), ("edges", _entries(result, "edges", baseline))]
    if result.get("groups") is not None:
        panels.append(("groups", _entries(result, "groups", baseline)))

    fig = new_figure(LESIONS_SIZE)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, entries) in zip(axes, panels):
        _panel(ax, key, entries, baseline, metric, top)
    roles = sorted({e["role"] for key, es in panels if key != "edges" for e in es}, key=ROLES.index)
    handles = [Patch(color=ROLE_COLORS[r], label="input+output" if r == "both" else r) for r in roles]
    edges = panels[1][1]
    if any(e["weight"] is not None and e["weight"] > 0 for e in edges):
        handles.append(Patch(color=EXCITATORY_COLOR, label="excitatory edge"))
    if any(e["weight"] is not None and e["weight"] < 0 for e in edges):
        handles.append(Patch(color=INHIBITORY_COLOR, label="inhibitory edge"))
    handles.append(Line2D([], [], color="black", ls="--", lw=1.2, label=f"baseline {baseline:.3g}"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle(title if title is not None else f"lesion analysis: {metric} (baseline {baseline:.3g})", fontsize=11)
    return fig
