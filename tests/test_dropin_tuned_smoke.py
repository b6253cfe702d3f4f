"""benchmarks/dropin_tuned.py: the validation part is disjoint from what the trials train on,
tuning never reads the test split, and ``--quick`` runs end to end, uses the chosen learning
rates, and resumes without rerunning a cell."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parents[1] / "benchmarks"


def _load():
    sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location("dropin_tuned", HERE / "dropin_tuned.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["dropin_tuned"] = mod  # as the script's tune() imports it
    spec.loader.exec_module(mod)
    return mod


def _fake(n: int) -> dict:
    return {"xtr": torch.arange(n, dtype=torch.float32).view(n, 1, 1), "ytr": torch.arange(n)}


def test_validation_split_is_a_disjoint_fifth_of_the_training_split():
    d = _load()
    for label in ("multiscale", "pong"):
        (xf, yf), (xv, yv) = d.validation_split(label, _fake(50))
        fit, val = set(yf.tolist()), set(yv.tolist())
        assert len(val) == 10 and len(fit) == 40 and not fit & val and fit | val == set(range(50))
    (_, _), (_, yv) = d.validation_split("pong", _fake(50))
    assert yv.tolist() == list(range(40, 50))  # Pong: the last windows, whole rounds
    (_, _), (_, yv) = d.validation_split("multiscale", _fake(50))
    assert yv.tolist() != list(range(40, 50))  # others: a seeded draw (JapaneseVowels is stored by class)


def test_a_trial_never_reads_the_test_split(tmp_path):
    d = _load()
    data = d.task_data("multiscale", True, str(tmp_path))
    data["xte"] = torch.full_like(data["xte"], float("nan"))  # a trial that touched it would score NaN
    data["yte"] = None
    res = d.objective("multiscale/tnd-default", {"lr": 5e-3}, 0, {"quick": True, "work": str(tmp_path)})
    assert torch.isfinite(torch.tensor(res["score"])) and res["n_val"] > 0
    d.task_data.cache_clear()


def test_quick_run_uses_the_chosen_rates_and_resumes(tmp_path, capsys):
    d = _load()
    argv = ["--quick", "--out", str(tmp_path), "--only", "irregular_jv", "--models", "lstm,tnd-default",
            "--trials", "3", "--backend", "local", "--jobs", "1"]
    doc = d.main(argv)
    tuning = json.loads((tmp_path / "dropin_tuned_search" / "tuning.json").read_text())
    for name in ("lstm", "tnd-default"):
        search = tuning["models"][f"irregular_jv/{name}"]
        assert search["finished"] == 3
        assert doc["lrs"]["irregular_jv"][name] == search["best"]["config"]["lr"]
        cell = doc["results"]["irregular_jv"]["models"][name]["0"]
        assert cell["lr"] == search["best"]["config"]["lr"]
    printed = capsys.readouterr().out
    before_after = printed.split("## Before / after")[1].split("## Chosen learning rates")[0]
    assert "| irregular_jv | accuracy" in before_after
    d.main(argv)
    assert "finals: 0 cell(s) to run" in capsys.readouterr().out
    # a model tuned by a later call joins the earlier ones' rates and cells
    doc = d.main(argv[:argv.index("--models") + 1] + ["tnd-v0"] + argv[argv.index("--models") + 2:])
    assert set(doc["lrs"]["irregular_jv"]) == {"lstm", "tnd-default", "tnd-v0"}
    assert set(doc["results"]["irregular_jv"]["models"]) == {"lstm", "tnd-default", "tnd-v0"}
