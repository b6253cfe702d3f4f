"""NeuronGraph and its builders refuse bad input clearly (property tests; see hardening_common):
random arguments either build a valid graph (canonical edge order, no duplicates, round-trips
through to_dict/from_dict) or raise a documented error naming the argument."""

from __future__ import annotations

import pytest
import torch
from hardening_common import junk
from hardening_common import prop_settings as _settings
from hardening_common import refused as _refused
from hypothesis import given
from hypothesis import strategies as st

from tnd import NeuronGraph


small_int = st.integers(-3, 24)
ids = st.one_of(st.lists(small_int, max_size=6), st.lists(st.lists(small_int, max_size=3), max_size=3), junk)
edge_lists = st.one_of(
    st.integers(0, 20).flatmap(lambda e: st.lists(st.lists(small_int, min_size=e, max_size=e), min_size=2, max_size=2)),
    st.lists(st.lists(small_int, max_size=4), max_size=3),
    junk,
)


def _graph_invariants(g: NeuronGraph) -> None:
    n = g.num_neurons
    assert g.edge_index.dtype == torch.long and g.edge_index.shape[0] == 2
    if g.num_edges:
        assert int(g.edge_index.min()) >= 0 and int(g.edge_index.max()) < n
        key = g.edge_index[1] * n + g.edge_index[0]
        assert torch.equal(key, torch.unique(key))  # canonical order, no duplicates
    for t in (g.input_neurons, g.output_neurons):
        assert t.numel() >= 1 and int(t.min()) >= 0 and int(t.max()) < n
    assert NeuronGraph.from_dict(g.to_dict()) == g


GRAPH_ARGS = ("num_neurons", "edge_index", "input_neurons", "output_neurons", "sign", "unreachable")


@pytest.mark.slow
@_settings("NeuronGraph")
@given(n=st.one_of(st.integers(-2, 24), junk), ei=edge_lists, ins=ids, outs=ids,
       sign=st.one_of(st.none(), st.lists(st.sampled_from([1, -1, 0, 2]), max_size=20), junk),
       allow=st.booleans())
def test_neuron_graph_random_input(n, ei, ins, outs, sign, allow):
    try:
        g = NeuronGraph(n, ei, ins, outs, sign=sign, allow_unreachable=allow)
    except BaseException as e:  # noqa: BLE001 - the point is to classify every failure
        _refused(e, *GRAPH_ARGS)
    else:
        _graph_invariants(g)


BUILDER_ARGS = ("num_neurons", "density", "seed", "num_inputs", "num_outputs", "inhibitory_fraction", "k",
                "rewire_prob", "m", "layer", "fanout", "recurrent_command_synapses", "fanin")
maybe_int = st.one_of(st.none(), st.integers(-3, 30), st.floats(allow_nan=True), st.text(max_size=2), st.booleans())


@pytest.mark.slow
@_settings("builders")
@given(kind=st.sampled_from(["random", "ring", "small_world", "scale_free", "layered", "fully_connected"]),
       n=st.one_of(st.integers(-3, 30), junk), a=st.one_of(st.floats(-1, 2), st.integers(-3, 30), junk),
       seed=st.one_of(st.integers(-5, 2**40), junk), ni=maybe_int, no=maybe_int,
       inh=st.one_of(st.floats(-1, 2), st.just(float("nan")), junk), sizes=st.lists(st.integers(-1, 6), min_size=4, max_size=4))
def test_graph_builders_random_input(kind, n, a, seed, ni, no, inh, sizes):
    io_kw = {"num_inputs": ni, "num_outputs": no, "inhibitory_fraction": inh, "seed": seed, "allow_unreachable": True}
    try:
        if kind == "random":
            g = NeuronGraph.random(n, a, **io_kw)
        elif kind == "ring":
            g = NeuronGraph.ring(n, k=a, **io_kw)
        elif kind == "small_world":
            g = NeuronGraph.small_world(n, k=2, rewire_prob=a, **io_kw)
        elif kind == "scale_free":
            g = NeuronGraph.scale_free(n, m=a, **io_kw)
        elif kind == "fully_connected":
            g = NeuronGraph.fully_connected(n, **io_kw)
        else:
            g = NeuronGraph.layered(*sizes, sensory_fanout=ni, motor_fanin=no, inhibitory_fraction=inh, seed=seed)
    except BaseException as e:  # noqa: BLE001
        _refused(e, *BUILDER_ARGS)
    else:
        _graph_invariants(g)


@_settings("from_dense")
@given(mat=st.one_of(
    st.integers(0, 6).flatmap(lambda n: st.lists(st.lists(st.sampled_from([0, 0, 1, -1, 0.5, float("nan")]),
                                                          min_size=n, max_size=n), min_size=n, max_size=n)),
    st.lists(st.lists(st.integers(-1, 1), max_size=4), max_size=4), junk),
    ins=ids, outs=ids, signed=st.booleans())
def test_from_dense_random_input(mat, ins, outs, signed):
    try:
        g = NeuronGraph.from_dense(mat, ins, outs, signed=signed, allow_unreachable=True)
    except BaseException as e:  # noqa: BLE001
        _refused(e, "adjacency", *GRAPH_ARGS)
    else:
        _graph_invariants(g)


@_settings("from_dict")
@given(d=st.one_of(st.fixed_dictionaries({}, optional={
    "num_neurons": st.one_of(st.integers(-1, 8), junk), "edge_index": edge_lists, "input_neurons": ids,
    "output_neurons": ids, "sign": st.one_of(st.none(), junk), "allow_unreachable": st.booleans()}), junk))
def test_from_dict_random_input(d):
    try:
        g = NeuronGraph.from_dict(d)
    except BaseException as e:  # noqa: BLE001
        _refused(e, "from_dict", "graph config", *GRAPH_ARGS)
    else:
        _graph_invariants(g)
