"""F: neuron dynamics families, chosen by name."""

import inspect

from ..checks import check_choice
from .base import TAU_INIT_V0, TAU_SPAN, NeuronDynamics, span_tau_init
from .gated import GatedDynamics
from .leaky import LeakyDynamics
from .mlp import MLPDynamics

DYNAMICS = {"leaky": LeakyDynamics, "gated": GatedDynamics, "mlp": MLPDynamics}


def dynamics_options(name: str) -> tuple[str, ...]:
    """The ``dynamics_kw`` keys family ``name`` takes: the base's time-constant options and its own."""
    own = (p for cls in (NeuronDynamics, DYNAMICS[name]) for p in inspect.signature(cls.__init__).parameters.values()
           if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("self", "num_neurons", "state_size", "per_neuron"))
    return tuple(dict.fromkeys(p.name for p in own))


def make_dynamics(name: str, num_neurons: int, state_size: int = 1, per_neuron: bool = True, **kw) -> NeuronDynamics:
    check_choice("dynamics", name, tuple(sorted(DYNAMICS)))
    allowed = dynamics_options(name)
    unknown = [k for k in kw if k not in allowed]
    if unknown:  # one family's option passed to another (leaky's activation to gated, say)
        raise TypeError(f"dynamics_kw: {unknown[0]!r} is not an option of dynamics={name!r}; "
                        f"expected some of {', '.join(allowed)}")
    return DYNAMICS[name](num_neurons, state_size=state_size, per_neuron=per_neuron, **kw)


__all__ = ["NeuronDynamics", "TAU_SPAN", "TAU_INIT_V0", "span_tau_init", "LeakyDynamics", "GatedDynamics", "MLPDynamics", "DYNAMICS", "dynamics_options", "make_dynamics"]
