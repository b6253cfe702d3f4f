"""Every model of the Pong comparison, built by name behind one interface.

``build_model(name, input_size, output_size, param_budget, ...) -> (model, spec)`` returns an
``nn.Module`` with ``forward(x, hx=None) -> (y, h)`` (``x`` ``(B, T, C)``, ``y`` the logits of
every step) and a JSON-able ``spec`` from which :func:`model_from_spec` rebuilds the same
architecture (for checkpoints). Each model's size knob (neurons for TND, hidden units for the
baselines) is chosen so that its trainable-parameter count is as close as possible to
``param_budget``.

``MODEL_NAMES``: ``tnd`` (small-world graph, leaky per-neuron dynamics with learnable time
constants, ``state_size = 2``, linear interaction, discrete update: ``TND_DEFAULTS``),
``tnd_shared`` (the same with one F shared by every neuron), ``rnn``, ``sparse_rnn`` (mask density
of the TND graph, matched on effective parameters), ``lstm``, ``cfc`` (``ncps.torch.CfC``) and
``transformer`` (sliding window); ``mamba`` (``mambapy``) and ``lru`` (``lru-pytorch``) are
available but not in the experiment's default list (``tnd pong --models mamba lru``). The
architecture (graph, sparse mask) is fixed by ``graph_seed``; the training seed changes only the
initial weights and the batch order. Why this default TND: docs/PONG.md (section 4).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from ..baselines import count_parameters, hidden_size_for_budget, make_baseline, size_for_budget
from tnd.checks import check_positive_int
from tnd.dynamics import TAU_INIT_V0
from tnd.graph import NeuronGraph
from tnd.graph_builders import num_inputs_v0
from tnd.model import TND
from .references import REFERENCE_NAMES, make_reference, reference_hidden_for_budget, reference_kwargs

__all__ = [
    "MODEL_NAMES",
    "TND_NAMES",
    "BASELINE_NAMES",
    "REFERENCE_NAMES",
    "TND_DEFAULTS",
    "build_model",
    "model_from_spec",
    "ScaledInput",
    "count_parameters",
    "tnd_graph",
    "num_neurons_for_budget",
]

TND_NAMES = ("tnd", "tnd_shared")
BASELINE_NAMES = ("rnn", "sparse_rnn", "lstm", "cfc", "transformer", "mamba", "lru")
MODEL_NAMES = TND_NAMES + BASELINE_NAMES + REFERENCE_NAMES  # references: non-recurrent MLPs (.references)

#: the default TND architecture (why: docs/PONG.md, section 4)
TND_DEFAULTS: dict[str, Any] = {
    "graph": "small_world",
    "graph_kw": {"k": 4, "rewire_prob": 0.1},
    "state_size": 2,
    "interaction": "linear",
    "dynamics": "leaky",
    "mode": "discrete",
}


def tnd_graph(num_neurons: int, graph: str = "small_world", graph_kw: dict[str, Any] | None = None,
              seed: int = 0) -> NeuronGraph:
    """The TND neuron graph of ``num_neurons`` neurons (default roles: first quarter input,
    last quarter output: the library's defaults before docs/DROPIN.md, kept here so that the
    Pong experiments, and the run folders they saved, rebuild the same models)."""
    kw = dict(graph_kw or {})
    if graph != "layered":  # layered: its own sensory layer
        kw.setdefault("num_inputs", num_inputs_v0(int(num_neurons)))
    return NeuronGraph.from_name(graph, int(num_neurons), seed=int(seed), **kw)


def _tnd_from(num_neurons: int, input_size: int, output_size: int, cfg: dict[str, Any], seed: int) -> TND:
    if cfg["graph"] == "explicit":  # a stored graph (e.g. a learned topology), not a family
        g = NeuronGraph.from_dict(cfg["graph_dict"])
        if g.num_neurons != num_neurons:
            raise ValueError(f"spec: num_neurons {num_neurons} differs from the stored graph's {g.num_neurons}")
    else:
        graph_kw = dict(cfg.get("graph_kw") or {})
        frac = cfg.get("input_fraction")  # the input neurons as a fraction of the neurons (the size varies)
        if frac is not None:
            if not (isinstance(frac, (int, float)) and 0.0 < float(frac) <= 1.0):
                raise ValueError(f"input_fraction: expected a number in (0, 1], got {frac!r}")
            graph_kw["num_inputs"] = max(1, round(float(frac) * int(num_neurons)))
        g = tnd_graph(num_neurons, cfg["graph"], graph_kw, seed)
    # keys added later (tuning) are optional, so specs saved before them load unchanged; the
    # time-constant init of the documented Pong runs is the library default before docs/DROPIN.md
    dynamics_kw = {"tau_init": TAU_INIT_V0, **(cfg.get("dynamics_kw") or {})}
    return TND(input_size, g, output_size, state_size=cfg["state_size"], interaction=cfg["interaction"],
               dynamics=cfg["dynamics"], per_neuron=cfg["per_neuron"], mode=cfg["mode"],
               dynamics_kw=dynamics_kw, propagation_steps=int(cfg.get("propagation_steps", 1)))


def num_neurons_for_budget(input_size: int, output_size: int, param_budget: int, cfg: dict[str, Any],
                           graph_seed: int = 0, lo: int = 8, hi: int = 2048) -> int:
    """Number of neurons whose TND (built from ``cfg``) has the parameter count closest to
    ``param_budget`` (binary search; counts grow with the number of neurons)."""
    deg = (cfg.get("graph_kw") or {}).get("mean_degree")
    if deg is not None:  # a graph of mean degree k needs at least k + 1 neurons
        lo = max(lo, math.ceil(float(deg)) + 2)

    def count(n: int) -> int:
        with torch.random.fork_rng(devices=[]):
            return count_parameters(_tnd_from(n, input_size, output_size, cfg, graph_seed))

    return size_for_budget(count, param_budget, lo=lo, hi=hi)


def _baseline_kwargs(name: str, *, window: int, density: float, graph_seed: int,
                     cfc_backbone_units: int) -> dict[str, Any]:
    if name == "sparse_rnn":
        return {"density": float(density), "mask_seed": int(graph_seed)}
    if name == "cfc":
        return {"backbone_units": int(cfc_backbone_units), "backbone_layers": 1}
    if name == "transformer":
        return {"context": int(window), "num_layers": 1, "nhead": 2, "positional": "relative"}
    return {}


class ScaledInput(nn.Module):
    """``forward(x, hx=None) -> inner((x - center) * scale, hx)``: a fixed (not trained) change of
    units in front of any sequence model; same interface, same parameters as ``inner``."""

    def __init__(self, inner: nn.Module, center: float, scale: float) -> None:
        super().__init__()
        self.inner = inner
        self.center, self.scale = float(center), float(scale)

    def forward(self, x: torch.Tensor, hx: Any = None):
        return self.inner((x - self.center) * self.scale, hx)

    def extra_repr(self) -> str:
        return f"center={self.center}, scale={self.scale}"


def build_model(name: str, input_size: int, output_size: int, param_budget: int, *, window: int = 64,
                graph_seed: int = 0, tnd_overrides: dict[str, Any] | None = None,
                cfc_backbone_units: int = 32, input_center: float = 0.0,
                input_scale: float = 1.0, mlp_frames: int = 4,
                model_kw: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build model ``name`` (one of ``MODEL_NAMES``) matched to ``param_budget`` parameters.

    Uses the global torch RNG for the initial weights (seed it first). ``window`` is the
    training window (the Transformer's context); ``tnd_overrides`` changes ``TND_DEFAULTS``
    keys (e.g. ``{"graph": "random", "graph_kw": {"mean_degree": 4}}``; ``"num_neurons"`` fixes the
    size instead of matching the budget; ``{"graph": "explicit", "graph_dict": g.to_dict()}`` uses a
    stored graph; also ``propagation_steps``, ``dynamics_kw`` (e.g. ``{"tau_init": [1, 100]}``) and
    ``input_fraction``, the input neurons as a fraction of the neurons). ``model_kw`` changes the
    constructor options of a baseline or reference (e.g. ``{"num_layers": 2}``; the hidden size is
    still matched to the budget); TND takes ``tnd_overrides`` instead. Returns
    ``(model, spec)``; ``spec`` holds ``params`` (the trainable-parameter count) and whatever
    :func:`model_from_spec` needs.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    check_positive_int("param_budget", param_budget)
    cfg = copy.deepcopy(TND_DEFAULTS)
    cfg.update(copy.deepcopy(tnd_overrides or {}))
    spec: dict[str, Any] = {"name": name, "input_size": int(input_size), "output_size": int(output_size),
                            "param_budget": int(param_budget), "graph_seed": int(graph_seed),
                            "input_center": float(input_center), "input_scale": float(input_scale)}
    if model_kw and name in TND_NAMES:
        raise ValueError(f"model_kw: {name} takes its options through tnd_overrides, got model_kw={model_kw!r}")
    if name in TND_NAMES:
        cfg["per_neuron"] = name == "tnd"
        fixed_n = cfg.pop("num_neurons", None)
        if cfg["graph"] == "explicit":
            fixed_n = NeuronGraph.from_dict(cfg["graph_dict"]).num_neurons
        n = int(fixed_n) if fixed_n is not None else num_neurons_for_budget(input_size, output_size, param_budget,
                                                                              cfg, graph_seed)
        spec.update(kind="tnd", num_neurons=n, tnd=cfg)
    elif name in REFERENCE_NAMES:  # mlp_frames: mlp_k's k
        kw = {**reference_kwargs(name, mlp_frames), **dict(model_kw or {})}
        hidden = reference_hidden_for_budget(input_size, output_size, param_budget, **kw)
        spec.update(kind="reference", hidden_size=int(hidden), kwargs=kw)
    else:
        # the sparse RNN copies the density of the default TND graph at the same budget
        tcfg = dict(cfg, per_neuron=True)
        tcfg.pop("num_neurons", None)
        density = tnd_graph(num_neurons_for_budget(input_size, output_size, param_budget, tcfg, graph_seed),
                            tcfg["graph"], tcfg.get("graph_kw"), graph_seed).density
        kw = _baseline_kwargs(name, window=window, density=density, graph_seed=graph_seed,
                              cfc_backbone_units=cfc_backbone_units)
        kw.update(model_kw or {})
        # the sparse RNN is matched on its effective (unmasked) parameters: masked weights never train
        hidden = hidden_size_for_budget(name, input_size, output_size, param_budget,
                                        effective=name == "sparse_rnn", **kw)
        spec.update(kind="baseline", hidden_size=int(hidden), kwargs=kw)
    model = model_from_spec(spec)
    core = model.inner if isinstance(model, ScaledInput) else model
    spec["params"] = count_parameters(core, effective=True)
    if name == "sparse_rnn":
        spec["stored_params"] = count_parameters(core)
    if name in TND_NAMES:
        spec["graph_edges"] = int(core.graph.num_edges)
        spec["graph_density"] = float(core.graph.density)
    return model, spec


def model_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture described by ``spec`` (weights drawn from the global RNG)."""
    if spec["kind"] == "tnd":
        m = _tnd_from(spec["num_neurons"], spec["input_size"], spec["output_size"], spec["tnd"], spec["graph_seed"])
    elif spec["kind"] == "reference":
        m = make_reference(spec["input_size"], spec["output_size"], spec["hidden_size"], **spec["kwargs"])
    else:
        m = make_baseline(spec["name"], spec["input_size"], spec["output_size"], spec["hidden_size"], **spec["kwargs"])
    center, scale = spec.get("input_center", 0.0), spec.get("input_scale", 1.0)
    if center != 0.0 or scale != 1.0:
        m = ScaledInput(m, center, scale)
    return m
