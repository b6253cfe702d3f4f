"""Topological Neural Dynamics: neuron-wise sequence models on an explicit neuron graph."""

from .cell import TNDCell
from .graph import GraphError, NeuronGraph
from .io import load_model, save_model
from .model import TND

__all__ = ["NeuronGraph", "GraphError", "TND", "TNDCell", "save_model", "load_model"]
__version__ = "0.1.0"
