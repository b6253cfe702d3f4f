"""Lesions: remove neurons or edges from a trained TND to see what its behaviour depends on.

Removing neuron ``j`` cuts everything ``j`` sends: every edge ``j -> i`` of the graph (its
weight is multiplied by 0 through the interaction's ``edge_mask``) and, when ``j`` is an output
neuron, its columns of the readout. Its own state still evolves, but nothing downstream can see
it, so ``y`` and every other neuron's state are exactly those of the network without ``j``'s
out-going contribution:

.. math::

    u_i = \\sum_{k \\in \\mathcal{N}^{-}(i)} m_{ki}\\, w_{ki}\\, s_k, \\qquad m_{ji} = 0 .

Removing an edge ``j -> i`` sets ``m_ji = 0`` alone. Lesions are temporary (a context manager
restores the mask and readout on exit) and work on every implementation (dense, sparse, the
fused fast path), since all of them read the effective edge weights.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn

from tnd.model import TND

__all__ = ["find_tnd", "edge_ids", "lesioned"]


def find_tnd(model: nn.Module) -> TND:
    """The :class:`TND` inside ``model`` (``model`` itself or a wrapper holding one, e.g. the Pong
    ``ScaledInput``); raises ``TypeError`` when there is none or more than one."""
    if isinstance(model, TND):
        return model
    found = [m for m in model.modules() if isinstance(m, TND)] if isinstance(model, nn.Module) else []
    if len(found) != 1:
        raise TypeError(f"model must be a TND or wrap exactly one TND, got {type(model).__name__} "
                        f"holding {len(found)}")
    return found[0]


def edge_ids(model: nn.Module, pairs: Iterable[Sequence[int]]) -> list[int]:
    """Edge indices (positions in ``graph.edge_index``) of the ``(source, target)`` pairs;
    raises ``ValueError`` naming a pair that is not an edge of the graph."""
    g = find_tnd(model).graph
    index = {(int(s), int(t)): e for e, (s, t) in enumerate(g.edge_index.t().tolist())}
    out = []
    for p in pairs:
        key = tuple(int(v) for v in p)
        if len(key) != 2 or key not in index:
            raise ValueError(f"edges: {tuple(p)} is not a (source, target) edge of the graph")
        out.append(index[key])
    return out


def _check_ids(name: str, ids: Sequence[int], bound: int) -> list[int]:
    out = []
    for v in ids:
        if isinstance(v, bool) or not isinstance(v, (int, torch.SymInt)) and not hasattr(v, "__index__"):
            raise TypeError(f"{name} must hold ints, got {type(v).__name__}")
        v = int(v)
        if not 0 <= v < bound:
            raise ValueError(f"{name}: id {v} out of range [0, {bound})")
        out.append(v)
    return out


@contextmanager
def lesioned(model: nn.Module, neurons: Sequence[int] = (), edges: Sequence[int] = ()) -> Iterator[nn.Module]:
    """Temporarily remove ``neurons`` (their out-going edges and readout columns) and ``edges``
    (indices into ``graph.edge_index``, see :func:`edge_ids`) from the TND in ``model``.

    >>> with lesioned(model, neurons=[3, 7]):
    ...     y, _ = model(x)   # the network without neurons 3 and 7's influence
    """
    tnd = find_tnd(model)
    g = tnd.graph
    neurons = _check_ids("neurons", list(neurons), g.num_neurons)
    edges = _check_ids("edges", list(edges), g.num_edges)
    inter = tnd.cell.interaction
    kill = torch.zeros(g.num_edges, dtype=torch.bool)
    if neurons:
        kill |= torch.isin(g.edge_index[0], torch.tensor(neurons, dtype=torch.long))
    if edges:
        kill[torch.tensor(edges, dtype=torch.long)] = True
    d = tnd.cell.state_size
    pos = {int(v): i for i, v in enumerate(g.output_neurons.tolist())}
    cols = [pos[j] * d + k for j in neurons if j in pos for k in range(d)]
    saved_mask = inter.edge_mask.detach().clone()
    readout = tnd.readout
    saved_cols, hook = None, None
    with torch.no_grad():
        inter.edge_mask[kill.to(inter.edge_mask.device)] = 0.0
        if cols and isinstance(readout, nn.Linear):
            saved_cols = readout.weight[:, cols].clone()
            readout.weight[:, cols] = 0.0
    if cols and not isinstance(readout, nn.Linear):  # identity readout: zero those output channels
        keep = torch.ones(g.output_neurons.numel() * d)
        keep[cols] = 0.0
        hook = readout.register_forward_pre_hook(lambda _m, args: (args[0] * keep.to(args[0]),) + args[1:])
    try:
        yield model
    finally:
        with torch.no_grad():
            inter.edge_mask.copy_(saved_mask)
            if saved_cols is not None:
                readout.weight[:, cols] = saved_cols
        if hook is not None:
            hook.remove()
