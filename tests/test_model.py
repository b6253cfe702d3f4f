"""The TND sequence module: layouts, state carry, timespans, errors, save/load."""

import json

import pytest
import torch

from tnd import TND, NeuronGraph, TNDCell, load_model, save_model


@pytest.fixture
def graph():
    return NeuronGraph.random(16, 0.25, seed=0, num_inputs=4, num_outputs=3)


def test_layouts_agree(graph):
    m = TND(3, graph, 2)
    x = torch.randn(4, 7, 3)
    y, h = m(x)
    assert y.shape == (4, 7, 2) and h.shape == (4, 16)
    m.batch_first = False
    y_tm, h_tm = m(x.transpose(0, 1).contiguous())
    assert y_tm.shape == (7, 4, 2)
    torch.testing.assert_close(y_tm.transpose(0, 1), y)
    torch.testing.assert_close(h_tm, h)
    m.batch_first = True
    y_u, h_u = m(x[1])
    assert y_u.shape == (7, 2) and h_u.shape == (16,)
    torch.testing.assert_close(y_u, y[1])
    torch.testing.assert_close(h_u, h[1])


def test_last_step_only_and_state_dim(graph):
    m = TND(3, graph, 5, return_sequences=False, state_size=3)
    x = torch.randn(2, 6, 3)
    y, h = m(x)
    assert y.shape == (2, 5) and h.shape == (2, 16, 3)
    m.return_sequences = True
    torch.testing.assert_close(m(x)[0][:, -1], y)


@pytest.mark.parametrize("mode", ["discrete", "continuous"])
def test_state_carry_equals_full_sequence(graph, mode):
    m = TND(3, graph, 2, mode=mode)
    x = torch.randn(3, 10, 3)
    ts = torch.rand(3, 10) + 0.5
    y, h = m(x, timespans=ts)
    y1, h1 = m(x[:, :4], timespans=ts[:, :4])
    y2, h2 = m(x[:, 4:], hx=h1, timespans=ts[:, 4:])
    torch.testing.assert_close(torch.cat([y1, y2], 1), y)
    torch.testing.assert_close(h2, h)
    # one step at a time, as in a control loop
    hs, ys = None, []
    for t in range(10):
        yt, hs = m(x[:, t : t + 1], hx=hs, timespans=ts[:, t : t + 1])
        ys.append(yt)
    torch.testing.assert_close(torch.cat(ys, 1), y)


@pytest.mark.parametrize("batch", [16, 5])  # 16 == num_neurons: ncps misbroadcasts there
def test_timespans_per_sequence(graph, batch):
    m = TND(3, graph, 2, mode="continuous", solver="rk4", substeps=2)
    x = torch.randn(batch, 5, 3)
    ts = torch.rand(batch, 5) * 2 + 0.1
    y, h = m(x, timespans=ts)
    for b in (0, batch - 1):
        yb, hb = m(x[b : b + 1], timespans=ts[b : b + 1])
        torch.testing.assert_close(yb[0], y[b])
        torch.testing.assert_close(hb[0], h[b])
    # (B, T, 1) and time-major layouts mean the same thing
    torch.testing.assert_close(m(x, timespans=ts[..., None])[0], y)
    m.batch_first = False
    torch.testing.assert_close(m(x.transpose(0, 1), timespans=ts.t())[0].transpose(0, 1), y)


def test_timespans_matter_and_scalar(graph):
    m = TND(3, graph, 2)
    x = torch.randn(2, 5, 3)
    assert not torch.allclose(m(x, timespans=torch.full((2, 5), 3.0))[0], m(x)[0])
    torch.testing.assert_close(m(x, timespans=1.0)[0], m(x)[0])
    torch.testing.assert_close(m(x[0], timespans=torch.ones(5))[0], m(x)[0][0])


def test_input_and_output_neurons_only(graph):
    m = TND(3, graph, 2)
    drive = m.cell.drive(torch.randn(2, 3))
    not_inputs = torch.ones(16, dtype=torch.bool)
    not_inputs[graph.input_neurons] = False
    assert bool((drive[:, not_inputs] == 0).all()) and bool((drive[:, graph.input_neurons] != 0).any())
    x = torch.randn(2, 5, 3)
    hx = torch.rand(2, 16, requires_grad=True)
    y, _ = m(x, hx=hx, timespans=torch.full((2, 5), 1e-3))  # tiny dt: nothing travels far
    (g,) = torch.autograd.grad(y[:, 0].sum(), hx)
    assert bool((g[:, graph.output_neurons] != 0).all())
    others = torch.ones(16, dtype=torch.bool)
    others[graph.output_neurons] = False
    reach = torch.zeros(16, dtype=torch.bool)  # in-neighbours of outputs influence the first step too
    for o in graph.output_neurons.tolist():
        reach[graph.edge_index[0][graph.edge_index[1] == o]] = True
    assert bool((g[:, others & ~reach] == 0).all())


BAD_INPUTS = [
    (dict(x=torch.randn(2, 5, 4)), "last dimension 3"),
    (dict(x=torch.randn(5)), "2-D or 3-D"),
    (dict(x=torch.randint(0, 3, (2, 5, 3))), "floating-point"),
    (dict(x=torch.full((2, 5, 3), float("nan"))), "NaN"),
    (dict(x=torch.full((2, 5, 3), float("inf"))), "Inf"),
    (dict(x=torch.randn(2, 0, 3)), "at least one time step"),
    (dict(x=torch.randn(2, 5, 3), hx=torch.zeros(3, 16)), "hx must have shape"),
    (dict(x=torch.randn(2, 5, 3), hx=torch.zeros(2, 16, 2)), "hx must have shape"),
    (dict(x=torch.randn(2, 5, 3), timespans=torch.ones(5, 2)), "timespans must be a scalar or of shape"),
    (dict(x=torch.randn(2, 5, 3), timespans=torch.ones(2, 5, 3)), "timespans must be a scalar or of shape"),
    (dict(x=torch.randn(2, 5, 3), timespans=torch.zeros(2, 5)), "timespans must be > 0"),
    (dict(x=torch.randn(2, 5, 3), timespans=-1.0), "timespans must be > 0"),
    (dict(x=torch.randn(2, 5, 3), timespans=torch.full((2, 5), float("nan"))), "timespans contains NaN"),
    (dict(x=[[1.0, 2.0, 3.0]]), "torch.Tensor"),
]


@pytest.mark.parametrize("kwargs, match", BAD_INPUTS)
def test_bad_input_is_refused(graph, kwargs, match):
    m = TND(3, graph, 2)
    with pytest.raises((ValueError, TypeError), match=match):
        m(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(interaction="conv"), "interaction must be one of"),
        (dict(dynamics="lstm"), "dynamics must be one of"),
        (dict(mode="hybrid"), "mode must be one of"),
        (dict(mode="continuous", solver="leapfrog"), "solver must be one of"),
        (dict(mode="discrete", solver="rk4"), "mode='discrete'"),
        (dict(mode="continuous", substeps=0), "substeps must be a positive int"),
        (dict(state_size=0), "state_size"),
        (dict(impl="csr"), "impl must be one of"),
        (dict(readout="identity"), "readout='identity' needs output_size"),
        (dict(dynamics_kw={"tau_min": 2.0, "tau_max": 1.0}), "tau_min < tau_max"),
    ],
)
def test_bad_construction_is_refused(graph, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TND(3, graph, 2, **kwargs)


def test_graph_must_be_a_neuron_graph():
    with pytest.raises(TypeError, match="graph must be a NeuronGraph"):
        TND(3, torch.zeros(4, 4), 2)


def test_cell_single_step_matches_module(graph):
    m = TND(3, graph, 2, state_size=2)
    x = torch.randn(4, 1, 3)
    _, h = m(x, timespans=torch.full((4, 1), 0.7))
    s = m.cell(x[:, 0], dt=torch.full((4,), 0.7))
    torch.testing.assert_close(s, h)
    with pytest.raises(ValueError, match="dt must be a scalar or of shape"):
        m.cell(x[:, 0], dt=torch.ones(3))
    assert isinstance(m.cell, TNDCell)


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(interaction="attention", dynamics="gated", per_neuron=False, state_size=2),
     dict(dynamics="mlp", mode="continuous", solver="euler", substeps=3, dynamics_kw={"hidden_size": 4, "tau_init": (2.0, 4.0)})],
)
def test_save_load_bit_for_bit(tmp_path, kw):
    g = NeuronGraph.layered(3, 4, 4, 2, seed=1, inhibitory_fraction=0.3)
    m = TND(3, g, 2, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    m.cell.interaction.edge_mask[0] = 0
    save_model(m, tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["config.json", "model.safetensors"]
    json.loads((tmp_path / "m" / "config.json").read_text())
    m2 = load_model(tmp_path / "m")
    x = torch.randn(2, 9, 3)
    assert torch.equal(m(x)[0], m2(x)[0])
    assert m2.graph == g and m2.config() == m.config()


def test_load_refuses_bad_files(tmp_path):
    m = TND(3, NeuronGraph.random(8, 0.3, seed=0), 2)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_model(tmp_path / "nothing")
    save_model(m, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_model(tmp_path / "m")
    save_model(m, tmp_path / "m")
    other = TND(3, NeuronGraph.random(9, 0.3, seed=0), 2)
    save_model(other, tmp_path / "o")
    (tmp_path / "m" / "model.safetensors").write_bytes((tmp_path / "o" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="has shape"):
        load_model(tmp_path / "m")


def test_demo_runs():
    from tnd.apps.demo import DemoConfig, run_demo

    res = run_demo(DemoConfig(steps=3, num_neurons=16, length=8, batch=4))
    assert set(res) == {"TND", "LSTM"} and res["TND"]["params"] > 0


def test_cli_demo(capsys):
    from tnd.apps.cli import main

    assert main(["demo", "--steps", "2", "--num-neurons", "16", "--length", "6"]) == 0
    out = capsys.readouterr().out
    assert "| TND |" in out and "| LSTM |" in out


# ---------------------------------------------------------------------- TND.step (control loops)
STEP_TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
STEP_CONFIGS = [
    dict(),
    dict(dynamics="leaky"),
    dict(dynamics="leaky", impl="sparse", state_size=2, per_neuron=False),
    dict(impl="sparse", state_size=2, per_neuron=False, propagation_steps=2),
    dict(readout="identity", output_size=3, propagation_steps=3),
    dict(dynamics="leaky", dynamics_kw={"activation": "identity"}, readout="identity", output_size=3),
    dict(dynamics="gated", state_size=2),
    dict(dynamics="mlp"),
    dict(interaction="attention"),
    dict(mode="continuous", solver="rk4", substeps=2),
]


def _step_model(graph, dtype, kw):
    kw = dict(kw)
    out = kw.pop("output_size", 2)
    torch.manual_seed(1)
    m = TND(3, graph, out, **kw).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kw", STEP_CONFIGS)
@pytest.mark.parametrize("dt_kind", ["none", "scalar", "per_seq"])
def test_step_equals_forward_over_the_sequence(graph, dtype, kw, dt_kind):
    m = _step_model(graph, dtype, kw)
    B, T = 3, 12
    x = torch.randn(B, T, 3, dtype=dtype)
    ts = {"none": None, "scalar": 0.7, "per_seq": torch.rand(B, T, dtype=dtype) + 0.3}[dt_kind]
    h0 = 0.4 * torch.rand(B, 16, m.cell.state_size, dtype=dtype) - 0.2
    with torch.no_grad():
        m.use_fast_path = False  # the reference loop, over the whole sequence
        y_ref, h_ref = m(x, h0, ts)
        m.use_fast_path = True
        h, ys = h0, []
        for t in range(T):
            dt = ts[:, t] if isinstance(ts, torch.Tensor) else ts
            y, h = m.step(x[:, t], h, dt)
            ys.append(y)
    tol = STEP_TOL[dtype]
    torch.testing.assert_close(torch.stack(ys, 1), y_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(h, h_ref, rtol=tol, atol=tol)
    assert h.shape == h_ref.shape


@pytest.mark.parametrize("dynamics", ["leaky", "gated"])  # the families with a one-call step
def test_step_lean_path_unbatched_zero_state_and_parameter_updates(graph, monkeypatch, dynamics):
    from tnd.fast import c_available
    from tnd.fast.step import Stepper

    m = _step_model(graph, torch.float64, {"dynamics": dynamics})
    st = m.stepper()
    assert m.stepper() is st
    if c_available():  # the model never leaves the one-call path under no_grad
        monkeypatch.setattr(Stepper, "general", lambda *a: (_ for _ in ()).throw(AssertionError("general path")))
    x = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        y, h = m.step(x[0])  # unbatched, zero state
        y_ref, h_ref = m(x[:1], None)
        assert y.shape == (2,) and h.shape == (16,)
        torch.testing.assert_close(y, y_ref[-1])
        torch.testing.assert_close(h, h_ref)
        for t in range(1, 5):
            y, h = m.step(x[t], h, torch.tensor(0.5, dtype=torch.float64))
        _, h_full = m(x, timespans=torch.tensor([1.0, 0.5, 0.5, 0.5, 0.5], dtype=torch.float64))
        torch.testing.assert_close(h, h_full)
        # in-place parameter updates (an optimiser step, a lesion) refresh the snapshot
        h2 = 0.4 * torch.rand(2, 16, dtype=torch.float64) - 0.2
        dyn = m.cell.dynamics
        own = (dyn.tau_raw,) if dynamics == "leaky" else (dyn.gate_s, dyn.gate_x, dyn.cand_x, dyn.gate_bias)
        for p in (m.cell.interaction.weight_raw, *own, m.cell.input_proj.weight, m.readout.bias):
            before = m.step(x[:2], h2)
            p.add_(0.3)
            after = m.step(x[:2], h2)
            assert not (torch.equal(before[0], after[0]) and torch.equal(before[1], after[1]))
            torch.testing.assert_close(after[0], m(x[:2, None], h2)[0][:, 0])
            torch.testing.assert_close(after[1], m(x[:2, None], h2)[1])
        m.cell.interaction.edge_mask[::2] = 0.0
        torch.testing.assert_close(m.step(x[:2], h2)[1], m(x[:2, None], h2)[1])
        # so do replaced parameter and module objects
        m.readout.bias = torch.nn.Parameter(m.readout.bias + 1.0)
        torch.testing.assert_close(m.step(x[:2], h2)[0], m(x[:2, None], h2)[0][:, 0])
        m.readout = torch.nn.Linear(m.readout.in_features, 2).double()
        torch.testing.assert_close(m.step(x[:2], h2)[0], m(x[:2, None], h2)[0][:, 0])
        m.cell.interaction.edge_mask = torch.zeros_like(m.cell.interaction.edge_mask)
        torch.testing.assert_close(m.step(x[:2], h2)[1], m(x[:2, None], h2)[1])


def test_step_with_autograd_and_float32_model(graph):
    m = _step_model(graph, torch.float32, {})
    x = torch.randn(2, 4, 3)
    h, ys = None, []
    for t in range(4):  # grad mode: the general path, differentiable
        y, h = m.step(x[:, t], h)
        ys.append(y)
    torch.stack(ys, 1).square().sum().backward()
    g_step = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m(x)[0].square().sum().backward()
    for a, b in zip(g_step, [p.grad for p in m.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


BAD_STEPS = [
    (dict(x=torch.randn(2, 4)), "last dimension 3"),
    (dict(x=torch.randn(2, 1, 3)), "1-D or 2-D"),
    (dict(x=torch.randint(0, 3, (2, 3))), "floating-point"),
    (dict(x=torch.full((2, 3), float("nan"))), "x contains NaN"),
    (dict(x=torch.full((2, 3), float("inf"))), "x contains Inf"),
    (dict(x=torch.randn(2, 3), h=torch.zeros(3, 16)), "h must have shape"),
    (dict(x=torch.randn(2, 3), h=torch.full((2, 16), float("nan"))), "h contains NaN"),
    (dict(x=torch.randn(2, 3), dt=0.0), "dt must be > 0"),
    (dict(x=torch.randn(2, 3), dt=float("nan")), "dt contains NaN"),
    (dict(x=torch.randn(2, 3), dt=torch.tensor([1.0, -1.0])), "dt must be > 0"),
    (dict(x=torch.randn(2, 3), dt=torch.ones(3)), "dt must be a scalar or of shape"),
    (dict(x=torch.randn(2, 3, dtype=torch.float64)), "dtype"),
    (dict(x=[1.0, 2.0, 3.0]), "torch.Tensor"),
]


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("kwargs, match", BAD_STEPS)
def test_bad_step_input_is_refused(graph, kwargs, match, grad):
    m = TND(3, graph, 2)
    with torch.set_grad_enabled(grad), pytest.raises((ValueError, TypeError), match=match):
        m.step(**kwargs)
