"""The gated update: a per-neuron, state- and input-dependent rate gate (liquid time constant).

.. math::

    \\lambda_i &= \\lambda_{min} + (\\lambda_{max} - \\lambda_{min})\\, \\sigma(s_i A_i + u_i G_i + x_i H_i + \\beta_i) \\\\
    c_i &= \\tanh(u_i V_i + x_i U_i + b_i) \\\\
    \\frac{ds_i}{dt} &= \\lambda_i \\odot (c_i - s_i)

with ``lambda_max = 1 / tau_min`` and ``lambda_min = 1 / tau_max``, so the time constant
``1 / lambda`` stays in ``[tau_min, tau_max]`` however far the gate saturates. In discrete
time with ``dt = 1`` this is a minimal GRU-like update per neuron, ``s' = s + z (c - s)``
with update gate ``z = 1 - exp(-lambda)``. The matrices are ``d x d`` per neuron (scalars
for ``d = 1``).
"""

from __future__ import annotations

import math

import torch

from .base import NeuronDynamics


class GatedDynamics(NeuronDynamics):
    name = "gated"

    def __init__(self, num_neurons: int, state_size: int = 1, per_neuron: bool = True, **kw) -> None:
        super().__init__(num_neurons, state_size, per_neuron, **kw)
        d = state_size
        self.gate_s, self.gate_u, self.gate_x = self._param(d, d), self._param(d, d), self._param(d, d)
        self.gate_bias = self._param(d)
        self.cand_u, self.cand_x = self._param(d, d), self._param(d, d)
        self.cand_bias = self._param(d)
        self.reset_parameters()

    @staticmethod
    def state_shapes(rows: int, state_size: int, **kw) -> dict[str, tuple[int, ...]]:
        """Shapes of the saved tensors for ``rows`` parameter rows (N per neuron, 1 shared)."""
        d = state_size
        return {"gate_s": (rows, d, d), "gate_u": (rows, d, d), "gate_x": (rows, d, d), "gate_bias": (rows, d),
                "cand_u": (rows, d, d), "cand_x": (rows, d, d), "cand_bias": (rows, d)}

    @property
    def rate_max(self) -> float:
        return 1.0 / self.tau_min

    @property
    def rate_min(self) -> float:
        return 1.0 / self.tau_max

    def rate(self, gate: torch.Tensor) -> torch.Tensor:
        """``lambda = lambda_min + (lambda_max - lambda_min) * sigmoid(gate)``, in [1/tau_max, 1/tau_min]."""
        return self.rate_min + (self.rate_max - self.rate_min) * torch.sigmoid(gate)

    def reset_parameters(self) -> None:
        d = self.state_size
        eye = torch.eye(d).expand(self.rows, d, d)
        with torch.no_grad():
            for p in (self.gate_s, self.gate_u, self.gate_x):
                p.normal_(0.0, 0.3 / math.sqrt(d))
            self.cand_u.copy_(eye)
            self.cand_x.copy_(eye)
            self.cand_bias.zero_()
            # Resting rate 1/tau with tau drawn as the leaky family's (log-uniform per neuron).
            lo, hi = (math.log(t) for t in self.tau_init)
            log_tau = lo + (hi - lo) * torch.rand(self.rows, d) if self.per_neuron else torch.full((1, d), 0.5 * (lo + hi))
            # invert rate(): sigmoid(bias) = (1/tau - lambda_min) / (lambda_max - lambda_min)
            frac = ((torch.exp(-log_tau) - self.rate_min) / (self.rate_max - self.rate_min)).clamp(1e-6, 1 - 1e-6)
            self.gate_bias.copy_(torch.log(frac) - torch.log1p(-frac))

    def rate_and_target(self, s, u, x):
        nl = self.neuron_linear
        gate = nl(s, self.gate_s) + nl(u, self.gate_u) + nl(x, self.gate_x) + self.gate_bias
        cand = torch.tanh(nl(u, self.cand_u) + nl(x, self.cand_x) + self.cand_bias)
        return self.rate(gate), cand

    def time_constants(self) -> torch.Tensor:
        """The resting time constants ``1 / rate(beta)`` (zero state and input), in [tau_min, tau_max]."""
        return (1.0 / self.rate(self.gate_bias)).expand(self.num_neurons, self.state_size)
