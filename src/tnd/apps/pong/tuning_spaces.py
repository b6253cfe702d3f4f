"""The search space of every Pong model (``tnd pong tune``) and the chosen configurations
(``tnd pong --tuned``).

Every model gets the same number of trials over its own space; the size is always matched to
``--param-budget`` (the hidden width or the number of neurons absorbs each configuration), so a
space holds the learning rate and the model's layout knobs. Each knob is a build option of
:func:`tnd.apps.pong.models.build_model` (:func:`build_options` maps a configuration onto one):

======================  =====================================================================
model                   knobs (default = trial 0 = the untuned setting)
======================  =====================================================================
every model             ``lr`` log-uniform [1e-3, 3e-2] (5e-3)
``tnd``, ``tnd_shared`` ``graph`` {random, small_world, scale_free} (small_world, 10 % rewired);
                        ``mean_degree`` {2, 4, 8} (4); ``dynamics`` {leaky, gated} (leaky);
                        ``state_size`` {1, 2} (2); ``input_fraction`` {0.25, 0.5, 1} of the
                        neurons take input; ``propagation_steps`` {1, 2, 3};
                        ``tau_init`` {[1, 10], [1, 100], [0.25, 10], span} initial time constants
                        (per-neuron log-uniform). The last three default to the run's
                        ``--tnd-base`` (:func:`tnd_default`): control 1, 2, [0.25, 10]; v1 0.25,
                        1, [1, 10]
``rnn``, ``lstm``       ``num_layers`` {1, 2} (1)
``sparse_rnn``          ``lr`` only (its mask density is the TND graph's by design)
``cfc``                 ``backbone_units`` {8, 16, 32} (32); ``backbone_layers`` {1, 2} (1)
                        (64 units: two backbone layers alone exceed the 2000-parameter budget)
``transformer``         ``num_layers`` {1, 2} (1); ``nhead`` {1, 2, 4} (2); ``context``
                        {16, 32, 64} steps of sliding window (32, the training window)
``mamba``               ``num_layers`` {1, 2} (1); ``d_state`` {4, 8, 16} (16)
``lru``                 ``num_layers`` {1, 2} (1)
``mlp``                 ``layers`` {1, 2, 3} hidden ReLU layers (2)
``mlp_k``               ``frames`` k {2, 4, 8} (4); ``layers`` {1, 2, 3} (2)
======================  =====================================================================

A configuration whose model cannot be matched to the budget within :data:`BUDGET_TOLERANCE`
scores None (it is never chosen). A chosen-configurations file (``best_configs.json`` of a
search, or the committed ``tuned.json`` beside this module when there is one) maps each model
to its configuration; :func:`tuned_variants` turns it into the cells' variants.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..settings import UsageError
from .. import tuning
from ..search_space import SearchSpace, choice, loguniform
from .config import RESUME_MAY_CHANGE, TND_BASES, PongConfig
from .models import MODEL_NAMES, TND_NAMES

__all__ = ["SPACES", "spaces_for", "tnd_default", "LR", "BUDGET_TOLERANCE", "TUNED_FORMAT", "DEFAULT_TUNED", "space_for", "build_options",
           "load_tuned", "tuned_variants", "tuned_budget", "resolve_tuned_path", "protocol_settings",
           "committed_mismatch"]

#: a trial's model must have |params - budget| <= this fraction of the budget (the tests' tolerance)
BUDGET_TOLERANCE = 0.25
TUNED_FORMAT = "tnd.pong.tuned/1"
#: the committed chosen configurations (absent until the real search has run)
DEFAULT_TUNED = Path(__file__).with_name("tuned.json")

LR = loguniform(1e-3, 3e-2)
LR_DOC = "Adam learning rate"
LR_DEFAULT = 5e-3  # PongConfig.lr


def _space(knobs: dict[str, Any], default: dict[str, Any], doc: dict[str, str]) -> SearchSpace:
    return SearchSpace({"lr": LR, **knobs}, {"lr": LR_DEFAULT, **default}, {"lr": LR_DOC, **doc})


_TND_KNOBS = {"graph": choice(["random", "small_world", "scale_free"]), "mean_degree": choice([2, 4, 8]),
              "dynamics": choice(["leaky", "gated"]), "state_size": choice([1, 2]),
              "input_fraction": choice([0.25, 0.5, 1.0]), "propagation_steps": choice([1, 2, 3]),
              "tau_init": choice([[1.0, 10.0], [1.0, 100.0], [0.25, 10.0], "span"])}
_TND_DOC = {"graph": "graph family (small_world: 10 % of edges rewired)", "mean_degree": "mean out-degree of the graph",
            "dynamics": "neuron dynamics family", "state_size": "state variables per neuron",
            "input_fraction": "fraction of the neurons that receive the input",
            "propagation_steps": "message-passing rounds per time step",
            "tau_init": "range of the initial time constants (log-uniform per neuron; span: 1 step to tau_max)"}
#: the TND knobs without a --tnd-base (the v1 architecture: a quarter of the neurons input, one round,
#: time constants from 1 to 10 steps)
_TND_V1 = {"graph": "small_world", "mean_degree": 4, "dynamics": "leaky", "state_size": 2, "input_fraction": 0.25,
           "propagation_steps": 1, "tau_init": [1.0, 10.0]}


def tnd_default(tnd_base: str = "control") -> dict[str, Any]:
    """The TND knobs of the untuned ``tnd pong --tnd-base tnd_base`` model: trial 0 of its search must
    be the model a run trains without ``--tuned`` (the base's overrides on top of the v1 knobs)."""
    if tnd_base not in TND_BASES:
        raise ValueError(f"tnd_base: expected one of {', '.join(TND_BASES)}, got {tnd_base!r}")
    base = TND_BASES[tnd_base]
    out = dict(_TND_V1)
    for k in ("input_fraction", "propagation_steps", "dynamics", "state_size"):
        if k in base:
            out[k] = base[k]
    if "tau_init" in (base.get("dynamics_kw") or {}):
        out["tau_init"] = list(base["dynamics_kw"]["tau_init"])
    return out


_LAYERS = _space({"num_layers": choice([1, 2])}, {"num_layers": 1}, {"num_layers": "stacked recurrent layers"})

def spaces_for(tnd_base: str = "control") -> dict[str, SearchSpace]:
    """Every model's search space, the TND ones with trial 0 = the untuned model of ``tnd_base``."""
    tnd = _space(_TND_KNOBS, tnd_default(tnd_base), _TND_DOC)
    return {**_OTHERS, "tnd": tnd, "tnd_shared": tnd}


_OTHERS: dict[str, SearchSpace] = {
    "rnn": _LAYERS,
    "lstm": _LAYERS,
    "sparse_rnn": _space({}, {}, {}),
    "cfc": _space({"backbone_units": choice([8, 16, 32]), "backbone_layers": choice([1, 2])},
                  {"backbone_units": 32, "backbone_layers": 1},
                  {"backbone_units": "units of each backbone layer", "backbone_layers": "backbone layers"}),
    "transformer": _space({"num_layers": choice([1, 2]), "nhead": choice([1, 2, 4]), "context": choice([16, 32, 64])},
                          {"num_layers": 1, "nhead": 2, "context": 32},
                          {"num_layers": "pre-norm layers", "nhead": "attention heads",
                           "context": "sliding-window length (steps)"}),
    "mamba": _space({"num_layers": choice([1, 2]), "d_state": choice([4, 8, 16])}, {"num_layers": 1, "d_state": 16},
                    {"num_layers": "Mamba blocks", "d_state": "state size of each channel"}),
    "lru": _space({"num_layers": choice([1, 2])}, {"num_layers": 1}, {"num_layers": "LRU blocks"}),
    "mlp": _space({"layers": choice([1, 2, 3])}, {"layers": 2}, {"layers": "hidden ReLU layers"}),
    "mlp_k": _space({"frames": choice([2, 4, 8]), "layers": choice([1, 2, 3])}, {"frames": 4, "layers": 2},
                    {"frames": "k, the observations stacked", "layers": "hidden ReLU layers"}),
}
#: the spaces of the default protocol (``--tnd-base control``)
SPACES: dict[str, SearchSpace] = spaces_for("control")
assert set(SPACES) == set(MODEL_NAMES), "every Pong model needs a search space"


def space_for(model: str) -> SearchSpace:
    """The model's space of the default protocol (its knobs and values are the same for every base)."""
    if model not in SPACES:
        raise ValueError(f"model: expected one of {', '.join(SPACES)}, got {model!r}")
    return SPACES[model]


def build_options(model: str, config: dict[str, Any]) -> dict[str, Any]:
    """The cell variant keys (:func:`tnd.apps.pong.cells.train_cell`) of ``config``: ``lr``, and
    ``tnd`` (build_model's tnd_overrides) or ``model_kw``. ``config`` must lie in the model's space."""
    space_for(model).check(config, f"{model} configuration")
    knobs = {k: v for k, v in config.items() if k != "lr"}
    out: dict[str, Any] = {"lr": float(config["lr"])}
    if model in TND_NAMES:
        graph_kw: dict[str, Any] = {"mean_degree": float(knobs["mean_degree"]), "allow_unreachable": True}
        if knobs["graph"] == "small_world":
            graph_kw["rewire_prob"] = 0.1
        out["tnd"] = {"graph": knobs["graph"], "graph_kw": graph_kw, "dynamics": knobs["dynamics"],
                      "state_size": int(knobs["state_size"]), "input_fraction": float(knobs["input_fraction"]),
                      "propagation_steps": int(knobs["propagation_steps"]),
                      "dynamics_kw": {"tau_init": knobs["tau_init"] if isinstance(knobs["tau_init"], str)
                                      else [float(t) for t in knobs["tau_init"]]}}
    elif knobs:
        out["model_kw"] = knobs
    return out


def resolve_tuned_path(tuned: str | None) -> Path | None:
    """``--tuned``: None -> the committed file when it exists, ``none`` -> no tuned configurations."""
    return tuning.resolve_tuned_path(tuned, DEFAULT_TUNED)


def load_tuned(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{model: configuration}`` from a chosen-configurations file (UsageError naming --tuned)."""
    d = tuning.read_tuned_file(path, TUNED_FORMAT, "tnd pong tune")
    out = {}
    for m, entry in d["models"].items():
        cfg = entry.get("config") if isinstance(entry, dict) else None
        try:
            build_options(m, cfg)
        except ValueError as e:
            raise UsageError(f"--tuned: {path}: {e}") from None
        out[m] = cfg
    return out


#: settings that do not change what a tuned configuration means: those a resumed run may change
#: (seeds, workers, shifts, ...) and those a search does not use (tune.NOT_OPTIONS: it chooses lr
#: and mlp_k's k); spelled out here because tune imports this module
_NOT_PROTOCOL = (*RESUME_MAY_CHANGE, "lr", "mlp_frames", "eval_rounds", "tuned")


def protocol_settings(cfg) -> dict[str, Any]:
    """The settings of a Pong config (a ``PongConfig`` or ``TuneConfig``) under which a search chose
    its configurations: the data, the protocol, the budget and the model bases, as JSON values."""
    d = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(PongConfig) if f.name not in _NOT_PROTOCOL}
    return json.loads(json.dumps(d))


def committed_mismatch(cfg) -> dict[str, tuple[Any, Any]] | None:
    """Where a run without ``--tuned`` differs from the settings the committed ``tuned.json`` was
    searched under, ``{name: (searched, this run)}``; None when there is no committed file or it
    applies. The committed configurations are the defaults of the protocol they were chosen for
    only: ``--protocol bc``, ``--quick`` or another budget run untuned unless ``--tuned`` says so."""
    if cfg.tuned is not None or not DEFAULT_TUNED.is_file():
        return None
    d = tuning.read_tuned_file(DEFAULT_TUNED, TUNED_FORMAT, "tnd pong tune")
    searched = d.get("settings")
    if not isinstance(searched, dict):
        raise UsageError(f"--tuned: {DEFAULT_TUNED}: expected its search's 'settings' (written by tnd pong tune)")
    run = protocol_settings(cfg)
    diff = {k: (searched.get(k), v) for k, v in run.items() if searched.get(k) != v}
    return diff or None


def tuned_budget(tuned: str | None) -> int | None:
    """The ``--param-budget`` the chosen configurations of ``--tuned`` were searched at (None: unknown)."""
    path = resolve_tuned_path(tuned)
    if path is None:
        return None
    try:
        b = json.loads(path.read_text()).get("param_budget")
    except (OSError, ValueError, AttributeError):
        return None
    return b if isinstance(b, int) and not isinstance(b, bool) else None


def tuned_variants(tuned: str | None, models) -> dict[str, dict[str, Any]]:
    """``{model: cell variant}`` for the models of ``models`` that ``--tuned`` configures."""
    path = resolve_tuned_path(tuned)
    if path is None:
        return {}
    chosen = load_tuned(path)
    return {m: {"label": m, "tuned": chosen[m], **build_options(m, chosen[m])} for m in models if m in chosen}
