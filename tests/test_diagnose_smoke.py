"""benchmarks/diagnose.py: the probes measure what they claim, and ``--quick`` runs end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from tnd import TND, NeuronGraph

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "diagnose.py"


def _load():
    spec = importlib.util.spec_from_file_location("diagnose_bench", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_unrolls_match_the_models_forward_and_gradients_reach_every_step():
    d = _load()
    torch.manual_seed(0)
    x = torch.rand(3, 12, 2)
    for model in (d.memory_tnd("tnd", 2, 1, 400, 12, 0), d.memory_tnd("tnd_gated_span", 2, 1, 400, 12, 0),
                  d.lstm_for(2, 1, 400)):
        r = d.probe(model, "adding", x, lambda out: out[:, -1].pow(2).mean(), 3)
        assert r["unroll_error"] < 1e-5
        assert len(r["grad_state"]) == len(r["memory"]) == 12
        assert all(g > 0 for g in r["grad_state"])
    # the memory probe is the input Jacobian of the last output: compare with autograd directly
    model = d.memory_tnd("tnd", 2, 1, 400, 12, 0)
    r = d.probe(model, "adding", x, lambda out: out[:, -1].pow(2).mean(), 3)
    xg = x.clone().requires_grad_(True)
    y, _ = model(xg)
    (g,) = torch.autograd.grad(y[:, -1, 0].sum(), xg)  # O = 1: v = +-1
    assert torch.allclose(torch.tensor(r["memory"]), g.norm(dim=-1).mean(0), rtol=1e-4, atol=1e-9)


def test_graph_stats_hops():
    d = _load()
    # a chain 0 -> 1 -> 2 -> 3, input 0, output 3: three hops
    g = NeuronGraph(4, [[0, 1, 2], [1, 2, 3]], [0], [3])
    st = d.graph_stats(TND(1, g, 1))
    assert st["hops_input_to_output"] == {"3": 1}
    assert st["input_fraction"] == 0.25 and st["io_overlap"] == 0
    assert d.graph_stats(d.lstm_for(2, 1, 100)) is None


def test_variants_are_parameter_matched():
    d = _load()
    for name in ("tnd", "tnd_tau_span", "tnd_all_input", "tnd_gated_span", "tnd_io_overlap"):
        m = d.memory_tnd(name, 2, 1, 2000, 100, 0)
        assert abs(d.count_parameters(m) - 2000) < 60, name
    m = d.memory_tnd("tnd_tau_span", 2, 1, 2000, 1000, 0)
    assert float(m.cell.dynamics.time_constants().detach().max()) > 200  # spans the horizon
    assert m.graph.input_neurons.numel() < m.num_neurons
    assert d.memory_tnd("tnd_all_input", 2, 1, 2000, 100, 0).graph.input_neurons.numel() > 100


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    d = _load()
    doc = d.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "diagnosis.json").read_text())
    assert saved["quick"] is True and set(saved["results"]) == {"adding_30", "copy_20", "pong"}
    for label, entry in doc["results"].items():
        assert "lstm" in entry["models"] and "tnd" in entry["models"]
        for rec in entry["models"].values():
            assert len(rec["trained"]["grad_state"]) == entry["T"]
            assert rec["test_over_constant"] > 0
    for f in ("diagnosis_gradients.png", "diagnosis_memory.png", "diagnosis_tau.png", "diagnosis_loss.png"):
        assert (tmp_path / f).stat().st_size > 1000
