"""Hardening (issue 7): bad input is clearly refused, loading never runs code, dynamics stay
bounded on long sequences, and the same seed gives bit-identical results.

Property tests throw random values at the public entry points; every call must either return a
correct result or raise one of the documented errors (ValueError, TypeError, tnd.GraphError --
a ValueError -- or FileNotFoundError) whose message names the offending argument. Anything else
(RuntimeError, IndexError, ... from deep inside torch) fails the test.

Examples per property test (max_examples, derandomized so CI is reproducible) are in EXAMPLES.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tnd
from tnd import TND, NeuronGraph, TNDCell

DOCUMENTED = (ValueError, TypeError, FileNotFoundError)  # GraphError is a ValueError

EXAMPLES = {
    "NeuronGraph": 1000,
    "builders": 600,
    "from_dense": 400,
    "from_dict": 400,
    "TND.__init__": 300,
    "TND.forward": 1000,
    "TNDCell.forward": 600,
    "Pong.step": 500,
    "Pong.__init__": 500,
    "load_model": 200,
}
OK: dict = {}  # entry point -> calls that returned a (checked) result rather than an error


def _ok(name: str) -> None:
    OK[name] = OK.get(name, 0) + 1


def _settings(name: str):
    return settings(max_examples=EXAMPLES[name], deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _refused(err: BaseException, *names: str) -> None:
    """The error is a documented one and its message names one of ``names``."""
    assert isinstance(err, DOCUMENTED), f"undocumented {type(err).__name__}: {err}"
    msg = str(err)
    assert any(n in msg for n in names), f"message does not name any of {names}: {msg!r}"


# ------------------------------------------------------------------ strategies
junk = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3),
                 st.integers(-5, 40), st.lists(st.integers(-3, 30), max_size=4))
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


# ------------------------------------------------------------------ TND and the cell
GRAPH = NeuronGraph.random(8, 0.4, seed=3, num_inputs=2, num_outputs=2)
TND_ARGS = ("input_size", "output_size", "readout", "state_size", "interaction", "dynamics", "mode", "solver",
            "substeps", "impl", "graph", "tau", "per_neuron", "return_sequences", "batch_first", "heads")


@_settings("TND.__init__")
@given(c=st.one_of(st.integers(-1, 4), junk), o=st.one_of(st.integers(-1, 4), junk),
       readout=st.sampled_from(["linear", "identity", "bogus"]), d=st.one_of(st.integers(0, 3), junk),
       interaction=st.sampled_from(["linear", "attention", "nope"]), dynamics=st.sampled_from(["leaky", "gated", "mlp", "x"]),
       mode=st.sampled_from(["discrete", "continuous", "other"]),
       solver=st.sampled_from([None, "rk4", "euler", "midpoint", "exp_euler", "zzz"]),
       substeps=st.one_of(st.none(), st.integers(-1, 3), st.floats(allow_nan=True)),
       impl=st.sampled_from(["auto", "dense", "sparse", "bad"]))
def test_tnd_construction_random_options(c, o, readout, d, interaction, dynamics, mode, solver, substeps, impl):
    try:
        m = TND(c, GRAPH, o, readout=readout, state_size=d, interaction=interaction, dynamics=dynamics,
                mode=mode, solver=solver, substeps=substeps, impl=impl)
    except BaseException as e:  # noqa: BLE001
        _refused(e, *TND_ARGS)
    else:
        y, h = m(torch.rand(2, 3, c))
        assert y.shape == (2, 3, o) and bool(torch.isfinite(y).all()) and bool(torch.isfinite(h).all())


MODEL = TND(3, GRAPH, 2)
MODEL_D2 = TND(3, GRAPH, 2, state_size=2, mode="continuous", solver="euler", substeps=2, batch_first=False).double()
DTYPES = [torch.float32, torch.float64, torch.int64, torch.int32, torch.bool, torch.float16]


def _tensor(shape, dtype, special):
    t = torch.rand(shape, dtype=torch.float64) * 4 - 2
    if special and t.numel():
        t.view(-1)[0] = special
    return t.to(dtype)


@_settings("TND.forward")
@given(which=st.booleans(), model_dtype=st.booleans(), shape=st.one_of(
    st.lists(st.integers(0, 4), min_size=0, max_size=4),
    st.tuples(st.integers(1, 3), st.integers(1, 4)).map(lambda t: [t[0], t[1], 3]),
    st.integers(1, 4).map(lambda t: [t, 3])), dtype=st.sampled_from(DTYPES),
       special=st.sampled_from([0.0, 0.0, float("nan"), float("inf")]),
       hx=st.one_of(st.none(), st.tuples(st.lists(st.integers(1, 8), max_size=4), st.sampled_from(DTYPES),
                                          st.sampled_from([0.0, float("nan")]))),
       ts=st.one_of(st.none(), st.floats(0.01, 10), st.floats(allow_nan=True, allow_infinity=True), junk,
                    st.tuples(st.lists(st.integers(1, 4), max_size=3), st.sampled_from([0.5, 0.0, -1.0, float("nan")]))))
def test_tnd_forward_random_input(which, model_dtype, shape, dtype, special, hx, ts):
    model = MODEL if which else MODEL_D2
    if model_dtype:  # half the examples use the model's own dtype
        dtype = next(model.parameters()).dtype
    x = _tensor(shape, dtype, special)
    h0 = None if hx is None else _tensor(hx[0], hx[1], hx[2])
    if isinstance(ts, tuple):
        ts = torch.full(ts[0], ts[1])
    try:
        with torch.no_grad():
            y, h = model(x, h0, ts)
    except BaseException as e:  # noqa: BLE001
        _refused(e, "x", "hx", "timespans")
    else:
        _ok("TND.forward")
        assert x.dtype in (torch.float32, torch.float64) and bool(torch.isfinite(x).all())
        assert y.shape[-1] == 2 and y.dtype == x.dtype and bool(torch.isfinite(y).all())
        assert bool(torch.isfinite(h).all()) and h.shape[-1 if model is MODEL else -2] == 8
        assert y.shape[:-1] == x.shape[:-1]


CELL = TNDCell(3, GRAPH, mode="continuous", solver="rk4", substeps=1)


@_settings("TNDCell.forward")
@given(shape=st.one_of(st.lists(st.integers(0, 4), max_size=3), st.integers(1, 4).map(lambda b: [b, 3])), dtype=st.sampled_from(DTYPES),
       special=st.sampled_from([0.0, 0.0, float("nan"), float("-inf")]),
       hx=st.one_of(st.none(), st.lists(st.integers(1, 8), max_size=4)), valid=st.booleans(),
       dt=st.one_of(st.floats(0.01, 5), st.floats(allow_nan=True, allow_infinity=True), junk,
                    st.tuples(st.lists(st.integers(1, 3), max_size=2), st.sampled_from([1.0, 0.0, -2.0, float("inf")]))))
def test_cell_forward_random_input(shape, dtype, special, hx, valid, dt):
    if valid:  # half the examples use a well-formed x
        shape, dtype = [max(1, shape[0]) if shape else 2, 3], torch.float32
    x = _tensor(shape, dtype, special)
    h0 = None if hx is None else torch.rand(hx)
    if isinstance(dt, tuple):
        dt = torch.full(dt[0], dt[1])
    try:
        with torch.no_grad():
            s = CELL(x, h0, dt)
    except BaseException as e:  # noqa: BLE001
        _refused(e, "x", "hx", "dt")
    else:
        _ok("TNDCell.forward")
        assert s.shape == (x.shape[0], 8, 1)
        # rk4 adds sub-steps until dt / n * rate <= 1 (tnd.solvers.Z_SAFE), where each sub-step is a
        # convex combination: any accepted dt keeps the state (hx in [0, 1]) inside [-1, 1]; a dt
        # that would need over MAX_SUBSTEPS sub-steps is refused with an error naming dt.
        assert bool(torch.isfinite(s).all()) and float(s.abs().max()) <= 1.0 + 1e-5


# ------------------------------------------------------------------ Pong
@_settings("Pong.step")
@given(action=st.one_of(st.integers(-3, 5), st.floats(allow_nan=True), st.text(max_size=2), st.none(), st.booleans(),
                        st.lists(st.integers(0, 2), max_size=3), st.sampled_from([np.int64(1), np.int8(2), np.float32(1.0),
                                                                                  np.array(1), np.array([1]), np.bool_(True),
                                                                                  torch.tensor(1), torch.tensor(1.0), 1.0 + 0j, b"1"])))
def test_pong_step_invalid_actions(action):
    env = tnd.apps.pong.SinglePlayerPong()
    env.reset(seed=0)
    try:
        obs, _r, _term, _trunc, _info = env.step(action)
    except BaseException as e:  # noqa: BLE001
        _refused(e, "action")
    else:
        assert int(action) in (0, 1, 2) and obs.shape == (env.obs_dim,) and np.isfinite(obs).all()


PONG_KW = ["obs_mode", "obs_noise", "pixel_size", "max_catches", "max_steps", "render_mode", "render_size", "paddle_x",
           "paddle_half_length", "paddle_speed", "paddle_start_y", "ball_speed", "serve_x", "serve_y_range",
           "serve_angle_range", "max_bounce_angle", "deflection", "deflection_gain", "bogus_kw"]


@_settings("Pong.__init__")
@given(kw=st.dictionaries(st.sampled_from(PONG_KW), st.one_of(
    junk, st.floats(-1, 2), st.tuples(st.floats(-10, 100), st.floats(-10, 100)), st.sampled_from(["pixels", "rgb_array", "linear"])),
    max_size=3))
def test_pong_constructor_bad_kwargs(kw):
    try:
        env = tnd.apps.pong.SinglePlayerPong(**kw)
        obs, _ = env.reset(seed=1)
        for _ in range(3):
            obs, *_ = env.step(1)
    except BaseException as e:  # noqa: BLE001
        _refused(e, *kw)
    else:
        assert np.isfinite(obs).all()


# ------------------------------------------------------------------ loading
@pytest.fixture(scope="module")
def saved_dir():
    d = Path(tempfile.mkdtemp(prefix="tnd_hard_"))
    tnd.save_model(TND(3, GRAPH, 2), d / "m")
    return d / "m"


@_settings("load_model")
@given(data=st.binary(max_size=300), target=st.sampled_from(["model.safetensors", "config.json"]),
       header=st.booleans())
def test_load_model_random_bytes(saved_dir, data, target, header):
    d = Path(tempfile.mkdtemp(prefix="tnd_hard_"))
    for name in ("config.json", "model.safetensors"):
        (d / name).write_bytes((saved_dir / name).read_bytes())
    if header:  # a plausible safetensors length prefix followed by junk
        data = len(data).to_bytes(8, "little") + data
    (d / target).write_bytes(data)
    try:
        tnd.load_model(d)
    except BaseException as e:  # noqa: BLE001
        _refused(e, str(d))
    else:  # only possible if the bytes happen to be a valid file
        pass


@pytest.mark.parametrize("cfg", [
    [], {"format": "tnd.model/1"}, {"format": "tnd.model/1", "class": "TND", "config": {}},
    {"format": "tnd.model/1", "class": "TND", "config": {"input_size": "x", "graph": {}}},
    {"format": "tnd.model/1", "class": "TND", "config": None},
    {"format": "tnd.model/1", "class": "LSTM", "config": {}},
])
def test_load_model_malformed_config(saved_dir, cfg):
    d = Path(tempfile.mkdtemp(prefix="tnd_hard_"))
    (d / "model.safetensors").write_bytes((saved_dir / "model.safetensors").read_bytes())
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError) as e:
        tnd.load_model(d)
    _refused(e.value, str(d), "config")


def test_load_model_missing_files(saved_dir):
    d = Path(tempfile.mkdtemp(prefix="tnd_hard_"))
    with pytest.raises(FileNotFoundError, match="config"):
        tnd.load_model(d / "nowhere")
    (d / "config.json").write_bytes((saved_dir / "config.json").read_bytes())
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        tnd.load_model(d)


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_pickle_offered_as_checkpoint_is_refused_without_running_it(saved_dir, how):
    d = Path(tempfile.mkdtemp(prefix="tnd_hard_"))
    marker = d / "PWNED"
    (d / "config.json").write_bytes((saved_dir / "config.json").read_bytes())
    payload = {"cell.input_proj.weight": _Evil(str(marker))}
    buf = io.BytesIO()
    if how == "torch.save":
        torch.save(payload, buf)
    else:
        pickle.dump(payload, buf)
    (d / "model.safetensors").write_bytes(buf.getvalue())
    assert not marker.exists()
    with pytest.raises(ValueError, match="not a valid safetensors file") as e:
        tnd.load_model(d)
    assert "pickle" in str(e.value)
    assert not marker.exists()  # the pickle was never executed


# ------------------------------------------------------------------ stable dynamics
# The rollouts are benchmarks/stability.py's grid (every family x {discrete, euler, midpoint,
# rk4, exp_euler} x {untrained, trained, x10}) on a small budget: 100,000 steps in discrete mode
# (the fast path), ROLLOUT_STEPS in continuous mode (the reference loop, ~0.1-1.5 ms a step);
# the full 100,000-step grid is `python benchmarks/stability.py` (table in docs/STABILITY.md).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import stability

from tnd import solvers

ROLLOUT_STEPS = 300
FAMILIES = ["leaky", "gated", "mlp"]


@pytest.mark.parametrize("dyn", FAMILIES)
def test_long_rollout_stays_bounded(dyn):
    cfg = stability.StabilityConfig(families=(dyn,), steps=ROLLOUT_STEPS, discrete_steps=100_000, train_steps=100)
    rows = stability.run_grid(cfg)
    assert len(rows) == len(stability.MODES) * len(stability.WEIGHTS)
    for r in rows:
        name = f"{dyn}/{r['mode']}/{r['weights']}"
        assert r["finite"], name
        assert r["steps"] == (100_000 if r["mode"] == "discrete" else ROLLOUT_STEPS), name
        # the proven bound: 1 for exp_euler (discrete), euler and rk4; 5/3 for midpoint
        assert r["max_abs_state"] <= r["bound"] * (1 + 1e-5), f"{name}: max |state| = {r['max_abs_state']}"
        lo, hi = r["tau_bounds"]
        assert lo * (1 - 1e-5) <= r["tau_min"] <= r["tau_max"] <= hi * (1 + 1e-5), name
        if r["weights"] == "trained":  # genuinely trained: the validation error fell
            assert r["val_mse_after"] < 0.8 * r["val_mse_before"], name
        if r["weights"] == "x10" and r["mode"] in ("euler", "rk4") and dyn != "gated":
            # time constants at tau_min = 0.25: lambda * dt / 2 = 2 > 1, so sub-steps were added
            stages = {"euler": 1, "rk4": 4}[r["mode"]]
            assert r["rate_evals_per_step"] >= 2 * 2 * stages, name


def _staged_field(rates, targets):
    """A field whose j-th evaluation (stage j) is rates[j] * (targets[j] - y): the per-coordinate
    form every TND family has, with rate and target free to jump between stages."""
    calls = iter(range(len(rates)))

    def f(y):
        j = next(calls)
        return rates[j] * (targets[j] - y)

    return f


@pytest.mark.parametrize("name, stages", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_explicit_step_is_convex_up_to_z_safe(name, stages):
    """The proof in docs/STABILITY.md, checked on the solvers' own step functions: one sub-step is
    s' = alpha s + sum_j beta_j c_j, multilinear in the stage values z_j = h lambda_j; euler and rk4
    have every coefficient >= 0 on [0, Z_SAFE]^stages (checked at the box's vertices, enough for a
    multilinear function), midpoint has (sum |beta|) / (1 - |alpha|) <= STATE_BOUND on a grid; just
    past Z_SAFE euler and rk4 lose convexity (the bound is tight)."""
    import itertools

    step, z_safe = solvers.FIXED_STEP[name], solvers.Z_SAFE[name]

    def coefficients(z):
        out = []
        for unit in range(stages + 1):  # unit 0: s = 1, all c = 0; unit j: c_j = 1, s = 0
            s = torch.tensor(1.0 if unit == 0 else 0.0, dtype=torch.float64)
            c = [torch.tensor(1.0 if unit == j + 1 else 0.0, dtype=torch.float64) for j in range(stages)]
            out.append(float(step(_staged_field([torch.tensor(v, dtype=torch.float64) for v in z], c), s,
                                  torch.tensor(1.0, dtype=torch.float64))))
        return out

    grid = [0.0, z_safe] if name != "midpoint" else [k * z_safe / 8 for k in range(9)]
    for z in itertools.product(grid, repeat=stages):
        co = coefficients(z)
        assert abs(sum(co) - 1) < 1e-12
        if name == "midpoint":
            if co[0] < 1:
                assert sum(abs(b) for b in co[1:]) / (1 - abs(co[0])) <= solvers.STATE_BOUND[name] * (1 + 1e-12)
        else:
            assert min(co) >= -1e-15, (z, co)
    if name != "midpoint":  # some vertex of the box 5 % larger has a negative coefficient
        assert min(min(coefficients(z)) for z in itertools.product([0.0, z_safe * 1.05], repeat=stages)) < 0


def _adversarial_rate_target(seed, stiff):
    """A coupled, state-dependent field in relaxation form: rate in (0, 1 / tau_min] and target in
    [-1, 1], both switching sharply with the state (what weights x10 do), mixing every neuron."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 8, generator=g, dtype=torch.float64) * stiff
    v = torch.randn(8, 8, generator=g, dtype=torch.float64) * stiff

    def rate_target(s):  # s: (B, 8, 1)
        return 4.0 * torch.sigmoid(s[..., 0] @ v)[..., None], torch.tanh(s[..., 0] @ w)[..., None]

    return rate_target


def _field_of(rate_target, z):
    lam, c = rate_target(z)
    return lam * (c - z)


@pytest.mark.parametrize("name", ["euler", "midpoint", "rk4"])
def test_explicit_solvers_stay_within_their_bound_on_adversarial_fields(name):
    bound = solvers.STATE_BOUND[name]
    worst = worst_fixed = 0.0
    for seed in range(6):
        rt = _adversarial_rate_target(seed, stiff=30.0)
        g = torch.Generator().manual_seed(100 + seed)
        s = torch.rand(16, 8, 1, generator=g, dtype=torch.float64) * 2 - 1
        s_fixed = s.clone()
        for _ in range(40):
            dt = (torch.rand(16, 1, 1, generator=g, dtype=torch.float64) * 3 + 0.05)
            s = solvers.integrate(name, rt, s, dt, substeps=1)
            worst = max(worst, float(s.abs().max()))
            # the same solver without the automatic sub-steps (one step of length dt)
            s_fixed = solvers.FIXED_STEP[name](partial(_field_of, rt), s_fixed, dt)
            s_fixed = s_fixed.clamp(-1e6, 1e6).nan_to_num()
            worst_fixed = max(worst_fixed, float(s_fixed.abs().max()))
    assert worst <= bound * (1 + 1e-9), worst
    assert worst_fixed > bound + 0.1  # the field is adversarial enough to break an unguarded step


def test_substep_counts_and_too_large_dt():
    lam = torch.tensor([[[4.0]], [[1.0]], [[0.1]]])
    dt = torch.tensor([[[1.0]], [[1.0]], [[1.0]]])
    assert solvers.substep_counts("rk4", lam, dt, 2).flatten().tolist() == [4, 2, 2]  # substeps is a minimum
    assert solvers.substep_counts("midpoint", lam, dt, 1).flatten().tolist() == [8, 2, 1]
    assert solvers.substep_counts("euler", lam, dt * 2.5, 1).flatten().tolist() == [10, 3, 1]
    m = TND(3, GRAPH, 2, mode="continuous", solver="rk4")
    with pytest.raises(ValueError, match="dt .*timespans.* sub-steps"):
        m(torch.rand(1, 2, 3), timespans=torch.tensor([[1.0, 1e7]]))


@pytest.mark.parametrize("dyn", FAMILIES)
def test_time_constants_stay_bounded_under_huge_steps(dyn):
    torch.manual_seed(0)
    model = TND(3, GRAPH, 2, dynamics=dyn)
    dy = model.cell.dynamics
    opt = torch.optim.Adam(model.parameters(), lr=1e3)
    for i in range(5):
        x = torch.randn(4, 6, 3) * 10
        y, _ = model(x)
        loss = ((y - 100.0 * (-1) ** i) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        tau = dy.time_constants().detach()
        assert not bool(torch.isnan(tau).any())
        # rate in [1 / tau_max, 1 / tau_min] for every family (gated: rate_min + (rate_max - rate_min) sigmoid)
        assert float(tau.min()) >= dy.tau_min * (1 - 1e-5)
        assert bool(torch.isfinite(tau).all()) and float(tau.max()) <= dy.tau_max * (1 + 1e-5)
    with torch.no_grad():
        y, h = model(torch.rand(2, 50, 3))
    assert bool(torch.isfinite(h).all()) and float(h.abs().max()) <= 1.0 + 1e-6


# ------------------------------------------------------------------ determinism
def _train_digest(seed: int) -> str:
    torch.manual_seed(seed)
    g = NeuronGraph.random(12, 0.3, seed=seed, num_inputs=3, num_outputs=3)
    model = TND(3, g, 2, dynamics="gated")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(4):
        x, target = torch.randn(4, 10, 3), torch.randn(4, 10, 2)
        loss = ((model(x)[0] - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    digest = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        digest.update(k.encode())
        digest.update(v.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _play_digest(seed: int) -> str:
    from tnd.apps.pong.evaluate import play_rounds

    torch.manual_seed(seed)
    g = NeuronGraph.random(12, 0.3, seed=seed, num_inputs=3, num_outputs=3)
    model = TND(tnd.apps.pong.SinglePlayerPong().obs_dim, g, 3)
    out = play_rounds(model, rounds=4, seed=123, env_kwargs={"max_catches": 3, "max_steps": 300})
    return hashlib.sha256(json.dumps(out, sort_keys=True, default=str).encode()).hexdigest()


def test_training_and_evaluation_are_bit_identical_in_process():
    assert _train_digest(5) == _train_digest(5)
    assert _train_digest(5) != _train_digest(6)
    assert _play_digest(5) == _play_digest(5)


def test_training_and_evaluation_are_bit_identical_in_a_subprocess():
    code = ("import sys, torch; torch.set_num_threads(1); sys.path.insert(0, sys.argv[1]); "
            "import test_hardening as t; print(t._train_digest(5)); print(t._play_digest(5))")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout.split()
    assert out == [_train_digest(5), _play_digest(5)]
