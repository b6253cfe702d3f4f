"""Training checkpoints: a SIGKILLed run resumes bit-identically; damaged, foreign and pickle
checkpoints are refused with a clear error and never overwritten; non-finite loss/gradients stop
the run naming the step and keep the last good checkpoint."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tnd.apps.checkpoint import (
    MANIFEST_NAME,
    CheckpointError,
    flatten_optimizer_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from tnd.io import load_tensors
from tnd.apps.pong.models import build_model
from tnd.apps.pong.train import NonFiniteError, train_model

KW = {"max_steps": 24, "batch_size": 5, "eval_every": 4, "seed": 2}
METRIC_KEYS = ("history", "best_step", "best_val_loss", "val_accuracy", "steps", "stopped_early")


def _data():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(24, 10, 3, generator=g)
    Y = torch.randint(0, 3, (24, 10), generator=g)
    return X[:16].clone(), Y[:16].clone(), X[16:].clone(), Y[16:].clone()


def _model(name="tnd", budget=300):
    torch.manual_seed(1)
    return build_model(name, 3, 3, budget, window=10)[0]


def _train(ckdir=None, model=None, data=None, **kw):
    model = model if model is not None else _model()
    args = {**KW, **kw}
    res = train_model(model, *(data or _data()), checkpoint_dir=ckdir, **args)
    return model, res


def _same(m1, r1, m2, r2):
    for k in METRIC_KEYS:
        assert r1[k] == r2[k], k
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


@pytest.fixture(scope="module")
def reference():
    torch.set_num_threads(1)
    return _train()


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _tensors_file(d: Path) -> Path:
    return d / json.loads((d / MANIFEST_NAME).read_text())["tensors_file"]


# ---- resume ---------------------------------------------------------------------------------

SCRIPT = textwrap.dedent("""
    import json, sys, time, torch
    torch.set_num_threads(1)
    from tnd.io import save_tensors
    from tnd.apps.pong.models import build_model
    from tnd.apps.pong.train import train_model
    ckdir, out, resume, sleep = sys.argv[1], sys.argv[2], sys.argv[3] == "1", float(sys.argv[4])
    g = torch.Generator().manual_seed(0)
    X = torch.rand(24, 10, 3, generator=g); Y = torch.randint(0, 3, (24, 10), generator=g)
    torch.manual_seed(1)
    model = build_model("tnd", 3, 3, 300, window=10)[0]
    res = train_model(model, X[:16].clone(), Y[:16].clone(), X[16:].clone(), Y[16:].clone(),
                      max_steps=24, batch_size=5, eval_every=4, seed=2,
                      checkpoint_dir=ckdir, checkpoint_every=3, resume=resume,
                      progress=lambda step, info: time.sleep(sleep))
    save_tensors(out + "/model.safetensors", model.state_dict())
    res.pop("train_time_s")
    open(out + "/metrics.json", "w").write(json.dumps(res))
""")


def test_sigkilled_run_resumes_bit_identical(tmp_path, reference, sigkill_after_checkpoint):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    ck, out = tmp_path / "ck", tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(ck), str(out), "0", "0.15"])
    killed_at = sigkill_after_checkpoint(proc, ck, 6, 40)
    assert not (out / "metrics.json").exists()
    assert 6 <= killed_at < KW["max_steps"]

    subprocess.run([sys.executable, str(script), str(ck), str(out), "1", "0"], check=True, timeout=60)
    m_ref, r_ref = reference
    res = json.loads((out / "metrics.json").read_text())
    for k in METRIC_KEYS:
        assert res[k] == json.loads(json.dumps(r_ref[k])), k
    w = load_tensors(out / "model.safetensors")
    ref = m_ref.state_dict()
    assert w.keys() == ref.keys() and all(torch.equal(w[k], ref[k]) for k in ref)


def test_in_process_resume_at_every_checkpoint_matches(tmp_path, reference):
    class Stop(Exception):
        pass

    for stop_at in (5, 13):  # after a checkpoint and between checkpoints, across an epoch boundary
        ck = tmp_path / f"ck{stop_at}"

        def progress(step, info, stop_at=stop_at):
            if step == stop_at:
                raise Stop

        with pytest.raises(Stop):
            _train(ck, checkpoint_every=3, progress=progress)
        m, r = _train(ck, checkpoint_every=3, resume=True)
        _same(m, r, *reference)
        m2, r2 = _train(ck, checkpoint_every=3, resume=True)  # resuming a finished run changes nothing
        _same(m2, r2, *reference)


def test_resume_with_early_stopping(tmp_path):
    kw = {"max_steps": 40, "eval_every": 2, "patience": 1, "lr": 0.3}
    m0, r0 = _train(**kw)
    assert r0["stopped_early"] and r0["steps"] < 40

    class Stop(Exception):
        pass

    def progress(step, info):
        if step == r0["steps"] - 1:
            raise Stop

    ck = tmp_path / "ck"
    with pytest.raises(Stop):
        _train(ck, checkpoint_every=1, progress=progress, **kw)
    m, r = _train(ck, checkpoint_every=1, resume=True, **kw)
    _same(m, r, m0, r0)


def test_default_run_unchanged_by_checkpointing(tmp_path, reference):
    m, r = _train(tmp_path / "ck", checkpoint_every=5)
    _same(m, r, *reference)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [MANIFEST_NAME, "ckpt-000000024.safetensors"]


def test_adam_state_roundtrips_exactly():
    m = _model("lstm", 300)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for _ in range(3):
        opt.zero_grad()
        m(torch.rand(2, 4, 3))[0].square().mean().backward()
        opt.step()
    t, meta = flatten_optimizer_state(opt)
    json.dumps(meta)
    opt2 = torch.optim.Adam(m.parameters(), lr=1.0)
    opt2.load_state_dict(unflatten_optimizer_state(t, json.loads(json.dumps(meta))))
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for k, v in a["state"][i].items():
            assert torch.equal(v, b["state"][i][k]) and v.dtype == b["state"][i][k].dtype


# ---- refused checkpoints, never overwritten -------------------------------------------------

@pytest.fixture
def good_ckpt(tmp_path):
    ck = tmp_path / "ck"
    _train(ck, checkpoint_every=4, max_steps=8)
    return ck


@pytest.mark.parametrize("damage, match", [
    ("truncate", "truncated"),
    ("flip", "corrupted"),
    ("header", "not a safetensors file"),
    ("manifest", "not valid JSON"),
    ("missing", "missing"),
])
def test_damaged_checkpoint_refused_and_kept(good_ckpt, damage, match):
    tf = _tensors_file(good_ckpt)
    data = bytearray(tf.read_bytes())
    if damage == "truncate":
        tf.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "flip":
        for i in (len(data) // 2, len(data) - 3):
            data[i] ^= 0xFF
        tf.write_bytes(bytes(data))
    elif damage == "header":
        data[:8] = b"\xff" * 8
        tf.write_bytes(bytes(data))
    elif damage == "manifest":
        mp = good_ckpt / MANIFEST_NAME
        mp.write_bytes(mp.read_bytes()[:40])
    else:
        tf.unlink()
    before = _snapshot(good_ckpt)
    with pytest.raises(CheckpointError, match=match):
        _train(good_ckpt, checkpoint_every=4, max_steps=8, resume=True)
    assert _snapshot(good_ckpt) == before  # the run wrote nothing over it


@pytest.mark.parametrize("other, kw, match", [
    (("tnd", 600), {}, r"shapes\..*checkpoint \[\[\d+, 2\]"),
    (("lstm", 300), {}, r"class: checkpoint 'TND'|class: checkpoint '.*' vs this run"),
    (("tnd", 300), {"seed": 5}, r"train\.seed: checkpoint 2 vs this run 5"),
    (("tnd", 300), {"lr": 1e-2}, r"train\.lr"),
])
def test_checkpoint_for_another_model_or_config_refused(good_ckpt, other, kw, match):
    before = _snapshot(good_ckpt)
    with pytest.raises(CheckpointError, match="another model or configuration") as ei:
        _train(good_ckpt, model=_model(*other), checkpoint_every=4, max_steps=8, resume=True, **kw)
    import re

    assert re.search(match, str(ei.value)), str(ei.value)
    assert _snapshot(good_ckpt) == before


def test_other_training_data_refused(good_ckpt):
    Xt, Yt, Xv, Yv = _data()
    Yt = (Yt + 1) % 3
    with pytest.raises(CheckpointError, match="train_data_sha256"):
        _train(good_ckpt, data=(Xt, Yt, Xv, Yv), checkpoint_every=4, max_steps=8, resume=True)


class _Evil:
    def __reduce__(self):
        return (os.mkdir, (os.environ["TND_EVIL_MARKER"],))


@pytest.mark.parametrize("target", ["tensors", "manifest"])
def test_pickle_offered_as_checkpoint_refused_without_unpickling(good_ckpt, tmp_path, monkeypatch, target):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("TND_EVIL_MARKER", str(marker))
    path = _tensors_file(good_ckpt) if target == "tensors" else good_ckpt / MANIFEST_NAME
    torch.save({"weights": _model().state_dict(), "evil": _Evil()}, path)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(good_ckpt, model=_model())
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError, match="pickle"):
        _train(good_ckpt, checkpoint_every=4, max_steps=8, resume=True)
    assert not marker.exists()


def test_crash_while_writing_keeps_previous_checkpoint(good_ckpt, monkeypatch):
    import safetensors.torch as st

    before = _snapshot(good_ckpt)

    def torn_write(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 100)
        raise OSError("disk died")

    monkeypatch.setattr(st, "save_file", torn_write)
    m = _model()
    with pytest.raises(OSError, match="disk died"):
        save_checkpoint(good_ckpt, step=99, model=m, optimizer=torch.optim.Adam(m.parameters()))
    assert _snapshot(good_ckpt) == before
    assert load_checkpoint(good_ckpt, model=_model(), restore_global_rng=False)["step"] == 8


# ---- non-finite loss / gradients ------------------------------------------------------------

def test_nan_in_data_stops_at_step_one():
    Xt, Yt, Xv, Yv = _data()
    Xt[:, 3, 1] = float("nan")

    class Linear(torch.nn.Module):  # TND and the baselines refuse NaN input up front; this one does not
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def forward(self, x, hx=None):
            return self.lin(x), None

    torch.manual_seed(0)
    with pytest.raises(NonFiniteError, match="non-finite training loss .* at step 1") as ei:
        _train(model=Linear(), data=(Xt, Yt, Xv, Yv))
    assert ei.value.step == 1 and isinstance(ei.value, ValueError)


def test_nan_weights_stop_naming_step_and_keep_last_good_checkpoint(tmp_path):
    ck = tmp_path / "ck"
    model = _model()

    def poison(step, info):
        if step == 7:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    with pytest.raises(NonFiniteError, match="at step 8") as ei:
        _train(ck, model=model, checkpoint_every=3, progress=poison)
    assert ei.value.step == 8
    man = json.loads((ck / MANIFEST_NAME).read_text())
    assert man["step"] == 6
    fresh = _model()
    load_checkpoint(ck, model=fresh, restore_global_rng=False)
    assert all(torch.isfinite(p).all() for p in fresh.parameters())


def test_infinite_gradients_stop_naming_step(tmp_path):
    for clip in (1.0, 0.0):
        model = _model()

        def blow_up(step, info, model=model):
            if step == 4:
                for p in model.parameters():
                    p.register_hook(lambda g: g * float("inf"))

        ck = tmp_path / f"ck{clip}"
        with pytest.raises(NonFiniteError, match=r"non-finite gradients .* at step 5"):
            _train(ck, model=model, checkpoint_every=2, progress=blow_up, grad_clip=clip)
        assert json.loads((ck / MANIFEST_NAME).read_text())["step"] == 4


# ---- the Pong experiment's --checkpoint-every ------------------------------------------------

def test_pong_cell_with_checkpoints_equals_cell_without(tmp_path, die_after_checkpoint):
    pytest.importorskip("gymnasium")
    import argparse
    import dataclasses

    from tnd.apps.pong import experiment

    p = argparse.ArgumentParser()
    experiment.add_arguments(p)
    tiny = ["--quick", "--models", "lstm", "--max-steps", "6", "--eval-every", "2", "--eval-rounds", "2",
            "--demo-rounds", "6", "--demo-steps-per-round", "60", "--no-progress"]
    cfg = experiment.config_from_args(p.parse_args(tiny))
    cfg_ck = experiment.config_from_args(p.parse_args([*tiny, "--checkpoint-every", "2", "--resume"]))
    assert cfg_ck.checkpoint_every == 2 and cfg.checkpoint_every == 0
    assert experiment.cell_key(cfg, "lstm", 0) == experiment.cell_key(cfg_ck, "lstm", 0)
    data = experiment.prepare_data(cfg, tmp_path / "d")
    a = experiment.run_cell(dataclasses.asdict(cfg), "lstm", 0, str(data), str(tmp_path / "a"))
    def run():
        return experiment.run_cell(dataclasses.asdict(cfg_ck), "lstm", 0, str(data), str(tmp_path / "b"))

    # the cell "dies" right after its second checkpoint
    assert die_after_checkpoint.run_killed(run, 2) == [2, 4]
    assert not (tmp_path / "b" / "cells" / "lstm" / "seed-0" / "metrics.json").exists()
    b, loads = die_after_checkpoint.run_resumed(run)
    assert loads == [4]  # it resumed from the killed cell's last checkpoint
    for k in METRIC_KEYS:
        assert a["train"][k] == b["train"][k], k
    assert a["eval"] == b["eval"]
    cell = tmp_path / "b" / "cells" / "lstm" / "seed-0"
    assert not list(cell.glob("train-ckpt-*"))  # removed once the cell is done
    wa = load_tensors(tmp_path / "a" / "cells" / "lstm" / "seed-0" / "model.safetensors")
    wb = load_tensors(cell / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- everything is checked before anything is loaded ----------------------------------------

def _rewrite(ck: Path, tensors=None, manifest=None) -> None:
    """Edit a checkpoint and re-seal it (size and hash updated), as a bug or a hand-edit would."""
    import hashlib

    from safetensors.torch import load_file

    from tnd.io import save_tensors

    mp = ck / MANIFEST_NAME
    man = json.loads(mp.read_text())
    tf = ck / man["tensors_file"]
    if tensors is not None:
        t = load_file(str(tf))
        tensors(t)
        save_tensors(tf, t)
        man["tensors_bytes"] = tf.stat().st_size
        man["tensors_sha256"] = hashlib.sha256(tf.read_bytes()).hexdigest()
    if manifest is not None:
        manifest(man)
    mp.write_text(json.dumps(man))


def _trained_pair():
    """A model and an Adam optimiser with state, unlike the checkpoint's."""
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    opt.zero_grad()
    model(torch.rand(2, 10, 3))[0].square().mean().backward()
    opt.step()
    return model, opt


def _snap(model, opt):
    import copy

    return ({k: v.clone() for k, v in model.state_dict().items()}, copy.deepcopy(opt.state_dict()),
            torch.get_rng_state().clone())


def _unchanged(before, model, opt):
    m0, o0, r0 = before
    m1, o1 = model.state_dict(), opt.state_dict()
    assert m0.keys() == m1.keys() and all(torch.equal(m0[k], m1[k]) and m0[k].dtype == m1[k].dtype for k in m0)
    assert o0["param_groups"] == o1["param_groups"]
    assert o0["state"].keys() == o1["state"].keys()
    for i in o0["state"]:
        assert o0["state"][i].keys() == o1["state"][i].keys()
        assert all(torch.equal(o0["state"][i][k], o1["state"][i][k]) for k in o0["state"][i])
    assert torch.equal(r0, torch.get_rng_state())


def _set(path, value):
    def edit(man):
        d = man
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


@pytest.mark.parametrize("edit, match", [
    (_set(["step"], "x"), r"field 'step' must be a non-negative int, got 'x'"),
    (_set(["step"], -1), r"field 'step'"),
    (_set(["step"], True), r"field 'step'"),
    (_set(["tensors_bytes"], "12"), r"field 'tensors_bytes'"),
    (_set(["tensors_sha256"], 5), r"field 'tensors_sha256'"),
    (_set(["tensors_file"], 3), r"field 'tensors_file'"),
    (_set(["fingerprint"], []), r"field 'fingerprint' must be a JSON object"),
    (_set(["state"], "x"), r"field 'state' must be a JSON object"),
    (_set(["optimizer"], []), r"field 'optimizer' must be a JSON object or null"),
    (_set(["optimizer"], None), r"holds no optimizer state"),
    (_set(["optimizer", "param_groups"], {}), r"optimizer\.param_groups"),
    (_set(["optimizer", "state_ids"], "0"), r"optimizer\.state_ids"),
    (_set(["optimizer", "state_ids"], [0, 999]), r"optimizer\.state_ids"),
    (_set(["optimizer", "scalars"], {"x": 1}), r"optimizer\.scalars"),
    (lambda m: m["optimizer"]["param_groups"][0].update(lr="x"), r"param_groups\[0\]\.lr"),
    (lambda m: m["optimizer"]["param_groups"][0].update(lr=-1.0), r"param_groups\[0\]\.lr"),
    (lambda m: m["optimizer"]["param_groups"][0].update(eps="tiny"), r"param_groups\[0\]\.eps"),
    (lambda m: m["optimizer"]["param_groups"][0].update(amsgrad=1), r"param_groups\[0\]\.amsgrad"),
    (lambda m: m["optimizer"]["param_groups"][0].update(betas={"__tuple__": [0.9]}), r"param_groups\[0\]\.betas"),
    (lambda m: m["optimizer"]["param_groups"][0].update(params=[0]), r"parameter groups do not match"),
    (lambda m: m["optimizer"]["param_groups"].append({"params": []}), r"parameter groups do not match"),
    (lambda m: m["optimizer"]["param_groups"][0]["params"].__setitem__(1, 0), r"lists a parameter twice"),
])
def test_bad_manifest_field_refused_before_loading(good_ckpt, edit, match):
    _rewrite(good_ckpt, manifest=edit)
    model, opt = _trained_pair()
    before = _snap(model, opt)
    with pytest.raises(CheckpointError, match=match) as ei:
        load_checkpoint(good_ckpt, model=model, optimizer=opt)
    assert MANIFEST_NAME in str(ei.value)  # names the file
    _unchanged(before, model, opt)


def _first(t, prefix):
    return next(k for k in sorted(t) if k.startswith(prefix))


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.__setitem__("rng.torch", torch.zeros(10, dtype=torch.uint8)), r"'rng\.torch' must be a uint8"),
    (lambda t: t.__setitem__("rng.torch", t["rng.torch"].float()), r"'rng\.torch' must be a uint8"),
    (lambda t: t.__setitem__("rng.torch", torch.full_like(t["rng.torch"], 255)), r"'rng\.torch' is not a valid"),
    (lambda t: t.__setitem__(k := _first(t, "model."), t[k].double()), r"tensor 'model\..*' has shape"),
    (lambda t: t.__setitem__(k := _first(t, "model."), torch.zeros(*t[k].shape, 2)), r"tensor 'model\..*' has shape"),
    (lambda t: t.__setitem__(k := _first(t, "optim.0.exp_avg"), torch.zeros(*t[k].shape, 2)), r"'optim\.0\.exp_avg"),
    (lambda t: t.__setitem__("optim.999.exp_avg", torch.zeros(2)), r"'optim\.999\.exp_avg' names no parameter"),
    (lambda t: t.__setitem__("optim.x", torch.zeros(2)), r"'optim\.x' names no parameter"),
    (lambda t: t.__setitem__("bogus.x", torch.zeros(2)), r"unexpected tensor 'bogus\.x'"),
])
def test_bad_tensor_under_matching_hash_refused_before_loading(good_ckpt, edit, match):
    _rewrite(good_ckpt, tensors=edit)
    model, opt = _trained_pair()
    before = _snap(model, opt)
    with pytest.raises(CheckpointError, match=match) as ei:
        load_checkpoint(good_ckpt, model=model, optimizer=opt)
    assert ".safetensors" in str(ei.value)  # names the file
    _unchanged(before, model, opt)


def test_callers_check_runs_before_loading(good_ckpt):
    model, opt = _trained_pair()
    before = _snap(model, opt)
    seen = []

    def check(ck):
        seen.append(ck["step"])
        _unchanged(before, model, opt)  # nothing is loaded yet
        raise KeyError("pos")

    with pytest.raises(CheckpointError, match=r"training-loop state is refused \(KeyError: 'pos'\)"):
        load_checkpoint(good_ckpt, model=model, optimizer=opt, check=check)
    assert seen == [8]
    _unchanged(before, model, opt)
    ck = load_checkpoint(good_ckpt, model=model, optimizer=opt, check=lambda ck: None)  # an accepted one loads
    stored = load_tensors(_tensors_file(good_ckpt))
    assert ck["step"] == 8
    assert all(torch.equal(v, stored[f"model.{k}"]) for k, v in model.state_dict().items())


def test_garbled_loop_state_refused_and_model_untouched(good_ckpt):
    _rewrite(good_ckpt, manifest=_set(["state", "bad"], "x"))  # the loop state is not in the hash
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"not a train_model checkpoint .*bad"):
        _train(good_ckpt, model=model, checkpoint_every=4, max_steps=8, resume=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
