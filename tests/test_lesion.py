"""Lesions remove exactly a neuron's (or an edge's) out-going contribution, and nothing else."""

import pytest
import torch

from tnd import TND, NeuronGraph
from tnd.apps.lesions import edge_ids, find_tnd, lesioned
from path_spy import PathSpy


def _model(readout="linear", impl="dense", d=1, dynamics="leaky"):
    torch.manual_seed(0)
    g = NeuronGraph.random(12, 0.35, seed=3, num_inputs=3, num_outputs=3)
    out = 3 * d if readout == "identity" else 2
    return TND(2, g, out, readout=readout, impl=impl, state_size=d, dynamics=dynamics).double()


def _run(model, h0, fast=True):
    """The model on a fixed input from ``h0``, through the fused loop (``fast``) or the reference
    loop; asserts that the asked-for loop is the one that ran (lesions must reach both)."""
    model.use_fast_path = fast
    x = torch.randn(1, 15, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with PathSpy(model) as spy, torch.no_grad():
        out = model(x, h0)
    ran = (spy.fast_calls, spy.ref_calls)
    assert ran == ((1, 0) if fast else (0, 1)), f"asked for {'the fused' if fast else 'the reference'} loop, ran {ran}"
    return out


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "reference"])
@pytest.mark.parametrize("impl", ["dense", "sparse"])
@pytest.mark.parametrize("readout", ["linear", "identity"])
def test_lesioned_neuron_has_no_influence(readout, impl, fast):
    model = _model(readout, impl)
    g = model.graph
    for j in [5, int(g.output_neurons[0]), int(g.input_neurons[0])]:
        assert int(g.out_degree()[j]) > 0 or j in g.output_neurons.tolist()
        h0 = torch.zeros(1, 12, dtype=torch.float64)
        h1 = h0.clone()
        h1[0, j] = 0.9  # perturb only neuron j
        y_a, s_a = _run(model, h0, fast)
        y_b, s_b = _run(model, h1, fast)
        others = [i for i in range(12) if i != j]
        assert not torch.allclose(y_a, y_b) or not torch.allclose(s_a[:, others], s_b[:, others])
        with lesioned(model, neurons=[j]):
            y_a, s_a = _run(model, h0, fast)
            y_b, s_b = _run(model, h1, fast)
        # nothing downstream of j sees it: outputs and every other neuron's state are unchanged
        torch.testing.assert_close(y_a, y_b, rtol=0, atol=0)
        torch.testing.assert_close(s_a[:, others], s_b[:, others], rtol=0, atol=0)


def test_lesion_is_restored_and_edges_are_cut():
    model = _model(d=2, dynamics="gated")
    inter = model.cell.interaction
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = model.graph
    s, t = g.edge_index[:, 4].tolist()
    (e,) = edge_ids(model, [(s, t)])
    assert e == 4
    with lesioned(model, edges=[e]):
        w = inter.effective_edge_weight()
        assert torch.all(w[e] == 0) and torch.all(w[torch.arange(g.num_edges) != e] != 0)
        # the gradient w.r.t. that edge's parameters vanishes: the edge no longer contributes
        x = torch.randn(2, 6, 2, dtype=torch.float64)
        model(x)[0].sum().backward()
        grads = [p.grad for p in inter.parameters() if p.grad is not None and p.shape[0] == g.num_edges]
        assert grads and all(torch.all(gr[e] == 0) for gr in grads)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_lesion_bad_arguments_are_named():
    model = _model()
    with pytest.raises(ValueError, match="neurons: id 99"):
        with lesioned(model, neurons=[99]):
            pass
    with pytest.raises(ValueError, match="edges"):
        edge_ids(model, [(0, 0)])
    with pytest.raises(TypeError, match="TND"):
        find_tnd(torch.nn.Linear(2, 2))


def test_lesion_reaches_the_step_api_used_in_closed_loop_play():
    model = _model()
    x = torch.randn(1, 8, 2, dtype=torch.float64)
    with torch.no_grad():
        model.step(x[:, 0])  # build the stepper's weight snapshot before lesioning
        with lesioned(model, neurons=[int(model.graph.output_neurons[0]), 4]):
            y_seq, _ = model(x)
            h, ys = None, []
            for t in range(8):
                y, h = model.step(x[:, t], h)
                ys.append(y)
        y_after, _ = model(x)
    torch.testing.assert_close(torch.stack(ys, 1), y_seq, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(y_after, y_seq)  # restored on exit
