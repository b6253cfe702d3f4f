"""A small MLP per neuron, with a learnable time constant.

.. math::

    \\frac{ds_i}{dt} = \\frac{1}{\\tau_i}\\Big(\\tanh\\big(W^{(2)}_i \\tanh(W^{(1)}_i [s_i; u_i; x_i] + b^{(1)}_i) + b^{(2)}_i\\big) - s_i\\Big)

All N MLPs run as one batched contraction (``einsum`` over a leading neuron axis), never a
Python loop over neurons. With ``per_neuron=False`` one MLP is shared by every neuron.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import check_int
from .base import NeuronDynamics


class MLPDynamics(NeuronDynamics):
    name = "mlp"

    def __init__(self, num_neurons: int, state_size: int = 1, per_neuron: bool = True, hidden_size: int = 8, **kw) -> None:
        super().__init__(num_neurons, state_size, per_neuron, **kw)
        check_int("hidden_size", hidden_size, 1)
        d, h = state_size, hidden_size
        self.hidden_size = h
        self.tau_raw = self._param(d)
        self.w1, self.b1 = self._param(3 * d, h), self._param(h)
        self.w2, self.b2 = self._param(h, d), self._param(d)
        self.reset_parameters()

    @staticmethod
    def state_shapes(rows: int, state_size: int, hidden_size: int = 8, **kw) -> dict[str, tuple[int, ...]]:
        """Shapes of the saved tensors for ``rows`` parameter rows (N per neuron, 1 shared)."""
        check_int("hidden_size", hidden_size, 1)
        d, h = state_size, hidden_size
        return {"tau_raw": (rows, d), "w1": (rows, 3 * d, h), "b1": (rows, h), "w2": (rows, h, d), "b2": (rows, d)}

    def reset_parameters(self) -> None:
        d, h = self.state_size, self.hidden_size
        self._init_tau_raw(self.tau_raw)
        with torch.no_grad():
            nn.init.uniform_(self.w1, -1 / math.sqrt(3 * d), 1 / math.sqrt(3 * d))
            nn.init.uniform_(self.w2, -1 / math.sqrt(h), 1 / math.sqrt(h))
            self.b1.zero_()
            self.b2.zero_()

    def tau(self) -> torch.Tensor:
        return self._tau_from_raw(self.tau_raw)

    def rate_and_target(self, s, u, x):
        hid = torch.tanh(self.neuron_linear(torch.cat([s, u, x], dim=-1), self.w1) + self.b1)
        return 1.0 / self.tau(), torch.tanh(self.neuron_linear(hid, self.w2) + self.b2)

    def time_constants(self) -> torch.Tensor:
        return self.tau().expand(self.num_neurons, self.state_size)
