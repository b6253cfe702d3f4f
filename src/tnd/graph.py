"""G: the directed neuron graph of a TND system.

A :class:`NeuronGraph` holds ``num_neurons`` neurons and a set of directed edges
``j -> i`` ("neuron j may influence neuron i"), stored as ``edge_index`` of shape
``(2, E)`` with row 0 the source and row 1 the target (PyTorch Geometric's convention).
Edges are kept in a canonical order, sorted by (target, source), so that two graphs with
the same edges compare equal and the interaction operators can build CSR rows directly.

Each edge may carry a fixed sign (+1 excitatory, -1 inhibitory). Input neurons receive
the external input; output neurons are read out.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Iterable

import torch

from .checks import as_tensor
from .graph_builders import GraphBuilders
from .graph_errors import GraphError

__all__ = ["NeuronGraph", "GraphError"]


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    return as_tensor(name, value, "a tensor or a (nested) list of numbers", GraphError)


def _as_index_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, (list, tuple)) and any(
            isinstance(v, bool) or (isinstance(v, (list, tuple)) and any(isinstance(w, bool) for w in v))
            for v in value):
        # torch would read True/False as ids 1/0
        raise GraphError(f"{name} must hold integer neuron ids, got a bool among {list(value)[:10]!r}")
    t = _as_tensor(value, name)
    if t.numel() == 0:  # an empty list is float32 to torch; no ids, so nothing to check
        return t.to(torch.long)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise GraphError(f"{name} must hold integer neuron ids, got dtype {t.dtype}")
    return t.to(torch.long)


class NeuronGraph(GraphBuilders):
    """A directed graph over ``num_neurons`` neurons with designated input and output neurons.

    Attributes: ``num_neurons`` N; ``edge_index`` ``(2, E)`` int64, sorted by (target, source);
    ``sign`` ``(E,)`` int8 or None; ``input_neurons`` and ``output_neurons`` 1-D int64 id tensors.
    Seeded builders (``random``, ``ring``, ``small_world``, ``scale_free``, ``layered``,
    ``fully_connected``, ``from_name``) come from :class:`tnd.graph_builders.GraphBuilders`.

    Args:
        num_neurons: N, the number of neurons (ids ``0 .. N-1``).
        edge_index: ``(2, E)`` integer tensor (or nested list); row 0 sources, row 1 targets.
        input_neurons: ids of the neurons that receive the external input.
        output_neurons: ids of the neurons that are read out.
        sign: optional ``(E,)`` tensor of +1/-1, aligned with ``edge_index`` as given.
        allow_unreachable: if False (default), every output neuron must be reachable from
            some input neuron along the edges; otherwise that is an error.
    """

    def __init__(
        self,
        num_neurons: int,
        edge_index: Any,
        input_neurons: Iterable[int],
        output_neurons: Iterable[int],
        sign: Any | None = None,
        allow_unreachable: bool = False,
    ) -> None:
        if isinstance(num_neurons, bool) or not isinstance(num_neurons, int) or num_neurons < 1:
            raise GraphError(f"num_neurons must be a positive int, got {num_neurons!r}")
        if not isinstance(allow_unreachable, bool):
            raise GraphError(f"allow_unreachable must be a bool (True or False), got "
                             f"{type(allow_unreachable).__name__} {allow_unreachable!r}")
        n = num_neurons
        ei = _as_index_tensor(edge_index, "edge_index")
        if ei.numel() == 0:
            ei = ei.reshape(2, 0)
        if ei.dim() != 2 or ei.shape[0] != 2:
            raise GraphError(f"edge_index must have shape (2, E), got {tuple(ei.shape)}")
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
            bad = ei[(ei < 0) | (ei >= n)][0].item()
            raise GraphError(f"edge_index holds neuron id {bad}, outside [0, {n - 1}] for num_neurons={n}")
        if sign is not None:
            sg = _as_tensor(sign, "sign")
            if sg.shape != (ei.shape[1],):
                raise GraphError(f"sign must have shape ({ei.shape[1]},) (one per edge), got {tuple(sg.shape)}")
            if not bool(((sg == 1) | (sg == -1)).all()):
                raise GraphError("sign must hold only +1 (excitatory) and -1 (inhibitory)")
            sg = sg.to(torch.int8)
        else:
            sg = None
        # Canonical order: by target, then source (a CSR over targets is then just a cumsum).
        key = ei[1] * n + ei[0]
        if key.numel() != torch.unique(key).numel():
            uniq, counts = torch.unique(key, return_counts=True)
            dup = int(uniq[counts > 1][0])
            raise GraphError(f"edge_index has duplicate edge {dup % n} -> {dup // n}")
        order = torch.argsort(key)
        self.num_neurons = n
        self.edge_index = ei[:, order].contiguous()
        self.sign = None if sg is None else sg[order].contiguous()
        self.input_neurons = self._check_set(input_neurons, "input_neurons", n)
        self.output_neurons = self._check_set(output_neurons, "output_neurons", n)
        self.allow_unreachable = bool(allow_unreachable)
        if not allow_unreachable:
            unreachable = sorted(set(self.output_neurons.tolist()) - self.reachable_from_inputs())
            if unreachable:
                raise GraphError(
                    f"output neurons {unreachable[:10]} are unreachable from every input neuron; "
                    "add edges or pass allow_unreachable=True"
                )

    @staticmethod
    def _check_set(ids: Iterable[int], name: str, n: int) -> torch.Tensor:
        if isinstance(ids, (str, bytes)) or not isinstance(ids, (torch.Tensor, Iterable)):
            raise GraphError(f"{name} must be a list or tensor of neuron ids, got {type(ids).__name__} {ids!r}")
        ids = ids if isinstance(ids, torch.Tensor) else list(ids)
        if len(ids) == 0:
            raise GraphError(f"{name} must name at least one neuron, got an empty set")
        t = _as_index_tensor(ids, name).reshape(-1)
        if t.numel() == 0:
            raise GraphError(f"{name} must name at least one neuron, got an empty set")
        if int(t.min()) < 0 or int(t.max()) >= n:
            raise GraphError(f"{name} holds an id outside [0, {n - 1}]: {t.tolist()[:10]}")
        if torch.unique(t).numel() != t.numel():
            raise GraphError(f"{name} holds duplicate ids: {t.tolist()[:10]}")
        return t

    # ----------------------------------------------------------------- properties
    @property
    def num_edges(self) -> int:
        """E, the number of directed edges (columns of ``edge_index``)."""
        return int(self.edge_index.shape[1])

    @property
    def density(self) -> float:
        """E / N^2 (self-loops count as possible edges)."""
        return self.num_edges / float(self.num_neurons**2)

    @property
    def signed(self) -> bool:
        """Whether the edges carry fixed signs (``sign`` is an ``(E,)`` int8 tensor of +1/-1)."""
        return self.sign is not None

    def in_degree(self) -> torch.Tensor:
        """In-edges per neuron, ``(N,)`` int64."""
        return torch.bincount(self.edge_index[1], minlength=self.num_neurons)

    def out_degree(self) -> torch.Tensor:
        """Out-edges per neuron, ``(N,)`` int64."""
        return torch.bincount(self.edge_index[0], minlength=self.num_neurons)

    def reachable_from_inputs(self) -> set[int]:
        """Neuron ids reachable from any input neuron along the edges (inputs included), a set of ints."""
        adj: list[list[int]] = [[] for _ in range(self.num_neurons)]
        for s, t in self.edge_index.t().tolist():
            adj[s].append(t)
        seen = set(self.input_neurons.tolist())
        queue = deque(seen)
        while queue:
            for t in adj[queue.popleft()]:
                if t not in seen:
                    seen.add(t)
                    queue.append(t)
        return seen

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NeuronGraph):
            return NotImplemented
        same_sign = (self.sign is None and other.sign is None) or (
            self.sign is not None and other.sign is not None and torch.equal(self.sign, other.sign)
        )
        return (
            self.num_neurons == other.num_neurons
            and torch.equal(self.edge_index, other.edge_index)
            and same_sign
            and torch.equal(self.input_neurons, other.input_neurons)
            and torch.equal(self.output_neurons, other.output_neurons)
        )

    def __repr__(self) -> str:
        return (
            f"NeuronGraph(num_neurons={self.num_neurons}, num_edges={self.num_edges}, "
            f"density={self.density:.3f}, inputs={self.input_neurons.numel()}, "
            f"outputs={self.output_neurons.numel()}, signed={self.signed})"
        )

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description that :meth:`from_dict` rebuilds exactly: ``edge_index`` as
        two lists of E ids (sources, targets), ``sign`` a list of E +1/-1 or None, the input and output
        ids as lists."""
        return {
            "num_neurons": self.num_neurons,
            "edge_index": self.edge_index.tolist(),
            "sign": None if self.sign is None else self.sign.tolist(),
            "input_neurons": self.input_neurons.tolist(),
            "output_neurons": self.output_neurons.tolist(),
            "allow_unreachable": self.allow_unreachable,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NeuronGraph":
        """The graph :meth:`to_dict` described (``num_neurons``, ``edge_index`` as two lists of E ids,
        ``input_neurons``, ``output_neurons``, optional ``sign`` and ``allow_unreachable``)."""
        if not isinstance(d, dict):
            raise GraphError(f"from_dict expects a dict, got {type(d).__name__}")
        missing = {"num_neurons", "edge_index", "input_neurons", "output_neurons"} - set(d)
        if missing:
            raise GraphError(f"graph config is missing keys {sorted(missing)}")
        return cls(
            d["num_neurons"],
            d["edge_index"],
            d["input_neurons"],
            d["output_neurons"],
            sign=d.get("sign"),
            allow_unreachable=d.get("allow_unreachable", False),
        )

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "NeuronGraph":
        """The graph :meth:`to_json` wrote."""
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------------ conversions
    def to_dense(self) -> torch.Tensor:
        """``(N, N)`` adjacency ``A`` with ``A[j, i]`` = sign (or 1) of edge ``j -> i``."""
        a = torch.zeros(self.num_neurons, self.num_neurons)
        vals = torch.ones(self.num_edges) if self.sign is None else self.sign.float()
        a[self.edge_index[0], self.edge_index[1]] = vals
        return a

    @classmethod
    def from_dense(
        cls, adjacency: Any, input_neurons: Iterable[int], output_neurons: Iterable[int], signed: bool = False, **kw: Any
    ) -> "NeuronGraph":
        """Edges where ``adjacency[j, i] != 0``; with ``signed=True`` the entry's sign is the edge sign."""
        a = _as_tensor(adjacency, "adjacency")
        if a.dim() != 2 or a.shape[0] != a.shape[1]:
            raise GraphError(f"adjacency must be a square (N, N) matrix, got shape {tuple(a.shape)}")
        src, tgt = torch.nonzero(a, as_tuple=True)
        sign = torch.sign(a[src, tgt]).to(torch.int8) if signed else None
        return cls(int(a.shape[0]), torch.stack([src, tgt]), input_neurons, output_neurons, sign=sign, **kw)

    def to_networkx(self):
        """A ``networkx.DiGraph`` with N nodes and E edges; node attribute ``role`` (input, output,
        hidden, input+output) and edge attribute ``sign``."""
        import networkx as nx

        g = nx.DiGraph()
        inputs, outputs = set(self.input_neurons.tolist()), set(self.output_neurons.tolist())
        for v in range(self.num_neurons):
            role = "input" if v in inputs else "output" if v in outputs else "hidden"
            if v in inputs and v in outputs:
                role = "input+output"
            g.add_node(v, role=role)
        signs = [1] * self.num_edges if self.sign is None else self.sign.tolist()
        for (s, t), sg in zip(self.edge_index.t().tolist(), signs):
            g.add_edge(s, t, sign=sg)
        g.graph.update(signed=self.signed)
        return g

    @classmethod
    def from_networkx(
        cls, g, input_neurons: Iterable[int] | None = None, output_neurons: Iterable[int] | None = None, **kw: Any
    ) -> "NeuronGraph":
        """From a ``networkx`` (Di)Graph with nodes ``0..N-1``. Undirected edges become both directions.

        Input and output neurons default to the node attribute ``role`` written by :meth:`to_networkx`.
        """
        import networkx as nx

        nodes = sorted(g.nodes)
        if nodes != list(range(len(nodes))):
            raise GraphError("from_networkx needs nodes labelled 0..N-1 (use nx.convert_node_labels_to_integers)")
        dg = g if g.is_directed() else g.to_directed()
        edges = list(dg.edges(data=True))
        ei = torch.tensor([[s for s, _, _ in edges], [t for _, t, _ in edges]], dtype=torch.long).reshape(2, -1)
        signed = bool(g.graph.get("signed", False))
        sign = torch.tensor([d.get("sign", 1) for _, _, d in edges], dtype=torch.int8) if signed else None
        roles = nx.get_node_attributes(g, "role")
        if input_neurons is None:
            input_neurons = [v for v in nodes if "input" in roles.get(v, "")]
        if output_neurons is None:
            output_neurons = [v for v in nodes if "output" in roles.get(v, "")]
        return cls(len(nodes), ei, input_neurons, output_neurons, sign=sign, **kw)
