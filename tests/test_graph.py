import json

import pytest
import torch

from tnd import GraphError, NeuronGraph

BUILDERS = {
    "random": lambda: NeuronGraph.random(40, 0.1, seed=3),
    "fully_connected": lambda: NeuronGraph.fully_connected(12),
    "small_world": lambda: NeuronGraph.small_world(40, k=4, rewire_prob=0.2, seed=3),
    "scale_free": lambda: NeuronGraph.scale_free(40, m=2, seed=3),
    "ring": lambda: NeuronGraph.ring(40, k=2),
    "layered": lambda: NeuronGraph.layered(6, 10, 8, 4, seed=3),
    "signed": lambda: NeuronGraph.random(30, 0.2, seed=1, inhibitory_fraction=0.3),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builders_are_valid_and_seeded(name):
    g, g2 = BUILDERS[name](), BUILDERS[name]()
    assert g == g2
    assert g.num_edges == g.edge_index.shape[1] > 0
    assert 0 < g.density <= 1
    key = g.edge_index[1] * g.num_neurons + g.edge_index[0]
    assert torch.equal(key, torch.sort(key).values) and key.unique().numel() == key.numel()
    assert set(g.output_neurons.tolist()) <= g.reachable_from_inputs()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_roundtrip_dict_json_networkx_dense(name):
    g = BUILDERS[name]()
    assert NeuronGraph.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    assert NeuronGraph.from_json(g.to_json()) == g
    pytest.importorskip("networkx")
    assert NeuronGraph.from_networkx(g.to_networkx()) == g
    assert NeuronGraph.from_dense(g.to_dense(), g.input_neurons, g.output_neurons, signed=g.signed) == g


def test_seeds_differ():
    assert NeuronGraph.random(40, 0.1, seed=1) != NeuronGraph.random(40, 0.1, seed=2)


def test_random_density_close():
    g = NeuronGraph.random(200, 0.05, seed=0)
    assert abs(g.density - 0.05) < 0.005


def test_small_world_keeps_edge_count_and_layered_roles():
    g = NeuronGraph.small_world(50, k=3, rewire_prob=0.5, seed=0)
    assert g.num_edges == 150 and bool((g.edge_index[0] != g.edge_index[1]).all())
    lay = NeuronGraph.layered(4, 6, 5, 2, seed=0)
    assert lay.input_neurons.tolist() == [0, 1, 2, 3] and lay.output_neurons.tolist() == [15, 16]
    src, tgt = lay.edge_index
    assert not bool(((src < 4) & (tgt >= 10)).any()), "sensory neurons feed inter neurons only"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_neurons=3, edge_index=[[0, 5], [1, 2]], input_neurons=[0], output_neurons=[2]), "outside"),
        (dict(num_neurons=3, edge_index=[[0, 0], [1, 1]], input_neurons=[0], output_neurons=[1]), "duplicate edge 0 -> 1"),
        (dict(num_neurons=3, edge_index=[[0], [1]], input_neurons=[], output_neurons=[1]), "input_neurons must name"),
        (dict(num_neurons=3, edge_index=[[0], [1]], input_neurons=[0], output_neurons=[]), "output_neurons must name"),
        (dict(num_neurons=3, edge_index=[[0], [1]], input_neurons=[0], output_neurons=[2]), "unreachable"),
        (dict(num_neurons=3, edge_index=[[0, 1, 2]], input_neurons=[0], output_neurons=[2]), r"shape \(2, E\)"),
        (dict(num_neurons=0, edge_index=[[0], [1]], input_neurons=[0], output_neurons=[1]), "num_neurons"),
        (dict(num_neurons=3, edge_index=[[0.0], [1.0]], input_neurons=[0], output_neurons=[1]), "integer"),
        (dict(num_neurons=3, edge_index=[[0], [1]], input_neurons=[0], output_neurons=[1], sign=[2]), r"\+1"),
        (dict(num_neurons=3, edge_index=[[0], [1]], input_neurons=[0], output_neurons=[1], sign=[1, 1]), "one per edge"),
    ],
)
def test_invalid_graphs_are_refused(kwargs, match):
    with pytest.raises(GraphError, match=match):
        NeuronGraph(**kwargs)


def test_unreachable_allowed_explicitly():
    g = NeuronGraph(3, [[0], [1]], [0], [2], allow_unreachable=True)
    assert NeuronGraph.from_dict(g.to_dict()) == g


def test_from_name_and_unknown():
    assert NeuronGraph.from_name("ring", 10, k=1).num_edges == 20
    with pytest.raises(GraphError, match="unknown graph family"):
        NeuronGraph.from_name("hypercube", 10)
