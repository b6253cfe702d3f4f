"""Solvers: how a TND step integrates the neuron dynamics F over one input interval.

Within one input step the external drive ``x`` is held constant (zero-order hold) and the
interval ``[t, t + dt]`` is mapped to ``[0, 1]``: the solvers integrate ``ds/dtau = dt * f(s)``,
which lets every sequence in a batch have its own ``dt`` (irregular sampling) while sharing one
time grid. ``f(s) = F(s, I(G, s), x)`` is the coupled vector field over the whole graph.

* ``exp_euler`` — exponential Euler on the relaxation form ``ds/dt = lambda (c - s)``:
  ``s' = c + (s - c) exp(-lambda h dt)`` with ``lambda, c`` evaluated at the sub-step start.
  With one sub-step it is the **discrete-time mode** (the paper's graph-coupled update
  ``s(t+1) = F(s(t), I(G, s(t)), x(t))``); it is the exact solution whenever lambda and c do not
  change within the sub-step (e.g. a neuron without in-edges), and a convex combination of
  ``s`` and ``c``, so states stay in [-1, 1] for any ``dt``.
* ``euler``, ``midpoint``, ``rk4`` — explicit fixed-step methods on the vector field
  (stable when ``lambda h dt`` stays below 2, 2 and 2.78; use ``substeps`` accordingly).
* any adaptive method of torchdiffeq (``dopri5``, ``bosh3``, ``adaptive_heun``, ...) — an extra.
"""

from __future__ import annotations

from typing import Callable

import torch

Field = Callable[[torch.Tensor], torch.Tensor]
RateTarget = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def exp_euler_step(rate_target: RateTarget, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    lam, c = rate_target(s)
    return c + (s - c) * torch.exp(-lam * h)


def euler_step(f: Field, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return s + h * f(s)


def midpoint_step(f: Field, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return s + h * f(s + 0.5 * h * f(s))


def rk4_step(f: Field, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    k1 = f(s)
    k2 = f(s + 0.5 * h * k1)
    k3 = f(s + 0.5 * h * k2)
    k4 = f(s + h * k3)
    return s + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


FIXED_STEP = {"euler": euler_step, "midpoint": midpoint_step, "rk4": rk4_step}
ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
SOLVERS = ("exp_euler", *FIXED_STEP, *ADAPTIVE)


def check_solver(name: str) -> None:
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {name!r}")
    if name in ADAPTIVE:
        try:
            import torchdiffeq  # noqa: F401
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(f"solver {name!r} needs torchdiffeq: pip install 'tnd[ode]'") from e


def integrate(
    name: str,
    rate_target: RateTarget,
    s: torch.Tensor,
    dt: torch.Tensor,
    substeps: int = 1,
    rtol: float = 1e-6,
    atol: float = 1e-8,
) -> torch.Tensor:
    """Advance ``s`` over one input interval of length ``dt`` (broadcastable to ``s``).

    ``rate_target(s) -> (lambda, c)`` closes over the drive and the interaction, so the
    vector field is ``lambda * (c - s)``.
    """
    h = dt / substeps
    if name == "exp_euler":
        for _ in range(substeps):
            s = exp_euler_step(rate_target, s, h)
        return s

    def field(z: torch.Tensor) -> torch.Tensor:
        lam, c = rate_target(z)
        return lam * (c - z)

    if name in FIXED_STEP:
        step = FIXED_STEP[name]
        for _ in range(substeps):
            s = step(field, s, h)
        return s
    from torchdiffeq import odeint

    t = torch.tensor([0.0, 1.0], dtype=s.dtype, device=s.device)
    return odeint(lambda _t, z: dt * field(z), s, t, method=name, rtol=rtol, atol=atol)[-1]
