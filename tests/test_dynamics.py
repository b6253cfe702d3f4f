"""F, the solvers and the defining properties of a TND system."""

import itertools

import pytest
import torch

from tnd import TND, NeuronGraph, TNDCell

COMBOS = list(itertools.product(["linear", "attention"], ["leaky", "gated", "mlp"], [True, False]))


def cell(graph, interaction="linear", dynamics="leaky", per_neuron=True, d=1, **kw):
    torch.manual_seed(0)
    c = TNDCell(3, graph, state_size=d, interaction=interaction, dynamics=dynamics, per_neuron=per_neuron, **kw).double()
    with torch.no_grad():  # move off the zero/identity init so every parameter matters
        for p in c.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return c


@pytest.mark.parametrize("interaction, dynamics, per_neuron", COMBOS)
def test_locality_jacobian(interaction, dynamics, per_neuron):
    """d s_i(t+1) / d s_j(t) is exactly zero unless j == i or j -> i is an edge, and is not
    identically zero on edges."""
    g = NeuronGraph.random(12, 0.2, seed=7, allow_unreachable=True)
    c = cell(g, interaction, dynamics, per_neuron)
    x = torch.randn(1, 3, dtype=torch.float64)
    s0 = torch.rand(1, 12, 1, dtype=torch.float64) * 2 - 1
    jac = torch.autograd.functional.jacobian(lambda s: c(x, s), s0)[0, :, 0, 0, :, 0]  # (i, j)
    allowed = torch.eye(12, dtype=torch.bool)
    allowed[g.edge_index[1], g.edge_index[0]] = True
    assert bool((jac[~allowed] == 0).all()), "a neuron was influenced without an edge"
    on_edges = jac[g.edge_index[1], g.edge_index[0]]
    assert bool((on_edges != 0).any()), "edges carry no influence"


@pytest.mark.parametrize("dynamics", ["leaky", "mlp", "gated"])
def test_per_neuron_parameters_are_per_neuron(dynamics):
    g = NeuronGraph.random(10, 0.3, seed=1)
    c = cell(g, dynamics=dynamics)
    x, s0 = torch.randn(2, 3, dtype=torch.float64), torch.rand(2, 10, 1, dtype=torch.float64)
    before = c(x, s0)
    with torch.no_grad():
        p = c.dynamics.tau_raw if dynamics != "gated" else c.dynamics.gate_bias
        p[4] += 1.0  # neuron 4's time constant
    after = c(x, s0)
    changed = (after != before).any(0)[:, 0]
    assert changed.tolist() == [i == 4 for i in range(10)]


def test_shared_parameters_are_shared():
    g = NeuronGraph.random(10, 0.3, seed=1)
    c = cell(g, per_neuron=False)
    assert c.dynamics.tau_raw.shape == (1, 1)
    assert torch.unique(c.dynamics.time_constants()).numel() == 1


@pytest.mark.parametrize("interaction, dynamics, per_neuron", COMBOS)
@pytest.mark.parametrize("impl", ["dense", "sparse"])
def test_gradcheck(interaction, dynamics, per_neuron, impl):
    g = NeuronGraph.random(5, 0.4, seed=3, num_inputs=2, num_outputs=2, inhibitory_fraction=0.3)
    torch.manual_seed(0)
    m = TND(3, g, 2, state_size=2, interaction=interaction, dynamics=dynamics, per_neuron=per_neuron, impl=impl).double()
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    hx = (torch.rand(2, 5, 2, dtype=torch.float64) - 0.5).requires_grad_()
    params = [p for p in m.parameters()]

    def f(x, hx, *ps):
        with torch.nn.utils.stateless._reparametrize_module(m, {n: p for (n, _), p in zip(m.named_parameters(), ps)}):
            y, h = m(x, hx, timespans=torch.tensor([[1.0, 0.5, 2.0], [0.3, 1.0, 1.0]], dtype=torch.float64))
        return y, h

    assert torch.autograd.gradcheck(f, (x, hx, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dynamics", ["leaky", "gated", "mlp"])
def test_continuous_reduces_to_discrete_without_coupling(dynamics):
    """With no in-edges, u = 0 and the drive is constant over the step: for leaky and mlp F,
    lambda is constant, so the discrete update is the exact solution and a fine RK4 must
    agree; one exp_euler sub-step in continuous mode *is* the discrete update (any F)."""
    g = NeuronGraph(4, torch.empty(2, 0, dtype=torch.long), [0, 1, 2, 3], [0, 1, 2, 3])
    torch.manual_seed(0)
    disc = TND(3, g, 2, dynamics=dynamics).double()
    cont = TND(3, g, 2, dynamics=dynamics, mode="continuous", solver="exp_euler", substeps=1).double()
    cont.load_state_dict(disc.state_dict())
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    ts = torch.rand(2, 6, dtype=torch.float64) + 0.2
    torch.testing.assert_close(cont(x, timespans=ts)[0], disc(x, timespans=ts)[0], rtol=0, atol=0)
    if dynamics == "leaky":
        rk = TND(3, g, 2, dynamics="leaky", mode="continuous", solver="rk4", substeps=50).double()
        rk.load_state_dict(disc.state_dict())
        torch.testing.assert_close(rk(x, timespans=ts)[0], disc(x, timespans=ts)[0], rtol=1e-9, atol=1e-9)


def linear_system():
    g = NeuronGraph.random(6, 0.5, seed=2, num_inputs=2, num_outputs=2)
    torch.manual_seed(1)
    m = TND(2, g, 2, mode="continuous", solver="rk4", substeps=1, readout="linear",
            dynamics="leaky", dynamics_kw={"activation": "identity", "tau_init": (1.0, 3.0)}).double()
    return g, m


def exact_linear(m, g, x_const, s0, t):
    """ds/dt = diag(1/tau) (W^T s + drive + b - s): s(t) = e^{At} s0 + A^{-1}(e^{At} - I) c."""
    inter, dyn = m.cell.interaction, m.cell.dynamics
    w = inter.to_dense_weight(inter.effective_edge_weight())[0]  # W[j, i]
    inv_tau = 1.0 / dyn.tau()[:, 0]
    a = inv_tau[:, None] * (w.t() - torch.eye(6, dtype=w.dtype))
    drive = m.cell.drive(x_const)[0, :, 0]
    c = inv_tau * (drive + dyn.bias[:, 0])
    e = torch.linalg.matrix_exp(a * t)
    return e @ s0 + torch.linalg.solve(a, (e - torch.eye(6, dtype=w.dtype)) @ c)


@pytest.mark.parametrize("solver, order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_linear_system_matches_matrix_exponential(solver, order):
    g, m = linear_system()
    m.cell.solver = solver
    x = torch.randn(1, 2, dtype=torch.float64)
    s0 = torch.rand(6, dtype=torch.float64) - 0.5
    t = 2.0
    with torch.no_grad():
        exact = exact_linear(m, g, x, s0, t)
        errs = []
        for k in (8, 16, 32):
            m.cell.substeps = k
            _, h = m(x[None], hx=s0[None], timespans=torch.tensor([[t]], dtype=torch.float64))
            errs.append(float((h[0] - exact).abs().max()))
    assert errs[-1] < 1e-2 ** (order / 2) * 0.1
    rates = [errs[i] / errs[i + 1] for i in range(2)]
    assert all(2 ** order * 0.7 < r < 2 ** order * 1.4 for r in rates), (errs, rates)


def test_adaptive_solver_from_torchdiffeq():
    pytest.importorskip("torchdiffeq")
    g, m = linear_system()
    m.cell.solver = "dopri5"
    x = torch.randn(1, 1, 2, dtype=torch.float64)
    s0 = torch.rand(6, dtype=torch.float64) - 0.5
    with torch.no_grad():
        _, h = m(x, hx=s0[None], timespans=torch.tensor([[1.5]], dtype=torch.float64))
        exact = exact_linear(m, g, x[0], s0, 1.5)
    torch.testing.assert_close(h[0], exact, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dynamics", ["leaky", "gated", "mlp"])
def test_states_stay_bounded_discrete(dynamics):
    g = NeuronGraph.random(16, 0.5, seed=0)
    m = TND(2, g, 1, dynamics=dynamics)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(20.0)  # extreme weights
        _, h = m(torch.randn(3, 200, 2) * 100, timespans=torch.rand(3, 200) * 50 + 0.01)
    assert bool(torch.isfinite(h).all()) and float(h.abs().max()) <= 1.0 + 1e-6


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gated_time_constant_bounded_both_ways(sign):
    """rate = 1/tau_max + (1/tau_min - 1/tau_max) * sigmoid(gate): however far the gate saturates,
    the time constant (resting and state-dependent) stays in [tau_min, tau_max], in the reference
    and in the fused fast path alike."""
    g = NeuronGraph.random(10, 0.3, seed=1)
    c = cell(g, dynamics="gated", dynamics_kw={"tau_min": 0.5, "tau_max": 50.0})
    dy = c.dynamics
    with torch.no_grad():
        for p in (dy.gate_bias, dy.gate_s, dy.gate_u, dy.gate_x):
            p.fill_(sign * 1e4)
    tau = dy.time_constants().detach()
    assert bool(torch.isfinite(tau).all())
    assert float(tau.min()) >= 0.5 * (1 - 1e-9) and float(tau.max()) <= 50.0 * (1 + 1e-9)
    s = torch.rand(3, 10, 1, dtype=torch.float64) * 2 - 1
    x = torch.randn(3, 10, 1, dtype=torch.float64) * 100
    rate = dy.rate_and_target(s, torch.randn_like(s) * 100, x)[0].detach()
    assert float((1 / rate).min()) >= 0.5 * (1 - 1e-9) and float((1 / rate).max()) <= 50.0 * (1 + 1e-9)
    # a saturated-shut gate still relaxes at rate 1/tau_max: the state moves (it no longer freezes)
    m = TND(3, g, 2, dynamics="gated", dynamics_kw={"tau_min": 0.5, "tau_max": 50.0}).double()
    with torch.no_grad():
        m.cell.dynamics.gate_bias.fill_(-1e4)
        for p in (m.cell.dynamics.gate_s, m.cell.dynamics.gate_u, m.cell.dynamics.gate_x):
            p.zero_()
    hx = torch.full((1, 10), 0.5, dtype=torch.float64)
    xs = torch.zeros(1, 1, 3, dtype=torch.float64)
    for fast in (True, False):
        m.use_fast_path = fast
        _, h = m(xs, hx)
        assert bool((h != hx).any()), "a shut gate froze the state"
    ys = []
    for fast in (True, False):
        m.use_fast_path = fast
        ys.append(m(torch.randn(2, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), hx.expand(2, 10))[1])
    assert torch.allclose(ys[0], ys[1], atol=1e-10)
