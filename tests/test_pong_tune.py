"""``tnd pong tune`` and ``tnd pong --tuned``: the Pong search spaces build models at the budget, the
search plays validation serves only, resumes, and its chosen configurations reach the cells."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from tnd.apps.cli import main
from tnd.apps.pong import cells as pong_cells
from tnd.apps.pong import evaluate as pong_evaluate
from tnd.apps.pong import train as pong_train
from tnd.apps.pong import tune as pong_tune
from tnd.apps.pong.config import TND_BASES, PongConfig
from tnd.apps.pong.models import MODEL_NAMES, build_model
from tnd.apps.pong.policies import EVAL_SEED_BASE
from tnd.apps.pong.tuning_spaces import BUDGET_TOLERANCE, SPACES, build_options, load_tuned, spaces_for
from tnd.apps.settings import UsageError
from tnd.apps.tuning import ray_tune_missing, sample_trials

TINY = ["--quick", "--protocol", "bc", "--no-progress", "--max-steps", "4", "--eval-every", "2", "--demo-rounds", "6",
        "--demo-steps-per-round", "60", "--tune-val-rounds", "3", "--backend", "local"]


def _run(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _build(model, config, budget):
    opts = build_options(model, config)
    try:
        return build_model(model, 3, 3, budget, window=32, tnd_overrides=opts.get("tnd"), model_kw=opts.get("model_kw"))
    except ImportError as e:  # mamba / lru need their optional packages
        pytest.skip(f"{model}: {e}")


def test_every_model_has_a_space_and_the_same_number_of_trials():
    assert set(SPACES) == set(MODEL_NAMES)
    trials = sample_trials(SPACES, 7, seed=0)
    assert {len(v) for v in trials.values()} == {7}
    for m, space in SPACES.items():
        assert "lr" in space.knobs and space.default["lr"] == PongConfig().lr  # trial 0 = the untuned setting


@pytest.mark.parametrize("model", ["tnd", "tnd_shared"])
def test_trial_0_of_a_tnd_is_the_untuned_model_of_its_base(model):
    """Trial 0 must be what ``tnd pong`` trains without --tuned: under the default base (control) the
    same graph, size and initial weights, merged as a cell merges a tuned variant over the base."""
    import torch

    assert SPACES[model].default == spaces_for("control")[model].default
    assert SPACES[model].default["input_fraction"] == 1.0 and SPACES[model].default["propagation_steps"] == 2
    assert spaces_for("v1")[model].default["input_fraction"] == 0.25
    tnd = {**TND_BASES["control"], **build_options(model, SPACES[model].default)["tnd"]}
    torch.manual_seed(0)
    untuned, s0 = build_model(model, 5, 3, 2000, window=32, tnd_overrides=TND_BASES["control"])
    torch.manual_seed(0)
    trial0, s1 = build_model(model, 5, 3, 2000, window=32, tnd_overrides=tnd)
    assert (s0["num_neurons"], s0["params"], s0["graph_edges"]) == (s1["num_neurons"], s1["params"], s1["graph_edges"])
    assert torch.equal(untuned.graph.edge_index, trial0.graph.edge_index)
    for (k, a), b in zip(untuned.state_dict().items(), trial0.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="tnd_base: expected one of"):
        spaces_for("v2")


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_knob_value_builds_a_model_at_the_budget(model):
    """Each value of each knob (the others at their defaults), the largest of every knob together,
    and the sampled trials, all within the tolerance at the default budget."""
    space, budget = SPACES[model], PongConfig().param_budget
    configs = [dict(space.default, **{k: v}) for k, dom in space.knobs.items() if k != "lr" for v in dom.values]
    configs.append({k: (dom.values[-1] if k != "lr" else space.default["lr"]) for k, dom in space.knobs.items()})
    configs += sample_trials({model: space}, 4, seed=0)[model]
    for cfg in configs:
        _, spec = _build(model, cfg, budget)
        assert abs(spec["params"] - budget) <= BUDGET_TOLERANCE * budget, (model, cfg, spec["params"])


def test_knobs_reach_the_model():
    net, spec = _build("rnn", {"lr": 0.01, "num_layers": 2}, 2000)
    assert net.rnn.num_layers == 2
    net, spec = _build("transformer", {"lr": 0.01, "num_layers": 2, "nhead": 4, "context": 16}, 2000)
    assert (net.num_layers, net.nhead, net.context) == (2, 4, 16)
    net, spec = _build("mlp_k", {"lr": 0.01, "frames": 8, "layers": 3}, 2000)
    assert (net.frames, net.layers) == (8, 3)
    cfg = {"lr": 0.01, "graph": "scale_free", "mean_degree": 2, "dynamics": "gated", "state_size": 1,
           "input_fraction": 0.5, "propagation_steps": 3, "tau_init": [1.0, 100.0]}
    net, spec = _build("tnd", cfg, 2000)
    n = spec["num_neurons"]
    assert net.cell.propagation_steps == 3 and spec["tnd"]["dynamics"] == "gated" and spec["tnd"]["state_size"] == 1
    assert len(net.graph.input_neurons) == round(0.5 * n)
    assert net.cell.dynamics.tau_init == (1.0, 100.0)
    assert abs(net.graph.num_edges / n - 2) < 1.0  # mean out-degree about 2
    with pytest.raises(ValueError, match="num_layers = 3 lies outside"):
        build_options("rnn", {"lr": 0.01, "num_layers": 3})
    with pytest.raises(ValueError, match="model_kw: tnd takes its options through tnd_overrides"):
        build_model("tnd", 3, 3, 2000, model_kw={"num_layers": 2})


def test_tune_local_end_to_end_validation_serves_only_and_resume(tmp_path, monkeypatch):
    seeds, calls = [], []
    play = pong_evaluate.play_rounds

    def spy_play(model, rounds=100, seed=EVAL_SEED_BASE, **kw):
        seeds.append(seed)
        return play(model, rounds, seed=seed, **kw)

    objective = pong_tune.pong_objective

    def counted(model, config, index, context):
        calls.append((model, index))
        return objective(model, config, index, context)

    monkeypatch.setattr(pong_evaluate, "play_rounds", spy_play)
    monkeypatch.setattr(pong_tune, "pong_objective", counted)
    out = tmp_path / "tune"
    rc, stdout, err = _run(["pong", "tune", *TINY, "--models", "rnn", "mlp", "--trials", "2", "--out", str(out)])
    assert rc == 0, err
    assert sorted(calls) == [("mlp", 0), ("mlp", 1), ("rnn", 0), ("rnn", 1)]
    assert seeds and set(seeds) == {pong_tune.TUNE_VAL_SEED_BASE}  # never an evaluation serve
    summary = json.loads((out / "tuning.json").read_text())
    assert summary["trials_per_model"] == 2 and summary["finished"] == 4
    for m in ("rnn", "mlp"):
        for t in summary["models"][m]["trials"]:
            r = t["result"]
            assert r["val_rounds"] == 3 and r["steps"] <= 4 and "val_loss" in r and "best_step" in r
            assert r["params"] > 0 and (r["score"] is None) == (not r["within_budget"])
    best = json.loads((out / "best_configs.json").read_text())
    assert load_tuned(out / "best_configs.json") == {m: v["config"] for m, v in best["models"].items()}
    assert "| rnn |" in (out / "tuning.md").read_text() and "tuned" in stdout
    # a folder that holds a search is refused without --resume; --resume runs only what is missing
    rc, _, err = _run(["pong", "tune", *TINY, "--models", "rnn", "--trials", "2", "--out", str(out)])
    assert rc == 2 and "--resume" in err and "--force" in err
    calls.clear()
    rc, _, err = _run(["pong", "tune", *TINY, "--models", "rnn", "mlp", "--trials", "3", "--out", str(out), "--resume"])
    assert rc == 0, err
    assert sorted(calls) == [("mlp", 2), ("rnn", 2)]
    rc, _, err = _run(["pong", "tune", *TINY, "--models", "rnn", "--trials", "3", "--out", str(out), "--resume",
                       "--max-steps", "5"])
    assert rc == 2 and "--max-steps" in err  # settings that change a trial's result must match


def test_an_interrupted_search_keeps_its_finished_trials_and_names_the_resume_command(tmp_path, monkeypatch):
    from tnd.apps.runs import Interrupted

    objective, n = pong_tune.pong_objective, []

    def interrupted_second(model, config, index, context):
        n.append(index)
        if len(n) == 2:
            raise Interrupted()  # what the SIGINT handler raises (tnd.apps.runs.on_signals)
        return objective(model, config, index, context)

    monkeypatch.setattr(pong_tune, "pong_objective", interrupted_second)
    out = tmp_path / "tune"
    rc, _, err = _run(["pong", "tune", *TINY, "--models", "rnn", "--trials", "3", "--out", str(out)])
    assert rc == 130, err
    assert "1 of 3 trials finished and kept" in err and "--resume" in err
    assert [p.name for p in (out / "trials" / "rnn").iterdir()] == ["trial-0.json"]
    assert json.loads((out / "tuning.json").read_text())["finished"] == 1
    monkeypatch.setattr(pong_tune, "pong_objective", objective)
    rc, _, err = _run(["pong", "tune", *TINY, "--models", "rnn", "--trials", "3", "--out", str(out), "--resume"])
    assert rc == 0 and "1 finished trial(s) kept, 2 to run" in err, err


def test_tuned_configurations_reach_the_cell_and_its_key(tmp_path, monkeypatch):
    best = {"format": "tnd.pong.tuned/1", "param_budget": 2000,
            "models": {"rnn": {"config": {"lr": 0.0123, "num_layers": 2}}}}
    path = tmp_path / "best.json"
    path.write_text(json.dumps(best))
    lrs = []
    train = pong_train.train_model

    def spy_train(model, *a, lr, **kw):
        lrs.append(lr)
        return train(model, *a, lr=lr, **kw)

    monkeypatch.setattr(pong_train, "train_model", spy_train)
    out = tmp_path / "run"
    argv = ["pong", "--quick", "--protocol", "bc", "--no-progress", "--models", "rnn", "lstm", "--max-steps", "4", "--eval-every", "2",
            "--eval-rounds", "3", "--demo-rounds", "6", "--demo-steps-per-round", "60", "--frame-steps", "10",
            "--out", str(out), "--tuned", str(path)]
    rc, _, err = _run(argv)
    assert rc == 0, err
    assert "chosen at --param-budget 2000; this run is --param-budget 400" in err  # --quick's budget
    m = json.loads((out / "cells" / "rnn" / "seed-0" / "metrics.json").read_text())
    assert m["spec"]["kwargs"]["num_layers"] == 2 and m["tuned"] == {"lr": 0.0123, "num_layers": 2}
    assert sorted(lrs) == [PongConfig().lr, 0.0123]  # lstm: untuned, the default lr
    cfg = PongConfig(**json.loads((out / "config.json").read_text()))
    variant = {"label": "rnn", "tuned": {"lr": 0.0123, "num_layers": 2}, **build_options("rnn", {"lr": 0.0123,
                                                                                              "num_layers": 2})}
    assert m["cell_key"] == pong_cells.cell_key(cfg, "rnn", 0, variant) != pong_cells.cell_key(cfg, "rnn", 0)
    lstm = json.loads((out / "cells" / "lstm" / "seed-0" / "metrics.json").read_text())
    assert lstm["cell_key"] == pong_cells.cell_key(cfg, "lstm", 0) and "tuned" not in lstm
    assert "Tuned configurations" in (out / "report.md").read_text()
    lrs.clear()
    rc, _, err = _run(argv + ["--resume"])
    assert rc == 0 and lrs == [], err  # the tuned cell's key matches: nothing retrains


@pytest.mark.parametrize("content, match", [
    ("{not json", "is not JSON"),
    (json.dumps({"format": "other", "models": {}}), "expected a tnd.pong.tuned/1 file"),
    (json.dumps({"format": "tnd.pong.tuned/1", "models": {"rnn": {"config": {"lr": 0.01, "num_layers": 5}}}}),
     "num_layers = 5 lies outside"),
    (json.dumps({"format": "tnd.pong.tuned/1", "models": {"rnn": {"config": {"lr": 0.01}}}}), "expected the knobs"),
    (json.dumps({"format": "tnd.pong.tuned/1", "models": {"gru": {"config": {"lr": 0.01}}}}), "model: expected one of"),
])
def test_a_bad_tuned_file_is_refused_naming_the_option(tmp_path, content, match):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=f"^--tuned: .*{match}"):
        load_tuned(path)
    rc, _, err = _run(["pong", "--quick", "--models", "rnn", "--out", str(tmp_path / "r"), "--tuned", str(path)])
    assert rc == 2 and "--tuned" in err and not (tmp_path / "r").exists()  # refused before the folder opens


def test_the_committed_tuned_file_is_the_default_and_none_turns_it_off(tmp_path, monkeypatch):
    from tnd.apps.pong import tuning_spaces

    committed = tmp_path / "tuned.json"
    monkeypatch.setattr(tuning_spaces, "DEFAULT_TUNED", committed)
    assert tuning_spaces.tuned_variants(None, ["rnn"]) == {}  # no committed file: the defaults
    committed.write_text(json.dumps({"format": "tnd.pong.tuned/1",
                                     "models": {"rnn": {"config": {"lr": 0.02, "num_layers": 2}}}}))
    v = tuning_spaces.tuned_variants(None, ["rnn", "lstm"])
    assert list(v) == ["rnn"] and v["rnn"]["lr"] == 0.02 and v["rnn"]["model_kw"] == {"num_layers": 2}
    assert tuning_spaces.tuned_variants("none", ["rnn"]) == {}


def test_the_committed_tuned_file_applies_to_the_protocol_it_was_searched_under(tmp_path, monkeypatch):
    """A run whose protocol settings differ from the committed search's (--quick, --protocol bc,
    another budget) runs untuned and says so; the same settings take the committed choices."""
    from tnd.apps.pong import tuning_spaces

    committed = tmp_path / "tuned.json"
    monkeypatch.setattr(tuning_spaces, "DEFAULT_TUNED", committed)
    assert tuning_spaces.committed_mismatch(PongConfig()) is None  # no file: nothing to say
    searched = pong_tune.TuneConfig(trials=3, tune_seed=1, backend="local", seeds=(7,), workers=2)
    committed.write_text(json.dumps({"format": "tnd.pong.tuned/1", "settings": tuning_spaces.protocol_settings(searched),
                                     "models": {"rnn": {"config": {"lr": 0.02, "num_layers": 2}}}}))
    assert tuning_spaces.committed_mismatch(PongConfig(seeds=(0, 1), workers=1, eval_rounds=7)) is None
    assert tuning_spaces.committed_mismatch(PongConfig(tuned="none")) is None  # an explicit --tuned wins
    diff = tuning_spaces.committed_mismatch(PongConfig(param_budget=20_000))
    assert diff == {"param_budget": (2000, 20_000)}
    out = tmp_path / "run"
    rc, _, err = _run(["pong", "--quick", "--protocol", "bc", "--no-progress", "--models", "rnn", "--max-steps", "4",
                       "--eval-every", "2", "--eval-rounds", "3", "--demo-rounds", "6", "--demo-steps-per-round", "60",
                       "--frame-steps", "10", "--out", str(out)])
    assert rc == 0, err
    assert "were chosen under other settings" not in err  # --quick: untuned by design, nothing said
    m = json.loads((out / "cells" / "rnn" / "seed-0" / "metrics.json").read_text())
    assert "tuned" not in m and m["spec"]["kwargs"].get("num_layers", 1) == 1
    committed.write_text(json.dumps({"format": "tnd.pong.tuned/1", "models": {}}))
    with pytest.raises(UsageError, match="expected its search's 'settings'"):
        tuning_spaces.committed_mismatch(PongConfig())


@pytest.mark.parametrize("argv, starts", [
    (["--tuned", "/nonexistent/best.json"], "tnd pong: error: --tuned: expected a chosen-configurations file"),
])
def test_pong_refuses_a_missing_tuned_file(argv, starts):
    rc, _, err = _run(["pong", "--quick", *argv])
    assert rc == 2 and err.startswith(starts), err


@pytest.mark.parametrize("argv, starts", [
    (["--trials", "0"], "tnd pong tune: error: --trials: expected an integer in [1, 10000]"),
    (["--tune-val-rounds", "0"], "tnd pong tune: error: --tune-val-rounds: expected an integer in [1, 5000000]"),
    (["--backend", "slurm"], "tnd pong tune: error: --backend: expected one of auto, ray, local"),
    (["--backend", "local", "--ray-address", "auto"], "tnd pong tune: error: --ray-address: only used with --backend"),
    (["--backend", "local", "--num-cpus", "2"], "tnd pong tune: error: --num-cpus: only used with --backend"),
    (["--ray-address", "auto", "--num-cpus", "2"], "tnd pong tune: error: --num-cpus: sets the CPUs of a local Ray"),
    (["--models", "gru"], "tnd pong tune: error: --models: expected names from"),
    (["--lr", "0.1"], "tnd pong tune: error: unrecognized arguments: --lr"),  # lr is a knob of the search
    (["--seeds", "1"], "tnd pong tune: error: unrecognized arguments: --seeds"),  # one seed: --tune-seed
])
def test_tune_refuses_bad_options_naming_them(tmp_path, argv, starts):
    rc, _, err = _run(["pong", "tune", "--quick", "--out", str(tmp_path / "t"), *argv])
    assert rc == 2 and err.startswith(starts), err
    assert not (tmp_path / "t").exists()


def test_tune_on_ray_end_to_end(tmp_path):
    missing = ray_tune_missing()
    if missing:
        pytest.skip(missing)
    out = tmp_path / "ray"
    rc, _, err = _run(["pong", "tune", *TINY[:-2], "--backend", "ray", "--num-cpus", "1", "--models", "rnn",
                       "--trials", "2", "--out", str(out)])
    assert rc == 0, err
    summary = json.loads((out / "tuning.json").read_text())
    assert summary["backend"] == "ray" and summary["finished"] == 2 and not summary["errors"]
    assert sorted(p.name for p in (out / "trials" / "rnn").iterdir()) == ["trial-0.json", "trial-1.json"]
    # the same trials in this process give the same results (a trial is a function of its settings)
    local = tmp_path / "local"
    rc, _, err = _run(["pong", "tune", *TINY, "--models", "rnn", "--trials", "2", "--out", str(local)])
    assert rc == 0, err
    got = json.loads((local / "tuning.json").read_text())
    strip = [{k: v for k, v in t["result"].items() if k != "train_s"} for t in summary["models"]["rnn"]["trials"]]
    assert strip == [{k: v for k, v in t["result"].items() if k != "train_s"} for t in got["models"]["rnn"]["trials"]]


def test_help_names_the_command():
    rc, out, _ = _run(["pong", "tune", "--help"])
    assert rc == 0 and out.startswith("usage: tnd pong tune") and "--ray-address" in out and "--trials" in out
    assert Path(pong_tune.__file__).with_name("tuning_spaces.py").is_file()


def test_the_committed_tuned_file_is_a_complete_equal_search_of_the_default_protocol():
    """``src/tnd/apps/pong/tuned.json`` (the committed choices) must apply to ``tnd pong`` as it
    stands: searched under today's default settings, every default model with the same number of
    trials, each choice one of its trials. A changed default protocol fails here: search again."""
    from tnd.apps.pong import tuning_spaces

    path = tuning_spaces.DEFAULT_TUNED
    if not path.is_file():
        pytest.skip("no committed tuned.json")
    assert tuning_spaces.committed_mismatch(PongConfig()) is None
    d = json.loads(path.read_text())
    assert set(d["models"]) == set(PongConfig().models)
    assert all(e["complete"] and 0 <= e["trial"] < d["trials_per_model"] for e in d["models"].values())
    chosen = load_tuned(path)
    for m, cfg in chosen.items():
        trials = sample_trials({m: SPACES[m]}, d["trials_per_model"], seed=0)[m]
        assert cfg == trials[d["models"][m]["trial"]], m  # the recorded trial's configuration
