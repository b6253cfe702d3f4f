"""Loading a saved model never runs code: random bytes, malformed configs, missing files and
pickles offered as checkpoints are all refused with a documented error (see hardening_common)."""

from __future__ import annotations

import io
import json
import pickle
import tempfile
from pathlib import Path

import pytest
import torch
from hardening_common import GRAPH
from hardening_common import prop_settings as _settings
from hardening_common import refused as _refused
from hypothesis import given
from hypothesis import strategies as st

import tnd
from tnd import TND


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
