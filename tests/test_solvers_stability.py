"""Dynamics stay bounded on long sequences: the explicit solvers' convexity proof (docs/STABILITY.md)
checked on their own step functions, adversarial fields, automatic sub-steps, bounded time
constants, and long rollouts of every family."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from hardening_common import GRAPH

from tnd import TND

# The rollouts are benchmarks/stability.py's grid (every family x {discrete, euler, midpoint,
# rk4, exp_euler} x {untrained, trained, x10}) on a small budget: 100,000 steps in discrete mode
# (the fast path), ROLLOUT_STEPS in continuous mode (the reference loop, ~0.1-1.5 ms a step);
# the full 100,000-step grid is `python benchmarks/stability.py` (table in docs/STABILITY.md).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import stability

from tnd import solvers

ROLLOUT_STEPS = 300
FAMILIES = ["leaky", "gated", "mlp"]


@pytest.mark.slow
@pytest.mark.parametrize("dyn", FAMILIES)
def test_long_rollout_stays_bounded(dyn):
    cfg = stability.StabilityConfig(families=(dyn,), steps=ROLLOUT_STEPS, discrete_steps=100_000, train_steps=100)
    rows = stability.run_grid(cfg)
    assert len(rows) == len(stability.MODES) * len(stability.WEIGHTS)
    for r in rows:
        name = f"{dyn}/{r['mode']}/{r['weights']}"
        assert r["finite"], name
        assert r["steps"] == (100_000 if r["mode"] == "discrete" else ROLLOUT_STEPS), name
        # the proven bound: 1 for exp_euler (discrete), euler and rk4; 5/3 for midpoint
        assert r["max_abs_state"] <= r["bound"] * (1 + 1e-5), f"{name}: max |state| = {r['max_abs_state']}"
        lo, hi = r["tau_bounds"]
        assert lo * (1 - 1e-5) <= r["tau_min"] <= r["tau_max"] <= hi * (1 + 1e-5), name
        if r["weights"] == "trained":  # genuinely trained: the validation error fell
            assert r["val_mse_after"] < 0.8 * r["val_mse_before"], name
        if r["weights"] == "x10" and r["mode"] in ("euler", "rk4") and dyn != "gated":
            # time constants at tau_min = 0.25: lambda * dt / 2 = 2 > 1, so sub-steps were added
            stages = {"euler": 1, "rk4": 4}[r["mode"]]
            assert r["rate_evals_per_step"] >= 2 * 2 * stages, name


def _staged_field(rates, targets):
    """A field whose j-th evaluation (stage j) is rates[j] * (targets[j] - y): the per-coordinate
    form every TND family has, with rate and target free to jump between stages."""
    calls = iter(range(len(rates)))

    def f(y):
        j = next(calls)
        return rates[j] * (targets[j] - y)

    return f


@pytest.mark.parametrize("name, stages", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_explicit_step_is_convex_up_to_z_safe(name, stages):
    """The proof in docs/STABILITY.md, checked on the solvers' own step functions: one sub-step is
    s' = alpha s + sum_j beta_j c_j, multilinear in the stage values z_j = h lambda_j; euler and rk4
    have every coefficient >= 0 on [0, Z_SAFE]^stages (checked at the box's vertices, enough for a
    multilinear function), midpoint has (sum |beta|) / (1 - |alpha|) <= STATE_BOUND on a grid; just
    past Z_SAFE euler and rk4 lose convexity (the bound is tight)."""
    import itertools

    step, z_safe = solvers.FIXED_STEP[name], solvers.Z_SAFE[name]

    def coefficients(z):
        out = []
        for unit in range(stages + 1):  # unit 0: s = 1, all c = 0; unit j: c_j = 1, s = 0
            s = torch.tensor(1.0 if unit == 0 else 0.0, dtype=torch.float64)
            c = [torch.tensor(1.0 if unit == j + 1 else 0.0, dtype=torch.float64) for j in range(stages)]
            out.append(float(step(_staged_field([torch.tensor(v, dtype=torch.float64) for v in z], c), s,
                                  torch.tensor(1.0, dtype=torch.float64))))
        return out

    grid = [0.0, z_safe] if name != "midpoint" else [k * z_safe / 8 for k in range(9)]
    for z in itertools.product(grid, repeat=stages):
        co = coefficients(z)
        assert abs(sum(co) - 1) < 1e-12
        if name == "midpoint":
            if co[0] < 1:
                assert sum(abs(b) for b in co[1:]) / (1 - abs(co[0])) <= solvers.STATE_BOUND[name] * (1 + 1e-12)
        else:
            assert min(co) >= -1e-15, (z, co)
    if name != "midpoint":  # some vertex of the box 5 % larger has a negative coefficient
        assert min(min(coefficients(z)) for z in itertools.product([0.0, z_safe * 1.05], repeat=stages)) < 0


def _adversarial_rate_target(seed, stiff):
    """A coupled, state-dependent field in relaxation form: rate in (0, 1 / tau_min] and target in
    [-1, 1], both switching sharply with the state (what weights x10 do), mixing every neuron."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 8, generator=g, dtype=torch.float64) * stiff
    v = torch.randn(8, 8, generator=g, dtype=torch.float64) * stiff

    def rate_target(s):  # s: (B, 8, 1)
        return 4.0 * torch.sigmoid(s[..., 0] @ v)[..., None], torch.tanh(s[..., 0] @ w)[..., None]

    return rate_target


def _field_of(rate_target, z):
    lam, c = rate_target(z)
    return lam * (c - z)


@pytest.mark.parametrize("name", ["euler", "midpoint", "rk4"])
def test_explicit_solvers_stay_within_their_bound_on_adversarial_fields(name):
    bound = solvers.STATE_BOUND[name]
    worst = worst_fixed = 0.0
    for seed in range(6):
        rt = _adversarial_rate_target(seed, stiff=30.0)
        g = torch.Generator().manual_seed(100 + seed)
        s = torch.rand(16, 8, 1, generator=g, dtype=torch.float64) * 2 - 1
        s_fixed = s.clone()
        for _ in range(40):
            dt = (torch.rand(16, 1, 1, generator=g, dtype=torch.float64) * 3 + 0.05)
            s = solvers.integrate(name, rt, s, dt, substeps=1)
            worst = max(worst, float(s.abs().max()))
            # the same solver without the automatic sub-steps (one step of length dt)
            s_fixed = solvers.FIXED_STEP[name](partial(_field_of, rt), s_fixed, dt)
            s_fixed = s_fixed.clamp(-1e6, 1e6).nan_to_num()
            worst_fixed = max(worst_fixed, float(s_fixed.abs().max()))
    assert worst <= bound * (1 + 1e-9), worst
    assert worst_fixed > bound + 0.1  # the field is adversarial enough to break an unguarded step


def test_substep_counts_and_too_large_dt():
    lam = torch.tensor([[[4.0]], [[1.0]], [[0.1]]])
    dt = torch.tensor([[[1.0]], [[1.0]], [[1.0]]])
    assert solvers.substep_counts("rk4", lam, dt, 2).flatten().tolist() == [4, 2, 2]  # substeps is a minimum
    assert solvers.substep_counts("midpoint", lam, dt, 1).flatten().tolist() == [8, 2, 1]
    assert solvers.substep_counts("euler", lam, dt * 2.5, 1).flatten().tolist() == [10, 3, 1]
    m = TND(3, GRAPH, 2, mode="continuous", solver="rk4")
    with pytest.raises(ValueError, match="dt .*timespans.* sub-steps"):
        m(torch.rand(1, 2, 3), timespans=torch.tensor([[1.0, 1e7]]))


@pytest.mark.parametrize("dyn", FAMILIES)
def test_time_constants_stay_bounded_under_huge_steps(dyn):
    torch.manual_seed(0)
    model = TND(3, GRAPH, 2, dynamics=dyn)
    dy = model.cell.dynamics
    opt = torch.optim.Adam(model.parameters(), lr=1e3)
    for i in range(5):
        x = torch.randn(4, 6, 3) * 10
        y, _ = model(x)
        loss = ((y - 100.0 * (-1) ** i) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        tau = dy.time_constants().detach()
        assert not bool(torch.isnan(tau).any())
        # rate in [1 / tau_max, 1 / tau_min] for every family (gated: rate_min + (rate_max - rate_min) sigmoid)
        assert float(tau.min()) >= dy.tau_min * (1 - 1e-5)
        assert bool(torch.isfinite(tau).all()) and float(tau.max()) <= dy.tau_max * (1 + 1e-5)
    with torch.no_grad():
        y, h = model(torch.rand(2, 50, 3))
    assert bool(torch.isfinite(h).all()) and float(h.abs().max()) <= 1.0 + 1e-6
