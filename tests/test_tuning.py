"""The shared tuning machinery (tnd.apps.tuning): search spaces, seeded trials, the resumable runner.

Uses a toy objective (its score is a function of the configuration) on the in-process backend;
the Ray Tune backend runs once, end to end, in tests/test_pong_tune.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tnd.apps import tuning
from tnd.apps.tuning import SearchSpace, choice, loguniform, randint, run_search, sample_trials, uniform

SPACES = {
    "a": SearchSpace({"lr": loguniform(1e-3, 3e-2), "layers": choice([1, 2, 3])}, {"lr": 5e-3, "layers": 1}),
    "b": SearchSpace({"x": uniform(-1.0, 1.0), "k": randint(1, 9), "pair": choice([[1, 10], [1, 100]])},
                     {"x": 0.0, "k": 5, "pair": [1, 10]}),
}


def toy(model, config, index, context):
    """Score: a function of the configuration (so the best trial is known)."""
    context.setdefault("calls", []).append((model, index))
    if model == "a":
        return {"score": config["layers"] - abs(math.log(config["lr"] / 1e-2)), "aux": index}
    return {"score": -abs(config["x"]) + config["k"] / 100, "aux": index}


def test_sampling_is_seeded_reproducible_and_the_same_length_for_every_model():
    t1 = sample_trials(SPACES, 12, seed=3)
    assert t1 == sample_trials(SPACES, 12, seed=3)
    assert t1 != sample_trials(SPACES, 12, seed=4)
    assert {m: len(v) for m, v in t1.items()} == {"a": 12, "b": 12}
    for m, trials in t1.items():
        assert trials[0] == SPACES[m].default  # trial 0: the defaults
        for c in trials:
            SPACES[m].check(c)
        assert len({json.dumps(c, sort_keys=True) for c in trials}) > 6  # random draws, not one point
    assert sample_trials(SPACES, 5, seed=3) == {m: v[:5] for m, v in t1.items()}  # a longer search extends
    # a fresh interpreter (another hash seed) draws the same trials
    code = ("import json; from tnd.apps.tuning import *; "
            "s = {'a': SearchSpace({'lr': loguniform(1e-3, 3e-2), 'layers': choice([1, 2, 3])}, "
            "{'lr': 5e-3, 'layers': 1})}; print(json.dumps(sample_trials(s, 12, 3)['a']))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", **__import__("os").environ}).stdout
    assert json.loads(got) == t1["a"]


def test_every_domain_value_is_reached_and_stays_in_bounds():
    t = sample_trials(SPACES, 200, seed=0)
    assert {c["layers"] for c in t["a"]} == {1, 2, 3}
    assert {json.dumps(c["pair"]) for c in t["b"]} == {"[1, 10]", "[1, 100]"}
    lrs = [c["lr"] for c in t["a"]]
    assert min(lrs) >= 1e-3 and max(lrs) <= 3e-2 and min(lrs) < 2e-3 and max(lrs) > 2e-2  # log-uniform spread
    assert {c["k"] for c in t["b"]} == set(range(1, 10))


@pytest.mark.parametrize("make, match", [
    (lambda: choice([]), "at least one"),
    (lambda: choice([1, 1]), "distinct"),
    (lambda: loguniform(0.0, 1.0), "0 < low < high"),
    (lambda: loguniform(1.0, float("nan")), "finite"),
    (lambda: uniform(2.0, 1.0), "low < high"),
    (lambda: randint(3, 1), "low <= high"),
    (lambda: SearchSpace({"k": choice([1, 2])}, {"k": 3}), "default: k = 3 lies outside"),
    (lambda: SearchSpace({"k": choice([1, 2])}, {"j": 1}), "expected the knobs"),
    (lambda: sample_trials(SPACES, 0, 0), "trials: expected an integer >= 1"),
])
def test_bad_spaces_are_refused_naming_what(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_local_search_writes_trials_summary_and_picks_the_best(tmp_path):
    trials = sample_trials(SPACES, 6, seed=1)
    ctx: dict = {}
    s = run_search(toy, trials, tmp_path, context=ctx, backend="local", progress=False, spaces=SPACES)
    assert len(ctx["calls"]) == 12 and s["finished"] == s["planned"] == 12 and not s["errors"]
    for m in ("a", "b"):
        rows = s["models"][m]["trials"]
        want = max(range(6), key=lambda i: (rows[i]["score"], -i))
        assert s["models"][m]["best"]["index"] == want
        assert s["models"][m]["best"]["config"] == trials[m][want]
        for i in range(6):
            assert json.loads((tmp_path / "trials" / m / f"trial-{i}.json").read_text())["config"] == trials[m][i]
    on_disk = json.loads((tmp_path / "tuning.json").read_text())
    assert on_disk["models"]["a"]["best"] == s["models"]["a"]["best"] and on_disk["spaces"]["a"]["knobs"]["layers"]
    md = (tmp_path / "tuning.md").read_text()
    assert "| a |" in md and "## b (6 of 6 trials)" in md


def test_mode_min_and_ties_go_to_the_lowest_trial(tmp_path):
    trials = {"m": [{"v": 2}, {"v": 1}, {"v": 1}, {"v": 3}, {"v": None}]}
    s = run_search(score_v, trials, tmp_path / "min", mode="min", backend="local", progress=False)
    assert s["models"]["m"]["best"]["index"] == 1  # the tie (trials 1, 2) goes to the lower index; None never wins
    s = run_search(score_v, trials, tmp_path / "max", mode="max", backend="local", progress=False)
    assert s["models"]["m"]["best"]["index"] == 3
    with pytest.raises(ValueError, match="mode: expected one of max, min"):
        run_search(score_v, trials, tmp_path / "x", mode="best", backend="local")


def score_v(model, config, index, context):
    return {"score": config["v"]}


def test_resume_skips_finished_trials_and_reruns_changed_settings(tmp_path):
    trials = sample_trials(SPACES, 4, seed=0)
    ctx: dict = {}
    run_search(toy, trials, tmp_path, context=ctx, fingerprint={"budget": 1}, backend="local", progress=False)
    assert len(ctx["calls"]) == 8
    ctx2: dict = {}
    s = run_search(toy, trials, tmp_path, context=ctx2, fingerprint={"budget": 1}, backend="local", progress=False)
    assert "calls" not in ctx2 and s["finished"] == 8  # nothing ran again
    ctx3: dict = {}
    run_search(toy, sample_trials(SPACES, 6, seed=0), tmp_path, context=ctx3, fingerprint={"budget": 1},
               backend="local", progress=False)
    assert sorted(ctx3["calls"]) == [("a", 4), ("a", 5), ("b", 4), ("b", 5)]  # only the new trials
    ctx4: dict = {}
    run_search(toy, trials, tmp_path, context=ctx4, fingerprint={"budget": 2}, backend="local", progress=False)
    assert len(ctx4["calls"]) == 8  # other settings: every trial again


def test_interrupted_search_keeps_finished_trials(tmp_path):
    trials = sample_trials(SPACES, 3, seed=0)
    ctx = {"stop_at": 4}
    with pytest.raises(KeyboardInterrupt) as info:
        run_search(stopping, trials, tmp_path, context=ctx, backend="local", progress=False)
    assert "3 of 6 trials finished and kept" in info.value.partial
    s = json.loads((tmp_path / "tuning.json").read_text())
    assert s["finished"] == 3 and s["planned"] == 6
    assert len(list((tmp_path / "trials").rglob("trial-*.json"))) == 3
    ctx2: dict = {}
    s = run_search(toy, trials, tmp_path, context=ctx2, backend="local", progress=False)
    assert len(ctx2["calls"]) == 3 and s["finished"] == 6


def stopping(model, config, index, context):
    context["n"] = context.get("n", 0) + 1
    if context["n"] == context["stop_at"]:
        raise KeyboardInterrupt
    return {"score": 1.0}


def test_a_failed_trial_is_recorded_and_retried(tmp_path):
    trials = {"m": [{"v": 1}, {"v": 2}]}
    s = run_search(failing, trials, tmp_path, context={"fail": 1}, backend="local", progress=False)
    assert [e["index"] for e in s["errors"]] == [1] and "ValueError: bad trial" in s["errors"][0]["error"]
    assert s["finished"] == 1 and not (tmp_path / "trials" / "m" / "trial-1.json").exists()
    assert "Failed trials" in (tmp_path / "tuning.md").read_text()
    s = run_search(failing, trials, tmp_path, context={"fail": -1}, backend="local", progress=False)
    assert s["finished"] == 2 and not s["errors"]


def failing(model, config, index, context):
    if index == context["fail"]:
        raise ValueError("bad trial")
    return {"score": float(config["v"])}


def test_an_objective_without_a_score_is_an_error(tmp_path):
    s = run_search(lambda *a: {"loss": 1.0}, {"m": [{"v": 1}]}, tmp_path, backend="local", progress=False)
    assert "expected a dict with a 'score'" in s["errors"][0]["error"]


def test_import_does_not_import_ray():
    code = "import sys, tnd.apps.tuning, tnd.apps.pong.tuning_spaces; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_backend_names_are_checked():
    with pytest.raises(ValueError, match="backend: expected one of auto, ray, local"):
        tuning.resolve_backend("slurm")
    assert tuning.resolve_backend("local") == "local"
    assert tuning.resolve_backend("auto") in ("ray", "local")
