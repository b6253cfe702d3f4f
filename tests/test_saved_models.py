"""Saved models (tnd.save_model / tnd.load_model): integrity hash, dtype, the config checked
against the weights file's header before anything is built, bounded JSON, atomic saves, and a
property test that mutates saved files and never sees a silent change or a large allocation."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import tnd.io as tio
from tnd import TND, NeuronGraph, load_model, save_model
from tnd.model import TND as TNDClass

GRAPH = NeuronGraph.layered(3, 4, 4, 2, seed=1, inhibitory_fraction=0.3)


def _model(**kw) -> TND:
    m = TND(3, GRAPH, 2, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


def _same(a: TND, b: TND) -> None:
    assert a.config() == b.config()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def _cfg(d: Path) -> dict:
    return json.loads((d / "config.json").read_text())


def _write_cfg(d: Path, cfg: dict) -> None:
    (d / "config.json").write_text(json.dumps(cfg))


def _header_len(d: Path) -> int:
    return int.from_bytes((d / "model.safetensors").read_bytes()[:8], "little")


# ------------------------------------------------------------------ integrity
def test_sha256_recorded_and_a_flipped_data_byte_is_refused(tmp_path):
    m = _model()
    save_model(m, tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    assert _cfg(tmp_path / "m")["sha256"] == hashlib.sha256(w.read_bytes()).hexdigest()
    raw = bytearray(w.read_bytes())
    pos = 8 + _header_len(tmp_path / "m") + 5  # inside the data region: a weight changes, the header parses
    raw[pos] ^= 0x10
    w.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256") as e:
        load_model(tmp_path / "m")
    assert "model.safetensors" in str(e.value)


def _rewrite_weights(d: Path, tensors: dict, keep_hash: bool) -> None:
    """Weights written by hand, with config.json's hash updated (or removed: an old save)."""
    from safetensors.torch import save_file

    save_file(tensors, str(d / "model.safetensors"))
    cfg = _cfg(d)
    if keep_hash:
        cfg["sha256"] = tio.file_sha256(d / "model.safetensors")
    else:
        cfg.pop("sha256")
    _write_cfg(d, cfg)


@pytest.mark.parametrize("keep_hash", [True, False])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, keep_hash):
    m = _model()
    with pytest.raises(ValueError, match="non-finite"):
        bad = _model()
        with torch.no_grad():
            bad.readout.bias[0] = float("nan")
        save_model(bad, tmp_path / "never")
    assert not (tmp_path / "never" / "config.json").exists()
    save_model(m, tmp_path / "m")
    state = {k: v.clone() for k, v in m.state_dict().items()}
    state["cell.dynamics.gate_bias"][1, 0] = float("inf")
    _rewrite_weights(tmp_path / "m", state, keep_hash)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="cell.dynamics.gate_bias") as e:
            load_model(tmp_path / "m")
    assert "model.safetensors" in str(e.value) and "non-finite" in str(e.value)


def test_old_save_without_hash_or_dtype_loads_with_a_warning(tmp_path):
    m = _model()
    save_model(m, tmp_path / "m")
    cfg = _cfg(tmp_path / "m")
    del cfg["sha256"], cfg["dtype"]  # what tnd.model/1 wrote before
    _write_cfg(tmp_path / "m", cfg)
    with pytest.warns(UserWarning, match="no SHA-256"):
        m2 = load_model(tmp_path / "m")
    _same(m, m2)
    assert next(m2.parameters()).dtype == torch.float32


def test_float64_model_round_trips_in_float64(tmp_path):
    m = _model(dynamics="gated", state_size=2).double()
    save_model(m, tmp_path / "m")
    assert _cfg(tmp_path / "m")["dtype"] == "float64"
    m2 = load_model(tmp_path / "m")
    _same(m, m2)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    assert torch.equal(m(x)[0], m2(x)[0])  # the user's float64 input is accepted as before saving


def test_dtype_in_config_must_match_the_weights(tmp_path):
    save_model(_model(), tmp_path / "m")
    cfg = _cfg(tmp_path / "m")
    cfg["dtype"] = "float64"
    _write_cfg(tmp_path / "m", cfg)
    with pytest.raises(ValueError, match="dtype F32"):
        load_model(tmp_path / "m")
    cfg["dtype"] = "int8"
    _write_cfg(tmp_path / "m", cfg)
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model(tmp_path / "m")


# ------------------------------------------------------------------ config against the header
@pytest.mark.parametrize("path, value", [
    (("graph", "num_neurons"), 10**9), (("output_size",), 10**12), (("input_size",), 2**70),
    (("state_size",), 10**6), (("dynamics_kw",), {"hidden_size": 10**9}),
])
def test_absurd_sizes_are_refused_before_anything_is_built(tmp_path, monkeypatch, path, value):
    save_model(_model(dynamics="mlp" if path == ("dynamics_kw",) else "leaky"), tmp_path / "m")
    cfg = _cfg(tmp_path / "m")
    node = cfg["config"]
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    _write_cfg(tmp_path / "m", cfg)

    def never(*a, **k):  # pragma: no cover - reaching it is the failure
        raise AssertionError("load_model built a model from an inconsistent config")

    monkeypatch.setattr(TNDClass, "from_config", classmethod(never))
    monkeypatch.setattr(NeuronGraph, "__init__", never)
    with pytest.raises(ValueError) as e:
        load_model(tmp_path / "m")
    assert "config.json" in str(e.value)


def test_num_neurons_is_bounded_where_no_tensor_shows_it(tmp_path):
    # shared F and the linear I: no saved tensor has an N dimension
    m = _model(per_neuron=False)
    save_model(m, tmp_path / "m")
    cfg = _cfg(tmp_path / "m")
    cfg["config"]["graph"]["num_neurons"] = 10**9
    _write_cfg(tmp_path / "m", cfg)
    with pytest.raises(ValueError, match="num_neurons = 1000000000 is absurd"):
        load_model(tmp_path / "m")
    cfg["config"]["graph"]["num_neurons"] = 40  # 28 isolated neurons more: a valid (other) graph
    _write_cfg(tmp_path / "m", cfg)
    assert load_model(tmp_path / "m").num_neurons == 40


@pytest.mark.parametrize("field, value, match", [
    ("per_neuron", "no", "per_neuron must be a bool"),
    ("return_sequences", "no", "return_sequences must be a bool"),
    ("batch_first", 0, "batch_first must be a bool"),
    ("dynamics_kw", ["tau_min", 0.5], "dynamics_kw must be a dict"),
    ("substeps", True, "substeps"),
    ("input_size", 3.0, "input_size must be a positive int"),
])
def test_config_fields_are_type_checked(tmp_path, field, value, match):
    save_model(_model(), tmp_path / "m")
    cfg = _cfg(tmp_path / "m")
    cfg["config"][field] = value
    _write_cfg(tmp_path / "m", cfg)
    with pytest.raises(ValueError, match=match) as e:
        load_model(tmp_path / "m")
    assert "config.json" in str(e.value)


def test_graph_ids_must_be_ints_not_bools(tmp_path):
    save_model(_model(), tmp_path / "m")
    cfg = _cfg(tmp_path / "m")
    cfg["config"]["graph"]["edge_index"][0][0] = True  # torch would read it as neuron 1
    _write_cfg(tmp_path / "m", cfg)
    with pytest.raises(ValueError, match="edge_index must hold ints"):
        load_model(tmp_path / "m")


def test_json_bounds(tmp_path):
    save_model(_model(dynamics_kw={"tau_max": 100.0}), tmp_path / "m")
    text = (tmp_path / "m" / "config.json").read_text()
    (tmp_path / "m" / "config.json").write_text(text.replace('"tau_max": 100.0', '"tau_max": Infinity'))
    with pytest.raises(ValueError, match="Infinity"):
        load_model(tmp_path / "m")
    cfg = _cfg(tmp_path / "m")
    cfg["extra"] = "x"
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg).replace('"extra": "x"', f'"extra": {deep}'))
    with pytest.raises(ValueError, match="deeper than"):
        load_model(tmp_path / "m")
    cfg["extra"] = {"blob": "x" * (tio.CONFIG_BYTES_BASE + 100 * (tmp_path / "m" / "model.safetensors").stat().st_size)}
    _write_cfg(tmp_path / "m", cfg)
    with pytest.raises(ValueError, match="more than the"):
        load_model(tmp_path / "m")
    with pytest.raises(ValueError, match="more than load_model accepts"):
        save_model(_model(), tmp_path / "big", extra=cfg["extra"])


def test_malformed_headers_are_refused_without_reading_the_data(tmp_path):
    save_model(_model(), tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    raw = w.read_bytes()
    n = _header_len(tmp_path / "m")
    header = json.loads(raw[8:8 + n])
    header["readout.bias"]["shape"] = [10**6, 10**6]  # claims 4 TB
    new = json.dumps(header).encode()
    w.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n:])
    with pytest.raises(ValueError, match="does not fit"):
        tio.read_safetensors_header(w)
    w.write_bytes((2**62).to_bytes(8, "little") + raw[8:])
    with pytest.raises(ValueError, match="header length"):
        load_model(tmp_path / "m")


# ------------------------------------------------------------------ atomic saves
def test_failed_save_leaves_the_previous_save_loadable(tmp_path):
    old, new = _model(), _model(state_size=2)
    save_model(old, tmp_path / "m", extra={"v": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    with pytest.raises(TypeError, match="JSON"):
        save_model(new, tmp_path / "m", extra={"v": object()})
    with pytest.raises(ValueError, match="JSON"):
        save_model(new, tmp_path / "m", extra={"v": float("nan")})
    with pytest.raises(TypeError, match="extra must be a dict"):
        save_model(new, tmp_path / "m", extra=[1])
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    _same(old, load_model(tmp_path / "m"))


def test_save_failing_at_the_config_rename_restores_the_old_weights(tmp_path, monkeypatch):
    old, new = _model(), _model(state_size=2)
    save_model(old, tmp_path / "m")
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if str(dst).endswith("config.json"):
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(tio.os, "replace", flaky)
    with pytest.raises(OSError, match="disk full"):
        save_model(new, tmp_path / "m")
    monkeypatch.setattr(tio.os, "replace", real)
    assert any(str(c).endswith("model.safetensors") for c in calls)  # the new weights were in place
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    _same(old, load_model(tmp_path / "m"))


CRASH_SCRIPT = textwrap.dedent(r'''
    import os, sys, torch
    import tnd, tnd.io as tio
    from tnd import TND, NeuronGraph
    g = NeuronGraph.layered(3, 4, 4, 2, seed=1, inhibitory_fraction=0.3)
    real = os.replace
    def crash(src, dst):  # the process dies right after the new weights are in place
        if str(dst).endswith("config.json"):
            os._exit(3)
        return real(src, dst)
    tio.os.replace = crash
    tnd.save_model(TND(3, g, 2, state_size=2), sys.argv[1])
''')


def test_crash_between_the_renames_still_loads_the_previous_save(tmp_path):
    old = _model()
    save_model(old, tmp_path / "m")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(tmp_path / "m")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 3, res.stderr[-3000:]
    with pytest.warns(UserWarning, match="a save was interrupted"):
        _same(old, load_model(tmp_path / "m"))
    new = _model(dynamics="mlp")
    save_model(new, tmp_path / "m")  # the next save completes and removes the kept weights
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _same(new, load_model(tmp_path / "m"))


def test_state_shapes_match_every_family():
    import itertools

    for inter, dyn, pn, d, ro in itertools.product(["linear", "attention"], ["leaky", "gated", "mlp"], [True, False],
                                                   [1, 2], ["linear", "identity"]):
        kw = {"hidden_size": 5} if dyn == "mlp" else None
        m = TND(3, GRAPH, 2 * d if ro == "identity" else 3, readout=ro, interaction=inter, dynamics=dyn,
                per_neuron=pn, state_size=d, dynamics_kw=kw)
        assert TND.state_shapes(m.config()) == {k: tuple(v.shape) for k, v in m.state_dict().items()}


# ------------------------------------------------------------------ property test
# Runs in a subprocess whose address space is capped at its size after warm-up + CAP_MB: an
# attempt to allocate more (an absurd config reaching torch) fails there with MemoryError or
# RuntimeError, which the property counts as a wrong exception. The peak RSS growth over all
# examples is reported and bounded too.
CAP_MB = 512
PROPERTY_SCRIPT = textwrap.dedent(r'''
    import json, math, os, resource, sys, tempfile, warnings
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from hypothesis import HealthCheck, given, settings, strategies as st
    import tnd
    from tnd import TND, NeuronGraph

    cap_mb, examples = int(sys.argv[1]), int(sys.argv[2])
    tmp = Path(tempfile.mkdtemp(prefix="tnd_prop_"))
    g = NeuronGraph.layered(3, 4, 4, 2, seed=1, inhibitory_fraction=0.3)
    MODELS = {}
    for name, kw in {
        "leaky": dict(),
        "gated": dict(interaction="attention", dynamics="gated", per_neuron=False, state_size=2, mode="continuous",
                      solver="rk4", substeps=3, interaction_kw={"key_scale": 2.0},
                      dynamics_kw={"tau_min": 0.5, "tau_max": 50.0, "tau_init": [1.0, 4.0]}),
        "mlp": dict(dynamics="mlp", dynamics_kw={"hidden_size": 4}, return_sequences=False, batch_first=False),
    }.items():
        m = TND(3, g, 2, **kw)
        if name == "gated":
            m = m.double()
        tnd.save_model(m, tmp / name, extra={"note": name})
        MODELS[name] = (m, (tmp / name / "config.json").read_bytes(), (tmp / name / "model.safetensors").read_bytes())

    def paths(node, prefix=()):
        yield prefix, node
        if isinstance(node, dict):
            for k, v in node.items():
                if prefix == () and k == "extra":
                    continue
                yield from paths(v, prefix + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from paths(v, prefix + (i,))

    INT = [-1, 10**9, 10**12, 2**70, 2.5, "3", True, False, None, [], {"junk": 1}]
    FLOAT = [float("nan"), float("inf"), float("-inf"), -1.0, 0.0, "1.0", True, None, [], {"junk": 1}]
    BOOL = ["no", "yes", "true", 0, 1, None, [], {"junk": 1}]
    STR = [5, True, None, [], {"junk": 1}, "no", ""]
    NONE = ["no", -1, True, 2.5, [], {"junk": 1}]
    LIST = [None, 5, "x", {"junk": 1}, [], [[]], [True]]
    DICT = [None, 5, "x", [], {"junk": 1}]

    def pool(path, value):
        if "sign" in path and isinstance(value, int) and not isinstance(value, bool):
            return [v for v in INT if v != -1]  # -1 is a valid sign
        if isinstance(value, bool):
            return BOOL
        if isinstance(value, int):
            return INT
        if isinstance(value, float):
            return FLOAT
        if isinstance(value, str):
            return STR
        if value is None:
            return NONE
        if isinstance(value, list):
            return LIST
        return DICT

    def check(model, d):
        """load_model(d): a clear error, or exactly the saved model."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = tnd.load_model(d)
        except (ValueError, TypeError) as e:
            assert str(e), "an error without a message"
            return "refused"
        assert got.config() == model.config(), "a mutated file loaded as a different model"
        a, b = got.state_dict(), model.state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), f"weight {k} changed silently"
        return "same"

    counts = {"refused": 0, "same": 0}

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def prop(data):
        name = data.draw(st.sampled_from(sorted(MODELS)), "model")
        model, cfg_bytes, w_bytes = MODELS[name]
        d = Path(tempfile.mkdtemp(dir=tmp))
        cfg = json.loads(cfg_bytes)
        w = bytearray(w_bytes)
        kind = data.draw(st.sampled_from(["value", "value", "value", "delete", "add", "flip", "flip_rehash",
                                          "nan_rehash", "truncate", "append", "length"]), "kind")
        if kind in ("value", "delete", "add"):
            if kind == "value":
                items = list(paths(cfg))[1:]
                path, value = items[data.draw(st.integers(0, len(items) - 1), "leaf")]
                new = data.draw(st.sampled_from(pool(path, value)), "new")
            elif kind == "delete":
                path = data.draw(st.sampled_from([("config", "input_size"), ("config", "graph"), ("config", "output_size"),
                                                  ("config", "graph", "num_neurons"), ("config", "graph", "edge_index"),
                                                  ("config", "graph", "input_neurons"), ("config", "graph", "output_neurons"),
                                                  ("config",), ("format",), ("class",)]), "key")
            else:
                path = data.draw(st.sampled_from([("config", "junk"), ("config", "dynamics_kw", "junk"),
                                                  ("config", "interaction_kw", "junk")]), "key")
                new = 1
            node = cfg
            for k in path[:-1]:
                node = node[k]
            if kind == "delete":
                del node[path[-1]]
            else:
                node[path[-1]] = new
            (d / "config.json").write_text(json.dumps(cfg))  # NaN/Infinity written as JSON constants
            (d / "model.safetensors").write_bytes(bytes(w))
        else:
            n = int.from_bytes(w[:8], "little")
            if kind in ("flip", "flip_rehash"):
                pos = data.draw(st.integers(0, len(w) - 1 if kind == "flip" else 7 + n), "pos")
                w[pos] ^= data.draw(st.integers(1, 255), "xor")
            elif kind == "nan_rehash":
                nan = b"\x00\x00\xc0\x7f" if cfg["dtype"] == "float32" else b"\x00" * 6 + b"\xf8\x7f"
                pos = 8 + n + len(nan) * data.draw(st.integers(0, (len(w) - 8 - n) // len(nan) - 1), "float")
                w[pos:pos + len(nan)] = nan
            elif kind == "truncate":
                w = w[:data.draw(st.integers(0, len(w) - 1), "len")]
            elif kind == "append":
                w += data.draw(st.binary(min_size=1, max_size=64), "tail")
            else:
                w[:8] = data.draw(st.sampled_from([0, 1, n - 1, n + 1, 2**31, 2**62, 2**64 - 1]), "n").to_bytes(8, "little")
            if kind.endswith("rehash"):  # a consistent hash: the header checks and the finiteness check must act
                import hashlib
                cfg["sha256"] = hashlib.sha256(bytes(w)).hexdigest()
            (d / "config.json").write_text(json.dumps(cfg))
            (d / "model.safetensors").write_bytes(bytes(w))
        counts[check(model, d)] += 1

    for name, (model, c, w) in MODELS.items():  # warm-up: every code path once, unmutated
        assert check(model, tmp / name) == "same"
    vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize")) * 1024
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    soft = vm + cap_mb * 2**20 if hard == resource.RLIM_INFINITY else min(vm + cap_mb * 2**20, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    try:  # the cap binds: an allocation past it fails (as one from an absurd config would)
        torch.ones((cap_mb + 64) * 2**20, dtype=torch.uint8)
        raise SystemExit("the address-space cap does not bind")
    except (RuntimeError, MemoryError):
        pass
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    prop()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    print(json.dumps({**counts, "peak_rss_growth_kb": grown,
                      "weights_bytes": {k: len(v[2]) for k, v in MODELS.items()}}))
''')


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="caps the address space through /proc and RLIMIT_AS")
def test_mutated_saved_models_are_refused_or_identical_and_never_allocate_much(tmp_path):
    pytest.importorskip("hypothesis")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", PROPERTY_SCRIPT, str(CAP_MB), "400"], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["refused"] > 300 and res["refused"] + res["same"] == 400, res
    assert res["peak_rss_growth_kb"] < 64 * 1024, res  # far below the cap: nothing large was allocated


# ------------------------------------------------------------------ a save made before this format
OLD = Path(__file__).parent / "data" / "saved_model_before_sha256"


def test_a_save_written_by_the_previous_tnd_still_loads(tmp_path):
    """tests/data/saved_model_before_sha256 was written by tnd before config.json recorded the
    dtype and the SHA-256 (a gated rk4 model); its outputs on a fixed input were saved beside it."""
    assert "sha256" not in _cfg(OLD) and "dtype" not in _cfg(OLD)
    with pytest.warns(UserWarning, match="records no SHA-256"):
        m = load_model(OLD)
    assert next(m.parameters()).dtype == torch.float32
    ref = tio.load_tensors(OLD.parent / "saved_model_before_sha256_outputs.safetensors")
    with torch.no_grad():
        y, h = m(ref["x"])
    torch.testing.assert_close(y, ref["y"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, ref["h"], rtol=1e-5, atol=1e-6)
    save_model(m, tmp_path / "again")  # saving it again adds the hash: no warning from then on
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _same(m, load_model(tmp_path / "again"))


def test_a_config_without_dynamics_reads_as_leaky_and_new_models_are_gated(tmp_path):
    """The default F changed from leaky to gated (docs/DROPIN.md): every config tnd saves names its
    family, so saved models keep their F; one without the key (hand-written for an older release)
    means leaky, in from_config and in the weights check alike, and loads."""
    assert TND(3, GRAPH, 2).cell.dynamics_name == "gated"
    old = TND(3, GRAPH, 2, dynamics="leaky")
    save_model(old, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["config"]["dynamics"] == "leaky"
    cfg = old.config()
    del cfg["dynamics"]
    assert TNDClass.from_config(cfg).cell.dynamics_name == "leaky"
    assert TNDClass.state_shapes(cfg) == {k: tuple(v.shape) for k, v in old.state_dict().items()}
    path = tmp_path / "m" / "config.json"
    doc = json.loads(path.read_text())
    del doc["config"]["dynamics"]
    doc.pop("sha256", None)
    path.write_text(json.dumps(doc))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the removed hash may warn
        m = load_model(tmp_path / "m")
    assert m.cell.dynamics_name == "leaky"
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(m(x)[0], old(x)[0])
