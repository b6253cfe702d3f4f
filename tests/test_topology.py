"""Learnable topology: the edge budget holds at every step, pruning keeps the function."""

import pytest
import torch

from tnd import TND, NeuronGraph
from tnd.apps.prune_regrow import PruneRegrow, learned_graph, prune_to_graph


def _candidate(n=10, d=1, dtype=torch.float64):
    torch.manual_seed(0)
    g = NeuronGraph.fully_connected(n, num_inputs=3, num_outputs=3)
    return TND(2, g, 2, state_size=d).to(dtype)


def _train(model, learner, steps, seed=0):
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(seed)
    losses, counts = [], []
    for step in range(1, steps + 1):
        x = torch.randn(8, 12, 2, generator=gen, dtype=torch.float64)
        target = torch.cumsum(x[..., :1], 1).tanh().expand(-1, -1, 2) * torch.tensor([1.0, -1.0], dtype=x.dtype)
        y, _ = model(x)
        loss = ((y - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        learner.after_step(step)
        losses.append(float(loss.detach()))
        counts.append(learner.num_active())
    return losses, counts


@pytest.mark.parametrize("d", [1, 2])
def test_budget_holds_at_every_step_and_edges_move(d):
    model = _candidate(d=d)
    budget = 25
    learner = PruneRegrow(model, budget, every=5, drop_fraction=0.4, stop_step=60, seed=1)
    start = learner.mask.detach().clone()
    losses, counts = _train(model, learner, 80)
    assert counts == [budget] * 80
    assert learner.moved and all(m["moved"] > 0 for m in learner.moved)
    assert max(m["step"] for m in learner.moved) <= 60
    assert not torch.equal(start, learner.mask.detach())  # the topology changed
    assert sum(losses[-10:]) < sum(losses[:10])
    learner.finish()
    g = learned_graph(model)
    assert g.num_edges == budget
    assert torch.equal(g.input_neurons, model.graph.input_neurons)
    assert torch.equal(g.output_neurons, model.graph.output_neurons)


def test_pruned_model_equals_masked_model():
    model = _candidate(d=2)
    learner = PruneRegrow(model, 30, every=4, stop_step=20, seed=2)
    _train(model, learner, 24)
    learner.finish()
    small = prune_to_graph(model)
    assert small.graph.num_edges == 30
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    x = torch.randn(3, 9, 2, dtype=torch.float64)
    for fast in (True, False):
        model.use_fast_path = small.use_fast_path = fast
        with torch.no_grad():
            y0, h0 = model(x)
            y1, h1 = small(x)
        torch.testing.assert_close(y1, y0, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h1, h0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("regrow", ["gradient", "sensitivity"])
def test_budget_and_function_across_regrow_rules(regrow):
    model = _candidate(d=2)
    learner = PruneRegrow(model, 30, every=4, drop_fraction=0.5, stop_step=20, seed=4, regrow=regrow)
    _, counts = _train(model, learner, 8)
    assert counts == [30] * 8 and learner.moved


def test_gradient_regrowth_picks_the_largest_gradients_at_zero_weight():
    model = _candidate()
    learner = PruneRegrow(model, 20, every=1000, drop_fraction=0.5, stop_step=1000, seed=3)
    x = torch.randn(4, 7, 2, dtype=torch.float64)
    model(x)[0].pow(2).sum().backward()
    learner.after_step(1)  # folds dL/dw (all candidate edges, inactive ones too) into the score
    inactive = torch.nonzero(learner.mask.detach() == 0).flatten()
    assert float(learner.gscore[inactive].abs().sum()) > 0  # inactive edges do get a gradient
    expected = inactive[torch.argsort(-learner.gscore[inactive].norm(dim=1), stable=True)[:10]]
    moved = learner.update(1)
    assert moved == 10 and bool((learner.mask.detach()[expected] == 1).all())
    assert bool((model.cell.interaction.weight_raw.detach()[expected] == 0).all())
    learner.finish()
    assert "effective_edge_weight" not in vars(model.cell.interaction)
    # grown at weight 0: switching them off again leaves the function exactly as it is
    with torch.no_grad():
        y_grown, _ = model(x)
        model.cell.interaction.edge_mask[expected] = 0.0
        y_without, _ = model(x)
    torch.testing.assert_close(y_grown, y_without, rtol=0, atol=0)


def test_regrowth_follows_the_mask_gradient():
    model = _candidate()
    learner = PruneRegrow(model, 20, every=1000, drop_fraction=0.5, stop_step=1000, seed=3, regrow="sensitivity")
    inactive = torch.nonzero(learner.mask.detach() == 0).flatten()
    best = inactive[:4]
    learner.score[best] = -1.0  # predicted to lower the loss the most
    moved = learner.update(1)
    assert moved == 10 and bool((learner.mask.detach()[best] == 1).all())
    assert learner.num_active() == 20


def test_bad_arguments():
    model = _candidate()
    with pytest.raises(ValueError, match="budget must be <="):
        PruneRegrow(model, 10_000)
    with pytest.raises(ValueError, match="every"):
        PruneRegrow(model, 5, every=0)
    with pytest.raises(ValueError, match="drop_fraction"):
        PruneRegrow(model, 5, drop_fraction=1.5)
    with pytest.raises(ValueError, match="regrow"):
        PruneRegrow(model, 5, regrow="random")
    torch.manual_seed(0)
    signed = NeuronGraph.random(8, 0.5, seed=1, num_inputs=2, num_outputs=2, inhibitory_fraction=0.5)
    with pytest.raises(ValueError, match="sensitivity"):
        PruneRegrow(TND(2, signed, 2), 5)
    PruneRegrow(TND(2, signed, 2), 5, regrow="sensitivity")
