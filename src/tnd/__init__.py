"""Topological Neural Dynamics: neuron-wise sequence models on an explicit neuron graph."""

from .cell import TNDCell
from .graph import GraphError, NeuronGraph
from .io import load_model, save_model
from .model import TND

__all__ = ["NeuronGraph", "GraphError", "TND", "TNDCell", "save_model", "load_model"]
__version__ = "0.1.0"

try:  # the Pong environment registers itself with Gymnasium when the extra is installed
    from .pong import register_envs as _register_envs
except ImportError:  # the core needs torch alone
    pass
else:
    _register_envs()
