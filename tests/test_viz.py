"""tnd.apps.viz: figures of the graph, time constants, activity and lesions, and the HTML report."""

import subprocess
import sys

import pytest

try:
    import matplotlib  # noqa: F401
    import networkx  # noqa: F401
except ImportError:  # tnd.apps.viz needs the plotting packages of the pong extra
    pytest.skip("tnd.apps.viz needs matplotlib and networkx", allow_module_level=True)

import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.image import imread

from tnd import NeuronGraph
from tnd.apps.viz import (
    ACTIVITY_SIZE,
    GRAPH_SIZE,
    LESIONS_SIZE,
    MAX_DRAWN_EDGES,
    TIMESCALES_SIZE,
    VizInputError,
    draw_graph,
    html_report,
    neuron_roles,
    plot_activity,
    plot_lesions,
    plot_time_constants,
    save_figure,
    time_constant_stats,
)
from tnd.apps.viz import new_figure
from tnd.apps.viz.graph import _band_layout


def pixels(size, dpi=100):
    return round(size[1] * dpi), round(size[0] * dpi)  # imread gives (H, W, channels)


def check_png(path, size, dpi=100):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    assert imread(path).shape[:2] == pixels(size, dpi)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # atomic: no leftovers
    return data


@pytest.fixture(scope="module")
def small():
    return NeuronGraph.small_world(24, k=4, rewire_prob=0.1, seed=0, num_inputs=6, num_outputs=6)


@pytest.fixture(scope="module")
def big():
    return NeuronGraph.random(300, density=0.05, seed=0, inhibitory_fraction=0.2)  # 4489 edges


def lesion_result():
    rng = np.random.default_rng(0)
    roles = ["input", "hidden", "output", "both"]
    return {
        "metric": "mean consecutive catches",
        "baseline": 0.58,
        "neurons": [{"id": i, "role": roles[i % 4], "score": 0.58 - d, "drop": d}
                    for i, d in enumerate(rng.normal(0.1, 0.2, 30).tolist())],
        "edges": [{"source": i, "target": (7 * i) % 30, "weight": w, "score": 0.58 - d, "drop": d}
                  for i, (w, d) in enumerate(zip(rng.normal(size=25).tolist(), rng.normal(0.1, 0.2, 25).tolist()))],
    }


def test_import_tnd_stays_torch_only():
    code = "import sys, tnd; print('tnd.apps.viz' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"  # tnd never pulls in the plotting layer


# ------------------------------------------------------------------------ graph
def test_draw_graph_bands_png_size_and_determinism(small, tmp_path):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(small.num_edges, generator=gen)
    tau = np.exp(np.linspace(0, 3, 24))
    paths = [save_figure(draw_graph(small, w, tau, highlight=[3, 10]), tmp_path / f"g{i}.png") for i in range(2)]
    a, b = (check_png(p, GRAPH_SIZE) for p in paths)
    assert a == b  # byte-identical for the same inputs
    fig = draw_graph(small, w, tau)
    assert "bands layout" in fig.axes[0].get_title()
    assert any("time constant tau" in ax.get_ylabel() for ax in fig.axes)  # the colourbar


def test_draw_graph_roles_signs_and_multidim(tmp_path):
    g0 = NeuronGraph.random(20, density=0.2, seed=1, inhibitory_fraction=0.3, self_loops=True)
    g = NeuronGraph(20, g0.edge_index, list(range(8)), [6, 7, 15, 16, 17, 18, 19], sign=g0.sign,
                    allow_unreachable=True)
    assert {"both", "input", "output", "hidden"} == set(neuron_roles(g))
    fig = draw_graph(g, np.random.default_rng(0).normal(size=(g.num_edges, 3)), np.full((20, 2), 4.0),
                     layout="bands", title="custom")
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("input+output") for t in texts)
    assert "excitatory edge" in texts and "inhibitory edge" in texts
    assert fig.axes[0].get_title() == "custom"
    check_png(save_figure(fig, tmp_path / "g.png", dpi=50), GRAPH_SIZE, dpi=50)


def test_band_layout_columns_by_hop_distance():
    # 0 -> 1 -> 2 -> 5 (output); 3 -> 5 is a hidden neuron no input reaches; 4 is an input-output neuron
    g = NeuronGraph(6, [[0, 1, 2, 3, 0], [1, 2, 5, 5, 4]], input_neurons=[0, 4], output_neurons=[5, 4])
    roles = neuron_roles(g)
    assert roles == ["input", "hidden", "hidden", "hidden", "both", "output"]
    ei = g.edge_index.numpy()
    pos, xs, labels = _band_layout(6, ei[0], ei[1], roles)
    assert labels == ["inputs", "hop 1", "hop 2", "unreachable", "outputs"]
    col = {v: xs.index(pos[v, 0]) for v in range(6)}
    assert col == {0: 0, 4: 0, 1: 1, 2: 2, 3: 3, 5: 4}
    assert pos[0, 1] > pos[4, 1]  # pure inputs above the input-output neurons


def test_draw_graph_large_uses_spring_and_caps_edges(big):
    w = torch.rand(big.num_edges)
    fig = draw_graph(big, w, highlight=[5])
    ax = fig.axes[0]
    assert f"{MAX_DRAWN_EDGES} strongest of {big.num_edges}" in ax.get_title()
    assert "spring layout" in ax.get_title()
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines.get_segments()) == MAX_DRAWN_EDGES
    unweighted = draw_graph(big, layout="spring").axes[0].get_title()
    assert "evenly spaced" in unweighted


def test_draw_graph_without_edges():
    g = NeuronGraph(3, [[], []], [0], [2], allow_unreachable=True)
    fig = draw_graph(g, np.zeros(0), [1.0, 2.0, 3.0], highlight=[])
    assert "3 neurons, 0 edges" in fig.axes[0].get_title()


def test_draw_graph_into_given_axes(small):
    fig = new_figure((5, 4))
    ax = fig.add_subplot()
    assert draw_graph(small, ax=ax) is fig


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"edge_weight": np.ones(5)}, "edge_weight"),
        ({"edge_weight": np.ones((96, 2, 2))}, "edge_weight"),
        ({"edge_weight": np.full(96, np.nan)}, "edge_weight"),
        ({"time_constants": np.ones(23)}, "time_constants"),
        ({"time_constants": -np.ones(24)}, "time_constants"),
        ({"time_constants": "fast"}, "time_constants"),
        ({"highlight": [24]}, "highlight"),
        ({"highlight": [1, 1]}, "highlight"),
        ({"layout": "circle"}, "layout"),
    ],
)
def test_draw_graph_bad_inputs(small, kwargs, name):
    with pytest.raises(ValueError, match=name):
        draw_graph(small, **kwargs)


def test_draw_graph_rejects_non_graph():
    with pytest.raises(ValueError, match="graph must be a tnd.NeuronGraph"):
        draw_graph(np.zeros((3, 3)))
    with pytest.raises(TypeError):  # VizInputError is both
        draw_graph([[0, 1]])
    assert issubclass(VizInputError, ValueError) and issubclass(VizInputError, TypeError)


# --------------------------------------------------------------- time constants
def test_plot_time_constants(tmp_path):
    spectra = {"tnd (per-neuron F)": torch.linspace(1, 50, 64),
               "tnd_shared (shared F)": np.full(64, 2.5) * (1 + 1e-9 * np.arange(64)),
               "d=2": np.exp(np.random.default_rng(0).normal(size=(16, 2)))}
    fig = plot_time_constants(spectra, title="spectra")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("distinct = 1" in t and "max/min = 1" in t for t in texts)  # float noise is one value
    assert any("distinct = 64" in t for t in texts)
    assert any("N x d values" in t for t in texts)
    assert len(fig.axes) == 6  # spectrum + histogram per label
    two = {k: spectra[k] for k in list(spectra)[:2]}
    a = check_png(save_figure(plot_time_constants(two), tmp_path / "t1.png"), TIMESCALES_SIZE)
    assert save_figure(plot_time_constants(two), tmp_path / "t2.png").read_bytes() == a
    fig = new_figure((6, 4))
    assert plot_time_constants(spectra, ax=fig.add_subplot()) is fig


def test_time_constant_stats():
    st = time_constant_stats([1.0, 2.0, 2.0, 8.0])
    assert st == {"n": 4, "distinct": 3, "min": 1.0, "median": 2.0, "max": 8.0, "ratio": 8.0}


@pytest.mark.parametrize("spectra", [{}, {"a": [1.0, -1.0]}, {"a": [1.0, float("nan")]}, {"a": []},
                                     {"a": np.ones((2, 2, 2))}, [1.0, 2.0]])
def test_plot_time_constants_bad_inputs(spectra):
    with pytest.raises(ValueError, match="spectra"):
        plot_time_constants(spectra)


# ----------------------------------------------------------------------- activity
def activity_inputs(t=60, n=24):
    rng = np.random.default_rng(0)
    steps = np.arange(t)
    return {
        "states": np.tanh(np.cumsum(rng.normal(size=(t, n)) * 0.3, axis=0)),
        "ball": np.stack([steps / t, 0.5 + 0.4 * np.sin(steps / 7)], axis=1),
        "paddle": 0.5 + 0.3 * np.sin(steps / 9),
        "actions": rng.integers(0, 3, t),
        "events": [(20, "catch"), (45, "miss")],
    }


def test_plot_activity_full(small, tmp_path):
    kw = activity_inputs()
    kw["states"] = torch.as_tensor(kw["states"], dtype=torch.float32)
    fig = plot_activity(**kw, roles=neuron_roles(small), neuron_order=list(range(23, -1, -1)), title="round 1")
    assert fig.get_suptitle() == "round 1"
    a = check_png(save_figure(fig, tmp_path / "a1.png"), ACTIVITY_SIZE)
    fig2 = plot_activity(**kw, roles=neuron_roles(small), neuron_order=list(range(23, -1, -1)), title="round 1")
    assert save_figure(fig2, tmp_path / "a2.png").read_bytes() == a


def test_plot_activity_multidim_subset_and_dt(tmp_path):
    states = np.random.default_rng(1).uniform(-2, 2, size=(30, 10, 3))
    fig = plot_activity(states, neuron_order=[4, 2], dt=0.5, events=[(15.5, "mark")])
    (raster,) = [ax for ax in fig.axes if ax.images and ax.images[0].get_array().shape == (6, 30)]
    assert [t.get_text() for t in raster.get_yticklabels()] == ["n4 c0", "n4 c1", "n4 c2", "n2 c0", "n2 c1", "n2 c2"]
    assert "2 shown" in fig.get_suptitle()
    check_png(save_figure(fig, tmp_path / "a.png"), ACTIVITY_SIZE)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"states": np.zeros(60)}, "states"),
        ({"states": np.full((60, 24), np.inf)}, "states"),
        ({"ball": np.zeros((59, 2))}, "ball"),
        ({"ball": np.zeros((60, 3))}, "ball"),
        ({"paddle": np.zeros(61)}, "paddle"),
        ({"actions": np.full(60, 3)}, "actions"),
        ({"events": [(61, "late")]}, "events"),
        ({"events": [(3, 4)]}, "events"),
        ({"roles": ["input"] * 23}, "roles"),
        ({"roles": ["inputs"] * 24}, "roles"),
        ({"neuron_order": [0, 0]}, "neuron_order"),
        ({"neuron_order": [24]}, "neuron_order"),
        ({"dt": 0.0}, "dt"),
    ],
)
def test_plot_activity_bad_inputs(change, name):
    kw = activity_inputs()
    kw.update(change)
    with pytest.raises(ValueError, match=name):
        plot_activity(**kw)


# ------------------------------------------------------------------------ lesions
def test_plot_lesions(tmp_path):
    res = lesion_result()
    fig = plot_lesions(res, top=10)
    assert len(fig.axes) == 2
    neurons_ax = fig.axes[0]
    labels = [t.get_text() for t in neurons_ax.get_yticklabels()]
    best = max(res["neurons"], key=lambda e: e["drop"])
    assert len(labels) == 10 and labels[0] == f"neuron {best['id']} ({best['role']})"
    assert any(line.get_xdata()[0] == 0.58 for line in neurons_ax.lines)  # the baseline
    a = check_png(save_figure(fig, tmp_path / "l1.png"), LESIONS_SIZE)
    assert save_figure(plot_lesions(res, top=10), tmp_path / "l2.png").read_bytes() == a


def test_plot_lesions_empty_and_groups(tmp_path):
    res = {"metric": "m", "baseline": 1.0, "neurons": [], "edges": [],
           "groups": [{"name": "hidden 0-7", "role": "hidden", "drop": 0.5}]}
    fig = plot_lesions(res)
    assert len(fig.axes) == 3
    assert "no neuron lesions" in fig.axes[0].texts[0].get_text()
    check_png(save_figure(fig, tmp_path / "l.png"), LESIONS_SIZE)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"baseline": float("nan")}, "baseline"),
        ({"metric": None}, "metric"),
        ({"neurons": [{"id": 1, "role": "hidden"}]}, r"neurons.*drop"),
        ({"neurons": [{"id": 1, "role": "boss", "drop": 0.1}]}, "role"),
        ({"edges": [{"source": 1, "drop": 0.1}]}, "target"),
        ({"edges": "none"}, "edges"),
    ],
)
def test_plot_lesions_bad_inputs(change, name):
    res = lesion_result()
    res.update(change)
    with pytest.raises(ValueError, match=name):
        plot_lesions(res)
    with pytest.raises(ValueError, match="top"):
        plot_lesions(lesion_result(), top=0)
    with pytest.raises(ValueError, match="missing keys"):
        plot_lesions({"metric": "m"})


# ------------------------------------------------------------------------- report
def test_html_report_self_contained(small, tmp_path):
    g = save_figure(draw_graph(small), tmp_path / "graph.png")
    t = save_figure(plot_time_constants({"a": np.arange(1.0, 25.0)}), tmp_path / "tau.png")
    sections = [
        {"heading": "Graph & <roles>", "text": "First <b>paragraph</b>.\n\nSecond one.", "images": [g, str(t)]},
        {"heading": "Table", "text": "", "table": [{"model": "TND", "catches": 0.5812345}, {"model": "LSTM", "n": np.int64(3), "catches": np.float32(0.25)}]},
    ]
    out = html_report(tmp_path / "r" / "report.html", "Report <1>", sections, intro="Hello & welcome.")
    text = out.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 2
    assert "http" not in text and "<script" not in text and "<link" not in text
    assert "<b>" not in text and "&lt;b&gt;paragraph&lt;/b&gt;" in text
    assert text.count("<p>") == 3 and "Graph &amp; &lt;roles&gt;" in text and "Report &lt;1&gt;" in text
    assert "<th>model</th><th>catches</th><th>n</th>" in text and "0.5812" in text and "0.5812345" not in text
    again = html_report(tmp_path / "r" / "again.html", "Report <1>", sections, intro="Hello & welcome.")
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.parametrize(
    ("sections", "name"),
    [
        ([{"heading": "x", "images": ["missing.png"]}], r"sections\[0\]\['images'\]\[0\]"),
        ([{"heading": "x", "images": "a.png"}], "images"),
        ([{"heading": "x", "txt": "typo"}], "unknown keys"),
        ([{"text": "no heading"}], "heading"),
        ([{"heading": "x", "table": [1, 2]}], "table"),
        ({"heading": "x"}, "sections"),
    ],
)
def test_html_report_bad_inputs(tmp_path, sections, name):
    with pytest.raises(ValueError, match=name):
        html_report(tmp_path / "r.html", "t", sections)
    assert not (tmp_path / "r.html").exists()


def test_html_report_rejects_non_png(tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("not a png")
    with pytest.raises(ValueError, match="not a PNG"):
        html_report(tmp_path / "r.html", "t", [{"heading": "x", "images": [fake]}])
