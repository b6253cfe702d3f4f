"""Plots of a TND system: the graph, the time-constant spectrum, activity rasters, lesion
analyses, and a self-contained HTML report.

Needs matplotlib and networkx (the ``pong`` extra). ``import tnd`` never imports this
package; import it where plots are made. Figures use matplotlib's Agg canvas directly (no
pyplot, no global backend switch), have a fixed size per kind (the ``*_SIZE`` constants, in
inches; pixels = inches x dpi) and are saved byte-deterministically by :func:`save_figure`.
Arrays may be numpy arrays, torch tensors or nested lists; bad inputs raise ``ValueError``
naming the argument, the expected and the received shape (arguments of the wrong type
raise :class:`VizInputError`, both a ``ValueError`` and a ``TypeError``).
"""

from ._common import VizInputError, new_figure, save_figure
from .activity import ACTIVITY_SIZE, plot_activity
from .graph import GRAPH_SIZE, MAX_DRAWN_EDGES, draw_graph, neuron_roles
from .lesions import LESIONS_SIZE, plot_lesions
from .report import html_report
from .timescales import TIMESCALES_SIZE, plot_time_constants, time_constant_stats

__all__ = [
    "ACTIVITY_SIZE",
    "GRAPH_SIZE",
    "LESIONS_SIZE",
    "MAX_DRAWN_EDGES",
    "TIMESCALES_SIZE",
    "VizInputError",
    "draw_graph",
    "html_report",
    "neuron_roles",
    "new_figure",
    "plot_activity",
    "plot_lesions",
    "plot_time_constants",
    "save_figure",
    "time_constant_stats",
]
