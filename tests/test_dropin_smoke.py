"""benchmarks/dropin.py: the models are what their names say, matched in size, and ``--quick``
runs end to end and resumes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "dropin.py"


def _load():
    spec = importlib.util.spec_from_file_location("dropin_bench", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_variants_are_what_their_names_say_and_parameter_matched():
    d = _load()
    for name in d.MODELS:
        m = d.build(name, 2, 1, 2000, seed=0, timed=False)
        assert abs(d.count_parameters(m) - 2000) < 80, name
        if name == "lstm":
            continue
        info = d.describe(m)
        v = d.VARIANTS[name]
        if v is None:
            continue
        n = info["num_neurons"]
        assert info["num_inputs"] == (n if v["inputs"] == "all" else n // 4), name
        assert info["tau_init"] == ([1.0, 1000.0] if v["tau_init"] == "span" else list(v["tau_init"])), name
        assert info["dynamics"] == v.get("dynamics", "leaky"), name


def test_timed_tnd_reads_the_last_channel_as_timespans():
    d = _load()
    torch.manual_seed(0)
    m = d.build("tnd-v0", 3, 2, 600, seed=0, timed=True)  # 2 data channels + elapsed time
    x = torch.randn(2, 5, 2)
    ts = torch.rand(2, 5) + 0.5
    y, _ = m(torch.cat([x, ts.unsqueeze(-1)], -1))
    torch.testing.assert_close(y, m.inner(x, timespans=ts)[0])
    assert not torch.allclose(y, m.inner(x)[0])  # the times matter


@pytest.mark.slow
def test_quick_run_end_to_end_and_resume(tmp_path, capsys):
    d = _load()
    doc = d.main(["--quick", "--out", str(tmp_path), "--only", "adding_100,irregular_jv,pong",
                  "--models", "lstm,tnd-v0,tnd-allin-span"])
    saved = json.loads((tmp_path / "dropin.json").read_text())
    assert saved["quick"] is True and set(saved["results"]) == {"adding_100", "irregular_jv", "pong"}
    for label, entry in doc["results"].items():
        assert set(entry["models"]) == {"lstm", "tnd-v0", "tnd-allin-span"}
        for seeds in entry["models"].values():
            assert seeds["0"]["test"]["loss"] > 0
    assert "play" in doc["results"]["pong"]["models"]["lstm"]["0"]
    table = d.tables(saved)
    assert "### pong" in table and "| tnd-allin-span |" in table
    capsys.readouterr()
    d.main(["--quick", "--out", str(tmp_path), "--only", "adding_100", "--models", "lstm,tnd-v0"])
    assert "seed 0 params" not in capsys.readouterr().out  # every cell was already done
    d.main(["--quick", "--out", str(tmp_path / "b"), "--only", "adding_100", "--models", "tnd-gated-allin"])
    merged = d.main(["--quick", "--merge", str(tmp_path / "dropin.json"), str(tmp_path / "b" / "dropin.json"),
                     "--out", str(tmp_path / "m")])
    assert set(merged["results"]["adding_100"]["models"]) == {"lstm", "tnd-v0", "tnd-allin-span", "tnd-gated-allin"}
    assert json.loads((tmp_path / "m" / "dropin.json").read_text())["results"] == merged["results"]
