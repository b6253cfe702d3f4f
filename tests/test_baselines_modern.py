"""Mamba (mambapy) and LRU (lru-pytorch) baselines: the packages' models behind the baseline
interface, exact stepping, parameter budgets, seeds, gradients, training, Pong and suite use."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("mambapy")
pytest.importorskip("LRU_pytorch")

from LRU_pytorch import LRU as PackageLRU  # noqa: E402
from mambapy.mamba import Mamba as PackageMamba  # noqa: E402

from tnd.apps.baselines import (  # noqa: E402
    LRU,
    BASELINES,
    Mamba,
    count_parameters,
    detach_state,
    hidden_size_for_budget,
    make_baseline,
    map_state,
)

NAMES = ("mamba", "lru")
C_IN, C_OUT = 3, 4


def build(name, seed=0, hidden=8, **kw):
    torch.manual_seed(seed)
    return make_baseline(name, C_IN, C_OUT, hidden, **kw).eval()


def step_through(model, x, hx=None, chunk=1):
    ys = []
    for i in range(0, x.shape[1], chunk):
        y, hx = model(x[:, i:i + chunk], hx)
        ys.append(y)
    return torch.cat(ys, dim=1), hx


def leaves(h):
    out = []
    map_state(h, lambda t: out.append(t) or t)
    return out


def test_registered_from_their_packages():
    assert BASELINES["mamba"] is Mamba and BASELINES["lru"] is LRU
    assert isinstance(build("mamba").mamba, PackageMamba)
    assert all(isinstance(m, PackageLRU) for m in build("lru", num_layers=2).lrus)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("B,T", [(1, 1), (3, 5), (2, 17)])
def test_shapes_and_state_layout(name, B, T):
    m = build(name, num_layers=2)
    y, h = m(torch.randn(B, T, C_IN))
    assert y.shape == (B, T, C_OUT)
    for t in leaves(h):  # batch first, real, finite
        assert t.shape[0] == B and t.is_floating_point() and torch.isfinite(t).all()
    if name == "mamba":
        assert h[0].shape == (B, 2, m.d_inner, m.d_state) and h[1].shape == (B, 2, m.d_inner, m.d_conv - 1)
    else:
        assert h.shape == (B, 2, m.d_state, 2)
    yu, _ = m(torch.randn(T, C_IN))
    assert yu.shape == (T, C_OUT)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("grad", [False, True])
def test_stepping_equals_full_sequence(name, chunk, grad):
    """With gradients on, Mamba's whole-sequence call takes the package's parallel scan."""
    m = build(name, num_layers=2)
    x = torch.randn(3, 11, C_IN)
    with torch.set_grad_enabled(grad):
        y_full, h_full = m(x)
    with torch.no_grad():
        y_step, h_step = step_through(m, x, chunk=chunk)
    torch.testing.assert_close(y_step, y_full.detach(), atol=1e-5, rtol=1e-4)
    for a, b in zip(leaves(h_step), leaves(h_full)):
        torch.testing.assert_close(a, b.detach(), atol=1e-5, rtol=1e-4)
    # the state matters: continuing from it differs from restarting
    x2 = torch.randn(3, 4, C_IN)
    with torch.no_grad():
        assert not torch.allclose(m(x2, h_full)[0], m(x2)[0], atol=1e-4)


def test_mamba_paths_equal_the_packages_parallel_scan():
    m = build("mamba", num_layers=2)
    x = torch.randn(2, 13, C_IN)  # 13: the package pads its scan to a power of two
    y_par, h_par = m(x)  # from the zero state: the parallel scan, the final state in closed form
    with torch.no_grad():
        ref = m.readout(m.norm_f(m.mamba(m.input_proj(x))))  # mambapy's Mamba.forward (pscan)
        y_step, h_step = step_through(m, x)  # one step at a time: the package's Mamba.step
        y_nograd, h_nograd = m(x)
    assert torch.equal(y_par.detach(), ref) and torch.equal(y_nograd, ref)
    assert y_par.requires_grad and not any(t.requires_grad for t in leaves(h_par))
    torch.testing.assert_close(y_step, ref, atol=1e-5, rtol=1e-4)
    for a, b, c in zip(leaves(h_step), leaves(h_par), leaves(h_nograd)):  # the closed form is the recurrence's
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
        assert torch.equal(b, c)
    x2 = torch.randn(2, 2, C_IN)  # shorter than the convolution's memory (d_conv - 1 = 3): zeros before it
    with torch.no_grad():
        for a, b in zip(leaves(step_through(m, x2)[1]), leaves(m(x2)[1])):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    stepping = build("mamba", num_layers=2, parallel=False)
    y_s, h_s = stepping(x)
    torch.testing.assert_close(y_s.detach(), ref, atol=1e-5, rtol=1e-4)
    assert all(t.requires_grad for t in leaves(h_s))
    with pytest.raises(TypeError, match="parallel: expected a bool"):
        make_baseline("mamba", C_IN, C_OUT, 8, parallel=1)


def test_lru_equals_the_packages_own_batched_forward():
    m = build("lru", num_layers=1)
    x = torch.randn(3, 7, C_IN)
    with torch.no_grad():
        y, h = m(x)
        u = m.input_proj(x)
        v = PackageLRU.forward(m.lrus[0], m.norms[0](u))  # the package's (B, T, H) loop, zero state
        ref = m.readout(u + torch.nn.functional.glu(m.glus[0](torch.nn.functional.gelu(v)), dim=-1))
    torch.testing.assert_close(y, ref, atol=1e-6, rtol=1e-5)
    assert h.abs().sum() > 0  # the recorded final state, not the package's zeroed one


def test_lru_counts_complex_parameters_twice():
    m = build("lru", hidden=6, d_state=5)
    real = sum(torch.view_as_real(p).numel() if p.is_complex() else p.numel() for p in m.parameters())
    assert count_parameters(m) == real
    assert any(p.is_complex() for p in m.parameters())
    assert count_parameters(m) > sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("budget", [2000, 20000])
def test_parameter_budget(name, budget):
    state = torch.random.get_rng_state()
    h = hidden_size_for_budget(name, 6, 3, budget)
    assert torch.equal(torch.random.get_rng_state(), state)
    n = count_parameters(make_baseline(name, 6, 3, h))
    assert abs(n - budget) <= 0.1 * budget, (name, h, n)
    # the next size up / down is no closer
    for k in (h - 1, h + 1):
        if k >= 1:
            assert abs(count_parameters(make_baseline(name, 6, 3, k)) - budget) >= abs(n - budget)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_given_seed(name):
    x = torch.randn(2, 6, C_IN)
    a, b, c = build(name, seed=3), build(name, seed=3), build(name, seed=4)
    with torch.no_grad():
        assert torch.equal(a(x)[0], b(x)[0])
        assert not torch.allclose(a(x)[0], c(x)[0])


@pytest.mark.parametrize("name", NAMES)
def test_gradients_flow_through_outputs_and_state(name):
    m = build(name, num_layers=2).train()
    x = torch.randn(2, 5, C_IN)
    _, h = m(x[:, :3])
    h0 = map_state(detach_state(h), lambda t: t.clone().requires_grad_(True))
    y, h2 = m(x[:, 3:], h0)
    loss = y.pow(2).mean() + sum(t.pow(2).mean() for t in leaves(h2))
    loss.backward()
    for name_p, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name_p
    assert sum(float(p.grad.abs().sum()) for p in m.parameters()) > 0
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in leaves(h0))


@pytest.mark.parametrize("name", NAMES)
def test_tiny_training_run_reduces_the_loss(name):
    """Recall the previous step's input (needs the recurrent state)."""
    m = build(name, hidden=8).train()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 10, C_IN, generator=gen)
    target = torch.cat([torch.zeros(8, 1, C_IN), x[:, :-1]], dim=1)
    opt = torch.optim.Adam(m.parameters(), lr=0.02)

    def loss_fn():
        return (m(x)[0][..., :C_IN] - target).pow(2).mean()

    with torch.no_grad():
        first = float(loss_fn())
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = float(loss_fn())
    assert last < 0.7 * first, (first, last)


def test_bad_arguments_and_states():
    with pytest.raises(ValueError, match="d_conv"):
        make_baseline("mamba", C_IN, C_OUT, 8, d_conv=1)
    with pytest.raises(ValueError, match="r_min, r_max"):
        make_baseline("lru", C_IN, C_OUT, 8, r_min=0.9, r_max=0.5)
    mm, ml = build("mamba"), build("lru")
    x = torch.randn(2, 3, C_IN)
    with pytest.raises(TypeError, match=r"hx: expected a tuple \(h, conv\)"):
        mm(x, torch.zeros(2, 1, 16, 16))
    h, conv = mm(x)[1]
    with pytest.raises(ValueError, match="hx: expected h of shape"):
        mm(x, (h[:, :, :3], conv))
    with pytest.raises(ValueError, match=r"hx: expected a tensor of shape \(B, 1, 8, 2\)"):
        ml(x, torch.zeros(2, 1, 8))
    with pytest.raises(ValueError, match="hx: expected every state tensor to have batch size 2"):
        ml(x, torch.zeros(3, 1, 8, 2))
    with pytest.raises(TypeError, match="default dtype"):
        ml.double()(x.double())


def test_mamba_in_double_precision_steps_exactly():
    m = build("mamba").double()
    x = torch.randn(2, 6, C_IN, dtype=torch.float64)
    with torch.no_grad():
        y, _ = m(x)
        ys, _ = step_through(m, x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(ys, y)


def test_suite_and_pong_registries_match_the_budget_and_keep_defaults():
    from tnd.apps.pong.experiment import PongConfig
    from tnd.apps.pong.models import MODEL_NAMES as PONG_NAMES
    from tnd.apps.pong.models import build_model as pong_build
    from tnd.apps.suite.models import MODEL_NAMES as SUITE_NAMES
    from tnd.apps.suite.models import build_model as suite_build
    from tnd.apps.suite.models import model_from_spec
    from tnd.apps.suite.sweep import DEFAULT_MODELS, FULL_MODELS

    for name in NAMES:
        assert name in PONG_NAMES and name in SUITE_NAMES
        assert name not in PongConfig().models and name not in DEFAULT_MODELS and name in FULL_MODELS
        torch.manual_seed(0)
        model, spec = suite_build(name, 2, 5, 3000, seq_len=32)
        assert spec["kind"] == "baseline" and not spec["timespans"]
        assert abs(spec["params"] - 3000) <= 0.1 * 3000, spec
        assert count_parameters(model_from_spec(spec)) == spec["params"]
        torch.manual_seed(0)
        _, pspec = pong_build(name, 6, 3, 3000)
        assert abs(pspec["params"] - 3000) <= 0.1 * 3000, pspec


@pytest.mark.parametrize("name", NAMES)
def test_lockstep_play_equals_one_round_at_a_time(name):
    pytest.importorskip("gymnasium")
    from tnd.apps.pong.evaluate import play_rounds
    from tnd.apps.pong.models import build_model as pong_build

    torch.manual_seed(0)
    model, _ = pong_build(name, 3, 3, 400)  # observations: 3 positions
    together = play_rounds(model, rounds=3, env_kwargs={"max_catches": 2})
    alone = [play_rounds(model, rounds=1, seed=10_000_000 + i, env_kwargs={"max_catches": 2})["per_round"][0]
             for i in range(3)]
    assert together["per_round"] == alone


def test_pong_quick_run_with_mamba_and_lru(tmp_path):
    pytest.importorskip("gymnasium")
    pytest.importorskip("ncps")
    pytest.importorskip("matplotlib")
    from tnd.apps.cli import main
    from tnd.apps.pong import experiment

    out = tmp_path / "run"
    rc = main(["pong", "--quick", "--models", "mamba", "lru", "--seeds", "0", "--out", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["models"]) == set(NAMES)
    for name, m in res["models"].items():
        assert 0.0 <= m["catch_rate"] <= 1.0
        assert abs(m["params"] - m["param_budget"]) <= 0.25 * m["param_budget"], (name, m["params"])
        # the checkpoint (safetensors; LRU's complex weights included) rebuilds the trained model
        model = experiment.load_cell_model(out, name, 0)
        assert count_parameters(model) == m["params"]
        x = torch.rand(2, 5, getattr(model, "inner", model).input_size)
        y1, y2 = model(x)[0], model(x)[0]
        assert torch.equal(y1, y2) and torch.isfinite(y1).all()


def test_mamba_paths_benchmark_runs(tmp_path):
    """benchmarks/mamba_paths.py end to end at a tiny size: one row, the two states agree."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "mamba_paths.py"), "--steps", "1", "--lengths", "9"],
                       capture_output=True, text=True, env={"PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("| 9 |"))
    assert float(row.rstrip(" |").split("|")[-1]) < 1e-5, row
