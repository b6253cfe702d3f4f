"""I: dense and sparse paths agree (outputs and gradients); the maths is the stated one."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from tnd import NeuronGraph
from tnd.interactions import AttentionInteraction, LinearInteraction, make_interaction


def graphs():
    return {
        "unsigned": NeuronGraph.random(20, 0.2, seed=1),
        "signed": NeuronGraph.random(20, 0.2, seed=2, inhibitory_fraction=0.4),
        # neuron 2 has no in-edges at all
        "isolated": NeuronGraph(4, [[0, 1, 3], [1, 3, 1]], [0], [1, 3]),
    }


def pair(name, graph, d):
    torch.manual_seed(0)
    dense = make_interaction(name, graph, d, impl="dense").double()
    sparse = make_interaction(name, graph, d, impl="sparse").double()
    sparse.load_state_dict(dense.state_dict())
    return dense, sparse


@pytest.mark.parametrize("name", ["linear", "attention"])
@pytest.mark.parametrize("gname", ["unsigned", "signed", "isolated"])
@pytest.mark.parametrize("d", [1, 3])
def test_dense_and_sparse_agree(name, gname, d):
    g = graphs()[gname]
    dense, sparse = pair(name, g, d)
    s = torch.rand(5, g.num_neurons, d, dtype=torch.float64, requires_grad=True) * 2 - 1
    out_d, out_s = dense(s), sparse(s)
    torch.testing.assert_close(out_d, out_s, rtol=1e-12, atol=1e-12)
    gd = torch.autograd.grad(out_d.square().sum(), [s, *dense.parameters()])
    gs = torch.autograd.grad(out_s.square().sum(), [s, *sparse.parameters()])
    for a, b in zip(gd, gs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_linear_is_the_weighted_sum():
    g = NeuronGraph.random(15, 0.3, seed=4, inhibitory_fraction=0.5)
    inter = LinearInteraction(g, 1, impl="sparse").double()
    s = torch.randn(3, 15, 1, dtype=torch.float64)
    w = inter.effective_edge_weight()[:, 0]
    expected = torch.zeros(3, 15, dtype=torch.float64)
    for e, (j, i) in enumerate(g.edge_index.t().tolist()):
        expected[:, i] += w[e] * s[:, j, 0]
    torch.testing.assert_close(inter(s)[..., 0], expected)
    # signs are fixed by the graph
    assert torch.equal(torch.sign(w), g.sign.double())


def test_attention_weights_are_normalised_per_receiver():
    g = NeuronGraph.random(12, 0.4, seed=5)
    inter = AttentionInteraction(g, 1, impl="sparse").double()
    with torch.no_grad():
        inter.value_raw.fill_(1.0)  # every value weight 1: u_i is a convex combination of s_j
        inter.prior.normal_()
    s = torch.rand(4, 12, 1, dtype=torch.float64)
    u = inter(s)[..., 0]
    has_in = g.in_degree() > 0
    for i in torch.nonzero(has_in).flatten().tolist():
        srcs = g.edge_index[0][g.edge_index[1] == i]
        assert bool((u[:, i] >= s[:, srcs, 0].min(1).values - 1e-12).all())
        assert bool((u[:, i] <= s[:, srcs, 0].max(1).values + 1e-12).all())
    assert bool((u[:, ~has_in] == 0).all())


class LargestTensor(TorchDispatchMode):
    """Records how many aten ops ran and the element count of the largest tensor any of them
    returned: every intermediate of a forward or backward pass is some op's output."""

    def __init__(self):
        super().__init__()
        self.ops, self.largest = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.ops += 1
                self.largest = max(self.largest, t.numel())
        return out


def largest_intermediates(inter, s):
    """(largest tensor of the forward pass, largest of the backward pass) of ``inter`` on ``s``."""
    s = s.clone().requires_grad_(True)
    with LargestTensor() as fwd:
        out = inter(s)
        loss = out.square().sum()
    with LargestTensor() as bwd:
        loss.backward()
    assert fwd.ops > 0 and bwd.ops > 0  # both passes ran under the hook
    assert s.grad is not None and all(p.grad is not None for p in inter.parameters())
    return fwd.largest, bwd.largest


def test_auto_impl_and_no_bnn_tensor():
    assert make_interaction("linear", NeuronGraph.random(64, 0.2), 1).impl == "dense"
    big = NeuronGraph.random(2000, 0.01, seed=0)
    assert make_interaction("linear", big, 1).impl == "sparse"
    small = NeuronGraph.random(300, 0.05, seed=0)
    B = 8
    # the hook sees a B x N x N tensor when one is built
    w = torch.rand(small.num_neurons, small.num_neurons)
    with LargestTensor() as naive:
        _ = torch.randn(B, small.num_neurons, 1) * w
    assert naive.largest == B * small.num_neurons ** 2
    for name in ("linear", "attention"):
        for d in (1, 2):
            # sparse path, forward and backward: every intermediate is O(B E d + B N d), here
            # ~100x smaller than a B x N x N tensor (2000^2 * 8 = 32M elements)
            inter = make_interaction(name, big, d)
            n, e = big.num_neurons, big.num_edges
            bound = 2 * B * (e + n) * d
            assert inter.impl == "sparse" and bound * 20 < B * n * n
            for largest in largest_intermediates(inter, torch.randn(B, n, d)):
                assert largest <= bound, (name, d, largest, bound)
            # dense path: nothing larger than its (d, N, N) masked weight, never B x N x N
            inter = make_interaction(name, small, d, impl="dense")
            n = small.num_neurons
            for largest in largest_intermediates(inter, torch.randn(B, n, d)):
                assert largest <= d * n * n < B * n * n, (name, d, largest)


def test_edge_mask_lesions_an_edge():
    g = NeuronGraph(3, [[0, 1], [2, 2]], [0, 1], [2])
    for impl in ("dense", "sparse"):
        for name in ("linear", "attention"):
            inter = make_interaction(name, g, 1, impl=impl)
            inter.edge_mask[0] = 0  # lesion 0 -> 2
            s = torch.randn(2, 3, 1, requires_grad=True)
            (g_s,) = torch.autograd.grad(inter(s)[:, 2].sum(), s)
            assert bool((g_s[:, 0] == 0).all()) and bool((g_s[:, 1] != 0).any())
