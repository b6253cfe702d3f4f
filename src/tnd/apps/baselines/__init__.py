"""Baseline sequence models behind the common ``forward(x, hx=None) -> (y, h)`` interface.

``VanillaRNN``, ``SparseRNN``, ``LSTM`` (:mod:`.recurrent`), ``CfC`` and ``LTC`` (ncps wrappers,
:mod:`.cfc`), ``CausalTransformer`` (:mod:`.transformer`), ``Mamba`` (mambapy, :mod:`.mamba`) and
``LRU`` (lru-pytorch, :mod:`.lru`), and the feed-forward ``FrameStackMLP`` (:mod:`.mlp`: the
memoryless reference); build the recurrent ones by name with
:func:`make_baseline` and parameter-match them with :func:`hidden_size_for_budget`.
"""

from .cfc import LTC, CfC
from .lru import LRU
from .mamba import Mamba
from .mlp import LAYERS, FrameStackMLP
from .recurrent import LSTM, BaselineModel, SparseRNN, VanillaRNN, detach_state, map_state
from .registry import BASELINES, count_parameters, hidden_size_for_budget, make_baseline, size_for_budget
from .transformer import CausalTransformer

__all__ = [
    "BaselineModel",
    "VanillaRNN",
    "SparseRNN",
    "LSTM",
    "CfC",
    "LTC",
    "CausalTransformer",
    "Mamba",
    "LRU",
    "FrameStackMLP",
    "LAYERS",
    "BASELINES",
    "make_baseline",
    "count_parameters",
    "hidden_size_for_budget",
    "size_for_budget",
    "detach_state",
    "map_state",
]
