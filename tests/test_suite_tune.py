"""``tnd suite tune`` and ``tnd suite --tuned``: every suite model has a search space whose every
value builds at the budget, the search scores on validation only (never the test split), resumes,
and its chosen configurations reach the sweep's cells and their keys."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from tnd.apps.cli import main
from tnd.apps.suite import tune as suite_tune
from tnd.apps.suite.models import MODEL_NAMES, TND_NAMES, build_model
from tnd.apps.suite.sweep import BASE_SETTINGS, SweepSpec, plan, run_cell
from tnd.apps.suite.tuning_spaces import BUDGET_TOLERANCE, SPACES, TUNED_FORMAT, build_options
from tnd.apps.tasks.base import SequenceTask
from tnd.apps.tuning import ray_tune_missing, sample_trials

#: (input_size, output_size) of the suite's tasks at full size: japanese vowels (and irregular), italy power
#: demand, multiscale, electricity (48-step forecast), sunspots (12-month forecast), adding, copy
SHAPES = [(12, 9), (1, 2), (8, 2), (1, 48), (1, 12), (2, 1), (10, 8)]
TINY = ["--quick", "--no-progress", "--backend", "local"]


def _run(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _build(model, config, shape=(12, 9), budget=BASE_SETTINGS["param_budget"], seq_len=64):
    try:
        return build_model(model, *shape, budget, seq_len=seq_len, options=build_options(model, config)["options"])
    except ImportError as e:  # mamba / lru / ncps need their optional packages
        pytest.skip(f"{model}: {e}")


def test_every_model_has_a_space_and_the_same_number_of_trials():
    assert set(SPACES) == set(MODEL_NAMES)
    trials = sample_trials(SPACES, 6, seed=0)
    assert {len(v) for v in trials.values()} == {6}
    assert sample_trials(SPACES, 6, seed=0) == trials  # seeded
    assert sample_trials(SPACES, 6, seed=1) != trials
    for m, space in SPACES.items():
        assert trials[m][0] == space.default and space.default["lr"] == BASE_SETTINGS["lr"]
        assert "lr" in space.knobs and space.knobs["lr"].low == 1e-3 and space.knobs["lr"].high == 3e-2
    assert "propagation_steps" in SPACES["tnd"].knobs and "propagation_steps" not in SPACES["tnd_ct"].knobs


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_knob_value_builds_a_model_at_the_budget(model):
    """Each value of each knob (the others at their defaults), the largest of every knob together
    and sampled trials, at every task shape of the suite, within the tolerance of the default budget."""
    space, budget = SPACES[model], BASE_SETTINGS["param_budget"]
    configs = [dict(space.default, **{k: v}) for k, dom in space.knobs.items() if k != "lr" for v in dom.values]
    configs.append({k: (dom.values[-1] if k != "lr" else space.default["lr"]) for k, dom in space.knobs.items()})
    configs += sample_trials({model: space}, 4, seed=0)[model][1:]
    for cfg in configs:
        for shape in SHAPES:
            _, spec = _build(model, cfg, shape)
            assert abs(spec["params"] - budget) <= BUDGET_TOLERANCE * budget, (model, cfg, shape, spec["params"])


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_the_default_configuration_is_the_untuned_model(model):
    torch.manual_seed(3)
    try:
        plain, ps = build_model(model, 12, 9, 2000, seq_len=29)
    except ImportError as e:
        pytest.skip(f"{model}: {e}")
    torch.manual_seed(3)
    tuned, ts = _build(model, SPACES[model].default, seq_len=29)
    assert ps["params"] == ts["params"] and ps.get("num_neurons") == ts.get("num_neurons")
    assert ps.get("hidden_size") == ts.get("hidden_size")
    a, b = plain.state_dict(), tuned.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if model in TND_NAMES:
        assert torch.equal(plain.graph.edge_index, tuned.graph.edge_index)
        assert plain.graph.input_neurons.tolist() == tuned.graph.input_neurons.tolist()


def test_knobs_reach_the_model():
    cfg = {"lr": 0.01, "graph": "scale_free", "mean_degree": 2, "dynamics": "gated", "state_size": 1,
           "input_fraction": 0.25, "propagation_steps": 2, "tau_init": "span"}
    net, spec = _build("tnd", cfg)
    n = spec["num_neurons"]
    assert spec["topology"] == "scale_free" and spec["options"]["dynamics"] == "gated"
    assert net.cell.propagation_steps == 2 and len(net.graph.input_neurons) == n // 4
    assert net.cell.dynamics.tau_init[0] == 1.0 and net.cell.dynamics.tau_init[1] > 10.0  # span: 1 to tau_max
    assert abs(net.graph.num_edges / n - 2) < 1.0  # mean out-degree about 2
    net, _ = _build("lstm", {"lr": 0.01, "num_layers": 2})
    assert net.num_layers == 2
    net, _ = _build("transformer", {"lr": 0.01, "num_layers": 1, "nhead": 4})
    assert (net.num_layers, net.nhead) == (1, 4)
    net, spec = _build("ode_rnn", {"lr": 0.01, "ode_width": 2.0})
    assert net.func[0].out_features == round(2 * spec["hidden_size"])
    for model in ("cfc", "ltc", "transformer", "mamba", "lru"):  # the last value of every knob reaches the constructor
        cfg = {k: (dom.values[-1] if k != "lr" else 0.01) for k, dom in SPACES[model].knobs.items()}
        _, spec = _build(model, cfg)
        assert all(spec["kwargs"][k] == v for k, v in cfg.items() if k != "lr"), (model, spec["kwargs"])
    with pytest.raises(ValueError, match="num_layers = 3 lies outside"):
        build_options("lstm", {"lr": 0.01, "num_layers": 3})
    with pytest.raises(ValueError, match=r"expected the knobs \['lr', 'num_layers'\]"):
        build_options("lstm", {"lr": 0.01})


def test_local_search_end_to_end(tmp_path):
    out = tmp_path / "tune"
    rc, stdout, err = _run(["suite", "tune", *TINY, "--tasks", "adding_100", "multiscale", "--models", "tnd", "lstm",
                            "--trials", "2", "--out", str(out)])
    assert rc == 0, err
    summary = json.loads((out / "tuning.json").read_text())
    keys = ["adding_100/tnd", "adding_100/lstm", "multiscale/tnd", "multiscale/lstm"]
    assert sorted(summary["models"]) == sorted(keys) and summary["finished"] == 8 and not summary["errors"]
    assert summary["mode"] == "max"
    for k in keys:
        rows = summary["models"][k]["trials"]
        assert [r["config"] for r in rows] == sample_trials({k.split("/")[1]: SPACES[k.split("/")[1]]}, 2, 0)[
            k.split("/")[1]]  # the same trials on every task
        for r in rows:
            res = r["result"]
            want = -res["val_loss"]  # the loss ranks every trial (the accuracy of a few sequences ties)
            assert ("val_accuracy" if k.startswith("multiscale") else "val_mse") in res
            if res["within_budget"]:  # at the quick budget (300) a dense TND can miss it: scored None, never chosen
                assert res["score"] == pytest.approx(want)
            else:
                assert res["score"] is None and abs(res["params"] - 300) > BUDGET_TOLERANCE * 300
        assert rows[0]["result"]["within_budget"]
        assert (out / "trials" / k / "trial-1.json").is_file()
    best = json.loads((out / "best_configs.json").read_text())
    assert best["format"] == TUNED_FORMAT and sorted(best["models"]) == sorted(keys) and best["param_budget"] == 300
    assert "tnd suite --tuned" in stdout
    # the summary is scored per pair: the best is the highest score
    for k in keys:
        v = summary["models"][k]
        assert v["best"]["score"] == max(r["score"] for r in v["trials"] if r["score"] is not None)


def test_tuning_never_reads_the_test_split(tmp_path, monkeypatch):
    seen: list[str] = []
    for name in ("split", "lengths", "timespans", "base_forecast"):
        orig = getattr(SequenceTask, name)

        def spy(self, which, _orig=orig):
            seen.append(which)
            return _orig(self, which)

        monkeypatch.setattr(SequenceTask, name, spy)
    rc, _, err = _run(["suite", "tune", *TINY, "--tasks", "adding_100", "--models", "tnd", "lstm", "--trials", "2",
                       "--out", str(tmp_path / "tune")])
    assert rc == 0, err
    assert "val" in seen and "train" in seen and "test" not in seen
    # the control: a suite cell does read the test split (so the spy can fail)
    cells, _ = plan(SweepSpec(tasks=["adding_100"], models=["lstm"], seeds=[0], quick=True))
    assert run_cell(cells[0].to_dict())["status"] == "ok"
    assert "test" in seen


def test_resume_skips_finished_trials(tmp_path, monkeypatch):
    out = tmp_path / "tune"
    args = ["suite", "tune", *TINY, "--tasks", "adding_100", "--models", "lstm", "--out", str(out)]
    assert _run([*args, "--trials", "2"])[0] == 0
    rc, _, err = _run([*args, "--trials", "2"])
    assert rc == 2 and "--resume" in err  # a folder that holds a search is refused without --resume
    calls = []
    real = suite_tune.suite_objective

    def counting(key, config, index, context):
        calls.append((key, index))
        return real(key, config, index, context)

    monkeypatch.setattr(suite_tune, "suite_objective", counting)
    assert _run([*args, "--trials", "3", "--resume"])[0] == 0
    assert calls == [("adding_100/lstm", 2)]
    assert json.loads((out / "tuning.json").read_text())["finished"] == 3
    rc, _, err = _run([*args, "--trials", "3", "--resume", "--tune-seed", "1"])
    assert rc == 2 and "--tune-seed" in err  # the protocol may not change


def _tuned_file(path: Path, configs: dict) -> Path:
    path.write_text(json.dumps({"format": TUNED_FORMAT, "param_budget": 300, "models": {
        k: {"trial": 1, "score": 0.0, "config": c} for k, c in configs.items()}}))
    return path


def test_tuned_configurations_change_the_cell_and_its_key(tmp_path):
    lstm = {"lr": 0.02, "num_layers": 2}
    tnd = dict(SPACES["tnd"].default, lr=0.01, graph="random", mean_degree=2)
    spec = dict(tasks=["adding_100"], models=["tnd", "lstm"], seeds=[0], quick=True)
    plain, _ = plan(SweepSpec(**spec))
    tuned, _ = plan(SweepSpec(**spec, tuned={"adding_100/lstm": lstm, "adding_100/tnd": tnd}))
    by = {c.model: c for c in tuned}
    assert {c.model: c.key for c in plain}.keys() == by.keys()
    assert all(c.key != by[c.model].key for c in plain)
    assert by["lstm"].settings["lr"] == 0.02 and by["lstm"].settings["tuned"] == lstm
    assert by["tnd"].topology == "random"  # a tuned TND cell runs on its configuration's graph family
    other, _ = plan(SweepSpec(**spec, tuned={"multiscale/lstm": lstm}))  # another task's configuration
    assert [c.key for c in other] == [c.key for c in plain]
    r = run_cell(by["lstm"].to_dict())
    assert r["status"] == "ok" and r["spec"]["kwargs"]["num_layers"] == 2
    # through the CLI: the cells record it, and a resume with the same file runs nothing
    f = _tuned_file(tmp_path / "best.json", {"adding_100/lstm": lstm})
    out = tmp_path / "sweep"
    args = ["suite", *TINY, "--tasks", "adding_100", "--models", "lstm", "--seeds", "0", "--out", str(out)]
    rc, _, err = _run([*args, "--tuned", str(f)])
    assert rc == 0, err
    cell = json.loads((out / "cells" / "adding_100__lstm__na__seed0.json").read_text())
    assert cell["settings"]["tuned"] == lstm and cell["spec"]["kwargs"]["num_layers"] == 2
    rc, stdout, err = _run([*args, "--tuned", str(f), "--resume"])
    assert rc == 0 and "ran 0 cells" in stdout, err
    rc, _, err = _run([*args, "--resume", "--tuned", "none"])
    assert rc == 2 and "--tuned" in err  # another set of configurations is another protocol


def test_bad_input_errors_name_the_option(tmp_path):
    cases = [
        (["suite", "tune", *TINY, "--trials", "0"], "--trials"),
        (["suite", "tune", *TINY, "--models", "nope"], "--models"),
        (["suite", "tune", *TINY, "--num-cpus", "2"], "--num-cpus"),
        (["suite", "tune", *TINY, "--tasks", "adding_100", "--models", "ode_rnn", "--out", str(tmp_path / "a")],
         "--no-skip"),
        (["suite", *TINY, "--tasks", "adding_100", "--tuned", str(tmp_path / "missing.json")], "--tuned"),
        (["suite", *TINY, "--tasks", "adding_100",
          "--tuned", str(_tuned_file(tmp_path / "bad.json", {"adding_100/lstm": {"lr": 0.01, "num_layers": 5}}))],
         "num_layers"),
        (["suite", *TINY, "--tasks", "adding_100",
          "--tuned", str(_tuned_file(tmp_path / "bad2.json", {"lstm": {"lr": 0.01, "num_layers": 1}}))],
         "<task>/<model>"),
    ]
    for argv, word in cases:
        rc, _, err = _run(argv)
        assert rc == 2 and word in err, (argv, err)
        assert "Traceback" not in err


def test_tune_on_ray_end_to_end(tmp_path):
    missing = ray_tune_missing()
    if missing:
        pytest.skip(missing)
    out = tmp_path / "ray"
    args = ["suite", "tune", "--quick", "--no-progress", "--tasks", "adding_100", "--models", "lstm", "--trials", "2"]
    rc, _, err = _run([*args, "--backend", "ray", "--num-cpus", "1", "--out", str(out)])
    assert rc == 0, err
    summary = json.loads((out / "tuning.json").read_text())
    assert summary["backend"] == "ray" and summary["finished"] == 2 and not summary["errors"]
    assert sorted(p.name for p in (out / "trials" / "adding_100" / "lstm").iterdir()) == ["trial-0.json",
                                                                                         "trial-1.json"]
    local = tmp_path / "local"
    rc, _, err = _run([*args, "--backend", "local", "--out", str(local)])
    assert rc == 0, err
    got = json.loads((local / "tuning.json").read_text())
    strip = lambda s: [{k: v for k, v in t["result"].items() if k != "train_s"}  # noqa: E731
                       for t in s["models"]["adding_100/lstm"]["trials"]]
    assert strip(summary) == strip(got)


def test_help_names_the_command():
    rc, out, _ = _run(["suite", "tune", "--help"])
    assert rc == 0 and out.startswith("usage: tnd suite tune") and "--trials" in out and "--ray-address" in out
    rc, out, _ = _run(["suite", "--help"])
    assert rc == 0 and "--tuned" in out


def test_the_committed_tuned_file_holds_complete_equal_searches_per_task():
    """``src/tnd/apps/suite/tuned.json`` (what ``tnd suite`` uses by default) holds a task only when
    every default model that the suite runs on it was searched with the same number of trials, and
    each choice is the recorded trial's configuration. A task tuned for some models only (a memory task)
    stays out of it, so its cells keep the defaults for every model alike."""
    from tnd.apps.suite.sweep import DEFAULT_MODELS
    from tnd.apps.suite.tuning_spaces import DEFAULT_TUNED, load_tuned, split_key

    if not DEFAULT_TUNED.is_file():
        pytest.skip("no committed tuned.json")
    d = json.loads(DEFAULT_TUNED.read_text())
    assert d["format"] == TUNED_FORMAT and d["param_budget"] == BASE_SETTINGS["param_budget"] and not d["quick"]
    chosen = load_tuned(DEFAULT_TUNED)["configs"]
    tasks = {split_key(k)[0] for k in chosen}
    spec = SweepSpec(tasks=sorted(tasks), models=list(DEFAULT_MODELS), seeds=[0], quick=False)
    cells, _ = plan(spec)
    run_pairs = {f"{c.task}/{c.model}" for c in cells}
    assert set(chosen) == run_pairs, set(chosen) ^ run_pairs
    for key, cfg in chosen.items():
        entry = d["models"][key]
        model = split_key(key)[1]
        assert entry["complete"] and 0 <= entry["trial"] < d["trials_per_model"], key
        trials = sample_trials({model: SPACES[model]}, d["trials_per_model"], d["tune_seed"])[model]
        assert cfg == trials[entry["trial"]], key


def test_the_committed_file_applies_to_the_protocol_it_was_searched_under_only(tmp_path, monkeypatch):
    """Without --tuned the committed file tunes the full-size sweep; --quick and another budget
    run untuned (a note says so for the budget), an explicit --tuned applies anyway."""
    from tnd.apps.suite import cli as suite_cli
    from tnd.apps.suite import tuning_spaces
    from tnd.apps.suite.cli import SuiteSettings

    config = sample_trials({"lstm": SPACES["lstm"]}, 2, 0)["lstm"][1]
    committed = tmp_path / "tuned.json"
    committed.write_text(json.dumps({"format": TUNED_FORMAT, "param_budget": 2000, "quick": False,
                                     "models": {"japanese_vowels/lstm": {"config": config}}}))
    monkeypatch.setattr(tuning_spaces, "DEFAULT_TUNED", committed)
    assert suite_cli._tuned(SuiteSettings()) == {"japanese_vowels/lstm": config}
    assert suite_cli._tuned(SuiteSettings(quick=True)) == {}
    notes = []
    monkeypatch.setattr(suite_cli, "note", notes.append)
    assert suite_cli._tuned(SuiteSettings(param_budget=5000)) == {} and "untuned" in notes[0]
    assert suite_cli._tuned(SuiteSettings(quick=True, tuned=str(committed))) == {"japanese_vowels/lstm": config}
