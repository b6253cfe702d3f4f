"""F: neuron dynamics families, chosen by name."""

from ..checks import check_choice
from .base import TAU_INIT_V0, TAU_SPAN, NeuronDynamics, span_tau_init
from .gated import GatedDynamics
from .leaky import LeakyDynamics
from .mlp import MLPDynamics

DYNAMICS = {"leaky": LeakyDynamics, "gated": GatedDynamics, "mlp": MLPDynamics}


def make_dynamics(name: str, num_neurons: int, state_size: int = 1, per_neuron: bool = True, **kw) -> NeuronDynamics:
    check_choice("dynamics", name, tuple(sorted(DYNAMICS)))
    return DYNAMICS[name](num_neurons, state_size=state_size, per_neuron=per_neuron, **kw)


__all__ = ["NeuronDynamics", "TAU_SPAN", "TAU_INIT_V0", "span_tau_init", "LeakyDynamics", "GatedDynamics", "MLPDynamics", "DYNAMICS", "make_dynamics"]
