"""The leaky integrator: a learnable time constant per neuron (or one shared).

.. math::

    \\frac{ds_i}{dt} = \\frac{1}{\\tau_i}\\big(\\phi(u_i + x_i + b_i) - s_i\\big), \\qquad
    \\tau_i = \\exp\\big(\\log\\tau_{min} + (\\log\\tau_{max} - \\log\\tau_{min})\\,\\sigma(\\rho_i)\\big)

``phi`` is tanh by default (bounded target); ``activation="identity"`` gives a linear system
(used to test the solvers against the matrix exponential).
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_choice
from .base import NeuronDynamics

ACTIVATIONS = {"tanh": torch.tanh, "identity": lambda z: z}


class LeakyDynamics(NeuronDynamics):
    name = "leaky"

    def __init__(self, num_neurons: int, state_size: int = 1, per_neuron: bool = True, activation: str = "tanh", **kw) -> None:
        super().__init__(num_neurons, state_size, per_neuron, **kw)
        check_choice("activation", activation, tuple(sorted(ACTIVATIONS)))
        self.activation = activation
        self.tau_raw = self._param(state_size)
        self.bias = self._param(state_size)
        self.reset_parameters()

    @staticmethod
    def state_shapes(rows: int, state_size: int, **kw) -> dict[str, tuple[int, ...]]:
        """Shapes of the saved tensors for ``rows`` parameter rows (N per neuron, 1 shared)."""
        return {"tau_raw": (rows, state_size), "bias": (rows, state_size)}

    def reset_parameters(self) -> None:
        self._init_tau_raw(self.tau_raw)
        nn.init.zeros_(self.bias)

    def tau(self) -> torch.Tensor:
        return self._tau_from_raw(self.tau_raw)

    def rate_and_target(self, s, u, x):
        return 1.0 / self.tau(), ACTIVATIONS[self.activation](u + x + self.bias)

    def target_bound(self) -> float | None:
        return 1.0 if self.activation == "tanh" else None  # identity: a linear system, unbounded

    def time_constants(self) -> torch.Tensor:
        return self.tau().expand(self.num_neurons, self.state_size)
