"""Solvers: how a TND step integrates the neuron dynamics F over one input interval.

Within one input step the external drive ``x`` is held constant (zero-order hold) and the
interval ``[t, t + dt]`` is mapped to ``[0, 1]``: the solvers integrate ``ds/dtau = dt * f(s)``,
which lets every sequence in a batch have its own ``dt`` (irregular sampling) while sharing one
time grid. ``f(s) = F(s, I(G, s), x)`` is the coupled vector field over the whole graph, in
relaxation form ``f = lambda (c - s)`` with rate ``0 < lambda`` and target ``c`` in [-1, 1].

* ``exp_euler`` -- exponential Euler: ``s' = c + (s - c) exp(-lambda h)`` with ``lambda, c``
  evaluated at the sub-step start. With one sub-step it is the **discrete-time mode** (the
  paper's graph-coupled update ``s(t+1) = F(s(t), I(G, s(t)), x(t))``); it is the exact solution
  whenever lambda and c do not change within the sub-step (e.g. a neuron without in-edges), and a
  convex combination of ``s`` and ``c``, so states stay in [-1, 1] for any ``dt``.
* ``euler``, ``midpoint``, ``rk4`` -- explicit fixed-step methods on the vector field, with
  **automatic sub-steps** (the stability guarantee, proof in ``docs/STABILITY.md``): each
  sequence's internal step ``h`` is ``dt / n`` with ``n >= substeps`` a count for which
  ``h * lambda <= Z_SAFE[solver]`` at every stage of every sub-step (a ``dt`` that would need more
  than ``MAX_SUBSTEPS`` is refused with an error naming it). Then one sub-step
  is, coordinate by coordinate, ``s' = alpha s + sum_j beta_j c_j`` with ``alpha + sum beta = 1``
  and, for euler and rk4 (``Z_SAFE = 1``), every coefficient >= 0: a convex combination, so
  states stay in [-1, 1] for any coupling and weights. Midpoint is never a convex
  combination (the first stage's target enters with weight ``-z1 z2 / 2``); with
  ``Z_SAFE = 1/2`` its states stay within ``STATE_BOUND["midpoint"] = 5/3``. ``n`` starts from
  the rates at the interval's start; a state-dependent rate (the gated family) that grows
  within the interval fails the check and the interval is recomputed with more sub-steps, so the
  bound never rests on an estimate. ``substeps`` is a minimum (for accuracy), never lowered.
* any adaptive method of torchdiffeq (``dopri5``, ``bosh3``, ``adaptive_heun``, ...) -- an extra;
  its error control keeps it accurate, but it has no bound by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Field = Callable[[torch.Tensor], torch.Tensor]
RateTarget = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

#: largest ``h * lambda`` an explicit solver takes per stage (sub-steps are added until it holds):
#: euler and rk4 are convex combinations of ``s`` and the stage targets up to 1, midpoint's
#: invariant bound is (1 + z/2) / (1 - z/2), 5/3 at z = 1/2 (docs/STABILITY.md).
Z_SAFE = {"euler": 1.0, "midpoint": 0.5, "rk4": 1.0}
#: proven bound on |state| (given |initial state| <= it and targets in [-1, 1]) per solver.
STATE_BOUND = {"exp_euler": 1.0, "euler": 1.0, "midpoint": 5.0 / 3.0, "rk4": 1.0}
#: most sub-steps one input step may take; a ``dt`` that would need more is refused.
MAX_SUBSTEPS = 10_000


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


def _per_sequence_max(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Max of ``t`` (broadcastable to ``s``) over every dim but the first (the sequence), shaped
    ``(B, 1, ...)``; a ``t`` without the batch dim is reduced to one value."""
    if s.dim() <= 1:
        return torch.broadcast_to(t, s.shape)
    if t.dim() < s.dim() or t.shape[0] == 1:  # the same for every sequence (e.g. 1 / tau)
        return t.amax().reshape((1,) * s.dim())
    return t.amax(dim=tuple(range(1, s.dim())), keepdim=True)


def substep_counts(name: str, max_rate: torch.Tensor, dt: torch.Tensor, substeps: int = 1) -> torch.Tensor:
    """Sub-steps per sequence so that ``dt / n * max_rate <= Z_SAFE[name]`` and ``n >= substeps``
    (the shape of ``max_rate * dt``). Non-finite rates leave ``substeps``."""
    # (1 - 1e-6): a product that rounds just above an integer does not cost one more sub-step;
    # the check in _fixed_step tolerates the 1e-6 excess.
    need = torch.ceil(dt.detach() * max_rate.detach() * (1 - 1e-6) / Z_SAFE[name])
    need = torch.nan_to_num(need, nan=float(substeps), posinf=float(MAX_SUBSTEPS + 1))
    return need.clamp(min=float(substeps))


def _count(z: float, z_safe: float, substeps: int) -> int:
    """Python twin of :func:`substep_counts` for one value of ``dt * rate``."""
    if math.isnan(z):  # nothing to size (the result is NaN anyway)
        return substeps
    return max(substeps, math.ceil(min(z, 1e300) * (1 - 1e-6) / z_safe)) if z < math.inf else MAX_SUBSTEPS + 1


def _fixed_step(name: str, rate_target: RateTarget, s: torch.Tensor, dt: torch.Tensor, substeps: int) -> torch.Tensor:
    step, z_safe = FIXED_STEP[name], Z_SAFE[name]
    lam0, c0 = rate_target(s)  # also the first stage of the first sub-step (reused below)
    if s.is_meta:  # shape inference: no rates to size the sub-steps by, the shapes are the same
        return _run_fixed(step, rate_target, s, dt, substeps, lam0, c0)[0]
    need = dt.detach() * _per_sequence_max(lam0.detach(), s)  # dt * rate per sequence
    hi, lo = _count(float(need.max()), z_safe, substeps), _count(float(need.min()), z_safe, substeps)
    # one count for every sequence where they agree (the common case): a plain int
    n: torch.Tensor | int = hi if hi == lo else substep_counts(name, need, torch.ones_like(need), substeps)
    dt_max = float(dt.detach().max())
    while True:
        steps = n if isinstance(n, int) else int(n.max())
        if steps > MAX_SUBSTEPS:
            raise ValueError(
                f"dt (the step's elapsed time, timespans) of up to {dt_max:.4g} needs more than "
                f"{MAX_SUBSTEPS} sub-steps of solver {name!r} to keep dt / substeps * rate <= {z_safe} "
                f"(rate up to {float(lam0.detach().max()):.4g}); use smaller timespans or solver='exp_euler'")
        out, h, lam_max = _run_fixed(step, rate_target, s, dt, n, lam0, c0)
        h_max = dt_max / n if isinstance(n, int) else float(h.detach().max())
        if h_max * float(lam_max.max()) <= z_safe * (1 + 1e-5):
            return out  # every stage of every sequence within Z_SAFE (NaN rates land here too)
        # A state-dependent rate grew within the interval: more sub-steps where it did.
        z_max = h.detach() * _per_sequence_max(lam_max, s)
        bad = z_max > z_safe * (1 + 1e-5)
        if not bool(bad.any()):
            return out
        nt = torch.broadcast_to(torch.as_tensor(float(n), dtype=s.dtype) if isinstance(n, int) else n, bad.shape)
        grown = torch.nan_to_num(torch.ceil(nt * z_max / z_safe), posinf=MAX_SUBSTEPS + 1.0)
        n = torch.where(bad, torch.maximum(nt + 1, grown), nt)


def _run_fixed(step, rate_target: RateTarget, s0: torch.Tensor, dt: torch.Tensor, n: torch.Tensor | int,
               lam0: torch.Tensor, c0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``max(n)`` sub-steps of ``step``; sequence b takes ``n[b]`` of length ``dt[b] / n[b]`` and
    then stands still (``h = 0``). Returns the state, ``h`` and the elementwise max rate seen."""
    uniform = isinstance(n, int)
    steps = n if uniform else int(n.max())
    h = dt / n if uniform else dt / n.to(s0.dtype)  # per sequence where the counts differ
    lam_max = [lam0.detach()]

    def field(z: torch.Tensor) -> torch.Tensor:
        if z is s0:  # the first stage of the first sub-step: computed already
            lam, c = lam0, c0
        else:
            lam, c = rate_target(z)
            lam_max[0] = torch.maximum(lam_max[0], lam.detach())  # one cheap op per stage
        return lam * (c - z)

    s = s0
    for k in range(steps):
        hk = h if uniform else torch.where(n > k, h, torch.zeros_like(h))
        s = step(field, s, hk)
    return s, h, lam_max[0]


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
    vector field is ``lambda * (c - s)``. For ``euler``, ``midpoint`` and ``rk4``, ``substeps``
    is the minimum number of sub-steps; more are taken where ``dt * lambda`` needs them (see the
    module docstring).
    """
    if name == "exp_euler":
        h = dt / substeps
        for _ in range(substeps):
            s = exp_euler_step(rate_target, s, h)
        return s
    if name in FIXED_STEP:
        return _fixed_step(name, rate_target, s, torch.as_tensor(dt, dtype=s.dtype, device=s.device), substeps)

    def field(z: torch.Tensor) -> torch.Tensor:
        lam, c = rate_target(z)
        return lam * (c - z)

    from torchdiffeq import odeint

    t = torch.tensor([0.0, 1.0], dtype=s.dtype, device=s.device)
    return odeint(lambda _t, z: dt * field(z), s, t, method=name, rtol=rtol, atol=atol)[-1]
