"""The fused fast path (tnd.fast) against the reference loop: outputs and gradients."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import torch

import tnd.fast as fast
from tnd import TND
from tnd.fast import cbuild
from tnd.fast.gated import GatedLoop
from path_spy import PathSpy
from tnd.fast.loop import FusedLoop, LoopSpec
from tnd.graph import NeuronGraph

BACKENDS = ["c", "torch"] if fast.c_available() else ["torch"]
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


@pytest.fixture(autouse=True)
def _restore_backend():
    old = fast.BACKEND, fast.THREADS
    yield
    fast.BACKEND, fast.THREADS = old


def make_model(n=9, c=3, impl="dense", signed=False, per_neuron=True, d=1, seq=True, dtype=torch.float64,
               density=0.3, seed=0, activation="tanh", **kw):
    g = NeuronGraph.random(n, density, seed=seed, num_inputs=3, num_outputs=2, allow_unreachable=True,
                           inhibitory_fraction=0.4 if signed else 0.0)
    torch.manual_seed(seed)
    m = TND(c, g, 4, return_sequences=seq, impl=impl, state_size=d, per_neuron=per_neuron,
            dynamics=kw.pop("dynamics", "leaky"), dynamics_kw={"activation": activation}, **kw).to(dtype)
    with torch.no_grad():  # non-trivial biases and time constants
        m.cell.dynamics.bias.normal_(0, 0.3)
        m.cell.dynamics.tau_raw.normal_(0, 1.0)
    return m


def run_both(m, x, hx=None, ts=None, grad=True):
    """(outputs, gradients) of the fast path and of the reference loop; asserts that the first
    pass really ran the fused loop (on the backend the test asked for) and the second the reference."""
    res = []
    for use_fast in (True, False):
        m.use_fast_path = use_fast
        m.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_(grad)
        hg = None if hx is None else hx.clone().requires_grad_(grad)
        with PathSpy(m) as spy:
            if grad:
                y, h = m(xg, hg, ts)
                (y.square().sum() + h.sin().sum()).backward()
                grads = [xg.grad] + ([hg.grad] if hg is not None else []) + [p.grad for p in m.parameters()]
            else:
                with torch.no_grad():
                    y, h = m(xg, hg, ts)
                grads = []
        if use_fast:
            assert spy.fast_calls == 1 and spy.ref_calls == 0, "the fast pass did not run the fused loop"
            if fast.BACKEND in ("c", "torch") and spy.backends:
                want = "c" if fast.BACKEND == "c" and fast.c_available() else "torch"  # no compiler: torch
                assert spy.backends == [want], f"asked for backend {fast.BACKEND}, ran {spy.backends}"
        else:
            assert spy.fast_calls == 0 and spy.ref_calls == 1, "the reference pass did not run the reference loop"
        res.append(([y, h], grads))
    m.use_fast_path = True
    return res


def assert_close(a, b, tol, what):
    assert a is not None and b is not None, what
    assert a.shape == b.shape, what
    if b.numel() == 0:
        return
    scale = b.abs().max().item() + 1e-12
    err = (a - b).abs().max().item()
    assert err <= tol * max(1.0, scale), f"{what}: max error {err:.3g} (scale {scale:.3g})"


def check(m, x, hx=None, ts=None, grad=True):
    tol = TOL[x.dtype]
    (out_f, g_f), (out_r, g_r) = run_both(m, x, hx, ts, grad)
    for i, (a, b) in enumerate(zip(out_f, out_r)):
        assert a.shape == b.shape
        assert_close(a, b, tol, f"output {i}")
    assert len(g_f) == len(g_r)
    names = ["x"] + (["hx"] if hx is not None else []) + [n for n, _ in m.named_parameters()]
    for name, a, b in zip(names, g_f, g_r):
        assert_close(a, b, tol * 10, f"grad {name}")


CONFIGS = list(itertools.product(
    [torch.float64, torch.float32], ["dense", "sparse"], [False, True], [True, False], [False, True], [1, 2]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype,impl,signed,per_neuron,timespans,d", CONFIGS)
def test_fast_matches_reference(backend, dtype, impl, signed, per_neuron, timespans, d):
    fast.BACKEND = backend
    m = make_model(impl=impl, signed=signed, per_neuron=per_neuron, d=d, dtype=dtype, seed=d + 2 * signed)
    B, T = 4, 6
    x = torch.randn(B, T, 3, dtype=dtype)
    hx = (0.5 * torch.randn(B, 9, d, dtype=dtype)).clamp(-1, 1)
    ts = (torch.rand(B, T, dtype=dtype) * 2 + 0.1) if timespans else None
    assert fast.supports(m, x.transpose(0, 1), hx, None)
    check(m, x, hx, ts)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("impl", ["dense", "sparse"])
def test_return_last_nograd_identity_and_threads(backend, impl):
    fast.BACKEND = backend
    fast.THREADS = 2  # exercise the batch split of the C kernel
    for seq, act in [(False, "tanh"), (True, "identity"), (False, "identity")]:
        m = make_model(impl=impl, seq=seq, activation=act, n=11, seed=3)
        x = torch.randn(5, 7, 3, dtype=torch.float64)
        check(m, x)  # hx=None: zeros
        check(m, x, (0.3 * torch.randn(5, 11, dtype=torch.float64)).clamp(-1, 1), grad=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_timespans_batch_equals_neurons_and_orphans(backend):
    """B == N with per-sequence timespans, a sparse graph where many neurons have no in-edge."""
    fast.BACKEND = backend
    m = make_model(n=6, density=0.15, seed=5, impl="sparse")
    assert (m.graph.in_degree() == 0).any()
    x = torch.randn(6, 8, 3, dtype=torch.float64)
    ts = torch.rand(6, 8, dtype=torch.float64) + 0.2
    check(m, x, 0.2 * torch.randn(6, 6, dtype=torch.float64), ts)
    m2 = make_model(n=6, density=0.15, seed=5, impl="dense", batch_first=False)
    check(m2, x.transpose(0, 1).contiguous(), None, ts.t().contiguous())


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_mask_unbatched_and_continuous_exp_euler(backend):
    fast.BACKEND = backend
    m = make_model(n=8, signed=True, seed=7)
    with torch.no_grad():
        m.cell.interaction.edge_mask[::3] = 0.0
    check(m, torch.randn(5, 3, dtype=torch.float64))  # unbatched (T, C)
    m2 = make_model(n=8, seed=7, mode="continuous", solver="exp_euler", substeps=1, impl="sparse")
    check(m2, torch.randn(2, 5, 3, dtype=torch.float64))


def test_empty_graph_and_single_step():
    g = NeuronGraph(4, torch.zeros(2, 0, dtype=torch.long), [0], [3], allow_unreachable=True)
    m = TND(2, g, 3).double()
    check(m, torch.randn(2, 3, 2, dtype=torch.float64))
    m = make_model(n=10)
    h = None
    for _ in range(3):  # a control loop: one step at a time, state carried
        x = torch.randn(1, 1, 3, dtype=torch.float64)
        m.use_fast_path = True
        y, h_fast = m(x, h)
        m.use_fast_path = False
        y_ref, h_ref = m(x, h)
        assert_close(y, y_ref, 1e-12, "y")
        h = h_fast.detach()
    # inference caches the prepared weights; an in-place parameter update must invalidate them
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    for p in (m.cell.dynamics.bias, m.cell.interaction.weight_raw, m.cell.dynamics.tau_raw):
        check(m, x, grad=False)
        with torch.no_grad():
            p.add_(0.5)
        check(m, x, grad=False)


def test_unsupported_configurations_fall_back():
    x = torch.randn(2, 4, 3)
    for kw in [dict(dynamics="mlp", mode="continuous"), dict(interaction="attention", dynamics="gated"),
               dict(interaction="attention", dynamics="leaky", dynamics_kw={"activation": "tanh"}, mode="continuous"), dict(mode="continuous"),
               dict(mode="continuous", solver="exp_euler", substeps=2),
               dict(dynamics="gated", mode="continuous", solver="midpoint")]:
        g = NeuronGraph.random(6, 0.4, seed=1, num_inputs=2, num_outputs=2, allow_unreachable=True)
        m = TND(3, g, 2, **kw)
        s = torch.zeros(2, 6, 1)
        assert not fast.supports(m, x.transpose(0, 1), s, None)
        y, h = m(x)  # still runs (reference loop)
        assert y.shape == (2, 4, 2)
    m = make_model(dtype=torch.float32)
    assert not fast.supports(m, x.double().transpose(0, 1), torch.zeros(2, 9, 1).double(), None)
    ts = torch.ones(4, 2, 1, 1, requires_grad=True)
    assert not fast.supports(m, x.transpose(0, 1), torch.zeros(2, 9, 1), ts)


def test_use_fast_path_dispatch(monkeypatch):
    m = make_model(dtype=torch.float32)
    calls = []
    orig = fast.run
    monkeypatch.setattr(fast, "run", lambda *a: calls.append(1) or orig(*a))
    m(torch.randn(2, 3, 3))
    assert calls == [1]
    m.use_fast_path = False
    m(torch.randn(2, 3, 3))
    assert calls == [1]


def test_torch_fallback_without_compiler(monkeypatch):
    monkeypatch.setattr(cbuild, "load", lambda: None)
    assert fast.choose_backend(False, 1, 8, torch.device("cpu")) == "torch"
    fast.BACKEND = "c"
    assert fast.choose_backend(True, 1, 8, torch.device("cpu")) == "torch"
    check(make_model(), torch.randn(2, 4, 3, dtype=torch.float64))


@pytest.mark.skipif(not fast.c_available(), reason="no C compiler")
def test_compile_cache_is_reused(tmp_path):
    path = cbuild.build()
    assert path.exists() and cbuild.build() == path
    code = "from tnd.fast import cbuild; import sys; sys.exit(0 if cbuild.load() is not None else 1)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def _gradcheck_spec(backend, sparse, seq, d_in=2, n=5, B=2):
    g = NeuronGraph.random(n, 0.4, seed=2, num_inputs=2, num_outputs=2, allow_unreachable=True)
    src, tgt = g.edge_index
    order = torch.argsort(tgt * n + src)
    rowptr = torch.zeros(n + 1, dtype=torch.long)
    rowptr[1:] = torch.cumsum(torch.bincount(tgt, minlength=n), 0)
    spec = LoopSpec(backend=backend, sparse=sparse, act=0, seq_out=seq, in_idx=torch.tensor([0, 1]),
                    out_idx=torch.tensor([3, 4]), rowptr=rowptr, src32=src[order].int().contiguous(),
                    src=src[order].contiguous(), tgt=tgt[order].contiguous(), nnz=g.num_edges)
    dense = torch.zeros(n, n, dtype=torch.float64)
    w = torch.randn(g.num_edges, dtype=torch.float64) * 0.7
    dense[src, tgt] = w
    W = (w[order] if sparse else dense).requires_grad_()
    return spec, W


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sparse,seq,with_dt", [(False, True, False), (True, False, True), (False, False, True),
                                                 (True, True, False)])
def test_gradcheck_fused_loop(backend, sparse, seq, with_dt):
    torch.manual_seed(0)
    T, B, n = 4, 2, 5
    spec, W = _gradcheck_spec(backend, sparse, seq, n=n, B=B)
    P = torch.randn(T, B, 2, dtype=torch.float64, requires_grad=True)
    s0 = (0.5 * torch.randn(B, n, dtype=torch.float64)).requires_grad_()
    r = (torch.rand(n, dtype=torch.float64) + 0.1).requires_grad_()
    bias = (0.3 * torch.randn(n, dtype=torch.float64)).requires_grad_()
    dt = torch.rand(T, B, dtype=torch.float64) + 0.3 if with_dt else None
    assert torch.autograd.gradcheck(lambda *a: FusedLoop.apply(spec, *a, dt), (P, s0, W, r, bias))


def test_bench_quick_smoke(tmp_path):
    out = tmp_path / "bench.md"
    res = subprocess.run([sys.executable, "-m", "tnd.apps.cli", "bench", "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    text = out.read_text()
    assert "| model" in text and "nn.LSTM" in text and "TND" in text


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("impl,d", [("dense", 1), ("sparse", 2)])
def test_scattered_input_and_output_neurons(backend, impl, d):
    fast.BACKEND = backend
    base = NeuronGraph.random(8, 0.35, seed=4, allow_unreachable=True)
    g = NeuronGraph(8, base.edge_index, [5, 0, 3], [6, 1], allow_unreachable=True)
    torch.manual_seed(1)
    for seq in (True, False):
        m = TND(3, g, 2, impl=impl, state_size=d, return_sequences=seq, dynamics="leaky").double()
        check(m, torch.randn(3, 5, 3, dtype=torch.float64), (0.4 * torch.randn(3, 8, d, dtype=torch.float64)).clamp(-1, 1),
              torch.rand(3, 5, dtype=torch.float64) + 0.5)


GATED = list(itertools.product(["gated", "mlp"], [torch.float64, torch.float32], ["dense", "sparse"], [1, 2],
                               [True, False], [False, True]))


@pytest.mark.skipif(not fast.c_available(), reason="the gated and MLP fast paths are C-only")
@pytest.mark.parametrize("dyn,dtype,impl,d,per_neuron,timespans", GATED)
def test_gated_and_mlp_match_reference(dyn, dtype, impl, d, per_neuron, timespans):
    g = NeuronGraph.random(9, 0.3, seed=d, num_inputs=3, num_outputs=2, allow_unreachable=True,
                           inhibitory_fraction=0.3 if per_neuron else 0.0)
    torch.manual_seed(0)
    for seq in (True, False):
        m = TND(3, g, 4, return_sequences=seq, impl=impl, state_size=d, per_neuron=per_neuron,
                dynamics=dyn).to(dtype)
        with torch.no_grad():
            for p in m.cell.dynamics.parameters():
                p.add_(0.3 * torch.randn_like(p))
        x = torch.randn(4, 6, 3, dtype=dtype)
        hx = (0.5 * torch.randn(4, 9, d, dtype=dtype)).clamp(-1, 1)
        ts = torch.rand(4, 6, dtype=dtype) + 0.2 if timespans else None
        assert fast.supports(m, x.transpose(0, 1), hx, None)
        check(m, x, hx, ts)
        check(m, x, hx, ts, grad=False)


@pytest.mark.skipif(not fast.c_available(), reason="the gated and MLP fast paths are C-only")
@pytest.mark.parametrize("dyn,d", [("gated", 2), ("mlp", 2), ("mlp", 1)])
def test_gated_mlp_threads_gradcheck_and_fallback(dyn, d):
    fast.THREADS = 2
    g = NeuronGraph.random(10, 0.3, seed=4, num_inputs=3, num_outputs=2, allow_unreachable=True)
    torch.manual_seed(0)
    m = TND(3, g, 4, state_size=d, dynamics=dyn).double()
    check(m, torch.randn(5, 4, 3, dtype=torch.float64), (0.3 * torch.randn(5, 10, d, dtype=torch.float64)).clamp(-1, 1))
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    h = ((0.3 * torch.randn(2, 10, d, dtype=torch.float64)).clamp(-1, 1)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, h: m(x, h, torch.full((2, 3), 0.7, dtype=torch.float64)), (x, h))
    params = [p for p in m.cell.dynamics.parameters()]  # the kernel's own weight gradients (all layers)
    assert torch.autograd.gradcheck(lambda *ps: m(x.detach(), h.detach())[0], params) if dyn == "mlp" else True
    fast.BACKEND = "torch"  # no torch loop for these: the reference runs
    assert not fast.supports(m, torch.zeros(4, 5, 3, dtype=torch.float64), torch.zeros(5, 10, d).double(), None)


@pytest.mark.skipif(not fast.c_available(), reason="the gated fast path is C-only")
@pytest.mark.parametrize("sparse,seq,with_dt,d", [(False, True, False, 1), (True, False, True, 2), (False, False, True, 2)])
def test_gradcheck_gated_loop(sparse, seq, with_dt, d):
    torch.manual_seed(0)
    T, B, n = 3, 2, 4
    g = NeuronGraph.random(n, 0.5, seed=3, num_inputs=1, num_outputs=1, allow_unreachable=True)
    m = n * d
    src = (g.edge_index[0][:, None] * d + torch.arange(d)).reshape(-1)
    tgt = (g.edge_index[1][:, None] * d + torch.arange(d)).reshape(-1)
    order = torch.argsort(tgt * m + src)
    rowptr = torch.zeros(m + 1, dtype=torch.long)
    rowptr[1:] = torch.cumsum(torch.bincount(tgt, minlength=m), 0)
    spec = LoopSpec(backend="c", sparse=sparse, act=0, seq_out=seq, in_idx=torch.arange(d),
                    out_idx=torch.arange(m - d, m), rowptr=rowptr, src32=src[order].int().contiguous(),
                    src=src[order].contiguous(), tgt=tgt[order].contiguous(), nnz=src.numel())
    w = torch.randn(src.numel(), dtype=torch.float64) * 0.7
    if sparse:
        W = w[order].clone()
    else:
        W = torch.zeros(m, m, dtype=torch.float64)
        W[src, tgt] = w
    f64 = dict(dtype=torch.float64)
    args = [torch.randn(T, B, d, **f64), torch.randn(T, B, d, **f64), 0.5 * torch.randn(B, m, **f64), W,
            0.5 * torch.randn(n, d, d, **f64), 0.5 * torch.randn(n, d, d, **f64), 0.5 * torch.randn(n, d, d, **f64),
            0.3 * torch.randn(m, **f64), 0.3 * torch.randn(m, **f64)]
    args = [a.requires_grad_() for a in args]
    dt = torch.rand(T, B, **f64) + 0.3 if with_dt else None
    assert torch.autograd.gradcheck(lambda *a: GatedLoop.apply(spec, n, d, (0.1, 2.0), *a, dt), tuple(args))


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_dense_runs_through_the_edge_list(backend, monkeypatch):
    fast.BACKEND = backend
    monkeypatch.setattr(fast, "MAX_DENSE_UNITS", 8)
    m = make_model(n=9, d=1, impl="dense")
    check(m, torch.randn(3, 4, 3, dtype=torch.float64), (0.3 * torch.randn(3, 9, 1, dtype=torch.float64)).clamp(-1, 1))
    check(m, torch.randn(3, 4, 3, dtype=torch.float64), grad=False)


@pytest.mark.parametrize("dyn", ["leaky", "gated", "mlp"])
@pytest.mark.parametrize("impl,d", [("dense", 1), ("sparse", 2)])
def test_extreme_weights_stay_finite_and_bounded(dyn, impl, d):
    g = NeuronGraph.random(12, 0.5, seed=0)
    m = TND(2, g, 1, dynamics=dyn, impl=impl, state_size=d)
    assert fast.supports(m, torch.zeros(3, 2, 2), torch.zeros(2, 12, d), None) == (dyn == "leaky" or fast.c_available())
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(20.0)
        _, h = m(torch.randn(2, 50, 2) * 100, timespans=torch.rand(2, 50) * 50 + 0.01)
    assert bool(torch.isfinite(h).all()) and float(h.abs().max()) <= 1.0 + 1e-6
    x = (torch.randn(2, 20, 2) * 100).requires_grad_()
    y, h = m(x, timespans=torch.rand(2, 20) * 50 + 0.01)
    (y.sum() + h.sum()).backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in m.parameters() if p.grad is not None)


# ------------------------------------------------------------------------------ attention I
ATTN = list(itertools.product([torch.float64, torch.float32], ["dense", "sparse"], [1, 2], [False, True],
                              [False, True]))


@pytest.mark.skipif(not fast.c_available(), reason="the attention fast path is C-only")
@pytest.mark.parametrize("dtype,impl,d,signed,timespans", ATTN)
def test_attention_matches_reference(dtype, impl, d, signed, timespans):
    g = NeuronGraph.random(9, 0.35, seed=d, num_inputs=3, num_outputs=2, allow_unreachable=True,
                           inhibitory_fraction=0.3 if signed else 0.0)
    torch.manual_seed(0)
    for seq, per_neuron, act in [(True, True, "tanh"), (False, False, "identity")]:
        m = TND(3, g, 4, return_sequences=seq, impl=impl, state_size=d, per_neuron=per_neuron,
                interaction="attention", dynamics="leaky", dynamics_kw={"activation": act}).to(dtype)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.3 * torch.randn_like(p))
            m.cell.interaction.edge_mask[::4] = 0.0  # lesions work in the fused path too
        x = torch.randn(4, 6, 3, dtype=dtype)
        hx = (0.5 * torch.randn(4, 9, d, dtype=dtype)).clamp(-1, 1)
        ts = torch.rand(4, 6, dtype=dtype) + 0.2 if timespans else None
        assert fast.supports(m, x.transpose(0, 1), hx, None)
        check(m, x, hx, ts)
        check(m, x, hx, ts, grad=False)


@pytest.mark.skipif(not fast.c_available(), reason="the attention fast path is C-only")
@pytest.mark.parametrize("impl,d", [("dense", 1), ("sparse", 2), ("dense", 2)])
def test_attention_gradcheck_threads_and_lesion(impl, d):
    fast.THREADS = 2
    g = NeuronGraph.random(8, 0.4, seed=5, num_inputs=2, num_outputs=2, allow_unreachable=True)
    torch.manual_seed(0)
    m = TND(3, g, 2, impl=impl, state_size=d, interaction="attention", dynamics="leaky").double()
    with torch.no_grad():
        m.cell.interaction.prior.normal_(0, 0.5)
    x = torch.randn(3, 4, 3, dtype=torch.float64, requires_grad=True)
    h = ((0.4 * torch.randn(3, 8, d, dtype=torch.float64)).clamp(-1, 1)).requires_grad_()
    ts = torch.rand(3, 4, dtype=torch.float64) + 0.3
    assert torch.autograd.gradcheck(lambda x, h: m(x, h, ts), (x, h))
    params = list(m.parameters())  # every weight gradient, the kernel's and autograd's
    assert torch.autograd.gradcheck(lambda *ps: m(x.detach(), h.detach(), ts)[0], params)
    # a lesioned edge carries nothing: its source's state does not reach its target in one step
    inter = m.cell.interaction
    e = 0
    j, i = int(inter.src[e]), int(inter.tgt[e])
    with torch.no_grad():
        inter.edge_mask.zero_()  # lesion every edge: states only decay towards tanh(x + bias)
        x1 = x.detach()[:, :1]
        h1 = h.detach().clone()
        y_a = m(x1, h1)[1]
        h1[:, j] += 0.3
        y_b = m(x1, h1)[1]
    assert torch.equal(y_a[:, i], y_b[:, i]) or i == j
    check(m, x.detach(), h.detach(), ts)


@pytest.mark.parametrize("dyn", ["leaky", "gated", "mlp"])
def test_low_density_dense_graph_runs_through_the_edge_list(dyn, monkeypatch):
    """A dense-declared graph of low density takes the CSR path of the C kernel (same maths)."""
    g = NeuronGraph.small_world(24, k=2, rewire_prob=0.1, seed=0, num_inputs=4, num_outputs=4)
    torch.manual_seed(0)
    m = TND(3, g, 2, impl="dense", dynamics=dyn, state_size=2).double()
    assert m.cell.interaction.impl == "dense"
    expect = fast.c_available()
    assert fast.use_edge_list(m.cell.interaction, 48, 2 * g.num_edges, torch.device("cpu")) == expect
    x, hx = torch.randn(3, 5, 3, dtype=torch.float64), (0.3 * torch.randn(3, 24, 2, dtype=torch.float64)).clamp(-1, 1)
    check(m, x, hx)
    monkeypatch.setattr(fast, "SPARSE_BELOW_DENSITY", 0.0)  # and the dense product, for comparison
    assert not fast.use_edge_list(m.cell.interaction, 48, 2 * g.num_edges, torch.device("cpu"))
    check(m, x, hx)
