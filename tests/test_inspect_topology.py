"""Smoke tests of `tnd topology` and `tnd inspect` on a tiny budget: files, sizes, budgets, errors."""

import json

import numpy as np
import pytest

from tnd.apps.cli import main

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("topology")
    rc = main(["topology", "--quick", "--out", str(out), "--no-progress", "--families", "random", "ring",
               "--degrees", "2", "3"])
    assert rc == 0
    return out


def test_topology_sweep_writes_table_plot_and_a_learned_graph_within_budget(sweep):
    res = json.loads((sweep / "topology.json").read_text())
    rows = {r["name"]: r for r in res["variants"]}
    assert {"random-k2", "random-k3", "ring-k2", "ring-k3"} <= set(rows)
    learned = [r for r in res["variants"] if r["family"] == "learned"]
    assert len(learned) == 1
    lr = learned[0]
    best = rows[lr["compared_with"]]
    # the learned graph has exactly the best fixed variant's edge budget, neurons and parameters
    assert lr["spec"]["graph_edges"] == best["spec"]["graph_edges"]
    assert lr["spec"]["num_neurons"] == best["spec"]["num_neurons"]
    assert lr["params"] == best["params"]
    assert lr["spec"]["learned_topology"]["active"] == best["spec"]["graph_edges"]
    # fixed variants at the same budget: parameter counts within 15 % of each other
    params = [r["params"] for r in rows.values()]
    assert max(params) <= 1.15 * min(params)
    # the ring's degrees are what was asked for
    assert rows["ring-k2"]["spec"]["graph_edges"] == 2 * rows["ring-k2"]["spec"]["num_neurons"]
    md = (sweep / "topology.md").read_text()
    assert "| random-k2 |" in md and "Sensitivity" in md and "Learned topology" in md
    assert (sweep / "topology.png").stat().st_size > 1000
    # the learned cell reloads as an ordinary TND on its learned graph
    from tnd.apps.lesions import find_tnd
    from tnd.apps.pong.experiment import load_cell_model

    m = find_tnd(load_cell_model(sweep, lr["name"], 0))
    assert m.graph.num_edges == lr["spec"]["graph_edges"]


def test_inspect_writes_figures_and_self_contained_html(sweep, tmp_path):
    import matplotlib.image as mpimg

    from tnd.apps.viz import activity, graph, lesions, timescales

    out = tmp_path / "inspect"
    rc = main(["inspect", str(sweep), "--out", str(out), "--model", "ring-k2", "--compare", "random-k2",
               "--lesion-rounds", "4", "--lesion-edges", "3", "--activity-steps", "60"])
    assert rc == 0
    sizes = {"graph": graph.GRAPH_SIZE, "timescales": timescales.TIMESCALES_SIZE, "activity": activity.ACTIVITY_SIZE,
             "lesions": lesions.LESIONS_SIZE}
    for name, (w, h) in sizes.items():
        img = mpimg.imread(out / f"{name}.png")
        assert img.shape[:2] == (round(h * 100), round(w * 100)), name  # fixed size at 100 dpi
        assert float(np.std(img[..., :3])) > 0.01, name  # not blank
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert 'src="http' not in html
    summary = json.loads((out / "inspect.json").read_text())
    les = summary["lesions"]
    assert len(les["neurons"]) == summary["num_neurons"] and len(les["edges"]) == 3
    # figures are deterministic for a given run and settings
    out2 = tmp_path / "again"
    assert main(["inspect", str(sweep), "--out", str(out2), "--model", "ring-k2", "--compare", "random-k2",
                 "--lesion-rounds", "4", "--lesion-edges", "3", "--activity-steps", "60"]) == 0
    for name in sizes:
        assert (out / f"{name}.png").read_bytes() == (out2 / f"{name}.png").read_bytes(), name


def test_inspect_errors_name_the_argument(sweep, tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "RUN_DIR" in capsys.readouterr().err
    assert main(["inspect", str(sweep), "--out", str(tmp_path / "o"), "--model", "lstm"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["inspect", str(sweep), "--out", str(tmp_path / "o"), "--model", "ring-k2", "--seed", "7"]) == 2
    assert "--seed" in capsys.readouterr().err
    assert main(["inspect", str(sweep), "--out", str(tmp_path / "o"), "--lesion-rounds", "-1"]) == 2
    assert "--lesion-rounds" in capsys.readouterr().err


def test_topology_bad_options(tmp_path, capsys):
    assert main(["topology", "--quick", "--out", str(tmp_path), "--degrees", "0.5"]) == 2
    assert "--degrees" in capsys.readouterr().err
    # a value refused while parsing returns the exit code too (main used to raise SystemExit here)
    assert main(["topology", "--families", "hypercube"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tnd topology: error: --families:") and "hypercube" in err[0]


def test_large_graphs_are_lesioned_by_groups(sweep):
    from tnd.apps.lesions import find_tnd
    from tnd.apps.pong.experiment import load_cell_model
    from tnd.apps.pong.inspection import lesion_study

    model = load_cell_model(sweep, "ring-k2", 0)
    n = find_tnd(model).num_neurons
    res = lesion_study(model, rounds=2, env_kwargs={"max_catches": 3}, num_edges=1, max_units=4)
    assert res["neurons"] == [] and res["groups"]
    ids = sorted(i for g in res["groups"] for i in g["ids"])
    assert ids == list(range(n))  # every neuron in exactly one group
    assert all(len({g["role"]}) == 1 and g["name"] for g in res["groups"])
    assert len(res["groups"]) <= 4 + 4  # about max_units groups (at most one extra per role)


def test_inspect_plays_in_the_runs_own_observation_mode(tmp_path):
    from tnd.apps.pong.cells import env_kwargs
    from tnd.apps.pong.config import PongConfig
    from tnd.apps.pong.inspection import run_env_kwargs

    (tmp_path / "config.json").write_text(json.dumps({"max_catches": 100, "obs_noise": 0.01, "obs_mode": "motion"}))
    got = run_env_kwargs(tmp_path)
    assert got == env_kwargs(PongConfig(max_catches=100, obs_noise=0.01, obs_mode="motion"))
    assert got["obs_mode"] == "motion"  # a model trained on motion observations needs them
    (tmp_path / "config.json").write_text(json.dumps({"max_catches": 50, "obs_noise": 0.0}))  # before obs_mode
    assert run_env_kwargs(tmp_path) == env_kwargs(PongConfig(max_catches=50, obs_noise=0.0, obs_mode="positions"))
    assert run_env_kwargs(tmp_path / "missing") == {}
