"""The public model API's argument checks: booleans and numbers, the initial state's dtype and
bound, elapsed times, edge_mask on every path, the meta device, and the help text."""

from __future__ import annotations

import inspect

import pytest
import torch

import tnd.fast as fast
from tnd import TND, NeuronGraph, TNDCell
from tnd import solvers

GRAPH = NeuronGraph.layered(3, 4, 4, 2, seed=1, inhibitory_fraction=0.3)
N = GRAPH.num_neurons


# ------------------------------------------------------------------ construction
@pytest.mark.parametrize("kw, error, match", [
    (dict(per_neuron="yes"), TypeError, "per_neuron must be a bool"),
    (dict(per_neuron=1), TypeError, "per_neuron must be a bool"),
    (dict(return_sequences="no"), TypeError, "return_sequences must be a bool"),
    (dict(batch_first=0), TypeError, "batch_first must be a bool"),
    (dict(dynamics_kw=["tau_min", 0.5]), TypeError, "dynamics_kw must be a dict"),
    (dict(interaction_kw="gain=2"), TypeError, "interaction_kw must be a dict"),
    (dict(dynamics_kw={"tau_max": float("inf")}), ValueError, "tau_max must be a finite number"),
    (dict(dynamics_kw={"tau_min": float("nan")}), ValueError, "tau_min must be a finite number"),
    (dict(dynamics_kw={"tau_min": True}), TypeError, "tau_min must be a number"),
    (dict(dynamics_kw={"tau_init": 3.0}), TypeError, "tau_init must be a pair"),
    (dict(dynamics_kw={"tau_init": (1.0, "10")}), TypeError, r"tau_init\[1\] must be a number"),
    (dict(dynamics="mlp", dynamics_kw={"hidden_size": 2.5}), TypeError, "hidden_size must be an int"),
    (dict(dynamics="leaky", dynamics_kw={"activation": ["tanh"]}), TypeError, "activation must be one of"),
    (dict(dynamics_kw={"activation": "tanh"}), TypeError, "'activation' is not an option of dynamics='gated'"),
    (dict(interaction_kw={"gain": float("nan")}), ValueError, "gain must be a finite number"),
    (dict(interaction_kw={"gain": -1.0}), ValueError, "gain must be in"),
    (dict(interaction="attention", interaction_kw={"key_scale": float("inf")}), ValueError, "key_scale"),
    (dict(mode="continuous", substeps=10**9), ValueError, "substeps must be an int in"),
    (dict(mode="continuous", substeps=True), ValueError, "substeps must be a positive int"),
    (dict(mode=["discrete"]), TypeError, "mode must be one of"),
    (dict(solver=5, mode="continuous"), TypeError, "solver must be one of"),
    (dict(impl=None), TypeError, "impl must be one of"),
    (dict(readout=None), TypeError, "readout must be one of"),
])
def test_constructor_arguments_are_checked(kw, error, match):
    with pytest.raises(error, match=match):
        TND(3, GRAPH, 2, **kw)


def test_cell_checks_its_booleans_too():
    with pytest.raises(TypeError, match="per_neuron must be a bool"):
        TNDCell(3, GRAPH, per_neuron="no")


def test_signature_shows_the_main_options_keyword_only():
    sig = inspect.signature(TND.__init__)
    cell = inspect.signature(TNDCell.__init__)
    for name in ("state_size", "interaction", "dynamics", "per_neuron", "mode", "solver", "substeps", "impl",
                 "interaction_kw", "dynamics_kw"):
        p = sig.parameters[name]
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert p.default == cell.parameters[name].default, name  # the same defaults as before
    for name in ("return_sequences", "batch_first", "readout"):  # still positional-or-keyword
        assert sig.parameters[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    m = TND(3, GRAPH, 2, True, True, "linear", state_size=2, dynamics="gated", mode="continuous", solver="euler")
    assert TND.from_config(m.config()).config() == m.config()


def _own_doc(cls, name) -> str | None:
    attr = inspect.getattr_static(cls, name)
    fn = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
    return fn.__doc__


@pytest.mark.parametrize("cls", [TND, TNDCell, NeuronGraph])
def test_every_public_method_has_its_own_docstring(cls):
    import tnd

    tnd_root = tnd.__file__.rsplit("/", 1)[0]
    names = [n for n, v in inspect.getmembers(cls) if not n.startswith("_") and (
        callable(v) or isinstance(inspect.getattr_static(cls, n), property))]
    missing = []
    for n in names:
        attr = inspect.getattr_static(cls, n)
        fn = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
        src = inspect.getsourcefile(fn) if inspect.isfunction(fn) else None
        if src is None or not src.startswith(tnd_root):
            continue  # inherited from torch.nn.Module: not the model's API
        if not (fn.__doc__ or "").strip():
            missing.append(n)
    assert not missing, f"{cls.__name__} methods without a docstring: {missing}"
    assert "Should be overridden" not in (TND.forward.__doc__ or "")
    assert "(B, T, C)" in TND.forward.__doc__ and "(B, N, d)" in TNDCell.forward.__doc__


# ------------------------------------------------------------------ hx: dtype and bound
def test_hx_dtype_must_match_like_x():
    m = TND(3, GRAPH, 2)
    x = torch.randn(2, 4, 3)
    with pytest.raises(TypeError, match="hx has dtype torch.float64"):
        m(x, torch.zeros(2, N, dtype=torch.float64))
    with pytest.raises(TypeError, match="x has dtype torch.float64"):
        m(x.double(), torch.zeros(2, N))
    with pytest.raises(TypeError, match="hx has dtype torch.float64"):
        m.cell(x[:, 0], torch.zeros(2, N, 1, dtype=torch.float64))


@pytest.mark.parametrize("kw, bound", [
    (dict(), 1.0), (dict(mode="continuous", solver="midpoint"), 5 / 3), (dict(mode="continuous", solver="rk4"), 1.0),
    (dict(dynamics="gated", mode="continuous", solver="euler"), 1.0), (dict(dynamics="mlp"), 1.0),
])
def test_hx_outside_the_state_bound_is_refused_with_the_bound(kw, bound):
    m = TND(3, GRAPH, 2, **kw)
    assert m.cell.state_bound() == pytest.approx(bound)
    assert bound == solvers.STATE_BOUND[m.cell.solver]
    x = torch.randn(2, 4, 3)
    for bad in (1e30, bound * 1.01):
        with pytest.raises(ValueError, match=f"outside the bound \\|state\\| <= {bound:.6g}"):
            m(x, torch.full((2, N), bad))
        with pytest.raises(ValueError, match="hx holds values"):
            m.cell(x[:, 0], torch.full((2, N, 1), -bad))
    inside = torch.full((2, N), bound)
    y, h = m(x, inside)  # the bound itself is inside
    assert float(h.detach().abs().max()) <= bound * (1 + 1e-5)
    # clamp_hx=True clamps instead: the same as passing the clamped state
    far = torch.randn(2, N) * 1e30
    for a, b in zip(m(x, far, clamp_hx=True), m(x, far.clamp(-bound, bound))):
        assert torch.equal(a, b)
    m(x, h)  # a state the model returned is always accepted back


def test_unbounded_family_accepts_any_finite_hx():
    m = TND(3, GRAPH, 2, dynamics="leaky", dynamics_kw={"activation": "identity"})
    assert m.cell.state_bound() is None
    y, _ = m(torch.randn(2, 4, 3), torch.full((2, N), 50.0))
    assert bool(torch.isfinite(y).all())


def test_hx_bound_follows_a_solver_changed_at_runtime():
    m = TND(3, GRAPH, 2, mode="continuous", solver="rk4")
    m.cell.solver = "midpoint"
    m(torch.randn(1, 2, 3), torch.full((1, N), 1.5))
    m.cell.solver = "rk4"
    with pytest.raises(ValueError, match="<= 1 "):
        m(torch.randn(1, 2, 3), torch.full((1, N), 1.5))


# ------------------------------------------------------------------ times
def test_bools_are_not_times_anywhere():
    m = TND(3, GRAPH, 2)
    x = torch.randn(2, 4, 3)
    for ts in (True, torch.ones(2, 4, dtype=torch.bool)):
        with pytest.raises(TypeError, match="timespans must be a number or a float tensor"):
            m(x, timespans=ts)
    for dt in (True, torch.tensor(True)):
        with pytest.raises(TypeError, match="dt must be a number or a float tensor"):
            m.cell(x[:, 0], dt=dt)
        with torch.no_grad(), pytest.raises(TypeError, match="dt must be"):
            m.step(x[:, 0], dt=dt)


# ------------------------------------------------------------------ edge_mask
def _masked(value=None, shape=None, dtype=None, **kw):
    m = TND(3, GRAPH, 2, **kw)
    inter = m.cell.interaction
    if shape is not None or dtype is not None:
        inter.edge_mask = torch.ones(shape or inter.edge_mask.shape, dtype=dtype or torch.float32)
    if value is not None:
        inter.edge_mask[2] = value
    return m


@pytest.mark.parametrize("kw", [dict(), dict(impl="sparse"), dict(interaction="attention"), dict(dynamics="gated")])
@pytest.mark.parametrize("path", ["fused", "reference", "step", "cell"])
def test_edge_mask_checked_on_every_path(kw, path):
    x = torch.randn(2, 4, 3)

    def run(m):
        with torch.no_grad():
            if path == "fused":
                return m(x)
            if path == "reference":
                m.use_fast_path = False
                return m(x)
            if path == "step":
                return m.step(x[:, 0])
            return m.cell(x[:, 0])

    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="edge_mask contains"):
            run(_masked(bad, **kw))
    with pytest.raises(ValueError, match=r"edge_mask must have shape \(%d,\)" % GRAPH.num_edges):
        run(_masked(shape=(GRAPH.num_edges + 1,), **kw))
    with pytest.raises(TypeError, match="edge_mask must be a float"):
        run(_masked(dtype=torch.int64, **kw))
    ok = _masked(0.0, **kw)
    run(ok)  # a lesion (0) is fine, as before


def test_fused_and_reference_agree_on_a_lesioned_mask():
    m = _masked(0.0)
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        y_fast = m(x)[0]
        m.use_fast_path = False
        y_ref = m(x)[0]
    torch.testing.assert_close(y_fast, y_ref)


# ------------------------------------------------------------------ meta device
@pytest.mark.parametrize("kw", [dict(), dict(mode="continuous"), dict(mode="continuous", solver="midpoint"),
                                dict(interaction="attention", dynamics="gated", state_size=2),
                                dict(dynamics="mlp", impl="sparse", return_sequences=False)])
def test_meta_device_infers_shapes(kw):
    m = TND(3, GRAPH, 2, **kw)
    x = torch.randn(2, 5, 3)
    y, h = m(x)
    mm = TND(3, GRAPH, 2, **kw).to("meta")
    ym, hm = mm(x.to("meta"), h.to("meta"), timespans=torch.ones(2, 5, device="meta"))
    assert ym.is_meta and ym.shape == y.shape and hm.shape == h.shape
    ys, hs = mm.step(x[:, 0].to("meta"))
    assert ys.is_meta and hs.shape == h.shape
    assert mm.cell(x[:, 0].to("meta")).shape == (2, N, m.cell.state_size)


def test_meta_input_to_a_cpu_model_is_a_clear_error():
    m = TND(3, GRAPH, 2)
    with pytest.raises(ValueError, match="x is on device meta but the model's parameters are on cpu"):
        m(torch.randn(2, 5, 3, device="meta"))
    with pytest.raises(ValueError, match="hx is on device meta"):
        m(torch.randn(2, 5, 3), torch.zeros(2, N, device="meta"))


def test_valid_input_is_unchanged_by_the_checks():
    """The checks read, never rewrite: the fused path and the reference loop give what they gave."""
    torch.manual_seed(3)
    m = TND(3, GRAPH, 2, state_size=2)
    x, h0 = torch.randn(3, 6, 3), torch.rand(3, N, 2) * 2 - 1
    with torch.no_grad():
        y1, h1 = m(x, h0, timespans=torch.full((3, 6), 0.5))
        s = m.cell.initial_state(3).copy_(h0)
        outs = []
        for t in range(6):  # the reference definition, one cell step at a time
            s = m.cell.step(s, m.cell.drive(x[:, t]), torch.full((3, 1, 1), 0.5))
            outs.append(m.readout(s.index_select(1, m.output_neurons).flatten(-2)))
    torch.testing.assert_close(y1, torch.stack(outs, 1))
    torch.testing.assert_close(h1, s)
    assert fast.supports(m, x.transpose(0, 1), h0, None)


@pytest.mark.parametrize("kw, needle", [
    (dict(allow_unreachable="no"), "allow_unreachable must be a bool"),
    (dict(allow_unreachable=0), "allow_unreachable must be a bool"),
    (dict(input_neurons=[True, 2]), "input_neurons must hold integer neuron ids, got a bool"),
    (dict(output_neurons=[False]), "output_neurons must hold integer neuron ids, got a bool"),
    (dict(edge_index=[[0, True], [1, 2]]), "edge_index must hold integer neuron ids, got a bool"),
])
def test_neuron_graph_refuses_bools_as_flags_or_ids(kw, needle):
    from tnd import GraphError, NeuronGraph

    args = dict(num_neurons=4, edge_index=[[0, 1], [1, 2]], input_neurons=[0], output_neurons=[2])
    args.update(kw)
    with pytest.raises(GraphError, match=needle):
        NeuronGraph(**args)


@pytest.mark.parametrize("kw, needle", [
    (dict(input_size=2**70), "input_size must be at most"),
    (dict(input_size=2**40), "input_size must be at most"),
    (dict(output_size=2**40), "output_size must be at most"),
    (dict(state_size=2**30), "state_size must be at most"),
])
def test_absurd_sizes_refused_before_allocating(kw, needle):
    g = NeuronGraph.small_world(16, k=4, rewire_prob=0.1, seed=0, num_inputs=4, num_outputs=4)
    args = dict(input_size=3, graph=g, output_size=2)
    args.update(kw)
    with pytest.raises(ValueError, match=needle):
        TND(**args)


@pytest.mark.parametrize("grad", [False, True])
def test_step_refuses_a_state_outside_the_bound_on_every_path(grad):
    """The lean C step (no grad) and the general step (grad) refuse the same h, as forward does."""
    g = NeuronGraph.random(16, 0.25, seed=0, num_inputs=4, num_outputs=4)
    m = TND(3, g, 2)
    x = torch.randn(2, 3)
    with torch.set_grad_enabled(grad):
        m.step(x, torch.full((2, 16), 1.0))  # on the bound: fine
        with pytest.raises(ValueError, match=r"h holds values up to 1\.5.*\|state\| <= 1"):
            m.step(x, torch.full((2, 16), 1.5))
