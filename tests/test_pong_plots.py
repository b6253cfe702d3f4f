"""tnd.apps.pong.plots: readable catch axes, legends outside the data, deterministic PNGs."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from matplotlib.image import imread  # noqa: E402

from tnd.apps.pong import plots, report  # noqa: E402
from tnd.apps.viz import new_figure  # noqa: E402


def _results(cap=3, tnd_mean=0.5):
    def model(mean, rate):
        return {"catch_rate": rate, "catch_rate_ci": [rate * 0.8, min(1.0, rate * 1.2)], "catch_rate_per_seed": [rate] * 2,
                "mean_consecutive_catches": mean, "mean_consecutive_catches_ci": [0.8 * mean, 1.3 * mean],
                "mean_consecutive_catches_per_seed": [0.9 * mean, 1.1 * mean], "per_round_catches": [[0, 1, 2], [1, 1, 0]],
                "learning_curves": [[{"step": 5, "val_loss": 1.0, "val_accuracy": 0.4},
                                     {"step": 10, "val_loss": 0.8, "val_accuracy": 0.6}]] * 2}
    ref = {"catch_rate": 1.0, "mean_consecutive_catches": float(cap), "per_round_catches": [[cap] * 4]}
    return {"config": {"max_catches": cap},
            "models": {"tnd": model(tnd_mean, 0.3), "lstm": model(0.2, 0.1)},
            "references": {"expert": ref, "random": {"catch_rate": 0.0, "mean_consecutive_catches": 0.0,
                                                     "per_round_catches": [[0] * 4]}}}


def _tick_labels(ax):
    ax.figure.draw_without_rendering()
    return [t.get_text() for t in ax.get_yticklabels() if t.get_text()]


@pytest.mark.parametrize(("top", "scale"), [(3, "linear"), (20, "linear"), (100, "symlog"), (1000, "symlog")])
def test_catch_count_axis_has_plain_number_ticks(top, scale):
    ax = new_figure((4, 3)).add_subplot()
    plots.catch_count_axis(ax, top)
    labels = _tick_labels(ax)
    assert ax.get_yscale() == scale
    assert not any("$" in s or "^" in s for s in labels), labels  # no 10^0 mathtext
    values = [float(s.replace("\u2212", "-")) for s in labels]
    assert len(values) >= 4 and min(values) <= 0 and max(values) >= top * (0.5 if scale == "linear" else 1), values
    if scale == "symlog":
        assert values[:4] == [0, 1, 2, 5] and top in values


def test_pong_plots_are_deterministic_with_legends_outside(tmp_path):
    for cap in (3, 100):
        res = _results(cap)
        for name, fn in (("bars", report.plot_bars), ("curves", report.plot_learning_curves),
                         ("dist", report.plot_catch_distribution)):
            a, b = tmp_path / f"{name}{cap}a.png", tmp_path / f"{name}{cap}b.png"
            fn(res, a)
            fn(res, b)
            assert a.read_bytes() == b.read_bytes(), name
            img = imread(a)
            assert img.shape[0] >= 400 and img[..., :3].std() > 0.05, name
    assert not list(tmp_path.glob("*.tmp"))


def test_bars_and_curves_keep_legends_off_the_axes(monkeypatch, tmp_path):
    figs = []
    monkeypatch.setattr("tnd.apps.viz.save_figure", lambda fig, path, dpi=100: figs.append(fig))
    report.plot_bars(_results(100, tnd_mean=17.5), tmp_path / "b.png")
    report.plot_learning_curves(_results(), tmp_path / "c.png")
    for fig in figs:
        fig.draw_without_rendering()
        assert not [ax for ax in fig.axes if ax.get_legend() is not None]  # no legend inside a panel
        (legend,) = fig.legends
        box = legend.get_window_extent()
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent())
    bars = figs[0]
    texts = [t.get_text() for t in bars.axes[1].texts]
    assert "17.5" in texts and "100.0" in texts  # every bar's value is written on it
    assert [t.get_text() for t in bars.axes[0].get_xticklabels()] == ["tnd", "lstm", "expert", "random"]


def test_format_helpers():
    assert report.format_number(None) == "n/a" and report.format_number(float("nan")) == "n/a"
    assert report.format_number(0.12345) == "0.123" and report.format_number(2.5, 1) == "2.5"
    assert report.format_ci([0.1, 0.25], 2) == " [0.10, 0.25]"
    assert report.format_ci(None, 2) == "" and report.format_ci([None, None], 2) == ""
