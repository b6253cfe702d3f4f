"""Tests for tnd.apps.baselines: interface, exact stepping, sparsity, budgets, validation, gradients."""

import math

import pytest
import torch

pytest.importorskip("ncps")

from tnd.apps.baselines import (  # noqa: E402
    BASELINES,
    CausalTransformer,
    LSTM,
    CfC,
    SparseRNN,
    count_parameters,
    detach_state,
    hidden_size_for_budget,
    make_baseline,
)

C_IN, C_OUT = 3, 4
# small configurations so the whole file stays fast
SMALL = {
    "rnn": (8, {}),
    "sparse_rnn": (8, {"density": 0.3}),
    "lstm": (8, {}),
    "cfc": (6, {"backbone_units": 16}),
    "ltc": (5, {"ode_unfolds": 2}),
    "transformer": (8, {"context": 4, "num_layers": 2, "nhead": 2}),
    "mamba": (8, {"num_layers": 2, "d_state": 4}),
    "lru": (8, {"num_layers": 2, "d_state": 6}),
}
NAMES = sorted(BASELINES)
ATOL = 1e-5


def build(name, seed=0, **extra):
    hidden, kw = SMALL[name]
    torch.manual_seed(seed)
    m = make_baseline(name, C_IN, C_OUT, hidden, **{**kw, **extra})
    return m.eval()


def step_through(model, x, hx=None, chunk=1):
    """Run x (B, T, C) chunk by chunk with the carried state."""
    ys = []
    for i in range(0, x.shape[1], chunk):
        y, hx = model(x[:, i:i + chunk], hx)
        ys.append(y)
    return torch.cat(ys, dim=1), hx


def assert_state_close(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape
        if a.is_floating_point():
            torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-4)
        else:
            assert torch.equal(a, b)
    else:
        assert len(a) == len(b)
        for u, v in zip(a, b):
            assert_state_close(u, v)


def test_registry_contents():
    assert set(BASELINES) == {"rnn", "sparse_rnn", "lstm", "cfc", "ltc", "transformer", "mamba", "lru"}


@pytest.mark.parametrize("name", NAMES)
def test_shapes_batched_and_unbatched(name):
    m = build(name)
    x = torch.randn(3, 6, C_IN)
    y, h = m(x)
    assert y.shape == (3, 6, C_OUT)
    yu, hu = m(x[1])
    assert yu.shape == (6, C_OUT)
    torch.testing.assert_close(yu, y[1], atol=ATOL, rtol=1e-4)
    # unbatched state == batched state with the batch dim removed; it continues unbatched input
    assert_state_close(hu, type(h)(t[1] for t in h) if isinstance(h, tuple) else h[1])
    x2 = torch.randn(4, C_IN)
    y_cont, _ = m(x2, hu)
    y_full, _ = m(torch.cat([x[1], x2], 0))
    torch.testing.assert_close(y_cont, y_full[6:], atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunk", [1, 3])
def test_stepping_equals_full_sequence(name, chunk):
    m = build(name)
    T = 9  # longer than the transformer's context (4)
    x = torch.randn(2, T, C_IN)
    with torch.no_grad():
        y_full, h_full = m(x)
        y_step, h_step = step_through(m, x, chunk=chunk)
    torch.testing.assert_close(y_step, y_full, atol=ATOL, rtol=1e-4)
    assert_state_close(h_step, h_full)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_given_seed(name):
    a, b = build(name, seed=3), build(name, seed=3)
    x = torch.randn(2, 5, C_IN)
    torch.testing.assert_close(a(x)[0], b(x)[0], atol=0, rtol=0)
    c = build(name, seed=4)
    assert not torch.allclose(a(x)[0], c(x)[0])


@pytest.mark.parametrize("name", NAMES)
def test_gradients_flow(name):
    m = build(name).train()
    x = torch.randn(2, 5, C_IN)
    y, h = m(x)
    y2, _ = m(x, detach_state(h))
    loss = y.pow(2).mean() + y2.pow(2).mean()
    loss.backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_transformer_short_sequence_and_banded_window():
    torch.manual_seed(0)
    ctx = 5
    m = CausalTransformer(C_IN, C_OUT, 8, context=ctx, num_layers=1, nhead=2).eval()
    with torch.no_grad():
        m.rel_bias.normal_()  # make the positional bias non-trivial
    x = torch.randn(2, 12, C_IN)
    with torch.no_grad():
        y_full, _ = m(x)
        y_step, (cache, step) = step_through(m, x)
    torch.testing.assert_close(y_step, y_full, atol=ATOL, rtol=1e-4)
    assert cache.shape == (2, 1, ctx - 1, 8) and step.tolist() == [12, 12]
    # with one layer, output at t depends on exactly the last ctx inputs (banded window)
    t = 10
    with torch.no_grad():
        y_win, _ = m(x[:, t - ctx + 1:t + 1])
    torch.testing.assert_close(y_win[:, -1], y_full[:, t], atol=ATOL, rtol=1e-4)
    x_pert = x.clone()
    x_pert[:, t - ctx] += 10.0  # outside the window of step t (but inside that of t-1)
    with torch.no_grad():
        y_pert, _ = m(x_pert)
    torch.testing.assert_close(y_pert[:, t], y_full[:, t], atol=ATOL, rtol=1e-4)
    assert not torch.allclose(y_pert[:, t - 1], y_full[:, t - 1])


@pytest.mark.parametrize("positional", ["absolute", "both"])
def test_transformer_absolute_positions(positional):
    torch.manual_seed(0)
    m = CausalTransformer(C_IN, C_OUT, 8, context=3, max_len=10, positional=positional).eval()
    x = torch.randn(2, 10, C_IN)
    with torch.no_grad():
        y_full, _ = m(x)
        y_step, h = step_through(m, x)
    torch.testing.assert_close(y_step, y_full, atol=ATOL, rtol=1e-4)
    with pytest.raises(ValueError, match="max_len"):
        m(x[:, :1], h)


def test_sparse_mask_respected_after_training():
    torch.manual_seed(0)
    m = SparseRNN(C_IN, C_OUT, 16, density=0.2, mask_seed=7)
    off = m.mask == 0
    assert off.any() and (~off).any()
    assert abs(float(m.mask.mean()) - 0.2) < 0.1
    # same seed -> same mask, independent of the global RNG
    torch.manual_seed(123)
    assert torch.equal(SparseRNN(C_IN, C_OUT, 16, density=0.2, mask_seed=7).mask, m.mask)
    assert not torch.equal(SparseRNN(C_IN, C_OUT, 16, density=0.2, mask_seed=8).mask, m.mask)
    assert "mask" in dict(m.named_buffers())
    opt = torch.optim.AdamW(m.parameters(), lr=0.1, weight_decay=0.1)
    x = torch.randn(4, 6, C_IN)
    with torch.no_grad():  # dirty the raw parameter on masked entries: must not matter
        m.weight_hh[off] = 5.0
    y0, _ = m(x)
    for _ in range(3):
        opt.zero_grad()
        y, _ = m(x)
        y.pow(2).mean().backward()
        assert torch.all(m.weight_hh.grad[off] == 0)
        opt.step()
    assert torch.all(m.effective_weight_hh()[off] == 0)
    # the masked raw entries only influence nothing: resetting them leaves outputs unchanged
    y1, _ = m(x)
    with torch.no_grad():
        m.weight_hh[off] = 0.0
    torch.testing.assert_close(m(x)[0], y1, atol=0, rtol=0)
    assert not torch.allclose(y0, y1)  # training did change the unmasked weights
    assert m.num_effective_parameters() == count_parameters(m) - int(off.sum())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("budget", [2000, 10000])
def test_hidden_size_for_budget(name, budget):
    if name == "ltc" and budget == 10000:
        kw = {"ode_unfolds": 1}
    else:
        kw = {}
    state = torch.random.get_rng_state()
    h = hidden_size_for_budget(name, 3, 3, budget, **kw)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    n = count_parameters(make_baseline(name, 3, 3, h, **kw))
    assert abs(n - budget) <= 0.1 * budget, (name, h, n)
    if name == "transformer":
        assert h % 2 == 0


def test_hidden_size_for_budget_effective_sparse():
    h = hidden_size_for_budget("sparse_rnn", 3, 3, 2000, effective=True, density=0.25)
    m = make_baseline("sparse_rnn", 3, 3, h, density=0.25)
    assert abs(count_parameters(m, effective=True) - 2000) <= 200
    assert count_parameters(m) > 2000


def test_unknown_name_errors():
    with pytest.raises(ValueError, match="valid names.*cfc.*lstm"):
        make_baseline("gru", 3, 3, 8)
    with pytest.raises(ValueError, match="valid names"):
        hidden_size_for_budget("gru", 3, 3, 1000)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs(name):
    m = build(name)
    with pytest.raises(ValueError, match=r"x: expected rank 2.*got rank 1"):
        m(torch.randn(C_IN))
    with pytest.raises(ValueError, match=r"x: expected rank 2.*got rank 4"):
        m(torch.randn(1, 2, 3, C_IN))
    with pytest.raises(ValueError, match=rf"x: expected last dimension.*{C_IN}, got 5"):
        m(torch.randn(2, 3, 5))
    with pytest.raises(TypeError, match="x: expected a floating-point tensor, got dtype torch.int64"):
        m(torch.ones(2, 3, C_IN, dtype=torch.long))
    with pytest.raises(TypeError, match="x: expected dtype torch.float32"):
        m(torch.randn(2, 3, C_IN, dtype=torch.float64))
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        m([[0.0] * C_IN])
    bad = torch.randn(2, 3, C_IN)
    bad[0, 1, 2] = math.nan
    with pytest.raises(ValueError, match="x: expected only finite"):
        m(bad)
    bad[0, 1, 2] = math.inf
    with pytest.raises(ValueError, match="x: expected only finite"):
        m(bad)
    _, h = m(torch.randn(2, 3, C_IN))
    with pytest.raises(ValueError, match="hx: expected .*batch size 3"):
        m(torch.randn(3, 1, C_IN), h)


def test_double_precision_model():
    for name in NAMES:
        if name == "lru":  # lru-pytorch computes in the default dtype only (test_baselines_modern.py)
            continue
        m = build(name).double()
        x = torch.randn(2, 5, C_IN, dtype=torch.float64)
        y, h = m(x)
        assert y.dtype == torch.float64
        y2, _ = step_through(m, x)
        torch.testing.assert_close(y2, y)


def test_cfc_timespans_batched_matches_per_sample():
    torch.manual_seed(0)
    m = CfC(C_IN, C_OUT, 6, backbone_units=16).eval()
    B, T = 6, 5  # B == units: ncps's own (B,)-shaped timespans would broadcast silently wrongly
    x = torch.randn(B, T, C_IN)
    ts = torch.rand(B, T) + 0.1
    with torch.no_grad():
        y, h = m(x, timespans=ts)
        # reference: ncps's own forward with a single sample (where its squeeze is harmless)
        for b in range(B):
            ref, href = m.rnn(x[b:b + 1], torch.zeros(1, 6), timespans=ts[b:b + 1])
            torch.testing.assert_close(y[b], ref[0], atol=ATOL, rtol=1e-4)
            torch.testing.assert_close(h[b], href[0], atol=ATOL, rtol=1e-4)
        # timespans of ones == default; (B, T, 1) == (B, T); stepping with timespans is exact
        torch.testing.assert_close(m(x, timespans=torch.ones(B, T))[0], m(x)[0])
        torch.testing.assert_close(m(x, timespans=1.0)[0], m(x)[0])
        torch.testing.assert_close(m(x, timespans=ts.unsqueeze(-1))[0], y)
        ys, hs = [], None
        for t in range(T):
            yt, hs = m(x[:, t:t + 1], hs, timespans=ts[:, t:t + 1])
            ys.append(yt)
        torch.testing.assert_close(torch.cat(ys, 1), y, atol=ATOL, rtol=1e-4)
        yu, _ = m(x[2], timespans=ts[2])
        torch.testing.assert_close(yu, y[2], atol=ATOL, rtol=1e-4)
    with pytest.raises(ValueError, match="timespans"):
        m(x, timespans=torch.ones(B, T + 1))


def test_cfc_mixed_memory_and_own_readout():
    torch.manual_seed(0)
    m = CfC(C_IN, C_OUT, 6, backbone_units=16, mixed_memory=True, use_ncps_proj=False).eval()
    x = torch.randn(2, 7, C_IN)
    with torch.no_grad():
        y, (h, c) = m(x)
        assert h.shape == c.shape == (2, 6)
        y2, _ = step_through(m, x)
        torch.testing.assert_close(y2, y, atol=ATOL, rtol=1e-4)
        y3, _ = m(x, timespans=torch.ones(2, 7))
        torch.testing.assert_close(y3, y, atol=ATOL, rtol=1e-4)
    with pytest.raises(TypeError, match="hx: expected a tuple"):
        m(x, h)


@pytest.mark.parametrize("density", [0.05, 0.3, 1.0])
def test_sparse_rnn_edge_list_and_dense_products_agree(density):
    """The edge-list product is the dense masked product: outputs, carried state and the
    gradient of every parameter (float64), also from a given initial state."""
    outs = []
    for edge_list in (False, True):
        torch.manual_seed(0)
        m = SparseRNN(C_IN, C_OUT, 24, density=density, mask_seed=3, edge_list=edge_list).double()
        assert m.edge_list is edge_list
        x = torch.randn(3, 7, C_IN, dtype=torch.float64)
        h0 = torch.randn(3, 24, dtype=torch.float64)
        y, h = m(x, h0)
        (y.square().sum() + h.sum()).backward()
        outs.append((y, h, {k: p.grad for k, p in m.named_parameters()}))
    (y0, h0_, g0), (y1, h1, g1) = outs
    torch.testing.assert_close(y1, y0)
    torch.testing.assert_close(h1, h0_)
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], msg=k)
    off = m.mask == 0
    assert (g1["weight_hh"][off] == 0).all()


def test_sparse_rnn_edge_list_choice_and_reload():
    assert not SparseRNN(C_IN, C_OUT, 144, density=0.033).edge_list  # the 2,000-parameter Pong size
    assert SparseRNN(C_IN, C_OUT, 400, density=0.01).edge_list
    assert not SparseRNN(C_IN, C_OUT, 400, density=0.5).edge_list
    with pytest.raises(TypeError, match="edge_list"):
        SparseRNN(C_IN, C_OUT, 8, edge_list=1)
    # a loaded mask (another seed's) replaces the edges the constructor derived
    a = SparseRNN(C_IN, C_OUT, 16, density=0.2, mask_seed=1, edge_list=True)
    b = SparseRNN(C_IN, C_OUT, 16, density=0.2, mask_seed=2, edge_list=True)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.edges, a.edges)
    x = torch.randn(2, 5, C_IN)
    torch.testing.assert_close(b(x)[0], a(x)[0])


def test_lstm_chrono_init():
    """Chrono init (Tallec & Ollivier 2018): b_f = log(u), u ~ U(1, T_max - 1), b_i = -b_f, in
    every layer; the hidden-to-hidden biases of those two gates are zero; the rest is PyTorch's."""
    torch.manual_seed(0)
    m = LSTM(3, 2, 32, num_layers=2, chrono_init=100)
    h = 32
    for k in range(2):
        b_ih, b_hh = getattr(m.lstm, f"bias_ih_l{k}").detach(), getattr(m.lstm, f"bias_hh_l{k}").detach()
        u = b_ih[h:2 * h].exp()
        assert float(u.min()) >= 1.0 - 1e-5 and float(u.max()) <= 99.0 + 1e-4
        assert float(u.max()) > 50.0  # spread over the range, not stuck at one end
        assert torch.equal(b_ih[:h], -b_ih[h:2 * h])
        assert torch.equal(b_hh[:2 * h], torch.zeros(2 * h))
        assert float(b_hh[2 * h:].abs().sum()) > 0  # cell and output gates keep PyTorch's init
    # no chrono: PyTorch's biases, forget gates near 0.5
    torch.manual_seed(0)
    plain = LSTM(3, 2, 32)
    b_f = (plain.lstm.bias_ih_l0 + plain.lstm.bias_hh_l0).detach()[h:2 * h]
    assert float(torch.sigmoid(b_f).max()) < 0.6
    with pytest.raises(ValueError, match="chrono_init"):
        LSTM(3, 2, 8, chrono_init=2)
    with pytest.raises(TypeError, match="chrono_init"):
        LSTM(3, 2, 8, chrono_init="long")


def test_lstm_chrono_holds_a_value_longer():
    """What chrono init is for: with zero input after the first step, the cell state of a
    chrono-initialised LSTM (T_max = 1000) keeps far more of a first-step impulse after 100 steps."""
    x = torch.zeros(2, 101, 1)
    x[0, 0, 0] = 1.0  # sequence 0: an impulse at step 0; sequence 1: none

    def kept(model):  # how much of the impulse's effect on the cell state is left
        with torch.no_grad():
            c0 = model.lstm(x[:, :1])[1][1][0]
            c = model.lstm(x)[1][1][0]
        return float((c[0] - c[1]).abs().sum() / (c0[0] - c0[1]).abs().sum())

    torch.manual_seed(1)
    plain = LSTM(1, 1, 16)
    torch.manual_seed(1)
    chrono = LSTM(1, 1, 16, chrono_init=1000)
    assert kept(chrono) > 100 * kept(plain)
