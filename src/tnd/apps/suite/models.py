"""Every model of the suite, built by name and matched to one parameter budget.

``build_model(name, input_size, output_size, param_budget, *, topology, graph_seed, seq_len)
-> (model, spec)`` returns an ``nn.Module`` with ``forward(x, hx=None[, timespans=None]) -> (y, h)``
(``x`` ``(B, T, C)``, ``y`` ``(B, T, output_size)``: every step's output) and a JSON-able ``spec``
(the parameter count, the size knob, whether the model takes ``timespans``).

Models (``MODEL_NAMES``)
------------------------
* ``tnd`` -- discrete-time TND, **per-neuron F** (every neuron its own dynamics parameters).
* ``tnd_shared`` -- discrete-time TND, **shared F** (the paper's instantiation).
* ``tnd_ct`` / ``tnd_ct_shared`` -- the same two in **continuous time** (F is a vector field
  integrated by the explicit midpoint rule (2nd order), at least one sub-step per input step, over
  the step's elapsed time ``timespans``; more sub-steps where ``dt / tau`` needs them for stability,
  see docs/STABILITY.md; RK4 doubles the cost for no gain at these step sizes).
* ``lstm_chrono`` -- the LSTM with the chrono initialisation (Tallec & Ollivier 2018), ``T_max``
  the task's sequence length: forget-gate time constants spread from 1 step to the whole
  sequence at the start (:class:`tnd.apps.baselines.LSTM`, ``chrono_init``). The layer-wise
  control for a long-timescale start on the memory tasks; not in the default sweep.
* ``lstm``, ``cfc`` (ncps CfC, dense, 1-layer backbone of 32 units), ``ltc`` (ncps LTC, dense,
  6 ODE unfolds), ``transformer`` (pre-norm causal Transformer, 2 layers, 2 heads, relative
  positions, a window of ``min(seq_len, MAX_CONTEXT)`` steps).
* ``mamba`` (``mambapy``'s Mamba, 1 block, its default ``d_state = 16``, ``expand_factor = 2``,
  ``d_conv = 4``) and ``lru`` (``lru-pytorch``'s Linear Recurrent Unit, 1 block with a GLU,
  ``d_state = hidden_size``): today's state-space / linear-recurrence models, from their
  packages (:mod:`tnd.apps.baselines.mamba`, :mod:`tnd.apps.baselines.lru`). Not in the default
  sweep: ask for them with ``--models``. ``lru`` is slow (the package loops over batch and time
  in Python).
* ``ode_rnn`` -- an ODE-RNN (Rubanova et al. 2019) on torchdiffeq: a GRU cell updates the hidden
  state at each observation; between observations the state evolves by a small neural ODE
  ``dh/dt = f(h)`` integrated with ``torchdiffeq.odeint`` over the elapsed time (see
  :class:`ODERNN`).
* ``mlp`` -- the **memoryless reference**: an MLP (2 hidden ReLU layers,
  :class:`tnd.apps.baselines.FrameStackMLP` with one frame) applied at every step to the current
  observation alone, so its readout sees the last (valid) step and nothing before it. It shows
  what a task demands beyond the current input: a sequence model that does not beat it clearly
  has not used its memory.

TND architecture (all four variants)
------------------------------------
A graph of ``N`` neurons from the ``topology`` family (default ``small_world``: directed
Watts-Strogatz, each neuron sends to its ``k = 4`` ring successors, 10 % rewired; the other
families use their library defaults), ``state_size = 2``, linear interaction, **leaky**
dynamics (``ds/dt = (tanh(u + x + b) - s) / tau``, a learned time constant per neuron and
state dimension with per-neuron F -- log-spread, so fast and slow neurons coexist, which the
multi-timescale task asks for -- or one shared time constant with shared F). Leaky F is the
cheapest fused family per update (see ``tnd bench``), which the suite's CPU budget needs. The input neurons are the first ``N/2`` ids and the output
neurons the last ``3N/4`` ids, so the two sets overlap by a quarter of the graph: in discrete
time a signal needs one step per graph hop, and the overlap removes the readout latency
(important for one-step-ahead readouts such as the last valid step of a short sequence).
``N`` is chosen so the parameter count is closest to the budget; shared-F models get more
neurons for the same budget. The graph is fixed by ``graph_seed`` (not the training seed), so
the spread over seeds reflects training randomness, not topology.

Build options (``options``, the tuned configurations of :mod:`.tuning_spaces`)
-----------------------------------------------------------------------------
``build_model(..., options=...)`` changes a model's layout; the size knob (neurons, hidden
width) still absorbs it, so the model stays matched to the budget. TND: ``graph`` (family; it
replaces ``topology``), ``mean_degree`` (:func:`tnd.graph_builders.degree_kw`; small_world keeps
10 % rewired), ``dynamics``, ``state_size``, ``input_fraction`` (the first
``floor(fraction * N)`` ids are inputs; 0.5 is the default layout), ``propagation_steps``,
``tau_init``; unreachable outputs are allowed (a sparse random graph may leave some). Baselines:
their constructor's keywords (``num_layers``, ``nhead``, ``backbone_units``, ...). ODE-RNN:
``ode_width``, the ODE network's hidden width as a multiple of the GRU's. MLP: ``layers``
(hidden layers, default 2). The spec records
``options``; a spec without them (every sweep before tuning) rebuilds the default model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..baselines import (
    LAYERS,
    FrameStackMLP,
    count_parameters,
    hidden_size_for_budget,
    make_baseline,
    size_for_budget,
)
from tnd.dynamics import TAU_INIT_V0
from tnd.graph import NeuronGraph
from tnd.model import TND

__all__ = [
    "MEMORYLESS",
    "MODEL_NAMES",
    "ODERNN",
    "TIMESPAN_MODELS",
    "TND_NAMES",
    "TOPOLOGIES",
    "build_model",
    "model_from_spec",
    "takes_timespans",
    "tnd_graph",
]

TND_NAMES = ("tnd", "tnd_shared", "tnd_ct", "tnd_ct_shared")
BASELINE_NAMES = ("lstm", "lstm_chrono", "cfc", "ltc", "transformer", "mamba", "lru")
#: suite baselines built from another registry entry (with their own keywords, ``_baseline_kwargs``)
_REGISTRY_NAME = {"lstm_chrono": "lstm"}
#: the memoryless reference (an MLP on the current observation)
MEMORYLESS = "mlp"
MODEL_NAMES = TND_NAMES + BASELINE_NAMES + ("ode_rnn", MEMORYLESS)
#: models whose forward accepts ``timespans`` (they get the real elapsed times on irregular tasks)
TIMESPAN_MODELS = frozenset(TND_NAMES + ("cfc", "ode_rnn"))
TOPOLOGIES = ("small_world", "random", "scale_free", "ring", "layered", "fully_connected")
#: solver of the continuous-time TND variants (one sub-step per input step)
CT_SOLVER = "midpoint"
#: widest attention window of the Transformer baseline (memory/time is O(T * context))
MAX_CONTEXT = 256

TND_DEFAULTS: dict[str, Any] = {
    "state_size": 2,
    "interaction": "linear",
    "dynamics": "leaky",
}
_GRAPH_KW: dict[str, dict[str, Any]] = {
    "small_world": {"k": 4, "rewire_prob": 0.1},
    "random": {"density": 0.1},
}


def takes_timespans(name: str) -> bool:
    return name in TIMESPAN_MODELS


def tnd_graph(num_neurons: int, topology: str = "small_world", seed: int = 0) -> NeuronGraph:
    """The suite's TND graph: first ``N/2`` ids are inputs, last ``3N/4`` outputs (overlapping)."""
    n = int(num_neurons)
    kw = dict(_GRAPH_KW.get(topology, {}))
    if topology == "layered":  # sensory / inter / command / motor layers must stay disjoint
        kw.update(num_inputs=max(1, n // 4), num_outputs=max(1, n // 4))
    else:
        kw.update(num_inputs=max(1, n // 2), num_outputs=max(1, (3 * n) // 4))
    return NeuronGraph.from_name(topology, n, seed=int(seed), **kw)


#: the build options of each kind of model (see the module doc)
TND_OPTIONS = ("graph", "mean_degree", "dynamics", "state_size", "input_fraction", "propagation_steps", "tau_init")
ODE_RNN_OPTIONS = ("ode_width",)


def _tuned_graph(num_neurons: int, options: dict[str, Any], seed: int) -> NeuronGraph:
    n = int(num_neurons)
    family = options.get("graph", "small_world")
    kw: dict[str, Any] = {} if options.get("mean_degree") is None else {"mean_degree": float(options["mean_degree"])}
    if family == "small_world":
        kw["rewire_prob"] = 0.1
    frac = float(options.get("input_fraction", 0.5))
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"input_fraction: expected a number in (0, 1], got {frac!r}")
    kw.update(num_inputs=max(1, int(frac * n)), num_outputs=max(1, (3 * n) // 4), allow_unreachable=True)
    return NeuronGraph.from_name(family, n, seed=int(seed), **kw)


def _tnd(name: str, num_neurons: int, input_size: int, output_size: int, topology: str,
         graph_seed: int, options: dict[str, Any] | None = None) -> TND:
    cont = name.startswith("tnd_ct")
    # dynamics_kw: the time-constant init of the documented suite runs (the default before docs/DROPIN.md)
    kw: dict[str, Any] = dict(TND_DEFAULTS, per_neuron=not name.endswith("_shared"),
                              mode="continuous" if cont else "discrete", dynamics_kw={"tau_init": TAU_INIT_V0})
    if cont:
        kw.update(solver=CT_SOLVER, substeps=1)
    if not options:
        return TND(input_size, tnd_graph(num_neurons, topology, graph_seed), output_size, **kw)
    bad = sorted(set(options) - set(TND_OPTIONS))
    if bad:
        raise ValueError(f"options: {name} takes {', '.join(TND_OPTIONS)}, got {', '.join(bad)}")
    for k in ("dynamics", "state_size", "propagation_steps"):
        if k in options:
            kw[k] = options[k]
    if "tau_init" in options:
        t = options["tau_init"]
        kw["dynamics_kw"] = {"tau_init": t if isinstance(t, str) else tuple(float(v) for v in t)}
    return TND(input_size, _tuned_graph(num_neurons, options, graph_seed), output_size, **kw)


def _min_neurons(options: dict[str, Any] | None) -> int:
    """A graph of mean degree k needs more than k + 1 neurons."""
    deg = (options or {}).get("mean_degree")
    return max(8, int(deg) + 2) if deg is not None else 8


class ODERNN(nn.Module):
    """ODE-RNN (Rubanova, Chen & Duvenaud 2019), built on ``torchdiffeq.odeint``.

    For each observation ``i`` with elapsed time ``dt_i`` since the previous one::

        h'_i = ODESolve(f, h_{i-1}, over dt_i)     f: h -> Linear(tanh(Linear(h)))
        h_i  = GRUCell(x_i, h'_i)
        y_i  = Linear(h_i)

    Every sequence of the batch has its own ``dt_i``; they are integrated together by
    rescaling time: with ``h(s) = h(t_{i-1} + s dt_i)`` for ``s in [0, 1]``,
    ``dh/ds = dt_i * f(h)``, so one ``odeint`` call over ``s in [0, 1]`` evolves each sequence
    over exactly its own elapsed time. ``method`` / ``options`` go to ``odeint`` (default: a
    fixed-step RK4 with ``step_size = 1.0`` in ``s``, i.e. one RK4 step per gap; pass ``method="dopri5"`` for adaptive).
    ``timespans=None`` means unit steps.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, *,
                 ode_hidden: int | None = None, method: str = "rk4",
                 options: dict | None = None, rtol: float = 1e-3, atol: float = 1e-4) -> None:
        super().__init__()
        import torchdiffeq  # noqa: F401  (fail early with a clear ImportError)

        self.input_size, self.output_size, self.hidden_size = input_size, output_size, hidden_size
        oh = ode_hidden or hidden_size
        self.func = nn.Sequential(nn.Linear(hidden_size, oh), nn.Tanh(), nn.Linear(oh, hidden_size))
        self.cell = nn.GRUCell(input_size, hidden_size)
        self.readout = nn.Linear(hidden_size, output_size)
        self.method = method
        self.options = dict(options) if options is not None else ({"step_size": 1.0} if method in ("rk4", "euler", "midpoint") else {})
        self.rtol, self.atol = rtol, atol
        self.register_buffer("_s", torch.tensor([0.0, 1.0]), persistent=False)

    def _evolve(self, h: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        from torchdiffeq import odeint

        def f(_s, z):
            return dt * self.func(z)

        return odeint(f, h, self._s.to(h.dtype), method=self.method, options=self.options,
                      rtol=self.rtol, atol=self.atol)[-1]

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None, timespans: Any = None):
        B, T, _ = x.shape
        h = x.new_zeros(B, self.hidden_size) if hx is None else hx
        if timespans is None:
            ts = x.new_ones(B, T, 1)
        else:
            ts = torch.as_tensor(timespans, dtype=x.dtype, device=x.device).reshape(B, T, 1)
        outs = []
        for xt, dt in zip(x.unbind(1), ts.unbind(1)):
            h = self._evolve(h, dt)
            h = self.cell(xt, h)
            outs.append(h)
        return self.readout(torch.stack(outs, 1)), h


def _baseline_kwargs(name: str, seq_len: int, options: dict[str, Any] | None = None) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if name == "cfc":
        kw = {"backbone_units": 32, "backbone_layers": 1}
    if name == "transformer":
        kw = {"context": int(max(2, min(seq_len, MAX_CONTEXT))), "num_layers": 2, "nhead": 2,
              "positional": "relative"}
    if name == "lstm_chrono":  # T_max: the task's length, the longest dependency it can hold
        kw = {"chrono_init": float(max(3, seq_len))}
    return {**kw, **(options or {})}


def _ode_kwargs(hidden: int, options: dict[str, Any] | None) -> dict[str, Any]:
    if not options:
        return {}
    bad = sorted(set(options) - set(ODE_RNN_OPTIONS))
    if bad:
        raise ValueError(f"options: ode_rnn takes {', '.join(ODE_RNN_OPTIONS)}, got {', '.join(bad)}")
    return {"ode_hidden": max(1, round(float(options.get("ode_width", 1.0)) * int(hidden)))}


def _mlp_kwargs(options: dict[str, Any] | None) -> dict[str, Any]:
    bad = sorted(set(options or {}) - {"layers"})
    if bad:
        raise ValueError(f"options: mlp takes layers, got {', '.join(bad)}")
    return {"frames": 1, "layers": int((options or {}).get("layers", LAYERS))}


def _closest(count, target: int, lo: int = 2, hi: int = 4096) -> int:
    """Size k in [lo, hi] whose count(k) is closest to target (count non-decreasing)."""

    def forked(k: int) -> int:
        with torch.random.fork_rng(devices=[]):
            return count(k)

    return size_for_budget(forked, target, lo=lo, hi=hi)


def build_model(name: str, input_size: int, output_size: int, param_budget: int, *,
                topology: str = "small_world", graph_seed: int = 0,
                seq_len: int = 64, options: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build ``name`` (see ``MODEL_NAMES``) with the parameter count closest to ``param_budget``.

    Initial weights come from the global torch RNG (seed it first). ``topology`` and
    ``graph_seed`` apply to the TND variants only; ``seq_len`` sets the Transformer's window;
    ``options``: the model's build options (module doc; a TND ``graph`` replaces ``topology``).
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    if topology not in TOPOLOGIES:
        raise ValueError(f"unknown topology {topology!r}; expected one of {', '.join(TOPOLOGIES)}")
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"options: expected a dict of build options, got {type(options).__name__}")
    options = dict(options) if options else None
    spec: dict[str, Any] = {"name": name, "input_size": int(input_size), "output_size": int(output_size),
                            "param_budget": int(param_budget), "timespans": takes_timespans(name)}
    if options:
        spec["options"] = options
    if name in TND_NAMES:
        if options and "graph" in options:
            topology = str(options["graph"])
        n = _closest(lambda k: count_parameters(_tnd(name, k, input_size, output_size, topology, graph_seed,
                                                     options)), param_budget, lo=_min_neurons(options))
        spec.update(kind="tnd", num_neurons=int(n), topology=topology, graph_seed=int(graph_seed))
    elif name == "ode_rnn":
        h = _closest(lambda k: count_parameters(ODERNN(input_size, output_size, k, **_ode_kwargs(k, options))),
                     param_budget)
        spec.update(kind="ode_rnn", hidden_size=int(h), kwargs=_ode_kwargs(h, options))
    elif name == MEMORYLESS:
        kw = _mlp_kwargs(options)
        h = _closest(lambda k: count_parameters(FrameStackMLP(input_size, output_size, k, **kw)), param_budget, lo=1)
        spec.update(kind="mlp", hidden_size=int(h), kwargs=kw)
    else:
        kw = _baseline_kwargs(name, seq_len, options)
        h = hidden_size_for_budget(_REGISTRY_NAME.get(name, name), input_size, output_size, int(param_budget), **kw)
        spec.update(kind="baseline", hidden_size=int(h), kwargs=kw)
    model = model_from_spec(spec)
    spec["params"] = int(count_parameters(model))
    if name in TND_NAMES:
        spec["graph_edges"] = int(model.graph.num_edges)
    return model, spec


def model_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture of ``spec`` (weights from the global RNG)."""
    if spec["kind"] == "tnd":
        return _tnd(spec["name"], spec["num_neurons"], spec["input_size"], spec["output_size"],
                    spec["topology"], spec["graph_seed"], spec.get("options"))
    if spec["kind"] == "ode_rnn":
        return ODERNN(spec["input_size"], spec["output_size"], spec["hidden_size"], **spec["kwargs"])
    if spec["kind"] == "mlp":
        return FrameStackMLP(spec["input_size"], spec["output_size"], spec["hidden_size"], **spec["kwargs"])
    return make_baseline(_REGISTRY_NAME.get(spec["name"], spec["name"]), spec["input_size"], spec["output_size"],
                         spec["hidden_size"], **spec["kwargs"])
