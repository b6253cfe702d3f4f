"""tnd.apps.suite.figures: one figure per task group, the headline table, and their call from the sweep."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys

import pytest

from tnd.apps.suite.figures import (
    GROUPS,
    figures_section,
    headline_table,
    mean_ci95,
    plot_task_group,
    task_group,
    write_group_figures,
)
from tnd.apps.suite.sweep import FULL_TASKS, reference_value


def _row(model, metric, values, topo="na", reference=None, seq_len=20):
    return {"model": model, "topology": topo, "metric": metric, "higher_is_better": metric == "accuracy",
            "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n_seeds": len(values), "values": list(values), "reference": reference or {}, "seq_len": seq_len}


def _agg():
    chance = {"chance_accuracy_test": 0.25}
    return {
        "italy_power_demand": {"lstm": _row("lstm", "accuracy", [0.6, 0.7, 0.65], reference={"chance_accuracy_test": 0.5}),
                               "tnd/ring": _row("tnd", "accuracy", [0.55, 0.8, 0.7], "ring",
                                                reference={"chance_accuracy_test": 0.5})},
        "adding_100": {"lstm": _row("lstm", "mse", [0.2, 0.3, 0.25], reference={"baseline_mse_test": 0.17}),
                       "tnd/ring": _row("tnd", "mse", [0.002, 0.01, 0.004], "ring", reference={"baseline_mse_test": 0.17})},
        "copy_100": {"tnd/ring": _row("tnd", "accuracy", [0.3], "ring", reference={"chance_accuracy": 0.125})},
        "irregular_japanese_vowels_30": {"ode_rnn": _row("ode_rnn", "accuracy", [0.3, 0.4], reference=chance)},
        "my_task": {"lstm": _row("lstm", "mse", [1.0, 1.1])},
    }


def test_every_default_task_has_a_named_group():
    groups = {t: task_group(t) for t in FULL_TASKS}
    assert "other" not in groups.values()
    assert set(groups.values()) == {"memory", "classification", "irregular", "forecasting"}
    assert groups["adding_500"] == groups["copy_1000"] == groups["multiscale"] == "memory"
    assert task_group("my_task") == "other" and set(groups.values()) < set(GROUPS)
    with pytest.raises(TypeError, match="task"):
        task_group(3)


def test_mean_ci95_is_the_student_t_interval():
    assert mean_ci95([0.4]) == (0.4, 0.4, 0.4)
    with pytest.raises(ValueError, match="at least one"):
        mean_ci95([])
    scipy_stats = pytest.importorskip("scipy.stats")
    for n in (2, 3, 5, 30, 31, 80):
        vals = [math.sin(i) + 0.1 * i for i in range(n)]
        m, lo, hi = mean_ci95(vals)
        half = scipy_stats.t.ppf(0.975, n - 1) * statistics.stdev(vals) / math.sqrt(n)
        assert m == pytest.approx(statistics.fmean(vals))
        assert hi - m == pytest.approx(m - lo)
        assert hi - m == pytest.approx(half, rel=2e-3 if n > 31 else 1e-4), n


def test_group_figures_are_written_deterministically_and_readable(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    agg = _agg()
    order = ["adding_100", "italy_power_demand", "copy_100", "irregular_japanese_vowels_30"]
    (tmp_path / "a").mkdir()
    paths = write_group_figures(tmp_path / "a", agg, order, reference_value)
    assert list(paths) == ["memory", "classification", "irregular", "other"]  # GROUPS order; my_task appended
    (tmp_path / "b").mkdir()
    again = write_group_figures(tmp_path / "b", agg, order, reference_value)
    for group, p in paths.items():
        assert p.name == f"suite_{group}.png"
        data = p.read_bytes()
        assert data.startswith(b"\x89PNG") and data == again[group].read_bytes(), group
        img = imread(p)
        assert img.shape[0] > 300 and img.shape[1] >= 800 and img[..., :3].std() > 0.05  # not blank
    assert not list((tmp_path / "a").glob("*.tmp"))

    fig = plot_task_group("memory", ["adding_100", "copy_100"], agg,
                          {t: reference_value(next(iter(agg[t].values()))["reference"], next(iter(agg[t].values()))["metric"])
                           for t in agg})
    fig.draw_without_rendering()
    mse_ax, acc_ax = fig.axes[:2]
    assert mse_ax.get_xscale() == "log"  # MSE spans two decades
    labels = [t.get_text() for t in mse_ax.get_xticklabels() if t.get_text()]
    assert labels and not any("10^" in s or "$" in s for s in labels), labels  # plain numbers
    assert [t.get_text() for t in mse_ax.get_yticklabels()] == ["tnd/ring", "lstm"]  # best (lowest MSE) on top
    assert acc_ax.get_xlim() == (0.0, 100.0) and "accuracy (%)" in acc_ax.get_xlabel()
    assert "chance 12.5 %" in acc_ax.get_xlabel() and "constant 0.17" in mse_ax.get_xlabel()
    (legend,) = fig.legends
    assert "reference score" in [t.get_text() for t in legend.get_texts()]
    # the legend lies below every panel, outside the data
    box = legend.get_window_extent()
    assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes if ax.get_visible())
    with pytest.raises(ValueError, match="at least one task"):
        plot_task_group("memory", ["nope"], agg)


def test_figures_section_and_headline_table(tmp_path):
    assert figures_section({"memory": tmp_path / "suite_memory.png"})[2] == \
        "![memory tasks (adding, copy, multiscale)](suite_memory.png)"
    assert "need matplotlib" in "".join(figures_section("no figures: they need matplotlib"))
    md = "\n".join(["# r", "", "## a", "| x |", "", "## Summary", "", "| task | best |", "|---|---|",
                    "| t1 | 0.5 |", "", "Reference: chance.", "", "| model | mean rank |"])
    assert headline_table(md) == "## Summary\n\n| task | best |\n|---|---|\n| t1 | 0.5 |"
    assert headline_table("# no summary") == ""


def test_sweep_writes_group_figures_and_prints_the_headline(tmp_path):
    pytest.importorskip("aeon")
    pytest.importorskip("matplotlib")
    from tnd.apps.suite import SweepSpec, run_sweep

    spec = SweepSpec(tasks=["italy_power_demand"], models=["lstm"], seeds=[0, 1], topologies=["small_world"],
                     quick=True, overrides={"max_updates": 2, "eval_every": 1, "patience": 1, "param_budget": 200})
    said = []
    run_sweep(spec, tmp_path, backend="local", progress=False, log=said.append)
    assert (tmp_path / "suite_classification.png").is_file()
    assert not (tmp_path / "suite_memory.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "![time-series classification](suite_classification.png)" in report
    printed = said[-1]
    assert "## Summary" in printed and "| italy_power_demand | accuracy |" in printed


def test_import_of_the_suite_needs_no_matplotlib():
    code = ("import sys; import tnd.apps.suite.sweep, tnd.apps.suite.figures; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
