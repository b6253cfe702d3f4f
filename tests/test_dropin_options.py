"""The drop-in options of docs/DROPIN.md: ``tau_init="span"`` and every neuron an input neuron
(``num_inputs=N``). Each keeps locality, runs in the fused path with the reference loop's
numbers, and saves/loads like any other option."""

from __future__ import annotations

import pytest
import torch

import tnd.fast as fast
from tnd import TND, NeuronGraph, TNDCell, load_model, save_model
from tnd.dynamics import TAU_SPAN, span_tau_init
from path_spy import PathSpy


@pytest.mark.parametrize("dynamics", ["leaky", "gated", "mlp"])
def test_span_starts_the_time_constants_from_one_step_to_tau_max(dynamics):
    g = NeuronGraph.random(200, 0.05, seed=0)
    torch.manual_seed(0)
    m = TND(2, g, 1, dynamics=dynamics, dynamics_kw={"tau_init": "span"})
    dyn = m.cell.dynamics
    assert dyn.tau_init == (1.0, 1000.0) == span_tau_init(dyn.tau_min, dyn.tau_max)
    tau = dyn.time_constants().detach()
    assert float(tau.min()) >= 1.0 - 1e-3 and float(tau.max()) <= 1000.0 + 1e-2
    # log-uniform over three decades: some neurons above 100 steps, some below 10
    assert float((tau > 100).float().mean()) > 0.2 and float((tau < 10).float().mean()) > 0.2
    # the old default stays reachable and stays below 10 steps
    torch.manual_seed(0)
    old = TND(2, g, 1, dynamics=dynamics, dynamics_kw={"tau_init": (1.0, 10.0)})
    assert float(old.cell.dynamics.time_constants().detach().max()) <= 10.0 + 1e-3


def test_span_follows_tau_min_and_tau_max():
    assert span_tau_init(0.25, 50.0) == (1.0, 50.0)
    assert span_tau_init(2.0, 300.0) == (2.0, 300.0)
    assert span_tau_init(0.1, 0.5) == (0.1, 0.5)  # nothing above one step: the whole range
    c = TNDCell(2, NeuronGraph.random(8, 0.3, seed=1), dynamics_kw={"tau_init": TAU_SPAN, "tau_max": 40.0})
    assert c.dynamics.tau_init == (1.0, 40.0)


def test_a_wrong_tau_init_string_names_the_argument():
    g = NeuronGraph.random(8, 0.3, seed=1)
    with pytest.raises(TypeError, match="tau_init must be a pair .* or 'span'"):
        TND(2, g, 1, dynamics_kw={"tau_init": "wide"})


def dropin_model(dynamics: str, seed: int = 0) -> TND:
    n = 14
    g = NeuronGraph.random(n, 0.25, seed=seed, num_inputs=n, allow_unreachable=True)
    torch.manual_seed(seed)
    return TND(3, g, 2, dynamics=dynamics, dynamics_kw={"tau_init": "span"}).double()


@pytest.mark.parametrize("dynamics", ["leaky", "gated"])
@pytest.mark.parametrize("timespans", [False, True])
def test_fused_path_matches_the_reference_loop(dynamics, timespans):
    m = dropin_model(dynamics)
    x = torch.randn(3, 7, 3, dtype=torch.float64)
    ts = torch.rand(3, 7, dtype=torch.float64) * 2 + 0.1 if timespans else None
    assert fast.supports(m, x.transpose(0, 1), torch.zeros(3, 14, 1, dtype=torch.float64), ts)
    res = []
    for use_fast in (True, False):
        m.use_fast_path = use_fast
        m.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_(True)
        with PathSpy(m) as spy:
            y, h = m(xg, None, ts)
            (y.square().sum() + h.sin().sum()).backward()
        assert (spy.fast_calls, spy.ref_calls) == ((1, 0) if use_fast else (0, 1))
        res.append([y, h, xg.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("dynamics", ["leaky", "gated"])
def test_every_neuron_an_input_neuron_keeps_locality(dynamics):
    """Every neuron gets the input drive, and still hears only its in-neighbours:
    d s_i(t+1) / d s_j(t) = 0 unless j == i or j -> i is an edge; d s_i / d x != 0 for every i."""
    m = dropin_model(dynamics, seed=3)
    c, g = m.cell, m.graph
    with torch.no_grad():  # off the identity/zero init so every parameter matters
        for p in c.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(1, 3, dtype=torch.float64)
    s0 = torch.rand(1, 14, 1, dtype=torch.float64) * 2 - 1
    jac = torch.autograd.functional.jacobian(lambda s: c(x, s), s0)[0, :, 0, 0, :, 0]
    allowed = torch.eye(14, dtype=torch.bool)
    allowed[g.edge_index[1], g.edge_index[0]] = True
    assert bool((jac[~allowed] == 0).all())
    jx = torch.autograd.functional.jacobian(lambda xx: c(xx, s0), x)[0, :, 0, 0, :]  # (neuron, channel)
    assert bool((jx.abs().sum(1) > 0).all())


def test_span_and_all_inputs_save_and_load(tmp_path):
    m = dropin_model("leaky")
    save_model(m, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.cell.dynamics_kw == {"tau_init": "span"}
    assert back.graph.input_neurons.numel() == back.num_neurons
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0], m(x)[0], rtol=0, atol=0)


def test_the_defaults_are_every_neuron_an_input_and_the_span():
    """The defaults of docs/DROPIN.md; the old ones stay one argument away."""
    from tnd.dynamics import TAU_INIT_V0
    from tnd.graph_builders import num_inputs_v0

    for g in (NeuronGraph.random(40, 0.1, seed=0), NeuronGraph.small_world(40, k=4, seed=0),
              NeuronGraph.ring(40), NeuronGraph.scale_free(40), NeuronGraph.fully_connected(12)):
        assert g.input_neurons.tolist() == list(range(g.num_neurons))
        assert g.output_neurons.tolist() == list(range(g.num_neurons - g.num_neurons // 4, g.num_neurons))
    old = NeuronGraph.random(40, 0.1, seed=0, num_inputs=num_inputs_v0(40))
    assert old.input_neurons.tolist() == list(range(10))
    assert NeuronGraph.from_name("layered", 40).input_neurons.numel() == 10  # its sensory layer, as before
    m = TND(2, NeuronGraph.random(30, 0.2, seed=0), 1)
    assert m.cell.dynamics.tau_init == (1.0, 1000.0) and m.cell.dynamics_kw == {}
    assert TND(2, old, 1, dynamics_kw={"tau_init": TAU_INIT_V0}).cell.dynamics.tau_init == (1.0, 10.0)
