"""TND and the suite's models on a CUDA device, checked against the CPU.

Skipped where no CUDA device is present (CI has none): these run on a GPU machine, e.g.
``python -m pytest -q tests/test_cuda.py``. On CUDA every TND configuration takes the readable
torch loop (the fused kernels are C, CPU-only), so these tests hold the reference loop on the GPU
to the CPU's answer: outputs, final states and gradients in float64, with timespans, propagation
steps, continuous-time solvers, ``TND.step``, and saving a GPU model and loading it on the CPU.
"""

from __future__ import annotations

import pytest
import torch

from tnd import TND, load_model, save_model
from tnd.apps.suite.models import MODEL_NAMES as SUITE_MODELS
from tnd.graph import NeuronGraph

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
TOL = 1e-8  # float64; the CPU and the GPU sum in different orders (and adaptive solvers follow)

CONFIGS = [
    dict(dynamics="leaky"),
    dict(dynamics="gated"),
    dict(dynamics="gated", state_size=2),
    dict(dynamics="mlp", dynamics_kw={"hidden_size": 3}),
    dict(dynamics="leaky", interaction="attention"),
    dict(dynamics="gated", per_neuron=False),
    dict(dynamics="leaky", impl="sparse"),
    dict(dynamics="leaky", impl="dense"),
    dict(dynamics="gated", propagation_steps=3),
    dict(dynamics="leaky", mode="continuous", solver="rk4"),
    dict(dynamics="gated", mode="continuous", solver="midpoint"),
    dict(dynamics="leaky", mode="continuous", solver="dopri5"),
]


def _graph(n: int = 12, seed: int = 0) -> NeuronGraph:
    return NeuronGraph.random(n, 0.3, seed=seed, num_inputs=3, num_outputs=3, allow_unreachable=True,
                              inhibitory_fraction=0.3)


def _pair(kw: dict, seed: int = 0) -> tuple[TND, TND]:
    torch.manual_seed(seed)
    cpu = TND(4, _graph(), 2, **kw).double()
    with torch.no_grad():  # away from the initial symmetry, so every parameter matters
        for p in cpu.parameters():
            p.add_(0.2 * torch.randn_like(p))
    gpu = TND(4, _graph(), 2, **kw).double()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.to(CUDA)


def _close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.device.type == "cpu" and b.device.type == "cuda", what
    err = (a - b.cpu()).abs().max().item()
    assert err < TOL, f"{what}: CPU and CUDA differ by {err:.3g}"


def _ids(kw: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in kw.items() if k != "dynamics_kw")


@pytest.mark.parametrize("kw", CONFIGS, ids=[_ids(k) for k in CONFIGS])
@pytest.mark.parametrize("irregular", [False, True], ids=["dt=1", "timespans"])
def test_forward_and_gradients_match_the_cpu(kw, irregular):
    cpu, gpu = _pair(kw)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    ts = (0.2 + torch.rand(3, 7, generator=g, dtype=torch.float64)) if irregular else None
    xc, xg = x.clone().requires_grad_(), x.to(CUDA).requires_grad_()
    yc, hc = cpu(xc, timespans=ts)
    yg, hg = gpu(xg, timespans=None if ts is None else ts.to(CUDA))
    assert yg.device.type == "cuda" and hg.device.type == "cuda"
    _close(yc, yg, "outputs")
    _close(hc, hg, "final state")
    (yc.square().sum() + hc.sum()).backward()
    (yg.square().sum() + hg.sum()).backward()
    _close(xc.grad, xg.grad, "input gradient")
    for (name, pc), pg in zip(cpu.named_parameters(), gpu.parameters()):
        assert (pc.grad is None) == (pg.grad is None), name
        if pc.grad is not None:
            _close(pc.grad, pg.grad, f"gradient of {name}")


@pytest.mark.parametrize("kw", [dict(dynamics="leaky"), dict(dynamics="gated", propagation_steps=2)], ids=_ids)
def test_state_carry_and_step_match_the_cpu(kw):
    """Two halves with the state carried, and ``TND.step`` step by step, equal one call, on the GPU."""
    cpu, gpu = _pair(kw)
    x = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y_full, h_full = cpu(x)
    xg = x.to(CUDA)
    with torch.no_grad():
        y1, h1 = gpu(xg[:, :3])
        y2, h2 = gpu(xg[:, 3:], h1)
        _close(y_full, torch.cat([y1, y2], 1), "carried outputs")
        _close(h_full, h2, "carried state")
        h = None
        for t in range(6):
            y, h = gpu.step(xg[:, t], h)
        _close(y_full[:, -1], y, "step output")
        _close(h_full, h, "step state")


def test_a_model_on_cuda_refuses_an_input_on_the_cpu():
    _, gpu = _pair(dict(dynamics="gated"))
    with pytest.raises((ValueError, RuntimeError), match="device|cuda|cpu"):
        gpu(torch.randn(2, 5, 4, dtype=torch.float64))


def test_saved_on_cuda_loads_on_the_cpu_bit_for_bit(tmp_path):
    cpu, gpu = _pair(dict(dynamics="gated", propagation_steps=2))
    save_model(gpu, tmp_path / "m")
    back = load_model(tmp_path / "m")
    for (name, a), b in zip(cpu.state_dict().items(), back.state_dict().values()):
        assert b.device.type == "cpu" and torch.equal(a, b.to(a.dtype)), name


@pytest.mark.parametrize("name", SUITE_MODELS)
def test_every_suite_model_trains_a_step_on_cuda(name):
    """Each suite model, built at a budget, moved to the GPU, takes one Adam step there with finite
    loss and gradients, and its outputs agree with the same model on the CPU (float32)."""
    pytest.importorskip("ncps")
    from tnd.apps.suite.models import build_model, takes_timespans

    torch.manual_seed(0)
    cpu, _ = build_model(name, 3, 2, 1500, seq_len=16)
    gpu, _ = build_model(name, 3, 2, 1500, seq_len=16)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to(CUDA)
    x = torch.randn(4, 16, 3, generator=torch.Generator().manual_seed(3))
    kw_c = {"timespans": torch.ones(4, 16)} if takes_timespans(name) else {}
    kw_g = {k: v.to(CUDA) for k, v in kw_c.items()}
    with torch.no_grad():
        yc, yg = cpu(x, **kw_c)[0], gpu(x.to(CUDA), **kw_g)[0]
    assert yg.device.type == "cuda"
    err = (yc - yg.cpu()).abs().max().item()
    assert err < 1e-3 * (1 + yc.abs().max().item()), f"{name}: CPU and CUDA outputs differ by {err:.3g}"
    opt = torch.optim.Adam(gpu.parameters(), lr=1e-3)
    loss = gpu(x.to(CUDA), **kw_g)[0].square().mean()
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in gpu.parameters() if p.grad is not None)
    opt.step()
