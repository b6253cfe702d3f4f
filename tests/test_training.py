"""The shared training loop (tnd.apps.training.train_loop): early stopping ends training at the
documented step and restores the best weights; a non-finite loss or gradient stops it before the
optimiser step and keeps the last good checkpoint; a killed run resumes bit-identically; the
batch sources draw every index once per epoch, in a seeded order."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from tnd.apps.checkpoint import MANIFEST_NAME, CheckpointError, NonFiniteError
from tnd.apps.training import (
    EarlyStopping,
    NumpyPermutationBatches,
    TorchPermutationBatches,
    clip_gradients,
    train_loop,
)

N = 20


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 4, generator=g), torch.randn(N, 2, generator=g)


def _model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _mse_validation(x, y):
    def validate(m):
        with torch.no_grad():
            return {"loss": float((m(x) - y).pow(2).mean())}
    return validate


def _run(model=None, scores=None, *, batches=None, max_steps=30, eval_every=3, patience=2, mode="min",
         loss_fn=None, **kw):
    """Train a small MLP; ``scores``: a synthetic validation curve (one value per validation)."""
    x, y = _data()
    model = model if model is not None else _model()
    if scores is None:
        validate = _mse_validation(x, y)
    else:
        it = iter(scores)
        validate = lambda m: {"loss": next(it)}  # noqa: E731
    res = train_loop(model, batches=batches or TorchPermutationBatches(N, 6, seed=3),
                     loss_fn=loss_fn or (lambda m, idx: (m(x[idx]) - y[idx]).pow(2).mean()),
                     validate=validate, max_steps=max_steps, eval_every=eval_every,
                     early_stopping=EarlyStopping(monitor="loss", mode=mode, patience=patience), **kw)
    return model, res


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- early stopping ------------------------------------------------------------------------

@pytest.mark.parametrize("mode, sign", [("min", 1.0), ("max", -1.0)])
def test_early_stopping_ends_at_documented_step_and_restores_best_weights(mode, sign):
    # validations at steps 3, 6, 9, ...: improvements up to step 9, then a tie and a worse score
    # (patience 2) -> training ends at step 15 and the weights of step 9 are restored
    scores = [sign * s for s in (5.0, 4.0, 3.0, 3.0, 3.5, 1.0, 1.0)]
    model, snaps = _model(), {}
    res = _run(model, scores, mode=mode, step_hook=lambda s: snaps.__setitem__(s, _weights(model)))[1]
    assert res["stop_step"] == 15 and res["stopped_early"] is True
    assert res["best_step"] == 9 and res["best_score"] == sign * 3.0 and res["best_val"] == {"loss": sign * 3.0}
    assert [h["step"] for h in res["history"]] == [3, 6, 9, 12, 15]
    assert [h["val_loss"] for h in res["history"]] == scores[:5]
    assert max(snaps) == 15  # no step after the stop
    assert _equal(_weights(model), snaps[9]) and not _equal(_weights(model), snaps[15])


def test_budget_ends_training_with_a_last_validation():
    model, res = _run(max_steps=10, eval_every=4, patience=5)
    assert res["stop_step"] == 10 and res["stopped_early"] is False
    assert [h["step"] for h in res["history"]] == [4, 8, 10]  # every eval_every steps and after the last


def test_nonfinite_best_replaced_only_when_asked():
    nan = float("nan")
    for replace, stop_step, best_step in ((False, 6, 0), (True, 12, 12)):
        x, y = _data()
        it = iter([nan] * 4)
        res = train_loop(_model(), batches=TorchPermutationBatches(N, 6, seed=3),
                         loss_fn=lambda m, idx: (m(x[idx]) - y[idx]).pow(2).mean(),
                         validate=lambda m: {"loss": next(it)}, max_steps=12, eval_every=3,
                         early_stopping=EarlyStopping(patience=2, replace_nonfinite_best=replace))
        # a NaN score is never better; only with replace_nonfinite_best does it replace a
        # non-finite best (so it counts as an improvement and training never stops early)
        assert (res["stop_step"], res["best_step"], res["stopped_early"]) == (stop_step, best_step, not replace)
        assert (res["best_val"] is None) == (not replace)


def test_mean_and_last_train_loss_reach_the_history():
    losses = []
    x, y = _data()

    def loss_fn(m, idx):
        loss = (m(x[idx]) - y[idx]).pow(2).mean()
        losses.append(float(loss.detach()))
        return loss

    res = _run(loss_fn=loss_fn, max_steps=6, eval_every=3, patience=5,
               record=lambda step, mean, last, val: {"step": step, "mean": mean, "last": last})[1]
    assert res["history"][0] == {"step": 3, "mean": sum(losses[:3]) / 3, "last": losses[2]}
    assert res["history"][1] == {"step": 6, "mean": sum(losses[3:6]) / 3, "last": losses[5]}
    assert res["last_loss"] == losses[5]


# ---- non-finite loss and gradients ---------------------------------------------------------

def _nan_loss_at(call):
    """The MSE loss, NaN on its ``call``-th call; returns it and the list its calls append to."""
    x, y = _data()
    calls = []

    def loss_fn(m, idx):
        calls.append(1)
        loss = (m(x[idx]) - y[idx]).pow(2).mean()
        return loss * float("nan") if len(calls) == call else loss
    return loss_fn, calls


def test_nonfinite_loss_stops_before_the_step_and_keeps_last_good_checkpoint(tmp_path):
    loss_fn, calls = _nan_loss_at(8)

    model, snaps = _model(), {}
    with pytest.raises(NonFiniteError, match="non-finite training loss .* at step 8") as ei:
        _run(model, loss_fn=loss_fn, checkpoint_dir=tmp_path / "ck", checkpoint_every=3,
             progress=lambda s, info: snaps.__setitem__(s, _weights(model)))
    assert ei.value.step == 8
    assert json.loads((tmp_path / "ck" / MANIFEST_NAME).read_text())["step"] == 6  # the last good one
    assert _equal(_weights(model), snaps[7])  # step 8 changed nothing


def test_nonfinite_gradients_stop_before_the_optimiser_step(tmp_path):
    model, snaps = _model(), {}
    real = clip_gradients(1.0)

    def grad_norm(m):
        n = real(m)
        return n * float("inf") if len(snaps) == 4 else n

    with pytest.raises(NonFiniteError, match=r"non-finite gradients \(norm inf\) at update 5") as ei:
        _run(model, grad_norm=grad_norm, step_word="update", checkpoint_dir=tmp_path / "ck", checkpoint_every=2,
             progress=lambda s, info: snaps.__setitem__(s, _weights(model)))
    assert ei.value.step == 5
    assert json.loads((tmp_path / "ck" / MANIFEST_NAME).read_text())["step"] == 4
    assert _equal(_weights(model), snaps[4])


def test_on_nonfinite_stop_ends_training_there_with_the_best_weights(tmp_path):
    """The divergence rule: a NaN loss at step 8 ends training after step 7 with the best
    weights (validations at 3 and 6), ``diverged_at`` 8, not an early stop and not the budget;
    the stopped checkpoint resumes to the same result without training again."""
    loss_fn, calls = _nan_loss_at(8)

    model = _model()
    _, res = _run(model, loss_fn=loss_fn, patience=50, on_nonfinite="stop", checkpoint_dir=tmp_path / "ck",
                  checkpoint_every=100)
    assert (res["stop_step"], res["diverged_at"], res["stopped_early"]) == (7, 8, False)
    assert res["best_step"] in (3, 6) and [h["step"] for h in res["history"]] == [3, 6]
    assert _equal(_weights(model), res["best_state"])
    assert json.loads((tmp_path / "ck" / MANIFEST_NAME).read_text())["step"] == 7
    n = len(calls)
    again = _model()
    _, res2 = _run(again, loss_fn=loss_fn, patience=50, on_nonfinite="stop", checkpoint_dir=tmp_path / "ck",
                   checkpoint_every=100, resume=True)
    assert len(calls) == n  # nothing trained: the checkpoint says training ended
    assert (res2["resumed_from"], res2["stop_step"], res2["diverged_at"]) == (7, 7, 8)
    assert res2["best_step"] == res["best_step"] and _equal(_weights(again), _weights(model))
    # a divergence before the first validation keeps the initial weights and has no best scores
    init = _weights(_model())
    _, res3 = _run(loss_fn=lambda m, idx: torch.tensor(float("inf"), requires_grad=True), on_nonfinite="stop")
    assert (res3["stop_step"], res3["diverged_at"], res3["best_val"]) == (0, 1, None)
    assert _equal(res3["best_state"], init)
    # the same gradient-norm divergence with the default rule still raises
    with pytest.raises(NonFiniteError):
        _run(loss_fn=lambda m, idx: torch.tensor(float("inf"), requires_grad=True))


def test_on_nonfinite_is_checked():
    with pytest.raises(ValueError, match="on_nonfinite: expected one of 'raise', 'stop', got 'skip'"):
        _run(on_nonfinite="skip")


# ---- resume --------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["torch", "numpy"])
@pytest.mark.parametrize("kill_at", [1, 3])
def test_killed_run_resumes_bit_identical(tmp_path, die_after_checkpoint, source, kill_at):
    def batches():
        return (TorchPermutationBatches(N, 6, seed=3) if source == "torch"
                else NumpyPermutationBatches(N, 6, seed=3))

    def run(ck):
        model = _model()
        _, res = _run(model, batches=batches(), max_steps=25, eval_every=4, patience=3, seed=5,
                   checkpoint_dir=ck, checkpoint_every=3, resume=True,
                   loss_fn=_dropout_loss(*_data()))
        return model, res

    ref_model, ref = run(None)
    saves = die_after_checkpoint.run_killed(lambda: run(tmp_path / "ck"), kill_at)
    (model, res), loads = die_after_checkpoint.run_resumed(lambda: run(tmp_path / "ck"))
    assert loads == [saves[-1]] == [3 * kill_at]
    assert res["resumed_from"] == 3 * kill_at and ref["resumed_from"] is None
    assert res["wall_before_resume_s"] > 0.0 and ref["wall_before_resume_s"] == 0.0
    assert res["wall_time_s"] >= res["wall_before_resume_s"]
    for k in ("history", "stop_step", "stopped_early", "best_step", "best_score", "best_val", "last_loss"):
        assert res[k] == ref[k], k
    assert _equal(_weights(model), _weights(ref_model))


def _dropout_loss(x, y):
    """A loss that draws from the global torch RNG (dropout), so a resume must restore it too."""
    def loss_fn(m, idx):
        return (m(nn.functional.dropout(x[idx], 0.3)) - y[idx]).pow(2).mean()
    return loss_fn


def test_resume_refuses_another_loop_state_and_leaves_model_untouched(tmp_path):
    ck = tmp_path / "ck"
    _run(max_steps=6, checkpoint_dir=ck, checkpoint_every=3)
    man = json.loads((ck / MANIFEST_NAME).read_text())
    man["state"]["batches"]["pos"] = -2  # the loop state is not covered by the tensors' hash
    (ck / MANIFEST_NAME).write_text(json.dumps(man))
    model = _model()
    before = _weights(model)
    with pytest.raises(CheckpointError, match=r"is not a tnd\.apps\.training checkpoint .*pos"):
        _run(model, max_steps=6, checkpoint_dir=ck, checkpoint_every=3, resume=True)
    assert _equal(_weights(model), before)


def test_resume_of_a_finished_run_trains_no_further(tmp_path):
    ck = tmp_path / "ck"
    m1, r1 = _run(max_steps=9, checkpoint_dir=ck, checkpoint_every=3)
    calls = []
    m2, r2 = _run(max_steps=9, checkpoint_dir=ck, checkpoint_every=3, resume=True,
                  on_update=calls.append)
    assert calls == [] and r2["stop_step"] == r1["stop_step"] == 9 and r2["history"] == r1["history"]
    assert _equal(_weights(m1), _weights(m2))


# ---- batch sources and arguments -----------------------------------------------------------

@pytest.mark.parametrize("cls", [TorchPermutationBatches, NumpyPermutationBatches])
def test_batches_cover_each_epoch_once_in_a_seeded_order(cls):
    a, b = cls(10, 3, seed=7), cls(10, 3, seed=7)
    draws = [a.next() for _ in range(9)]
    assert all(torch.equal(d, b.next()) and d.dtype == torch.int64 for d in draws)
    # 3 full batches per epoch of 10 (the last index of each permutation is left out)
    for e in range(3):
        ep = torch.cat(draws[3 * e:3 * e + 3])
        assert len(set(ep.tolist())) == 9
    assert not torch.equal(torch.cat(draws[:3]), torch.cat(draws[3:6]))
    c = cls(10, 3, seed=8)
    assert not all(torch.equal(d, c.next()) for d in draws[:3])


def test_batch_larger_than_the_data_is_the_whole_permutation():
    b = TorchPermutationBatches(4, 10, seed=0)
    assert sorted(b.next().tolist()) == [0, 1, 2, 3]
    assert sorted(b.next().tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("kw, match", [
    ({"max_steps": -1}, "max_steps"),
    ({"max_steps": 2.5}, "max_steps"),
    ({"eval_every": 0}, "eval_every"),
    ({"eval_every": True}, "eval_every"),
    ({"checkpoint_dir": "x", "checkpoint_every": 0}, "checkpoint_every"),
    ({"checkpoint_dir": "x", "step_hook": print}, "step_hook cannot be combined"),
])
def test_bad_arguments_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        _run(**kw)


def test_bad_early_stopping_refused():
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="lowest")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    for bad in (-0.1, 1.0, True, "0.1"):
        with pytest.raises(ValueError, match="min_rel_delta"):
            EarlyStopping(min_rel_delta=bad)
    for bad in (-1e-4, math.inf, math.nan, True, "0.1"):
        with pytest.raises(ValueError, match="min_abs_delta"):
            EarlyStopping(min_abs_delta=bad)


def test_min_rel_delta_ignores_small_improvements():
    """An improvement must beat the best by more than min_rel_delta of its magnitude; 0 keeps any."""
    es = EarlyStopping(mode="min", min_rel_delta=0.01)
    assert es.improved(0.98, 1.0) and not es.improved(0.995, 1.0) and not es.improved(-0.995, -1.0)
    assert es.improved(5.0, math.inf)  # the first validation always counts
    up = EarlyStopping(mode="max", min_rel_delta=0.01)
    assert up.improved(1.02, 1.0) and not up.improved(1.005, 1.0)
    assert EarlyStopping(mode="min").improved(0.9999, 1.0) and not EarlyStopping(mode="min").improved(1.0, 1.0)
    with pytest.raises(TypeError, match="early_stopping"):
        train_loop(_model(), batches=TorchPermutationBatches(N, 6, seed=0), loss_fn=None, validate=None,
                   max_steps=1, eval_every=1, early_stopping={"patience": 2})


def test_min_abs_delta_is_a_floor_under_the_relative_margin():
    """Near zero the relative margin vanishes; the absolute floor still refuses noise-sized steps,
    and far from zero the larger (relative) margin decides."""
    es = EarlyStopping(mode="min", min_rel_delta=0.01, min_abs_delta=3e-4)
    assert not es.improved(1.0e-5, 2.0e-4) and es.improved(1.0e-4, 5.0e-4)  # 1.9e-4 < 3e-4 < 4e-4
    assert not es.improved(0.995, 1.0) and es.improved(0.98, 1.0)
    assert es.improved(7.0, math.inf)
    assert EarlyStopping(mode="max", min_abs_delta=0.5).improved(2.6, 2.0)
    assert not EarlyStopping(mode="max", min_abs_delta=0.5).improved(2.4, 2.0)
    # the training loop stops a model whose validation loss creeps down by less than the floor
    scores = iter([1e-3 - 1e-5 * i for i in range(100)])
    r = train_loop(_model(), batches=TorchPermutationBatches(N, 6, seed=0),
                   loss_fn=lambda m, idx: m(torch.zeros(1, 4)).sum() * 0, validate=lambda m: {"loss": next(scores)},
                   max_steps=50, eval_every=1, early_stopping=EarlyStopping(patience=3, min_abs_delta=1e-4))
    assert r["stopped_early"] and r["best_step"] == 1 and r["stop_step"] == 4


def test_numpy_batches_match_the_suite_protocol():
    # the suite's historical order: default_rng(seed).permutation per epoch, batches of bs
    rng = np.random.default_rng(4)
    perm = rng.permutation(10)
    b = NumpyPermutationBatches(10, 4, seed=4)
    assert b.next().tolist() == perm[:4].tolist() and b.next().tolist() == perm[4:8].tolist()
    assert b.next().tolist() == rng.permutation(10)[:4].tolist()


# ---- checkpoints written before the shared loop (the adapters' layouts) --------------------

def _to_legacy(ck, convert):
    man = json.loads((ck / MANIFEST_NAME).read_text())
    assert man["state"]["loop"] == "tnd.training/1"
    man["state"] = convert(man["state"])  # the loop state is in the manifest, not in the hash
    (ck / MANIFEST_NAME).write_text(json.dumps(man))


def test_pong_checkpoint_of_the_former_loop_resumes_bit_identical(tmp_path, die_after_checkpoint):
    from tnd.apps.pong.models import build_model
    from tnd.apps.pong.train import train_model

    g = torch.Generator().manual_seed(0)
    X, Y = torch.rand(24, 10, 3, generator=g), torch.randint(0, 3, (24, 10), generator=g)

    def run(ck):
        torch.manual_seed(1)
        m = build_model("tnd", 3, 3, 300, window=10)[0]
        r = train_model(m, X[:16], Y[:16], X[16:], Y[16:], max_steps=20, batch_size=5, eval_every=4, seed=2,
                        checkpoint_dir=ck, checkpoint_every=3, resume=True)
        r.pop("train_time_s")
        return m, r

    ref_m, ref = run(None)
    ck = tmp_path / "ck"
    die_after_checkpoint.run_killed(lambda: run(ck), 3)
    _to_legacy(ck, lambda st: {
        "pos": st["batches"]["pos"], "run_loss": st["run_loss"], "run_n": st["run_n"], "bad": st["bad"],
        "stopped": st["stopped"], "history": st["history"], "best_val_loss": st["best_score"],
        "best_step": st["best_step"], "best_acc": st["best_val"]["accuracy"], "train_time_s": st["wall_time_s"]})
    (m, r), loads = die_after_checkpoint.run_resumed(lambda: run(ck))
    assert loads == [9] and r == ref
    assert _equal(_weights(m), _weights(ref_m))


def test_suite_checkpoint_of_the_former_loop_resumes_bit_identical(tmp_path, die_after_checkpoint):
    from tnd.apps.suite import build_model
    from tnd.apps.suite.train import TrainConfig, train_and_evaluate
    from tnd.apps.tasks import load_task

    task = load_task("multiscale", small=True)
    # the former loop watched the metric (its state's best_metric), so its checkpoints mean that
    cfg = TrainConfig(max_updates=12, batch_size=8, eval_every=4, patience=10, max_val=8, max_test=8, monitor="metric")

    def run(ck):
        torch.manual_seed(0)
        m, _ = build_model("lstm", task.input_size, task.output_size, 300, seq_len=task.seq_len)
        r = train_and_evaluate(m, task, cfg, seed=3, checkpoint_dir=ck, checkpoint_every=2, resume=True)
        for k in ("train_time_s", "eval_time_s", "sec_per_update"):
            r.pop(k)
        return m, r

    ref_m, ref = run(None)
    ck = tmp_path / "ck"
    die_after_checkpoint.run_killed(lambda: run(ck), 3)
    _to_legacy(ck, lambda st: {
        "numpy_rng": st["batches"]["numpy_rng"], "pos": st["batches"]["pos"], "best_metric": st["best_score"],
        "best_update": st["best_step"], "bad_evals": st["bad"], "history": st["history"],
        "last_loss": st["last_loss"], "stopped_early": st["stopped"], "train_time_s": st["train_time_s"],
        "eval_time_s": st["eval_time_s"]})
    (m, r), loads = die_after_checkpoint.run_resumed(lambda: run(ck))
    assert loads == [6] and r == ref
    assert _equal(_weights(m), _weights(ref_m))
