"""The search space of every suite model (``tnd suite tune``) and the chosen configurations
(``tnd suite --tuned``).

Every model gets the same number of trials over its own space. The size is always matched to
the parameter budget (the number of neurons or the hidden width absorbs each configuration, as
in an untuned cell), so a space holds the learning rate and the model's layout knobs. Each knob
is a build option of :func:`tnd.apps.suite.models.build_model` (``options``) or the cell's
learning rate; :func:`build_options` maps a configuration onto them. Trial 0 is the model's
untuned suite setting, so a search cannot end below the defaults on validation.

=========================  ====================================================================
model                      knobs (default = trial 0 = the untuned suite setting)
=========================  ====================================================================
every model                ``lr`` log-uniform [1e-3, 3e-2] (3e-3, the suite's)
``tnd``, ``tnd_shared``    ``graph`` {small_world, random, scale_free} (small_world, 10 %
                           rewired); ``mean_degree`` {2, 4, 8} (4); ``dynamics`` {leaky, gated}
                           (leaky); ``state_size`` {1, 2} (2); ``input_fraction`` {0.25, 0.5, 1}
                           of the neurons take input (0.5); ``propagation_steps`` {1, 2} (1);
                           ``tau_init`` {[1, 10], [0.25, 10], span} (per-neuron log-uniform [1, 10])
``tnd_ct``,                the same without ``propagation_steps`` (continuous time refuses K > 1)
``tnd_ct_shared``
``lstm``, ``lstm_chrono``  ``num_layers`` {1, 2} (1)
``cfc``                    ``backbone_units`` {8, 16, 32} (32); ``backbone_layers`` {1, 2} (1)
``ltc``                    ``ode_unfolds`` {3, 6} (6) solver unfolds per step
``transformer``            ``num_layers`` {1, 2} (2); ``nhead`` {1, 2, 4} (2)
``mamba``                  ``num_layers`` {1, 2} (1); ``d_state`` {4, 8, 16} (16)
``lru``                    ``num_layers`` {1, 2} (1)
``ode_rnn``                ``ode_width`` {0.5, 1, 2} (1): the ODE network's width / the GRU's
``mlp``                    ``layers`` {1, 2} (2): hidden layers of the memoryless reference
=========================  ====================================================================

Discrete or continuous time and per-neuron or shared F are not knobs: they are the four TND
models of the suite, each tuned with the same number of trials as every baseline (compare
``tnd`` with ``tnd_ct`` on validation to choose the time mode).

A trial whose model misses the budget by more than :data:`BUDGET_TOLERANCE` scores None (never
chosen). A chosen-configurations file (``best_configs.json`` of a search, or the committed
``tuned.json`` beside this module when there is one) maps ``"<task>/<model>"`` to a
configuration: configurations are chosen **per task and model**.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import tuning
from ..search_space import SearchSpace, choice, loguniform
from ..settings import UsageError
from .models import MODEL_NAMES, TND_NAMES

__all__ = ["SPACES", "LR", "BUDGET_TOLERANCE", "TUNED_FORMAT", "DEFAULT_TUNED", "space_for", "build_options",
           "pair_key", "split_key", "load_tuned", "resolve_tuned_path"]

#: a trial's model must have |params - budget| <= this fraction of the budget (the suite tests' tolerance)
BUDGET_TOLERANCE = 0.25
TUNED_FORMAT = "tnd.suite.tuned/1"
#: the committed chosen configurations (absent until the real search has run)
DEFAULT_TUNED = Path(__file__).with_name("tuned.json")

LR = loguniform(1e-3, 3e-2)
LR_DEFAULT = 3e-3  # sweep.BASE_SETTINGS["lr"]


def _space(knobs: dict[str, Any], default: dict[str, Any], doc: dict[str, str]) -> SearchSpace:
    return SearchSpace({"lr": LR, **knobs}, {"lr": LR_DEFAULT, **default}, {"lr": "Adam learning rate", **doc})


_TND_KNOBS = {"graph": choice(["small_world", "random", "scale_free"]), "mean_degree": choice([2, 4, 8]),
              "dynamics": choice(["leaky", "gated"]), "state_size": choice([1, 2]),
              "input_fraction": choice([0.25, 0.5, 1.0]), "propagation_steps": choice([1, 2]),
              "tau_init": choice([[1.0, 10.0], [0.25, 10.0], "span"])}
_TND_DEFAULT = {"graph": "small_world", "mean_degree": 4, "dynamics": "leaky", "state_size": 2,
                "input_fraction": 0.5, "propagation_steps": 1, "tau_init": [1.0, 10.0]}
_TND_DOC = {"graph": "graph family (small_world: 10 % of edges rewired)", "mean_degree": "mean out-degree of the graph",
            "dynamics": "neuron dynamics family F", "state_size": "state variables per neuron",
            "input_fraction": "fraction of the neurons that receive the input",
            "propagation_steps": "message-passing rounds per time step (discrete time only)",
            "tau_init": "initial time constants (log-uniform per neuron; span: 1 step to tau_max)"}
_TND = _space(_TND_KNOBS, _TND_DEFAULT, _TND_DOC)
_TND_CT = _space({k: v for k, v in _TND_KNOBS.items() if k != "propagation_steps"},
                 {k: v for k, v in _TND_DEFAULT.items() if k != "propagation_steps"},
                 {k: v for k, v in _TND_DOC.items() if k != "propagation_steps"})

_LSTM = _space({"num_layers": choice([1, 2])}, {"num_layers": 1}, {"num_layers": "stacked LSTM layers"})

SPACES: dict[str, SearchSpace] = {
    "tnd": _TND,
    "tnd_shared": _TND,
    "tnd_ct": _TND_CT,
    "tnd_ct_shared": _TND_CT,
    "lstm": _LSTM,
    "lstm_chrono": _LSTM,
    "cfc": _space({"backbone_units": choice([8, 16, 32]), "backbone_layers": choice([1, 2])},
                  {"backbone_units": 32, "backbone_layers": 1},
                  {"backbone_units": "units of each backbone layer", "backbone_layers": "backbone layers"}),
    "ltc": _space({"ode_unfolds": choice([3, 6])}, {"ode_unfolds": 6}, {"ode_unfolds": "ODE solver unfolds per step"}),
    "transformer": _space({"num_layers": choice([1, 2]), "nhead": choice([1, 2, 4])}, {"num_layers": 2, "nhead": 2},
                          {"num_layers": "pre-norm layers", "nhead": "attention heads"}),
    "mamba": _space({"num_layers": choice([1, 2]), "d_state": choice([4, 8, 16])}, {"num_layers": 1, "d_state": 16},
                    {"num_layers": "Mamba blocks", "d_state": "state size of each channel"}),
    "lru": _space({"num_layers": choice([1, 2])}, {"num_layers": 1}, {"num_layers": "LRU blocks"}),
    "ode_rnn": _space({"ode_width": choice([0.5, 1.0, 2.0])}, {"ode_width": 1.0},
                      {"ode_width": "hidden width of the ODE network, as a multiple of the GRU's"}),
    "mlp": _space({"layers": choice([1, 2])}, {"layers": 2}, {"layers": "hidden layers of the memoryless MLP"}),
}
assert set(SPACES) == set(MODEL_NAMES), "every suite model needs a search space"


def space_for(model: str) -> SearchSpace:
    if model not in SPACES:
        raise ValueError(f"model: expected one of {', '.join(SPACES)}, got {model!r}")
    return SPACES[model]


def build_options(model: str, config: dict[str, Any]) -> dict[str, Any]:
    """``{"lr": float, "options": build_model's options}`` of ``config`` (which must lie in the
    model's space; ValueError naming the knob otherwise)."""
    space_for(model).check(config, f"{model} configuration")
    opts = {k: v for k, v in config.items() if k != "lr"}
    if model in TND_NAMES:
        opts["mean_degree"] = float(opts["mean_degree"])
        opts["input_fraction"] = float(opts["input_fraction"])
        opts["tau_init"] = opts["tau_init"] if isinstance(opts["tau_init"], str) else [float(t) for t in
                                                                                      opts["tau_init"]]
    elif model == "ode_rnn":
        opts["ode_width"] = float(opts["ode_width"])
    return {"lr": float(config["lr"]), "options": opts}


def pair_key(task: str, model: str) -> str:
    """The tuning runner's "model": one search per (task, model)."""
    return f"{task}/{model}"


def split_key(key: str) -> tuple[str, str]:
    task, sep, model = str(key).partition("/")
    if not sep or not task or not model:
        raise ValueError(f"expected '<task>/<model>', got {key!r}")
    return task, model


def resolve_tuned_path(tuned: str | None) -> Path | None:
    """``--tuned``: None -> the committed file when it exists, ``none`` -> no tuned configurations."""
    return tuning.resolve_tuned_path(tuned, DEFAULT_TUNED)


def load_tuned(path: str | Path) -> dict[str, Any]:
    """The file's ``{"configs": {"<task>/<model>": configuration}, "param_budget", "quick"}``
    (UsageError naming --tuned on a bad file)."""
    from ..tasks import TASKS

    d = tuning.read_tuned_file(path, TUNED_FORMAT, "tnd suite tune")
    out = {}
    for key, entry in d["models"].items():
        cfg = entry.get("config") if isinstance(entry, dict) else None
        try:
            task, model = split_key(key)
            if task not in TASKS:
                raise ValueError(f"unknown task {task!r}")
            build_options(model, cfg)
        except ValueError as e:
            raise UsageError(f"--tuned: {path}: {key}: {e}") from None
        out[key] = cfg
    return {"configs": out, "param_budget": d.get("param_budget"), "quick": d.get("quick")}
