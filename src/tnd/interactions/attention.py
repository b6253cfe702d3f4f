"""The attention interaction: weights normalised over each neuron's in-neighbours.

Each sender ``j`` exposes a bounded key ``k_j = kappa * tanh(<c_j, s_j>)`` (``c_j`` a learnable
per-neuron vector, ``kappa`` = ``key_scale``); each edge has a learnable prior logit ``b_ji``
and a value weight ``v_ji`` (signed like the linear interaction's weights). The receiver
``i`` takes a softmax over its in-neighbours:

.. math::

    \\alpha_{ji} = \\frac{\\exp(b_{ji} + k_j)}{\\sum_{j' \\to i} \\exp(b_{j'i} + k_{j'})}, \\qquad
    u_i = \\sum_{j \\to i} \\alpha_{ji}\\, v_{ji} \\odot s_j

so a neuron attends to the in-neighbours that are currently salient, weighted by a learned
per-edge preference. A receiver-side term would cancel in the softmax, so none is used.
Because the score separates into an edge term and a sender term, the dense path needs no
``B x N x N`` tensor: with ``P = mask * exp(b - max_j b)`` and ``e = exp(k - max k)``,

    num = (e * v * s) @ P,   den = e @ P,   u = num / den

(one matmul each). Keys are bounded so ``den`` cannot underflow. Neurons without in-edges
receive zero. With leaky dynamics in discrete time the whole loop runs fused in C
(:mod:`tnd.fast.attention`, the same maths; this module stays the reference it is tested against).
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_real
from ..graph import NeuronGraph
from .base import Interaction


class AttentionInteraction(Interaction):
    """Softmax-normalised aggregation over each neuron's in-neighbours (see module docstring)."""

    name = "attention"

    def __init__(
        self, graph: NeuronGraph, state_size: int = 1, impl: str = "auto", key_scale: float = 3.0, gain: float = 1.0
    ) -> None:
        super().__init__(graph, state_size, impl)
        self.key_scale = check_real("key_scale", key_scale, 0.0, exclusive_min=True)
        self.gain = check_real("gain", gain, 0.0, exclusive_min=True)
        self.value_raw = nn.Parameter(torch.empty(self.num_edges, state_size))
        self.prior = nn.Parameter(torch.zeros(self.num_edges))
        self.key = nn.Parameter(torch.empty(self.num_neurons, state_size))
        self.reset_parameters()

    @staticmethod
    def state_shapes(num_neurons: int, num_edges: int, state_size: int, **kw) -> dict[str, tuple[int, ...]]:
        """Shapes of the saved tensors (``state_dict``) for these sizes, computed without building."""
        return {"edge_mask": (num_edges,), "value_raw": (num_edges, state_size), "prior": (num_edges,),
                "key": (num_neurons, state_size)}

    def reset_parameters(self) -> None:
        self.init_edge_raw(self.value_raw, self.gain)
        with torch.no_grad():
            if self.sign is None:  # an attention average has unit total weight: values of unit scale
                self.value_raw.mul_(self._fan_in.sqrt()[:, None])
            self.prior.zero_()
            nn.init.normal_(self.key, std=1.0)

    def effective_edge_weight(self) -> torch.Tensor:
        return self.edge_weight(self.value_raw)

    def keys(self, s: torch.Tensor) -> torch.Tensor:
        """Bounded sender keys ``(B, N)``."""
        return self.key_scale * torch.tanh((s * self.key).sum(-1))

    def _prior_exp(self) -> torch.Tensor:
        """``exp(b_ji - max_{j'} b_j'i) * mask`` per edge: in (0, 1], the per-target max is 1."""
        b = self.prior
        bmax = torch.full((self.num_neurons,), float("-inf"), dtype=b.dtype, device=b.device)
        bmax = bmax.scatter_reduce(0, self.tgt, b.detach(), reduce="amax")
        return torch.exp(b - bmax[self.tgt]) * self.checked_edge_mask().to(b.dtype)

    def prepare_dense(self):
        p = self._prior_exp()
        v = self.effective_edge_weight()
        return self.to_dense_weight(p[:, None]), self.to_dense_weight(p[:, None] * v)

    def aggregate_dense(self, prep, s: torch.Tensor) -> torch.Tensor:
        p_dense, pv_dense = prep
        k = self.keys(s)
        e = torch.exp(k - k.detach().amax(dim=1, keepdim=True))  # (B, N), in (exp(-2 kappa), 1]
        den = (e @ p_dense[0]).unsqueeze(-1)
        num = self.dense_matmul(e.unsqueeze(-1) * s, pv_dense)
        return num / den.clamp_min(torch.finfo(s.dtype).tiny)

    def prepare_sparse(self):
        return self._prior_exp(), self.effective_edge_weight()

    def aggregate_sparse(self, prep, s: torch.Tensor) -> torch.Tensor:
        p, v = prep
        k = self.keys(s)
        e = torch.exp(k - k.detach().amax(dim=1, keepdim=True))
        a = e[:, self.src] * p  # (B, E) unnormalised attention
        den = self.scatter_to_targets(a).unsqueeze(-1)
        num = self.scatter_to_targets(a.unsqueeze(-1) * v * s[:, self.src])
        return num / den.clamp_min(torch.finfo(s.dtype).tiny)
