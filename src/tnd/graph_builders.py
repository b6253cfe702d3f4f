"""Seeded builders of the standard graph families, mixed into :class:`tnd.NeuronGraph`.

Random (Erdos-Renyi), fully connected, ring lattice, small-world (directed Watts-Strogatz),
scale-free (Barabasi-Albert, links both ways) and layered (sensory -> inter -> command ->
motor, as ncps's NCP). Every builder takes a seed and gives the same graph for the same seed.
By default every neuron takes input and the last quarter is read out (``layered``: its sensory
layer takes input, its motor layer is read out). Every neuron an input neuron is the default
because it beat a quarter of them on 4 of 5 memory and control tasks at equal budget and lost
clearly on none (docs/DROPIN.md); ``num_inputs=num_inputs_v0(N)`` (``max(1, N // 4)``, the
first quarter) gives the graphs of earlier releases.
"""

from __future__ import annotations

import math
from typing import Any, Sequence, TypeVar

import torch

from .graph_errors import GraphError

# The graph class the builders are mixed into (NeuronGraph); a type variable rather than an import
# of tnd.graph, which imports this module.
GraphT = TypeVar("GraphT", bound="GraphBuilders")


def _int(name: str, value: Any, minimum: int | None = None, optional: bool = False) -> Any:
    """An int argument (not a bool), optionally None; errors name the argument."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise GraphError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise GraphError(f"{name} must be >= {minimum}, got {value}")
    return value


def _real(name: str, value: Any) -> float:
    """A finite real number argument; errors name the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GraphError(f"{name} must be a finite number, got {type(value).__name__} {value!r}")
    return float(value)


def _common(num_neurons: Any, seed: Any, num_inputs: Any, num_outputs: Any, inhibitory_fraction: Any) -> None:
    _int("num_neurons", num_neurons, 1)
    _int("seed", seed)
    if not -(2**63) <= seed < 2**64:
        raise GraphError(f"seed must lie in [-2**63, 2**64), got {seed}")
    _int("num_inputs", num_inputs, optional=True)
    _int("num_outputs", num_outputs, optional=True)
    _real("inhibitory_fraction", inhibitory_fraction)


def num_inputs_v0(num_neurons: int) -> int:
    """The builders' default ``num_inputs`` before docs/DROPIN.md: the first quarter of the neurons."""
    return max(1, int(num_neurons) // 4)


class GraphBuilders:
    """Class-method constructors of :class:`tnd.NeuronGraph` (``cls`` is the graph class)."""

    @staticmethod
    def _io_sets(n: int, num_inputs: int | None, num_outputs: int | None) -> tuple[list[int], list[int]]:
        """Default roles: every neuron takes input, the last quarter is read out."""
        ni = num_inputs if num_inputs is not None else n
        no = num_outputs if num_outputs is not None else max(1, n // 4)
        if ni < 1 or no < 1 or ni > n or no > n:
            raise GraphError(f"num_inputs and num_outputs must lie in [1, {n}], got {ni} and {no}")
        return list(range(ni)), list(range(n - no, n))

    @staticmethod
    def _random_sign(e: int, inhibitory_fraction: float, gen: torch.Generator) -> torch.Tensor | None:
        if inhibitory_fraction <= 0:
            return None
        if not inhibitory_fraction <= 1:
            raise GraphError(f"inhibitory_fraction must lie in [0, 1], got {inhibitory_fraction}")
        return torch.where(torch.rand(e, generator=gen) < inhibitory_fraction, -1, 1).to(torch.int8)

    @classmethod
    def _build(cls: type[GraphT], n, src, tgt, num_inputs, num_outputs, inhibitory_fraction, gen, **kw) -> GraphT:
        ei = torch.stack([torch.as_tensor(src, dtype=torch.long), torch.as_tensor(tgt, dtype=torch.long)])
        ins, outs = cls._io_sets(n, num_inputs, num_outputs)
        sign = cls._random_sign(ei.shape[1], inhibitory_fraction, gen)
        return cls(n, ei, ins, outs, sign=sign, **kw)

    @classmethod
    def random(
        cls: type[GraphT],
        num_neurons: int,
        density: float,
        seed: int = 0,
        num_inputs: int | None = None,
        num_outputs: int | None = None,
        self_loops: bool = False,
        inhibitory_fraction: float = 0.0,
        **kw: Any,
    ) -> GraphT:
        """Erdos-Renyi directed graph: each possible edge present with probability ``density``."""
        _common(num_neurons, seed, num_inputs, num_outputs, inhibitory_fraction)
        if not 0.0 < _real("density", density) <= 1.0:
            raise GraphError(f"density must lie in (0, 1], got {density}")
        gen = torch.Generator().manual_seed(seed)
        mask = torch.rand(num_neurons, num_neurons, generator=gen) < density
        if not self_loops:
            mask.fill_diagonal_(False)
        src, tgt = torch.nonzero(mask, as_tuple=True)
        return cls._build(num_neurons, src, tgt, num_inputs, num_outputs, inhibitory_fraction, gen, **kw)

    @classmethod
    def fully_connected(
        cls: type[GraphT], num_neurons: int, num_inputs: int | None = None, num_outputs: int | None = None,
        self_loops: bool = False, inhibitory_fraction: float = 0.0, seed: int = 0, **kw: Any,
    ) -> GraphT:
        """Every edge ``j -> i`` (``N (N - 1)`` of them, ``N^2`` with ``self_loops``)."""
        _common(num_neurons, seed, num_inputs, num_outputs, inhibitory_fraction)
        mask = torch.ones(num_neurons, num_neurons, dtype=torch.bool)
        if not self_loops:
            mask.fill_diagonal_(False)
        src, tgt = torch.nonzero(mask, as_tuple=True)
        gen = torch.Generator().manual_seed(seed)
        return cls._build(num_neurons, src, tgt, num_inputs, num_outputs, inhibitory_fraction, gen, **kw)

    @classmethod
    def ring(
        cls: type[GraphT], num_neurons: int, k: int = 2, bidirectional: bool = True, num_inputs: int | None = None,
        num_outputs: int | None = None, inhibitory_fraction: float = 0.0, seed: int = 0, **kw: Any,
    ) -> GraphT:
        """Ring lattice: neuron ``i`` sends to its ``k`` successors (and predecessors if bidirectional)."""
        _common(num_neurons, seed, num_inputs, num_outputs, inhibitory_fraction)
        n = num_neurons
        if not 1 <= _int("k", k) < n:
            raise GraphError(f"k must lie in [1, num_neurons - 1], got {k}")
        pairs = {(i, (i + o) % n) for i in range(n) for o in range(1, k + 1)}
        if bidirectional:
            pairs |= {(t, s) for s, t in pairs}
        src, tgt = zip(*sorted(pairs))
        gen = torch.Generator().manual_seed(seed)
        return cls._build(n, src, tgt, num_inputs, num_outputs, inhibitory_fraction, gen, **kw)

    @classmethod
    def small_world(
        cls: type[GraphT], num_neurons: int, k: int = 4, rewire_prob: float = 0.1, seed: int = 0,
        num_inputs: int | None = None, num_outputs: int | None = None, inhibitory_fraction: float = 0.0, **kw: Any,
    ) -> GraphT:
        """Directed Watts-Strogatz: a ring where each neuron sends to its ``k`` successors, and each
        edge's target is rewired with probability ``rewire_prob`` to a uniformly chosen neuron
        (no self-loops, no duplicates)."""
        _common(num_neurons, seed, num_inputs, num_outputs, inhibitory_fraction)
        n = num_neurons
        if not 1 <= _int("k", k) < n:
            raise GraphError(f"k must lie in [1, num_neurons - 1], got {k}")
        if not 0.0 <= _real("rewire_prob", rewire_prob) <= 1.0:
            raise GraphError(f"rewire_prob must lie in [0, 1], got {rewire_prob}")
        gen = torch.Generator().manual_seed(seed)
        edges = {(i, (i + o) % n) for i in range(n) for o in range(1, k + 1)}
        for s, t in sorted(edges):
            if torch.rand((), generator=gen).item() < rewire_prob:
                for _ in range(8 * n):  # a bounded search for a free target
                    nt = int(torch.randint(n, (), generator=gen))
                    if nt != s and (s, nt) not in edges:
                        edges.discard((s, t))
                        edges.add((s, nt))
                        break
        src, tgt = zip(*sorted(edges))
        return cls._build(n, src, tgt, num_inputs, num_outputs, inhibitory_fraction, gen, **kw)

    @classmethod
    def scale_free(
        cls: type[GraphT], num_neurons: int, m: int = 2, seed: int = 0, num_inputs: int | None = None,
        num_outputs: int | None = None, inhibitory_fraction: float = 0.0, **kw: Any,
    ) -> GraphT:
        """Directed Barabasi-Albert: each new neuron links with ``m`` existing neurons chosen with
        probability proportional to degree; each link is made in both directions, so hubs both
        collect and broadcast."""
        _common(num_neurons, seed, num_inputs, num_outputs, inhibitory_fraction)
        n = num_neurons
        if not 1 <= _int("m", m) < n:
            raise GraphError(f"m must lie in [1, num_neurons - 1], got {m}")
        gen = torch.Generator().manual_seed(seed)
        edges: set[tuple[int, int]] = set()
        targets = list(range(m))
        repeated: list[int] = []
        for v in range(m, n):
            for t in set(targets):
                edges.add((v, t))
                edges.add((t, v))
            repeated.extend(targets)
            repeated.extend([v] * m)
            chosen: set[int] = set()
            while len(chosen) < m:
                chosen.add(repeated[int(torch.randint(len(repeated), (), generator=gen))])
            targets = sorted(chosen)
        src, tgt = zip(*sorted(edges))
        return cls._build(n, src, tgt, num_inputs, num_outputs, inhibitory_fraction, gen, **kw)

    @classmethod
    def layered(
        cls: type[GraphT],
        sensory: int,
        inter: int,
        command: int,
        motor: int,
        sensory_fanout: int | None = None,
        inter_fanout: int | None = None,
        recurrent_command_synapses: int | None = None,
        motor_fanin: int | None = None,
        inhibitory_fraction: float = 0.0,
        seed: int = 0,
        **kw: Any,
    ) -> GraphT:
        """A four-layer circuit as ncps's NCP: sensory -> inter -> command -> motor, with recurrent
        synapses among command neurons. Sensory neurons take the input, motor neurons are read out.
        Every inter neuron gets at least one sensory input, every command neuron at least one
        inter input, every motor neuron at least ``motor_fanin`` command inputs."""
        sizes = (sensory, inter, command, motor)
        for name, v in zip(("sensory", "inter", "command", "motor"), sizes):
            _int(f"layer size {name}", v)
        for name, v in (("sensory_fanout", sensory_fanout), ("inter_fanout", inter_fanout), ("motor_fanin", motor_fanin)):
            _int(name, v, 1, optional=True)
        _int("recurrent_command_synapses", recurrent_command_synapses, 0, optional=True)
        _common(1, seed, None, None, inhibitory_fraction)
        if min(sizes) < 1:
            raise GraphError(f"layer sizes must be >= 1, got {sizes}")
        gen = torch.Generator().manual_seed(seed)
        off = [0, sensory, sensory + inter, sensory + inter + command]
        n = sum(sizes)
        layers = [list(range(off[i], off[i] + sizes[i])) for i in range(4)]
        sensory_fanout = sensory_fanout or max(1, math.ceil(inter * 0.5))
        inter_fanout = inter_fanout or max(1, math.ceil(command * 0.5))
        motor_fanin = motor_fanin or max(1, math.ceil(command * 0.5))
        rec = command * 2 if recurrent_command_synapses is None else recurrent_command_synapses
        edges: set[tuple[int, int]] = set()

        def pick(pool: Sequence[int], k: int) -> list[int]:
            perm = torch.randperm(len(pool), generator=gen)[: min(k, len(pool))]
            return [pool[i] for i in perm.tolist()]

        def feed(src_layer: list[int], dst_layer: list[int], fanout: int) -> None:
            for s in src_layer:
                for t in pick(dst_layer, fanout):
                    edges.add((s, t))
            for t in dst_layer:  # nobody left without input
                if not any((s, t) in edges for s in src_layer):
                    edges.add((pick(src_layer, 1)[0], t))

        feed(layers[0], layers[1], sensory_fanout)
        feed(layers[1], layers[2], inter_fanout)
        for t in layers[3]:
            for s in pick(layers[2], motor_fanin):
                edges.add((s, t))
        cmd = layers[2]
        for _ in range(rec):
            s, t = pick(cmd, 1)[0], pick(cmd, 1)[0]
            edges.add((s, t))
        src, tgt = zip(*sorted(edges))
        ei = torch.tensor([src, tgt], dtype=torch.long)
        sign = cls._random_sign(ei.shape[1], inhibitory_fraction, gen)
        return cls(n, ei, layers[0], layers[3], sign=sign, **kw)

    @classmethod
    def from_name(cls: type[GraphT], name: str, num_neurons: int, seed: int = 0, mean_degree: float | None = None,
                  **kw: Any) -> GraphT:
        """Build a graph family by name: random, fully_connected, small_world, scale_free, ring, layered.

        ``mean_degree`` (optional) sets each family's own density knob so that the mean out-degree
        is about ``mean_degree`` whatever ``num_neurons`` is (see :func:`degree_kw`); it lets
        families be compared at the same sparsity (topology sweeps)."""
        if mean_degree is not None:
            kw = {**degree_kw(name, int(num_neurons), mean_degree), **kw}
        builders = {
            "random": lambda: cls.random(num_neurons, kw.pop("density", 0.25), seed=seed, **kw),
            "fully_connected": lambda: cls.fully_connected(num_neurons, seed=seed, **kw),
            "small_world": lambda: cls.small_world(num_neurons, seed=seed, **kw),
            "scale_free": lambda: cls.scale_free(num_neurons, seed=seed, **kw),
            "ring": lambda: cls.ring(num_neurons, seed=seed, **kw),
            "layered": lambda: cls.layered(*_layer_sizes(num_neurons, kw), seed=seed, **kw),
        }
        if name not in builders:
            raise GraphError(f"unknown graph family {name!r}; expected one of {sorted(builders)}")
        return builders[name]()


def degree_kw(name: str, num_neurons: int, mean_degree: float) -> dict[str, Any]:
    """The builder options of family ``name`` giving a mean out-degree of about ``mean_degree``.

    random: ``density = k / (N - 1)``; small_world: ``k`` successors; ring (bidirectional):
    ``k / 2`` each way; scale_free: ``m = k / 2`` links made in both directions; layered: every
    fan-out / fan-in ``k`` (the realised degree is lower: the last layer sends nothing).
    fully_connected has no knob and refuses it."""
    k = _real("mean_degree", mean_degree)
    n = int(num_neurons)
    if not 1.0 <= k <= n - 1:
        raise GraphError(f"mean_degree must lie in [1, num_neurons - 1] = [1, {n - 1}], got {mean_degree}")
    half = max(1, round(k / 2))
    table = {
        "random": {"density": k / (n - 1)},
        "small_world": {"k": max(1, round(k))},
        "ring": {"k": half, "bidirectional": True},
        "scale_free": {"m": half},
        "layered": {"sensory_fanout": max(1, round(k)), "inter_fanout": max(1, round(k)),
                    "motor_fanin": max(1, round(k))},
    }
    if name not in table:
        raise GraphError(f"mean_degree is not defined for graph family {name!r}; expected one of {sorted(table)}")
    return table[name]


def _layer_sizes(n: int, kw: dict[str, Any]) -> tuple[int, int, int, int]:
    """Split n neurons into sensory/inter/command/motor (motor = num_outputs, sensory = num_inputs)."""
    motor = kw.pop("num_outputs", None) or max(1, n // 8)
    sensory = kw.pop("num_inputs", None) or max(1, n // 4)
    rest = n - motor - sensory
    if rest < 2:
        raise GraphError(f"a layered graph of {n} neurons leaves fewer than 2 inter+command neurons")
    inter = rest // 2
    return sensory, inter, rest - inter, motor
