"""``tnd pong --protocol dagger`` and the non-recurrent references ``mlp`` / ``mlp_k``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")
pytest.importorskip("matplotlib")

from tnd.apps.cli import main  # noqa: E402
from tnd.apps.pong import cells, dagger, experiment  # noqa: E402
from tnd.apps.pong import train as pong_train  # noqa: E402
from tnd.apps.pong.config import DAGGER_SEED_BASE, PongConfig  # noqa: E402
from tnd.apps.pong.data import load_dataset, make_windows  # noqa: E402
from tnd.apps.pong.env import PongState  # noqa: E402
from tnd.apps.pong.evaluate import play_rounds  # noqa: E402
from tnd.apps.pong.models import build_model  # noqa: E402
from tnd.apps.pong.policies import EVAL_SEED_BASE, ExpertPolicy  # noqa: E402
from tnd.io import load_tensors  # noqa: E402

TINY = ["--max-steps", "4", "--eval-every", "2", "--eval-rounds", "3", "--demo-rounds", "6",
        "--demo-steps-per-round", "60", "--frame-steps", "20", "--no-progress"]
DAGGER = ["--protocol", "dagger", "--dagger-iterations", "2", "--dagger-rounds", "4", "--dagger-val-rounds", "3"]
IGNORED = ("time_s", "created", "out", "command")


def _config(argv):
    import argparse

    p = argparse.ArgumentParser()
    experiment.add_arguments(p)
    return experiment.config_from_args(p.parse_args(argv))


def _strip(o):
    if isinstance(o, dict):
        return {k: _strip(v) for k, v in o.items() if not any(s in k for s in IGNORED)}
    if isinstance(o, list):
        return [_strip(v) for v in o]
    return o


def _model(name="mlp_k", seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(name, 3, 3, 300, window=16, **kw)[0]


# ----------------------------------------------------------------------------- data aggregation
def test_rollouts_are_labelled_by_the_expert_at_the_true_state():
    data, stats = dagger.collect_rollouts(_model(), 5, seed=DAGGER_SEED_BASE, env_kwargs={"max_catches": 3},
                                          max_steps_per_round=70)
    n = int(data["round_lengths"].sum())
    assert n == stats["steps"] == data["actions"].shape[0] == data["observations"].shape[0] > 0
    assert data["round_lengths"].max() <= 70
    assert data["round_seeds"].tolist() == list(range(DAGGER_SEED_BASE, DAGGER_SEED_BASE + 5))
    expert = ExpertPolicy()
    labels = [expert.act(PongState(*s.tolist())) for s in data["states"]]
    assert data["actions"].tolist() == labels
    np.testing.assert_array_equal(data["observations"], data["states"][:, [0, 1, 4]].astype(np.float32))
    # beta = 1: every executed action is the expert's, so no round ends with a miss
    _, st = dagger.collect_rollouts(_model(), 5, seed=DAGGER_SEED_BASE, beta=1.0, env_kwargs={"max_catches": 2},
                                    max_steps_per_round=2000)
    assert st["misses"] == 0 and st["mean_catches"] == 2.0


def test_dagger_aggregates_the_visited_steps_each_iteration(tmp_path):
    cfg = PongConfig(protocol="dagger", dagger_iterations=3, dagger_rounds=4, dagger_val_rounds=2, window=16,
                     demo_steps_per_round=80, max_catches=3)
    X0 = np.random.default_rng(0).random((5, 16, 3)).astype(np.float32)
    Y0 = np.zeros((5, 16), dtype=np.int64)
    model = _model()
    seen = []

    def train(X, Y, i):
        seen.append((X.copy(), Y.copy()))
        return {"history": [], "best_step": 0, "best_val_loss": 0.0, "val_accuracy": 0.0, "steps": 1,
                "stopped_early": False, "train_time_s": 0.0}

    tr, rec = dagger.run_dagger(model, cfg, X0, Y0, 0, tmp_path / "w", train)
    its = rec["iterations"]
    assert [r["iteration"] for r in its] == [0, 1, 2, 3] and tr["steps"] == 4
    np.testing.assert_array_equal(seen[0][0], X0)
    total = 0
    for i in range(1, 4):
        data, _ = load_dataset(tmp_path / "w" / f"iter-{i}" / "rollouts.npz")
        steps = int(data["round_lengths"].sum())
        assert steps == its[i]["rollout"]["steps"] > 0
        total += steps
        assert its[i]["rollout_steps_total"] == total  # the data grow by the visited steps
        assert data["round_seeds"][0] == DAGGER_SEED_BASE + (i - 1) * 4  # fresh serves every iteration
        Xi, Yi = make_windows(data, 16, stride=8)
        prev_X, prev_Y = seen[i - 1]
        X, Y = seen[i]
        assert X.shape[0] == prev_X.shape[0] + Xi.shape[0] == its[i]["train_windows"]
        np.testing.assert_array_equal(X[:prev_X.shape[0]], prev_X)  # the earlier data are kept
        np.testing.assert_array_equal(X[prev_X.shape[0]:], Xi)
        np.testing.assert_array_equal(Y[prev_X.shape[0]:], Yi)  # ... with the expert's labels
        expert = ExpertPolicy()
        assert data["actions"].tolist() == [expert.act(PongState(*s.tolist())) for s in data["states"]]


def test_serves_are_disjoint_and_beta_decays():
    assert dagger.rollout_seed(1, 200) == DAGGER_SEED_BASE and dagger.rollout_seed(3, 200) == DAGGER_SEED_BASE + 400
    assert dagger.beta_at(0.5, 1) == 0.5 and dagger.beta_at(0.5, 3) == 0.125 and dagger.beta_at(0.0, 1) == 0.0
    assert DAGGER_SEED_BASE > dagger.DAGGER_VAL_SEED_BASE > EVAL_SEED_BASE
    with pytest.raises(ValueError, match="iteration"):
        dagger.rollout_seed(0, 10)


# ----------------------------------------------------------------------------- a whole run
def test_dagger_quick_run_writes_iterations_and_is_deterministic(tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["pong", "--quick", "--out", str(out), "--models", "mlp_k", *TINY, *DAGGER]) == 0
        runs.append(out)
    m = [json.loads((o / "cells" / "mlp_k" / "seed-0" / "metrics.json").read_text()) for o in runs]
    its = m[0]["dagger"]["iterations"]
    assert [r["iteration"] for r in its] == [0, 1, 2]
    for r in its:
        assert set(r) >= {"val_loss", "val_accuracy", "val_closed_loop", "train_windows", "rollout"}
        assert r["val_closed_loop"]["rounds"] == 3 and r["val_closed_loop"]["seed"] == dagger.DAGGER_VAL_SEED_BASE
    assert its[0]["rollout"] is None and its[2]["rollout"]["rounds"] == 4
    assert m[0]["train"]["steps"] == sum(r["train"]["steps"] for r in its)
    assert _strip(m[0]) == _strip(m[1])
    w = [load_tensors(o / "cells" / "mlp_k" / "seed-0" / "model.safetensors") for o in runs]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    res = json.loads((runs[0] / "results.json").read_text())
    assert len(res["models"]["mlp_k"]["dagger_iterations"][0]) == 3
    assert (runs[0] / "dagger_curves.png").stat().st_size > 1000
    assert "## DAgger iterations" in (runs[0] / "report.md").read_text()


def _cell(cfg, out, data, seed=0, model="lstm"):
    return cells.run_cell(dataclasses.asdict(cfg), model, seed, str(data), str(out))


def test_resume_after_a_kill_between_iterations_gives_the_same_weights(tmp_path, monkeypatch):
    cfg = _config(["--quick", "--models", "lstm", *TINY, *DAGGER])
    data = cells.prepare_data(cfg, tmp_path / "d")
    whole = _cell(cfg, tmp_path / "whole", data)

    real_collect, calls = dagger.collect_rollouts, []

    def dies_in_iteration_2(*a, **kw):
        calls.append(kw["seed"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after iteration 1 was written
        return real_collect(*a, **kw)

    monkeypatch.setattr(dagger, "collect_rollouts", dies_in_iteration_2)
    with pytest.raises(KeyboardInterrupt):
        _cell(cfg, tmp_path / "cut", data)
    monkeypatch.setattr(dagger, "collect_rollouts", real_collect)
    work = next((tmp_path / "cut" / "cells" / "lstm" / "seed-0").glob("dagger-*"))
    assert dagger.completed_iterations(work) == 2
    real_train, trained = pong_train.train_model, []
    monkeypatch.setattr(pong_train, "train_model", lambda *a, **kw: trained.append(kw["seed"]) or real_train(*a, **kw))
    resumed = _cell(dataclasses.replace(cfg, resume=True), tmp_path / "cut", data)
    assert trained == [dagger.train_seed(0, 2)]  # only the unfinished iteration is redone
    assert _strip(resumed) == _strip(whole)
    a = load_tensors(tmp_path / "whole" / "cells" / "lstm" / "seed-0" / "model.safetensors")
    b = load_tensors(tmp_path / "cut" / "cells" / "lstm" / "seed-0" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_kill_inside_an_iteration_resumes_from_its_training_checkpoint(tmp_path, die_after_checkpoint):
    cfg = _config(["--quick", "--models", "lstm", *TINY, *DAGGER])
    ck = dataclasses.replace(cfg, checkpoint_every=2, resume=True)
    assert cells.cell_key(cfg, "lstm", 0) == cells.cell_key(ck, "lstm", 0)
    data = cells.prepare_data(cfg, tmp_path / "d")
    whole = _cell(cfg, tmp_path / "whole", data)
    saves = die_after_checkpoint.run_killed(lambda: _cell(ck, tmp_path / "cut", data), 3)
    cell = tmp_path / "cut" / "cells" / "lstm" / "seed-0"
    assert dagger.completed_iterations(next(cell.glob("dagger-*"))) == 1  # killed while iteration 1 trained
    resumed, loads = die_after_checkpoint.run_resumed(lambda: _cell(ck, tmp_path / "cut", data))
    assert loads == [saves[-1]]
    assert _strip(resumed) == _strip(whole)
    a = load_tensors(tmp_path / "whole" / "cells" / "lstm" / "seed-0" / "model.safetensors")
    b = load_tensors(cell / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(cell.glob("train-ckpt-*"))


def test_iteration_0_is_the_behaviour_cloning_cell(tmp_path):
    same = ["--obs-mode", "motion", "--obs-noise", "0.01"]  # --protocol bc alone brings BC_V1's observation
    bc = _config(["--quick", "--models", "mlp", *TINY, "--protocol", "bc", *same])
    dg = _config(["--quick", "--models", "mlp", *TINY, *DAGGER, *same])
    data = cells.prepare_data(bc, tmp_path / "d")
    r_bc = _cell(bc, tmp_path / "bc", data, model="mlp")
    r_dg = _cell(dg, tmp_path / "dg", data, model="mlp")
    assert r_dg["dagger"]["iterations"][0]["train"]["history"] == r_bc["train"]["history"]
    assert r_bc["cell_key"] != r_dg["cell_key"] and "dagger" not in r_bc


def test_cell_keys_of_other_models_ignore_the_new_settings():
    base = PongConfig(protocol="bc")
    for m in ("tnd", "lstm", "mlp"):
        assert cells.cell_key(base, m, 0) == cells.cell_key(PongConfig(protocol="bc", mlp_frames=7), m, 0)
    assert cells.cell_key(base, "mlp_k", 0) != cells.cell_key(PongConfig(protocol="bc", mlp_frames=7), "mlp_k", 0)
    assert cells.cell_key(base, "lstm", 0) != cells.cell_key(PongConfig(protocol="dagger"), "lstm", 0)
    # the TND base enters TND cells only, and v1 not at all (the keys of the runs before the option)
    v1, ctl = PongConfig(tnd_base="v1"), PongConfig(tnd_base="control")
    assert cells.cell_key(v1, "lstm", 0) == cells.cell_key(ctl, "lstm", 0)
    assert cells.cell_key(v1, "tnd", 0) != cells.cell_key(ctl, "tnd", 0)


def test_a_run_folder_from_before_the_new_settings_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pong", "--quick", "--protocol", "bc", "--out", str(out), "--models", "rnn", *TINY]) == 0
    stored = json.loads((out / "config.json").read_text())
    for k in ("protocol", "mlp_frames", "obs_mode", "tnd_base", *dagger_fields()):
        stored.pop(k)
    (out / "config.json").write_text(json.dumps(stored))
    assert main(["pong", "--quick", "--protocol", "bc", "--resume", "--out", str(out), "--models", "rnn", *TINY]) == 0
    assert "1 finished cell(s) kept, 0 to run" in capsys.readouterr().err


def dagger_fields():
    from tnd.apps.pong.config import DAGGER_FIELDS

    return DAGGER_FIELDS


# ----------------------------------------------------------------------------- the references
@pytest.mark.parametrize("name,frames", [("mlp", 1), ("mlp_k", 2), ("mlp_k", 4), ("mlp_k", 9)])
def test_references_step_by_step_equal_their_full_window_outputs(name, frames):
    model = _model(name, mlp_frames=frames)
    x = torch.rand(3, 14, 3)
    with torch.no_grad():
        full, _ = model(x)
        h, ys = None, []
        for t in range(14):
            y, h = model(x[:, t:t + 1], h)
            ys.append(y)
        y1, h1 = model(x[:, :5])
        y2, _ = model(x[:, 5:], h1)
    torch.testing.assert_close(torch.cat(ys, 1), full, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.cat([y1, y2], 1), full, rtol=0, atol=1e-6)
    k = 1 if name == "mlp" else frames
    assert model.frames == k
    # step t sees steps t - k + 1 .. t only
    x2 = x.clone()
    x2[:, 12 - k] += 0.5
    with torch.no_grad():
        out2, _ = model(x2)
    torch.testing.assert_close(out2[:, 12:], full[:, 12:], rtol=0, atol=0)
    assert not torch.allclose(out2[:, 12 - k], full[:, 12 - k])


def test_the_frame_buffer_resets_at_each_serve():
    model = _model("mlp_k", mlp_frames=4)
    x = torch.rand(2, 6, 3)
    with torch.no_grad():
        y, h = model(x)
        y_rep, _ = model(x, x[:, :1].repeat(1, 3, 1))  # reset buffer = the serve's observation repeated
    torch.testing.assert_close(y, y_rep, rtol=0, atol=0)
    assert torch.equal(h, x[:, -3:])
    # evaluation: rounds played together equal rounds played alone (nothing carries over a serve)
    kw = {"max_catches": 3}
    together = play_rounds(model, rounds=4, env_kwargs=kw)
    alone = [play_rounds(model, rounds=1, seed=EVAL_SEED_BASE + i, env_kwargs=kw)["per_round"][0] for i in range(4)]
    assert together["per_round"] == alone
    # DAgger rollouts: the learner's step-by-step actions are those of the whole round from a reset buffer
    data, stats = dagger.collect_rollouts(model, 4, seed=DAGGER_SEED_BASE, env_kwargs=kw, max_steps_per_round=60)
    agree, ofs = 0, 0
    with torch.no_grad():
        for n in data["round_lengths"].tolist():
            logits, _ = model(torch.from_numpy(data["observations"][None, ofs:ofs + n]))
            agree += int((logits[0].argmax(-1).numpy() == data["actions"][ofs:ofs + n]).sum())
            ofs += n
    assert agree / ofs == pytest.approx(stats["learner_agreement"], abs=1e-12)


# ----------------------------------------------------------------------------- bad options
@pytest.mark.parametrize("argv,option", [
    (["--protocol", "pg"], "--protocol"),
    (["--protocol", "dagger", "--dagger-iterations", "0"], "--dagger-iterations"),
    (["--protocol", "dagger", "--dagger-iterations", "x"], "--dagger-iterations"),
    (["--mlp-frames", "0"], "--mlp-frames"),
    (["--mlp-frames", "1.5"], "--mlp-frames"),
    (["--protocol", "bc", "--dagger-rounds", "5"], "--dagger-rounds"),  # a DAgger setting without DAgger
    (["--protocol", "dagger", "--dagger-beta", "1.5"], "--dagger-beta"),
    (["--protocol", "dagger", "--eval-rounds", "6000000"], "--eval-rounds"),
])
def test_bad_values_are_one_line_errors_naming_the_option(tmp_path, capsys, argv, option):
    try:
        rc = main(["pong", "--quick", "--out", str(tmp_path / "run"), *argv])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err and option in err, err
    assert not (tmp_path / "run").exists()


def test_select_iteration_picks_the_best_validation_score_and_ties_go_later():
    recs = [{"iteration": i, "val_closed_loop": {"mean_catches": c}} for i, c in enumerate([1.0, 5.0, 3.0, 5.0, 2.0])]
    assert dagger.select_iteration(recs, "best") == 3
    assert dagger.select_iteration(recs, "last") == 4
    with pytest.raises(ValueError, match="dagger_select"):
        dagger.select_iteration(recs, "first")


def test_the_cell_keeps_the_selected_iterations_weights(tmp_path):
    best = _config(["--quick", "--models", "lstm", *TINY, *DAGGER])
    last = _config(["--quick", "--models", "lstm", *TINY, *DAGGER, "--dagger-select", "last"])
    assert best.dagger_select == "best"
    assert cells.cell_key(best, "lstm", 0) != cells.cell_key(last, "lstm", 0)
    data = cells.prepare_data(best, tmp_path / "d")
    for cfg, name in ((best, "best"), (last, "last")):
        r = _cell(cfg, tmp_path / name, data)
        its = r["dagger"]["iterations"]
        want = dagger.select_iteration(its, name)
        assert r["dagger"]["selected_iteration"] == want
        cell = tmp_path / name / "cells" / "lstm" / "seed-0"
        kept = load_tensors(cell / "model.safetensors")
        chosen = load_tensors(next(cell.glob("dagger-*")) / f"iter-{want}" / "model.safetensors")
        assert all(torch.equal(kept[k], chosen[k]) for k in kept)


# ----------------------------------------------------------------------------- the default protocol
def test_the_default_is_the_dagger_protocol_and_protocol_bc_brings_the_earlier_one(tmp_path):
    from tnd.apps.pong.config import BC_V1

    d = _config([])
    assert (d.protocol, d.obs_mode, d.obs_noise, d.max_steps, d.eval_every, d.patience, d.seeds, d.tnd_base) == \
        ("dagger", "motion", 0.01, 30000, 200, 10, (0, 1, 2, 3, 4), "control")
    bc = _config(["--protocol", "bc"])
    assert {k: getattr(bc, k) for k in BC_V1} == BC_V1
    mixed = _config(["--protocol", "bc", "--max-steps", "777", "--obs-mode", "motion"])  # explicit options win
    assert (mixed.max_steps, mixed.obs_mode, mixed.obs_noise) == (777, "motion", 0.0)
    assert experiment.command_line(bc) == "tnd pong --protocol bc"
    assert experiment.command_line(mixed) == "tnd pong --protocol bc --max-steps 777 --obs-mode motion"
    out = tmp_path / "run"
    assert main(["pong", "--quick", "--out", str(out), "--models", "tnd", "--shifts", "none", *TINY,
                 "--dagger-iterations", "1", "--dagger-rounds", "3", "--dagger-val-rounds", "2"]) == 0
    m = json.loads((out / "cells" / "tnd" / "seed-0" / "metrics.json").read_text())
    assert len(m["dagger"]["iterations"]) == 2 and m["spec"]["input_size"] == 5  # motion observations
    assert {k: m["spec"]["tnd"][k] for k in ("input_fraction", "dynamics_kw", "propagation_steps")} == \
        {"input_fraction": 1.0, "dynamics_kw": {"tau_init": [0.25, 10.0]}, "propagation_steps": 2}


def test_the_report_title_names_the_protocol_and_what_was_compared():
    from tnd.apps.pong.report import report_title

    everything = dict.fromkeys(PongConfig().models)
    assert report_title({"protocol": "dagger"}, everything) == \
        "Single-player Pong, DAgger: TND against five baselines and two non-recurrent references"
    assert report_title({"protocol": "bc"}, dict.fromkeys(["tnd", "lstm"])) == \
        "Single-player Pong, behaviour cloning: TND against one baseline"
    assert report_title({"protocol": "bc"}, dict.fromkeys(["mlp"])) == \
        "Single-player Pong, behaviour cloning: models against one non-recurrent reference"
