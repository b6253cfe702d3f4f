"""Shared helpers of :mod:`tnd.apps.viz`: array conversion with clear errors, colours, figure
creation and deterministic PNG saving.

Figures are built with :class:`matplotlib.figure.Figure` and an Agg canvas, never with
``pyplot``: nothing global (the backend, pyplot's figure registry) is touched, so the
functions are safe in scripts, servers and threads. Every kind of figure has a fixed size
in inches (the ``*_SIZE`` constants of the plotting modules); at ``dpi`` dots per inch a
saved PNG is ``round(width * dpi) x round(height * dpi)`` pixels.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tnd.io import atomic_write

__all__ = [
    "EXCITATORY_COLOR",
    "HIGHLIGHT_COLOR",
    "INHIBITORY_COLOR",
    "ROLES",
    "ROLE_COLORS",
    "ROLE_MARKERS",
    "STATE_CMAP",
    "TAU_CMAP",
    "UNSIGNED_COLOR",
    "as_array",
    "new_figure",
    "save_figure",
]

# -------------------------------------------------------------------------- colours
EXCITATORY_COLOR = "#c0392b"  # red-ish: +1 edges / positive weights
INHIBITORY_COLOR = "#2166ac"  # blue-ish: -1 edges / negative weights
UNSIGNED_COLOR = "#7f7f7f"  # unsigned graph without weights, or a zero weight
HIGHLIGHT_COLOR = "#ff7f00"  # outline of highlighted neurons
ROLES = ("input", "hidden", "output", "both")
ROLE_COLORS = {"input": "#1b9e77", "hidden": "#9e9e9e", "output": "#7570b3", "both": "#e7298a"}
ROLE_MARKERS = {"input": "^", "hidden": "o", "output": "s", "both": "D"}
STATE_CMAP = "RdBu_r"  # diverging, for neuron states in [-1, 1]
TAU_CMAP = "viridis"  # sequential, for time constants on a log scale
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------- errors
class VizInputError(ValueError, TypeError):
    """A :mod:`tnd.apps.viz` argument of the wrong type. Like every input error of :mod:`tnd.apps.viz`
    it is a ``ValueError`` (and, being about a type, also a ``TypeError``)."""


# --------------------------------------------------------------------- conversion
def _shape(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return str(tuple(int(s) for s in shape))
    try:
        return str(np.shape(value))
    except (TypeError, ValueError):  # ragged lists
        return "ragged"


def as_array(name: str, value: Any, ndims: Sequence[int] | None = None, *, finite: bool = True,
             positive: bool = False) -> np.ndarray:
    """``value`` (numpy array, torch tensor or nested list of numbers) as a float64 numpy array.

    Raises ``ValueError`` naming ``name`` if it is not numeric, has a number of dimensions
    outside ``ndims``, or (``finite``) holds NaN/Inf, or (``positive``) holds values <= 0.
    """
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise ValueError(f"{name} must be an array of numbers (numpy array or torch tensor), "
                         f"got {type(value).__name__}")
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        if value.is_complex():
            raise ValueError(f"{name} must hold real numbers, got a complex tensor of shape {_shape(value)}")
        value = value.detach().cpu().double().numpy()  # also handles bfloat16/half and bool
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be an array of numbers, got {type(value).__name__} "
                         f"with shape {_shape(value)} ({e})") from None
    if ndims is not None and arr.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want}, got shape {tuple(arr.shape)}")
    if finite and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "Inf"
        raise ValueError(f"{name} must be finite, but contains {bad} values (shape {tuple(arr.shape)})")
    if positive and arr.size and not (arr > 0).all():
        raise ValueError(f"{name} must be > 0 everywhere (it is drawn on a log scale), "
                         f"got min {float(arr.min()):.4g}")
    return arr


def as_ids(name: str, value: Any, n: int, *, unique: bool = True) -> list[int]:
    """A sequence of neuron ids in ``[0, n)`` as a list of ints (ValueError naming ``name``)."""
    arr = as_array(name, value, (1,)) if not np.isscalar(value) else None
    if arr is None:
        raise ValueError(f"{name} must be a list of neuron ids, got {type(value).__name__} {value!r}")
    if arr.size and not np.array_equal(arr, np.round(arr)):
        raise ValueError(f"{name} must hold integer neuron ids, got {arr[arr != np.round(arr)][:5].tolist()}")
    ids = [int(v) for v in arr]
    bad = [i for i in ids if not 0 <= i < n]
    if bad:
        raise ValueError(f"{name} holds ids outside [0, {n - 1}]: {bad[:10]}")
    if unique and len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{name} holds duplicate ids: {dup[:10]}")
    return ids


def check_title(title: Any) -> str | None:
    if title is not None and not isinstance(title, str):
        raise ValueError(f"title must be a str or None, got {type(title).__name__}")
    return title


def check_ax(ax: Any) -> None:
    if ax is not None and not hasattr(ax, "figure"):
        raise ValueError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")


# ------------------------------------------------------------------------ figures
def log_tick_values(lo: float, hi: float, max_ticks: int = 8) -> list[float]:
    """Round tick values (1-2-5, else 1-3, else powers of ten) inside ``[lo, hi]`` of a log axis."""
    if not (lo > 0 and hi > lo and math.isfinite(lo) and math.isfinite(hi)):
        return []
    for mantissas in ((1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                 for m in mantissas]
        ticks = [v for v in ticks if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]
        if len(ticks) <= max_ticks:
            return ticks
    step = math.ceil(len(ticks) / max_ticks)  # many decades: every step-th power of ten
    return ticks[::step]


def plain_log_ticks(axis: Any) -> None:
    """Tick labels of a log-scaled axis as plain round numbers (``0.3``, ``1``, ``2``, ``10``), at
    most eight of them, placed from the axis' range when it is drawn; minor ticks unlabelled."""
    from matplotlib.ticker import FuncFormatter, Locator, NullFormatter

    class PlainLogLocator(Locator):
        def __call__(self):
            lo, hi = sorted(self.axis.get_view_interval())
            return log_tick_values(lo, hi)

        def tick_values(self, vmin, vmax):
            return log_tick_values(*sorted((vmin, vmax)))

    axis.set_major_locator(PlainLogLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def new_figure(size: tuple[float, float], *, constrained: bool = True) -> Figure:
    """A standalone figure of ``size`` inches with an Agg canvas (no pyplot involved)."""
    fig = Figure(figsize=size, dpi=100, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def freeze_layout(fig: Figure) -> None:
    """Run ``fig``'s constrained layout once, round the axes positions to 1e-6 of the figure
    and switch the layout engine off.

    The constrained-layout solver (kiwisolver) may return positions that differ in the last
    bit from one process (or first draw) to the next, which shifts a few antialiased pixels;
    rounding makes the saved PNG byte-identical. Figures without constrained layout are left
    as they are.
    """
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    if not isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
        return
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    for ax in fig.axes:
        ax.set_position([round(float(v), 6) for v in ax.get_position().bounds])


def figure_png_bytes(fig: Figure, dpi: float = 100) -> bytes:
    """The figure rendered to PNG bytes, deterministically (no software/date metadata)."""
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not dpi > 0:
        raise ValueError(f"dpi must be a positive number, got {dpi!r}")
    if not isinstance(fig, Figure):
        raise VizInputError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    freeze_layout(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def close_figure(fig: Figure) -> None:
    """Forget ``fig`` in pyplot's registry if it was made there; standalone figures need nothing."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: float = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically, close it, and return the path.

    The PNG is byte-identical for identical figures (no timestamp or software metadata) and
    has exactly the figure's size in pixels (``figsize * dpi``; no tight bounding box).
    """
    data = figure_png_bytes(fig, dpi)
    path = Path(path)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)
    close_figure(fig)
    return path
