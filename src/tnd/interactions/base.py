"""I: the interaction operator base class.

An interaction maps the neurons' states ``s`` of shape ``(B, N, d)`` to what each neuron
receives, ``u`` of shape ``(B, N, d)``, using only the edges of the graph:

    u_i = AGGREGATE_{j in in(i)} MESSAGE(s_j, edge j -> i)

As in PyTorch Geometric's ``MessagePassing``, a subclass defines the maths once and two
execution paths: a dense masked one (an ``(N, N)`` weight per state dimension, one matmul,
fastest for small N) and a sparse edge-list one (gather over sources, scatter-add over
targets) whose cost grows with E. Neither ever builds a ``B x N x N`` tensor. ``impl="auto"``
chooses by size and density.

Per-sequence work (building the dense weight from the edge parameters) is split from
per-step work: :meth:`prepare` runs once per forward call, :meth:`aggregate` once per step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..checks import check_choice, check_finite, check_int
from ..graph import NeuronGraph

IMPLS = ("auto", "dense", "sparse")


def choose_impl(graph: NeuronGraph, impl: str) -> str:
    """Dense masked coupling wins up to a few hundred neurons (and for dense graphs);
    the edge list wins for large sparse graphs, where N^2 would dominate."""
    check_choice("impl", impl, IMPLS)
    if impl != "auto":
        return impl
    n = graph.num_neurons
    return "dense" if n <= 512 or (graph.density >= 0.1 and n <= 4096) else "sparse"


class Interaction(nn.Module):
    """Base class. Subclasses implement ``prepare_dense``/``aggregate_dense`` and
    ``prepare_sparse``/``aggregate_sparse`` with identical maths."""

    name = "base"

    def __init__(self, graph: NeuronGraph, state_size: int = 1, impl: str = "auto") -> None:
        super().__init__()
        if not isinstance(graph, NeuronGraph):
            raise TypeError(f"graph must be a NeuronGraph, got {type(graph).__name__}")
        check_int("state_size", state_size, 1)
        self.num_neurons = graph.num_neurons
        self.state_size = state_size
        self.impl = choose_impl(graph, impl)
        self.register_buffer("src", graph.edge_index[0].clone(), persistent=False)
        self.register_buffer("tgt", graph.edge_index[1].clone(), persistent=False)
        sign = graph.sign.to(torch.get_default_dtype()) if graph.sign is not None else None
        self.register_buffer("sign", sign, persistent=False)
        self.signed = graph.sign is not None
        # 1 keeps an edge, 0 lesions it (used by lesion studies and learnable topologies).
        self.register_buffer("edge_mask", torch.ones(graph.num_edges))
        indeg = graph.in_degree().clamp(min=1).to(torch.get_default_dtype())
        self.register_buffer("_fan_in", indeg[graph.edge_index[1]], persistent=False)

    @property
    def num_edges(self) -> int:
        return int(self.src.numel())

    def checked_edge_mask(self) -> torch.Tensor:
        """``edge_mask`` after checking what a user may have written into it (a lesion, a learned
        topology): a float (or bool) tensor of shape ``(E,)``, finite. Every path (reference, fused,
        one-step) reads the mask through :meth:`edge_weight`, so they all refuse the same masks."""
        mask = self.edge_mask
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"edge_mask must be a tensor of shape ({self.num_edges},), got {type(mask).__name__}")
        if tuple(mask.shape) != (self.num_edges,):
            raise ValueError(f"edge_mask must have shape ({self.num_edges},) (one entry per edge), got {tuple(mask.shape)}")
        if not (mask.dtype.is_floating_point or mask.dtype == torch.bool):
            raise TypeError(f"edge_mask must be a float (or bool) tensor, got dtype {mask.dtype}")
        key = (id(mask), mask._version, mask.data_ptr() if not mask.is_meta else 0)
        if getattr(self, "_mask_checked", None) != key:  # scan the values only when they may have changed
            check_finite("edge_mask", mask)
            self._mask_checked = key
        return mask

    # ------------------------------------------------------------------ helpers
    def edge_weight(self, raw: torch.Tensor) -> torch.Tensor:
        """Signed graphs keep each edge's sign fixed and learn its magnitude (Dale's principle):
        ``w = sign * softplus(raw)``; unsigned graphs learn ``w = raw`` freely."""
        mask = self.checked_edge_mask().to(raw.dtype).view(-1, *([1] * (raw.dim() - 1)))
        if self.sign is None:
            return raw * mask
        return (self.sign.to(raw.dtype).view(-1, *([1] * (raw.dim() - 1))) * mask) * F.softplus(raw)

    def init_edge_raw(self, raw: torch.Tensor, gain: float = 1.0) -> None:
        """Weights of scale ``gain / sqrt(in-degree of the target)``, so every neuron's summed
        input has unit scale whatever its in-degree; signed edges start at that magnitude."""
        std = (gain / self._fan_in.sqrt()).view(-1, *([1] * (raw.dim() - 1)))
        with torch.no_grad():
            if self.sign is None:
                raw.copy_(torch.randn_like(raw) * std)
            else:
                mag = (std * (1 + 0.5 * torch.randn_like(raw))).clamp(min=1e-3)
                raw.copy_(mag + torch.log(-torch.expm1(-mag)))  # inverse softplus

    def to_dense_weight(self, w: torch.Tensor) -> torch.Tensor:
        """Edge values ``(E, d)`` -> ``(d, N, N)`` with ``W[k, j, i] = w[e, k]`` for edge ``e = j -> i``."""
        n = self.num_neurons
        out = w.new_zeros(w.shape[1], n * n)
        out = out.index_put((torch.arange(w.shape[1], device=w.device)[:, None], (self.src * n + self.tgt)[None, :]), w.t())
        return out.view(w.shape[1], n, n)

    def scatter_to_targets(self, values: torch.Tensor) -> torch.Tensor:
        """Sum ``(B, E, ...)`` edge values into ``(B, N, ...)`` at each edge's target."""
        out = values.new_zeros(values.shape[0], self.num_neurons, *values.shape[2:])
        return out.index_add_(1, self.tgt, values)

    @staticmethod
    def dense_matmul(s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``u[b, i, k] = sum_j s[b, j, k] W[k, j, i]`` without a B x N x N intermediate."""
        if w.shape[0] == 1:
            return (s[..., 0] @ w[0]).unsqueeze(-1)
        return torch.einsum("bjk,kji->bik", s, w)

    # ----------------------------------------------------------------- interface
    def prepare(self) -> Any:
        """Per-sequence tensors derived from the parameters (differentiable)."""
        return self.prepare_dense() if self.impl == "dense" else self.prepare_sparse()

    def aggregate(self, prep: Any, s: torch.Tensor) -> torch.Tensor:
        """What every neuron receives, ``(B, N, d)``, given the states ``s`` ``(B, N, d)``."""
        return self.aggregate_dense(prep, s) if self.impl == "dense" else self.aggregate_sparse(prep, s)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.aggregate(self.prepare(), s)

    def prepare_dense(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def aggregate_dense(self, prep: Any, s: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def prepare_sparse(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def aggregate_sparse(self, prep: Any, s: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def effective_edge_weight(self) -> torch.Tensor:
        """The learned edge weights ``(E, d)`` as used in the messages (for inspection)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"num_neurons={self.num_neurons}, num_edges={self.num_edges}, state_size={self.state_size}, impl={self.impl!r}"
