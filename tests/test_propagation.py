"""``propagation_steps`` K: K rounds of interaction per input step (issue 12, point 4).

Each input step of length dt is K exponential-Euler sub-steps of dt / K, each one round of I then
F, the input drive held. Checked here: the definition itself (K rounds of the one-round update),
exact locality per round (Jacobians on random graphs), the fused paths against the reference loop
(every family, dense and sparse, with timespans, ``TND.step``), gradcheck, validation, the saved
config, and that K = 1 is the update it always was.
"""

from __future__ import annotations

import json

import pytest
import torch

import tnd
import tnd.fast as fast
from tnd import TND
from tnd.cell import MAX_PROPAGATION_STEPS
from tnd.checks import ArgumentTypeError
from tnd.graph import NeuronGraph

TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
needs_c = pytest.mark.skipif(not fast.c_available(), reason="the gated, MLP and attention fast paths are C-only")
FAMILIES = [("leaky", "linear"), ("gated", "linear"), ("mlp", "linear"), ("leaky", "attention")]


def random_graph(n=9, density=0.25, seed=0, inputs=2, outputs=2):
    return NeuronGraph.random(n, density, seed=seed, num_inputs=inputs, num_outputs=outputs, allow_unreachable=True,
                              inhibitory_fraction=0.3)


def make(graph, K, dyn="leaky", inter="linear", dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    dkw = {"hidden_size": 3} if dyn == "mlp" else {}
    m = TND(3, graph, 2, dynamics=dyn, interaction=inter, propagation_steps=K, dynamics_kw=dkw, **kw).to(dtype)
    with torch.no_grad():  # every parameter away from its initial symmetry
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def hops_from(graph, sources) -> torch.Tensor:
    """Directed hop distance of every neuron from the set ``sources`` (a large number: unreachable)."""
    n = graph.num_neurons
    dist = torch.full((n,), 10**6, dtype=torch.long)
    dist[torch.as_tensor(sources)] = 0
    src, tgt = graph.edge_index
    for _ in range(n):
        nxt = dist.clone()
        nxt.scatter_reduce_(0, tgt, dist[src] + 1, reduce="amin")
        if torch.equal(nxt, dist):
            break
        dist = nxt
    return dist


def close(a, b, tol, what):
    err = (a - b).abs().max().item()
    scale = max(1.0, b.abs().max().item())
    assert err <= tol * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


# ------------------------------------------------------------------------------ definition
@pytest.mark.parametrize("dyn,inter", FAMILIES)
def test_k_rounds_are_k_one_round_updates_of_dt_over_k(dyn, inter):
    """The definition: one input step of a K-round model is K steps of the one-round model (same
    weights) over dt / K each, the input repeated; the readout sees the last round."""
    g = random_graph(seed=1)
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    ts = torch.rand(3, 5, dtype=torch.float64) + 0.3
    for K in (2, 3):
        m, one = make(g, K, dyn, inter), make(g, 1, dyn, inter)
        one.load_state_dict(m.state_dict())
        for use_fast in (False, True):
            m.use_fast_path = one.use_fast_path = use_fast
            y, h = m(x, timespans=ts)
            y1, h1 = one(x.repeat_interleave(K, 1), timespans=(ts / K).repeat_interleave(K, 1))
            close(y, y1[:, K - 1::K], 1e-12, f"outputs, K={K}, fast={use_fast}")
            close(h, h1, 1e-12, f"state, K={K}, fast={use_fast}")
            y, h = m(x)  # no timespans: each round is 1 / K
            y1, h1 = one(x.repeat_interleave(K, 1), timespans=torch.full((3, 5 * K), 1.0 / K, dtype=torch.float64))
            close(y, y1[:, K - 1::K], 1e-12, f"outputs without timespans, K={K}, fast={use_fast}")


def test_cell_forward_is_k_rounds():
    """``TNDCell.forward`` (one step) is K one-round steps of dt / K, per-sequence dt included."""
    g = random_graph(seed=2)
    torch.manual_seed(0)
    cell = tnd.TNDCell(3, g, dynamics="gated", propagation_steps=3).double()
    one = tnd.TNDCell(3, g, dynamics="gated").double()
    one.load_state_dict(cell.state_dict())
    x = torch.randn(4, 3, dtype=torch.float64)
    hx = 0.5 * torch.rand(4, g.num_neurons, 1, dtype=torch.float64)
    dt = torch.rand(4, dtype=torch.float64) + 0.5
    s = hx
    for _ in range(3):
        s = one(x, s, dt / 3)
    close(cell(x, hx, dt), s, 1e-13, "cell step")
    assert (cell(x, hx, dt) - one(x, hx, dt)).abs().max() > 1e-3


def test_k_does_not_change_a_neuron_without_in_edges():
    """A neuron without in-edges and without input relaxes to its fixed target in exactly the same
    way for every K: the sub-steps of dt / K keep the time scale (tau in input steps)."""
    g = NeuronGraph(4, torch.tensor([[0, 1], [1, 2]]), input_neurons=[0], output_neurons=[2], allow_unreachable=True)
    hx = torch.tensor([[0.0, 0.1, -0.2, 0.7]], dtype=torch.float64)
    x = torch.randn(1, 6, 3, dtype=torch.float64)
    ts = torch.rand(1, 6, dtype=torch.float64) + 0.5
    ref = None
    for K in (1, 2, 5):
        _, h = make(g, K)(x, hx, ts)
        ref = h[0, 3] if ref is None else ref
        close(h[0, 3], ref, 1e-12, f"isolated neuron, K={K}")


# ------------------------------------------------------------------------------- locality
@pytest.mark.parametrize("dyn,inter", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_input_step_reaches_exactly_k_rounds_of_hops(dyn, inter, seed):
    """After one input step, d h / d x is non-zero exactly at the neurons within K - 1 hops of the
    input neurons (x enters them in the first round, each later round one edge further), and
    d h_i / d s0_j exactly where j is within K hops upstream of i: one edge per round, no more,
    no less. From the zero state and from a fixed non-zero state, for several K."""
    g = random_graph(n=12, density=0.12, seed=seed)
    d_in = hops_from(g, g.input_neurons)
    hops = torch.stack([hops_from(g, [j]) for j in range(g.num_neurons)])  # hops[j, i]: j -> i
    assert d_in[d_in < 10**6].max() >= 3, "a graph too shallow to test the rounds"
    x0 = torch.randn(1, 3, dtype=torch.float64)
    for K in (1, 2, 3, 5):
        m = make(g, K, dyn, inter, seed=seed)
        for use_fast in (True, False):
            m.use_fast_path = use_fast
            for start in ("zero", "fixed"):
                s0 = (torch.zeros if start == "zero" else torch.rand)(1, g.num_neurons, dtype=torch.float64) * 0.8
                jx = torch.autograd.functional.jacobian(lambda x: m(x[:, None], s0)[1][0], x0)  # (N, 1, 3)
                reached = jx.abs().sum((1, 2)) > 0
                assert torch.equal(reached, d_in <= K - 1), (K, start, use_fast, reached, d_in)
                js = torch.autograd.functional.jacobian(lambda s: m(x0[:, None], s)[1][0], s0)[:, 0]  # (N_i, N_j)
                assert torch.equal(js.abs() > 0, hops.t() <= K), (K, start, use_fast)


def test_an_output_k_hops_away_reacts_k_over_K_steps_late():
    """On a chain 0 -> 1 -> ... -> 6 (output 6 hops from the input), an input at step 0 first
    moves the output at step 6 // K."""
    n = 7
    g = NeuronGraph(n, torch.tensor([list(range(n - 1)), list(range(1, n))]), input_neurons=[0], output_neurons=[n - 1])
    for K in (1, 2, 3, 6, 7):
        m = make(g, K)
        x = torch.zeros(1, 8, 3, dtype=torch.float64, requires_grad=True)
        y, _ = m(x)
        first = next(t for t in range(8) if torch.autograd.grad(y[0, t].sum(), x, retain_graph=True)[0][0, 0].abs().sum() > 0)
        assert first == (n - 1) // K, (K, first)


# ------------------------------------------------------------------- fast path vs reference
def run_both(m, x, hx, ts):
    res = []
    for use_fast in (True, False):
        m.use_fast_path = use_fast
        m.zero_grad(set_to_none=True)
        xg, hg = x.clone().requires_grad_(), hx.clone().requires_grad_()
        y, h = m(xg, hg, ts)
        (y.square().sum() + h.sin().sum()).backward()
        res.append(([y, h], [xg.grad, hg.grad] + [p.grad for p in m.parameters()]))
    m.use_fast_path = True
    return res


BACKENDS = ["c", "torch"] if fast.c_available() else ["torch"]


@pytest.fixture
def restore_backend():
    old = fast.BACKEND
    yield
    fast.BACKEND = old


@pytest.mark.parametrize("dyn,inter", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("impl,d", [("dense", 1), ("sparse", 1), ("sparse", 2), ("dense", 2)])
@pytest.mark.parametrize("K,timespans,seq", [(2, True, True), (3, False, True), (3, True, False)])
def test_fused_rounds_match_the_reference(dyn, inter, dtype, impl, d, K, timespans, seq, restore_backend):
    if (dyn, inter) != ("leaky", "linear") and not fast.c_available():
        pytest.skip("C-only family")
    for backend in (BACKENDS if (dyn, inter) == ("leaky", "linear") else ["c"]):
        fast.BACKEND = backend
        g = random_graph(n=10, density=0.3, seed=d + K)
        m = make(g, K, dyn, inter, dtype=dtype, seed=K, impl=impl, state_size=d, return_sequences=seq)
        B, T = 3, 5
        x = torch.randn(B, T, 3, dtype=dtype)
        hx = (0.5 * torch.randn(B, 10, d, dtype=dtype)).clamp(-1, 1)
        ts = (torch.rand(B, T, dtype=dtype) * 2 + 0.1) if timespans else None
        assert fast.supports(m, x.transpose(0, 1), hx.reshape(B, 10, d), None)
        (out_f, g_f), (out_r, g_r) = run_both(m, x, hx, ts)
        tol = TOL[dtype]
        for i, (a, b) in enumerate(zip(out_f, out_r)):
            assert a.shape == b.shape
            close(a, b, tol, f"{backend} output {i}")
        names = ["x", "hx"] + [n for n, _ in m.named_parameters()]
        for name, a, b in zip(names, g_f, g_r):
            assert a is not None and b is not None, name
            close(a, b, tol * 10, f"{backend} grad {name}")


@pytest.mark.parametrize("dyn,inter", FAMILIES)
@pytest.mark.parametrize("K", [2, 3])
def test_gradcheck_float64(dyn, inter, K):
    """torch.autograd.gradcheck of the fused loop and of the reference on a small graph, with
    respect to the input, the start state and every parameter."""
    g = random_graph(n=5, density=0.4, seed=K, inputs=1, outputs=2)
    m = make(g, K, dyn, inter, seed=K)
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    hx = (0.4 * torch.randn(2, 5, dtype=torch.float64)).clamp(-0.9, 0.9).requires_grad_()
    ts = torch.rand(2, 3, dtype=torch.float64) + 0.5
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(x, hx, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x, hx, ts))

    for use_fast in (True, False):
        m.use_fast_path = use_fast
        assert torch.autograd.gradcheck(f, (x, hx, *params), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("dyn,inter", FAMILIES)
@pytest.mark.parametrize("impl", ["dense", "sparse"])
def test_step_is_one_input_step_of_k_rounds(dyn, inter, impl):
    """``TND.step`` (the lean C call for leaky, the model's loop otherwise) equals ``forward``."""
    g = random_graph(n=9, seed=4)
    for K in (2, 3):
        for dtype in (torch.float64, torch.float32):
            m = make(g, K, dyn, inter, dtype=dtype, impl=impl)
            x = torch.randn(4, 6, 3, dtype=dtype)
            ts = torch.rand(4, 6, dtype=dtype) + 0.2
            with torch.no_grad():
                for dt in (None, "scalar", "per_sequence"):
                    stamps = {None: None, "scalar": 0.7, "per_sequence": ts}[dt]
                    y, h = m(x, None, stamps)
                    hs, ys = None, []
                    for t in range(6):
                        step_dt = None if dt is None else (0.7 if dt == "scalar" else ts[:, t])
                        yt, hs = m.step(x[:, t], hs, step_dt)
                        ys.append(yt)
                    close(torch.stack(ys, 1), y, TOL[dtype], f"step outputs K={K} dt={dt}")
                    close(hs, h, TOL[dtype], f"step state K={K} dt={dt}")


def test_lean_step_runs_the_rounds_in_c(monkeypatch):
    """The leaky lean step (one C call) is taken with K > 1: it equals the reference's K rounds,
    not the one-round update."""
    if not fast.c_available():
        pytest.skip("no C compiler")
    from tnd.fast.step import Stepper

    g = random_graph(n=9, seed=4)
    m, one = make(g, 3), make(g, 1)
    one.load_state_dict(m.state_dict())
    x = torch.randn(2, 3, dtype=torch.float64)
    hx = 0.5 * torch.rand(2, 9, dtype=torch.float64)
    with torch.no_grad():
        m.use_fast_path = False
        y_ref, h_ref = m(x[:, None], hx, 0.6)
        m.use_fast_path = True
        y1, h1 = one.step(x, hx, 0.6)
        monkeypatch.setattr(Stepper, "general", lambda *a: pytest.fail("the lean step was not taken"))
        y, h = m.step(x, hx, 0.6)
    close(y, y_ref[:, 0], 1e-12, "lean step outputs")
    close(h, h_ref, 1e-12, "lean step state")
    assert (h - h1).abs().max() > 1e-3


# -------------------------------------------------------------------- validation and config
@pytest.mark.parametrize("bad,err", [(0, ValueError), (-1, ValueError), (MAX_PROPAGATION_STEPS + 1, ValueError),
                                     (True, TypeError), (2.0, TypeError), ("2", TypeError), (None, TypeError)])
def test_propagation_steps_is_validated(bad, err):
    g = random_graph()
    with pytest.raises(err, match="propagation_steps"):
        TND(3, g, 2, propagation_steps=bad)
    with pytest.raises(err, match="propagation_steps"):
        tnd.TNDCell(3, g, propagation_steps=bad)


def test_numpy_int_accepted_and_continuous_mode_refuses_k():
    import numpy as np

    g = random_graph()
    assert TND(3, g, 2, propagation_steps=np.int64(3)).cell.propagation_steps == 3
    assert type(TND(3, g, 2, propagation_steps=np.int64(3)).cell.propagation_steps) is int
    TND(3, g, 2, mode="continuous", propagation_steps=1)  # the default is fine
    with pytest.raises(ValueError, match="propagation_steps.*discrete"):
        TND(3, g, 2, mode="continuous", propagation_steps=2)


def test_config_round_trip_and_old_configs(tmp_path):
    g = random_graph(seed=3)
    m = make(g, 3, "gated")
    assert m.config()["propagation_steps"] == 3
    assert TND.from_config(m.config()).cell.propagation_steps == 3
    tnd.save_model(m, tmp_path / "m")
    got = tnd.load_model(tmp_path / "m")
    assert got.config() == m.config() and got.cell.propagation_steps == 3
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    assert torch.equal(got(x)[0], m(x)[0])
    # a config written before propagation_steps existed: K = 1
    path = tmp_path / "m" / "config.json"
    cfg = json.loads(path.read_text())
    del cfg["config"]["propagation_steps"]
    path.write_text(json.dumps(cfg))
    old = tnd.load_model(tmp_path / "m")
    assert old.cell.propagation_steps == 1 and old.config()["propagation_steps"] == 1
    cfg["config"]["propagation_steps"] = True
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="propagation_steps"):
        tnd.load_model(tmp_path / "m")


def test_k1_is_the_unchanged_update():
    """K = 1 given explicitly is the model that leaves K out, bit for bit (fused and reference), and the
    one-round definition of the cell: c + (s - c) exp(-lambda dt)."""
    g = random_graph(seed=5)
    a, b = make(g, 1), make(g, 1)
    b.load_state_dict(a.state_dict())
    torch.manual_seed(0)
    plain = TND(3, g, 2, dynamics="leaky").double()
    plain.load_state_dict(a.state_dict())
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    for use_fast in (True, False):
        a.use_fast_path = plain.use_fast_path = use_fast
        ya, ha = a(x)
        yp, hp = plain(x)
        assert torch.equal(ya, yp) and torch.equal(ha, hp)
    cell = a.cell
    s = 0.5 * torch.rand(2, 9, 1, dtype=torch.float64)
    drive = cell.drive(x[:, 0])
    u = cell.interaction.aggregate(cell.interaction.prepare(), s)
    lam, c = cell.dynamics.rate_and_target(s, u, drive)
    assert torch.equal(cell.step(s, drive, 1.0), c + (s - c) * torch.exp(-lam * torch.as_tensor(1.0, dtype=s.dtype)))


def test_state_bound_holds_for_many_rounds():
    """Each round is a convex combination: |s| <= 1 for any K, with extreme weights."""
    g = random_graph(n=12, density=0.4, seed=6)
    for dyn, inter in FAMILIES:
        m = make(g, 7, dyn, inter)
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(10)
        _, h = m(10 * torch.randn(4, 20, 3, dtype=torch.float64), timespans=torch.full((4, 20), 3.0, dtype=torch.float64))
        assert torch.isfinite(h).all() and h.abs().max() <= 1.0
