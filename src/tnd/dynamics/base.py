"""F: the neuron dynamics base class.

Every family here writes a neuron's dynamics in relaxation form

.. math::

    \\frac{ds_i}{dt} = \\lambda_i(s_i, u_i, x_i) \\odot \\big(c_i(s_i, u_i, x_i) - s_i\\big)

with a positive, bounded rate ``lambda`` (the inverse of the neuron's time constant) and a
bounded target ``c`` in [-1, 1]. ``s_i`` is neuron i's state (``d`` dims), ``u_i`` what it
receives through the interaction I, ``x_i`` its external drive (zero unless it is an input
neuron). The form is a choice that buys two guarantees: every solver step that is a convex
combination of ``s`` and ``c`` keeps states inside [-1, 1] (given an initial state there), and
the discrete update has a closed form (see :mod:`tnd.solvers`).

Time constants start log-uniform in ``tau_init`` (per neuron) and are kept in
``[tau_min, tau_max]`` by construction. ``tau_init="span"`` (the default) spreads them over the
whole allowed range above one step, ``(max(1, tau_min), tau_max)``: with the default
``tau_max = 1000`` that is 1 to 1,000 steps, so some neurons remember across horizons of hundreds
of steps from the start (training does not stretch short time constants by itself:
docs/DIAGNOSIS.md, finding 2; the default since docs/DROPIN.md). ``tau_init=TAU_INIT_V0``,
``(1, 10)``, is the range of earlier releases.

Parameters are either shared by all neurons (``per_neuron=False``: the paper's
instantiation, one F for the whole graph) or one set per neuron (``per_neuron=True``:
heterogeneous F). Shapes: a parameter has a leading dim R = N or 1, broadcast over neurons.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import check_bool, check_int, check_real


#: ``tau_init`` value: time constants log-uniform over ``(max(1, tau_min), tau_max)`` (the default)
TAU_SPAN = "span"
#: the default ``tau_init`` before docs/DROPIN.md
TAU_INIT_V0 = (1.0, 10.0)


def span_tau_init(tau_min: float, tau_max: float) -> tuple[float, float]:
    """The ``(low, high)`` that ``tau_init="span"`` stands for: from one step (or ``tau_min``, if
    larger; ``tau_min`` itself when ``tau_max <= 1``) up to ``tau_max``."""
    lo = max(1.0, tau_min) if tau_max > 1.0 else tau_min
    return (float(lo), float(tau_max))


class NeuronDynamics(nn.Module):
    """Base class: subclasses implement :meth:`rate_and_target` and :meth:`time_constants`."""

    name = "base"

    def __init__(
        self,
        num_neurons: int,
        state_size: int = 1,
        per_neuron: bool = True,
        tau_min: float = 0.25,
        tau_max: float = 1000.0,
        tau_init: tuple[float, float] | str = TAU_SPAN,
    ) -> None:
        super().__init__()
        check_int("num_neurons", num_neurons, 1)
        check_int("state_size", state_size, 1)
        check_bool("per_neuron", per_neuron)
        tau_min = check_real("tau_min", tau_min, 0.0, exclusive_min=True)
        tau_max = check_real("tau_max", tau_max, 0.0, exclusive_min=True)
        if not tau_min < tau_max:
            raise ValueError(f"need 0 < tau_min < tau_max, got tau_min={tau_min}, tau_max={tau_max}")
        if isinstance(tau_init, str) and tau_init == TAU_SPAN:
            tau_init = span_tau_init(tau_min, tau_max)
        if isinstance(tau_init, (str, bytes)) or not isinstance(tau_init, (tuple, list)) or len(tau_init) != 2:
            raise TypeError(f"tau_init must be a pair (low, high) of time constants or {TAU_SPAN!r}, got {type(tau_init).__name__} {tau_init!r}")
        lo, hi = (check_real(f"tau_init[{i}]", t, 0.0, exclusive_min=True) for i, t in enumerate(tau_init))
        if not tau_min <= lo <= hi <= tau_max:
            raise ValueError(f"tau_init={tuple(tau_init)} must lie within [tau_min, tau_max] = [{tau_min}, {tau_max}]")
        self.num_neurons = num_neurons
        self.state_size = state_size
        self.per_neuron = per_neuron
        self.rows = num_neurons if per_neuron else 1
        self.tau_min, self.tau_max, self.tau_init = float(tau_min), float(tau_max), (float(lo), float(hi))

    # -- time constants kept in [tau_min, tau_max] through a sigmoid in log space
    def _tau_from_raw(self, raw: torch.Tensor) -> torch.Tensor:
        lmin, lmax = math.log(self.tau_min), math.log(self.tau_max)
        return torch.exp(lmin + (lmax - lmin) * torch.sigmoid(raw))

    def _init_tau_raw(self, raw: torch.Tensor) -> None:
        """Per-neuron: log-uniform in ``tau_init`` (neurons start at different timescales);
        shared: the geometric mean of ``tau_init``."""
        lmin, lmax = math.log(self.tau_min), math.log(self.tau_max)
        lo, hi = (math.log(t) for t in self.tau_init)
        with torch.no_grad():
            if self.per_neuron:
                log_tau = lo + (hi - lo) * torch.rand_like(raw)
            else:
                log_tau = torch.full_like(raw, 0.5 * (lo + hi))
            frac = ((log_tau - lmin) / (lmax - lmin)).clamp(1e-6, 1 - 1e-6)
            raw.copy_(torch.log(frac) - torch.log1p(-frac))

    def _param(self, *shape: int) -> nn.Parameter:
        return nn.Parameter(torch.zeros(self.rows, *shape))

    @staticmethod
    def neuron_linear(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Per-neuron linear map: ``out[b, n] = v[b, n] @ w[n]`` (w ``(R, f, g)``, R = N or 1)."""
        if w.shape[0] == 1:
            return v @ w[0]
        if w.shape[1] == 1 and w.shape[2] == 1:
            return v * w[:, :, 0]
        return torch.einsum("bnf,nfg->bng", v, w)

    # ----------------------------------------------------------------- interface
    def rate_and_target(self, s: torch.Tensor, u: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lambda, c)``, each broadcastable to ``(B, N, d)``."""
        raise NotImplementedError

    def vector_field(self, s: torch.Tensor, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``ds/dt`` of shape ``(B, N, d)``."""
        lam, c = self.rate_and_target(s, u, x)
        return lam * (c - s)

    def time_constants(self) -> torch.Tensor:
        """Each neuron's (resting) time constant, ``(N, d)``, for inspection."""
        raise NotImplementedError

    def target_bound(self) -> float | None:
        """Bound on ``|c|``, the targets the states relax to: 1 (tanh targets) for every family
        here; None where the target is unbounded (leaky ``activation="identity"``)."""
        return 1.0

    def extra_repr(self) -> str:
        return (
            f"num_neurons={self.num_neurons}, state_size={self.state_size}, per_neuron={self.per_neuron}, "
            f"tau_range=({self.tau_min}, {self.tau_max})"
        )
