"""TND and TNDCell refuse bad options and bad input clearly (property tests; see
hardening_common): every accepted call returns finite outputs of the right shape and dtype."""

from __future__ import annotations

import pytest
import torch
from hardening_common import GRAPH, junk
from hardening_common import prop_settings as _settings
from hardening_common import EXAMPLES, OK, record_ok as _ok
from hardening_common import refused as _refused
from hypothesis import given
from hypothesis import strategies as st

from tnd import TND, TNDCell


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


@pytest.mark.slow
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
def _tnd_forward_random_input(which, model_dtype, shape, dtype, special, hx, ts):
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


@pytest.mark.slow
def test_tnd_forward_random_input():
    """Random inputs: each refused with a clear error or computed correctly, and enough of them
    accepted that the property says something about real computations too."""
    OK.pop("TND.forward", None)
    _tnd_forward_random_input()
    assert OK.get("TND.forward", 0) >= EXAMPLES["TND.forward"] // 100, OK


CELL = TNDCell(3, GRAPH, mode="continuous", solver="rk4", substeps=1)


@_settings("TNDCell.forward")
@given(shape=st.one_of(st.lists(st.integers(0, 4), max_size=3), st.integers(1, 4).map(lambda b: [b, 3])), dtype=st.sampled_from(DTYPES),
       special=st.sampled_from([0.0, 0.0, float("nan"), float("-inf")]),
       hx=st.one_of(st.none(), st.lists(st.integers(1, 8), max_size=4)), valid=st.booleans(),
       dt=st.one_of(st.floats(0.01, 5), st.floats(allow_nan=True, allow_infinity=True), junk,
                    st.tuples(st.lists(st.integers(1, 3), max_size=2), st.sampled_from([1.0, 0.0, -2.0, float("inf")]))))
def _cell_forward_random_input(shape, dtype, special, hx, valid, dt):
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


def test_cell_forward_random_input():
    """As for TND.forward: clear errors or bounded states, and a share of the examples accepted."""
    OK.pop("TNDCell.forward", None)
    _cell_forward_random_input()
    assert OK.get("TNDCell.forward", 0) >= EXAMPLES["TNDCell.forward"] // 100, OK
