"""The weighted-sum interaction: one learnable weight per edge (and state dimension).

.. math::

    u_i = \\sum_{j \\to i \\in G} w_{ji} \\odot s_j, \\qquad
    w_{ji} = \\begin{cases} \\theta_{ji} & \\text{unsigned graph} \\\\
                            \\sigma_{ji}\\,\\mathrm{softplus}(\\theta_{ji}) & \\text{signed graph, } \\sigma_{ji} = \\pm 1 \\end{cases}

Dense path: ``u[:, :, k] = s[:, :, k] @ W_k`` with ``W_k`` the ``(N, N)`` masked matrix.
Sparse path: ``u = scatter_add_tgt(w * s[:, src])``, cost ``O(B E d)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_real
from ..graph import NeuronGraph
from .base import Interaction


class LinearInteraction(Interaction):
    """Weighted sum over in-edges with one learnable weight per edge (``(E, d)`` parameters)."""

    name = "linear"

    def __init__(self, graph: NeuronGraph, state_size: int = 1, impl: str = "auto", gain: float = 1.0) -> None:
        super().__init__(graph, state_size, impl)
        self.weight_raw = nn.Parameter(torch.empty(self.num_edges, state_size))
        self.gain = check_real("gain", gain, 0.0, exclusive_min=True)
        self.reset_parameters()

    @staticmethod
    def state_shapes(num_neurons: int, num_edges: int, state_size: int, **kw) -> dict[str, tuple[int, ...]]:
        """Shapes of the saved tensors (``state_dict``) for these sizes, computed without building."""
        return {"edge_mask": (num_edges,), "weight_raw": (num_edges, state_size)}

    def reset_parameters(self) -> None:
        self.init_edge_raw(self.weight_raw, self.gain)

    def effective_edge_weight(self) -> torch.Tensor:
        return self.edge_weight(self.weight_raw)

    def prepare_dense(self) -> torch.Tensor:
        return self.to_dense_weight(self.effective_edge_weight())

    def aggregate_dense(self, w_dense: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.dense_matmul(s, w_dense)

    def prepare_sparse(self) -> torch.Tensor:
        return self.effective_edge_weight()

    def aggregate_sparse(self, w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.scatter_to_targets(s[:, self.src] * w)
