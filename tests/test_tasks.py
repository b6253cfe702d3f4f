"""Tests for tnd.apps.tasks (data side of the benchmark suite); all use small=True."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tnd.apps.tasks import SPLITS, TASKS, SequenceTask, load_task

SYNTHETIC = ["multiscale", "adding", "copy", "adding_500", "copy_1000"]
AEON_TASKS = [
    "japanese_vowels",
    "italy_power_demand",
    "irregular_japanese_vowels",
    "irregular_japanese_vowels_30",
    "irregular_japanese_vowels_70",
]
PMD_TASKS = ["electricity", "sunspots"]


def _needs(name):
    if name in AEON_TASKS:
        pytest.importorskip("aeon")
    if name in PMD_TASKS:
        pytest.importorskip("pmdarima")


def _check_task(task: SequenceTask):
    assert task.kind in ("classification", "regression", "forecast")
    T, C = task.seq_len, task.input_size
    for s in SPLITS:
        x, y = task.split(s)
        assert x.dtype == torch.float32 and x.ndim == 3
        assert x.shape[1:] == (T, C)
        assert x.shape[0] > 0 and y.shape[0] == x.shape[0]
        assert torch.isfinite(x).all()
        if task.kind == "classification":
            assert y.dtype == torch.int64
            assert int(y.min()) >= 0 and int(y.max()) < task.num_classes
            assert y.ndim == (2 if task.per_step else 1)
        else:
            assert y.dtype == torch.float32 and torch.isfinite(y).all()
            if task.per_step:
                assert y.ndim == 3 and y.shape[-1] == task.output_size
            else:
                assert y.shape == (x.shape[0], task.output_size)
        if task.per_step:
            assert y.shape[1] <= T
        ts = task.timespans(s)
        assert ts.shape == (x.shape[0], T) and ts.dtype == torch.float32
        assert (ts > 0).all()
        ln = task.lengths(s)
        assert ln.dtype == torch.int64 and ln.shape == (x.shape[0],)
        assert int(ln.min()) >= 1 and int(ln.max()) <= T


def _assert_same(a: SequenceTask, b: SequenceTask):
    for s in SPLITS:
        for pre in ("x_", "y_", "timespans_", "lengths_"):
            ta, tb = getattr(a, pre + s), getattr(b, pre + s)
            assert (ta is None) == (tb is None)
            if ta is not None:
                assert torch.equal(ta, tb)


ALL = SYNTHETIC + AEON_TASKS + PMD_TASKS


def test_registry_covers_everything():
    for n in ALL + ["adding_100", "adding_1000", "copy_100", "copy_500", "irregular_japanese_vowels_50"]:
        assert n in TASKS


@pytest.mark.parametrize("name", ALL)
def test_task_loads_small(name):
    _needs(name)
    task = load_task(name, seed=0, small=True)
    _check_task(task)


@pytest.mark.parametrize("name", ["multiscale", "adding", "copy", "irregular_japanese_vowels", "japanese_vowels"])
def test_determinism_and_seed_dependence(name):
    _needs(name)
    a = load_task(name, seed=3, small=True)
    b = load_task(name, seed=3, small=True)
    _assert_same(a, b)
    c = load_task(name, seed=4, small=True)
    assert not torch.equal(a.x_train, c.x_train)


def _rows(x: torch.Tensor):
    return {r.tobytes() for r in x.reshape(x.shape[0], -1).numpy()}


@pytest.mark.parametrize("name", ["multiscale", "adding", "copy"])
def test_synthetic_splits_disjoint(name):
    task = load_task(name, seed=0, small=True)
    tr, va, te = (_rows(task.split(s)[0]) for s in SPLITS)
    assert not (tr & va) and not (tr & te) and not (va & te)


def test_unknown_task_lists_valid_names():
    with pytest.raises(KeyError) as ei:
        load_task("no_such_task")
    msg = str(ei.value)
    assert "no_such_task" in msg and "multiscale" in msg and "adding" in msg


def test_adding_semantics():
    task = load_task("adding", seed=0, small=True, length=40)
    x, y = task.split("train")
    assert x.shape[1] == 40
    marks = x[:, :, 1]
    assert torch.all(marks.sum(1) == 2)
    assert torch.all(marks[:, :20].sum(1) == 1)
    torch.testing.assert_close((x[:, :, 0] * marks).sum(1, keepdim=True), y)
    assert task.metadata["baseline_mse"] == pytest.approx(1 / 6)


def test_copy_semantics():
    task = load_task("copy", seed=0, small=True, length=12, k=3, n_symbols=5)
    x, y = task.split("test")
    assert x.shape[1:] == (3 + 12 + 3, 7) and y.shape[1] == 3
    assert torch.all(x.sum(-1) == 1)  # one-hot
    assert torch.equal(x[:, :3, :5].argmax(-1), y)
    assert torch.all(x[:, 3 + 12 - 1, 6] == 1)  # delimiter
    assert task.metadata["chance_accuracy"] == pytest.approx(0.2)


def test_copy_and_adding_lengths():
    for L in (100, 500):
        t = load_task("adding", seed=0, length=L, n_train=8, n_val=4, n_test=4)
        assert t.seq_len == L
        c = load_task("copy", seed=0, length=L, n_train=8, n_val=4, n_test=4)
        assert c.seq_len == L + 20


def test_multiscale_label_is_balanced_function_of_inputs():
    from tnd.apps.tasks.multiscale import make_multiscale

    rng = np.random.default_rng(0)
    x, y, info = make_multiscale(2000, 64, rng)
    assert abs(y.mean() - 0.5) < 0.05
    assert info["taus"][0] == pytest.approx(1.0) and info["taus"][-1] == pytest.approx(1000.0)
    # standardised features have ~unit variance and are uncorrelated with each other
    assert np.std(info["F_n"]) == pytest.approx(1.0, rel=0.1)
    assert np.std(info["S_n"]) == pytest.approx(1.0, rel=0.1)
    assert abs(np.corrcoef(info["F_n"], info["S_n"])[0, 1]) < 0.1
    # the slow feature is (nearly) uncorrelated with the slow channel's final level
    assert abs(np.corrcoef(info["S_n"], x[:, -4:, -1].mean(1))[0, 1]) < 0.1
    t = load_task("multiscale", seed=0, small=True, target="regress")
    assert t.kind == "regression" and t.y_train.shape[1] == 1


@pytest.mark.parametrize("drop", [0.3, 0.5, 0.7])
def test_irregular_keeps_fraction_and_times(drop):
    pytest.importorskip("aeon")
    base = load_task("japanese_vowels", seed=1, small=True)
    task = load_task("irregular_japanese_vowels", seed=1, small=True, drop=drop)
    assert torch.equal(task.y_test, base.y_test)
    for s in SPLITS:
        L = base.lengths(s)
        m = task.lengths(s)
        expect = torch.clamp(torch.round((1 - drop) * L.double()).long(), min=1)
        assert torch.equal(m, expect)
        ts = task.timespans(s)
        kept = task.metadata[f"kept_indices_{s}"]
        xb, xi = base.split(s)[0], task.split(s)[0]
        for i in range(len(kept)):
            idx = np.array(kept[i])
            assert len(idx) == int(m[i]) and np.all(np.diff(idx) > 0) and idx[-1] < int(L[i])
            # elapsed times: first = index + 1, then gaps; cumulative sum = index + 1
            np.testing.assert_allclose(np.cumsum(ts[i, : len(idx)].numpy()), idx + 1)
            torch.testing.assert_close(xi[i, : len(idx)], xb[i, idx])
        assert abs(task.metadata[f"kept_fraction_{s}"] - (1 - drop)) < 0.05


def test_real_classification_splits_and_standardisation():
    pytest.importorskip("aeon")
    for name, T, C, K in (("japanese_vowels", 29, 12, 9), ("italy_power_demand", 24, 1, 2)):
        task = load_task(name, seed=0)
        assert (task.seq_len, task.input_size, task.num_classes) == (T, C, K)
        md = task.metadata
        assert md["archive_split_train"] == md["archive_split_val"] == "TRAIN"
        assert not set(md["indices_train"]) & set(md["indices_val"])
        # stratified validation carve: every class present in train and val
        assert len(torch.unique(task.y_val)) == K and len(torch.unique(task.y_train)) == K
        # train statistics only: train valid frames are standardised
        ln = task.lengths("train")
        mask = torch.arange(T)[None, :] < ln[:, None]
        frames = task.x_train[mask]
        torch.testing.assert_close(frames.mean(0), torch.zeros(C), atol=1e-4, rtol=0)
        torch.testing.assert_close(frames.std(0, unbiased=False), torch.ones(C), atol=1e-4, rtol=0)
    jv = load_task("japanese_vowels", seed=0)
    assert jv.sizes() == {"train": 216, "val": 54, "test": 370}
    # padding repeats the last valid frame
    ln = jv.lengths("test")
    i = int(torch.argmin(ln))
    assert torch.all(jv.x_test[i, ln[i]:] == jv.x_test[i, ln[i] - 1])


def test_electricity_windows():
    pytest.importorskip("pmdarima")
    task = load_task("electricity", small=True, time_features=True)
    assert task.input_size == 5 and task.output_size == task.y_train.shape[1]
    md = task.metadata
    starts = {s: np.array(md[f"target_start_{s}"]) for s in SPLITS}
    H = md["horizon"]
    b1, b2, n = md["split_boundaries"]
    assert starts["train"].max() + H <= b1 <= starts["val"].min()
    assert starts["val"].max() + H <= b2 <= starts["test"].min()
    assert starts["test"].max() + H <= n
    assert 0 < md["seasonal_naive_mse"] < md["mean_mse"]
    # target of one window equals the future inputs of a later window (same series)
    full = load_task("electricity")
    assert full.x_train.shape[1:] == (336, 1) and full.y_train.shape[1] == 48
    torch.testing.assert_close(full.y_train[0, :1], full.x_train[1, -1:, 0])


def test_sunspots_windows_and_references():
    """Targets of the three splits are disjoint and chronological; the base is persistence (the last
    input month); the linear-autoregression reference is fit on train, chosen on validation, and
    beats persistence on validation (else the penalty grid or the fit is broken)."""
    pytest.importorskip("pmdarima")
    from tnd.apps.tasks.sunspots import CYCLE, LINEAR_AR_PENALTIES, load_sunspots_series

    task = load_task("sunspots")
    md = task.metadata
    assert task.x_train.shape[1:] == (CYCLE, 1) and task.output_size == 12 == task.y_train.shape[1]
    assert md["split_boundaries"] == [1968, 2388, 2820] and len(load_sunspots_series()) == 2820
    starts = {s: np.array(md[f"target_start_{s}"]) for s in SPLITS}
    b1, b2, n = md["split_boundaries"]
    assert starts["train"].max() + 12 <= b1 <= starts["val"].min()
    assert starts["val"].max() + 12 <= b2 <= starts["test"].min() and starts["test"].max() + 12 == n
    for s in SPLITS:  # persistence: the window's last input month over the whole horizon
        torch.testing.assert_close(task.base_forecast(s), task.split(s)[0][:, -1:, 0].expand(-1, 12))
    # one window's first target is the next window's last input
    torch.testing.assert_close(task.y_train[0, :1], task.x_train[1, -1:, 0])
    assert md["linear_ar_penalty"] in LINEAR_AR_PENALTIES
    assert md["linear_ar_mse_val"] < md["persistence_mse_val"] < md["mean_mse"]
    assert md["persistence_mse"] == pytest.approx(float(((task.y_test - task.base_forecast("test")) ** 2).mean()),
                                                  rel=1e-5)
    raw = (load_sunspots_series() - md["mean"]) / md["std"]
    assert float(task.x_test[0, -1, 0]) == pytest.approx(raw[starts["test"][0] - 1], rel=1e-5)
    with pytest.raises(ValueError, match="horizon"):
        load_task("sunspots", horizon=0)
    with pytest.raises(ValueError, match="train_years"):
        load_task("sunspots", train_years=300)


def test_sunspots_second_origin():
    """``sunspots_1913`` moves every split 35 years earlier: its test targets are the default task's
    validation targets (1913-1947), it normalises by its own (shorter) training years, and a test
    period that runs past the series or is empty is refused."""
    pytest.importorskip("pmdarima")
    default, early = load_task("sunspots"), load_task("sunspots_1913")
    md = early.metadata
    assert md["split_boundaries"] == [1548, 1968, 2388]
    assert md["target_start_test"] == default.metadata["target_start_val"]
    assert md["target_start_train"][-1] + 12 <= 1548 and md["mean"] != default.metadata["mean"]
    assert md["linear_ar_mse_val"] < md["persistence_mse_val"]
    with pytest.raises(ValueError, match="test_years"):
        load_task("sunspots", test_years=40)
    with pytest.raises(ValueError, match="test_years"):
        load_task("sunspots", test_years=0)


def test_base_forecast_is_checked():
    """A base forecast (residual forecasting) belongs to forecast tasks, on every split, shaped like y."""
    x, y = torch.zeros(4, 5, 1), torch.zeros(4, 3)
    kw = dict(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y, output_size=3)
    ok = SequenceTask(name="f", kind="forecast", base_forecast_train=y + 1, base_forecast_val=y, base_forecast_test=y,
                      **kw)
    assert torch.equal(ok.base_forecast("train"), y + 1) and ok.base_forecast("test") is not None
    assert SequenceTask(name="f", kind="forecast", **kw).base_forecast("val") is None
    with pytest.raises(ValueError, match="forecast tasks"):
        SequenceTask(name="r", kind="regression", base_forecast_train=y, base_forecast_val=y, base_forecast_test=y,
                     **kw)
    with pytest.raises(ValueError, match="base_forecast_val"):
        SequenceTask(name="f", kind="forecast", base_forecast_train=y, base_forecast_test=y, **kw)
    with pytest.raises(ValueError, match="base_forecast_test"):
        SequenceTask(name="f", kind="forecast", base_forecast_train=y, base_forecast_val=y,
                     base_forecast_test=torch.zeros(4, 2), **kw)
    with pytest.raises(ValueError, match="split"):
        ok.base_forecast("holdout")
