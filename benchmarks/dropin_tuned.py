"""The drop-in comparison under an equal tuning budget: every model gets the same number of
learning-rate trials per task, chosen on validation data only, then 5 seeds on the test split.

``benchmarks/dropin.py`` trains every model at one learning rate (5e-3), as a user who tunes
nothing would. The rule for changing a library default (docs/DROPIN.md) asks for more: the
candidate must win *under the equal tuning budget*, so that a default does not win only because
5e-3 happens to suit it. This script gives each (task, model) the same search:

* the space: Adam's learning rate, log-uniform on [1e-3, 3e-2]; trial 0 is 5e-3 (dropin.py's);
  the same trial count for every model (``--trials``, default 6), seeded draws per model
  (:func:`tnd.apps.tuning.sample_trials`), run through :func:`tnd.apps.tuning.run_search`
  (Ray Tune on this machine's cores by default, ``--backend local`` in this process);
* each trial trains seed 0 exactly as dropin.py's cell does (same updates, batch, clipping) on
  the training split minus a validation part (a fixed seeded 20 % of the training sequences; for
  Pong the last 20 % of the windows, i.e. the last demonstration rounds, so that overlapping
  windows of one round do not straddle the two parts), and is scored by the validation loss;
  the test split is never read while tuning;
* each model's best learning rate per task then trains seeds 0-4 on the whole training split
  (dropin.py's ``run_cell``), scored once on the test split (Pong: also 100 closed-loop rounds).

Writes ``docs/figures/dropin_tuned.json`` (``--out`` to change; the tuning run folder is
``runs/dropin-tuned``, not committed; its ``tuning.md`` lists every trial) after every final cell, atomically; a killed run resumes trial by
trial and cell by cell. ``--table FILE`` prints the tables of docs/DROPIN.md's tuned section;
``--quick`` is the seconds-long smoke version (tests/test_dropin_tuned_smoke.py).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # dropin.py and diagnose.py, also when loaded by path
# Ray's workers import this file's objective by module name: they need the folder on their path
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import diagnose  # noqa: E402
import dropin  # noqa: E402
from tnd.apps.pong.report import bootstrap_ci  # noqa: E402
from tnd.apps.tuning import SearchSpace, loguniform, run_search, sample_trials  # noqa: E402
from tnd.io import atomic_write_text  # noqa: E402

ROOT = HERE.parent
#: the tuned study's models: the defaults before docs/DROPIN.md (tnd-v0), after its first change
#: (tnd-allin-span, run as "tnd-default" when that was its meaning), and today's (tnd-gated-allin-span)
MODELS = ("lstm", "tnd-v0", "tnd-allin-span", "tnd-allin-fastspan", "tnd-gated-allin-span")
SPACE = SearchSpace({"lr": loguniform(1e-3, 3e-2)}, default={"lr": 5e-3},
                    doc={"lr": "Adam's learning rate (the plain loop's one knob; 5e-3 is dropin.py's)"})
VAL_FRACTION = 0.2
TUNE_SEED = 0  # the training seed of every trial (and the seed of the trial draws)
FINAL_SEEDS = [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=None)
def task_data(label: str, quick: bool, work: str) -> dict:
    """dropin.py's tensors of task ``label`` (cached per process; Pong's data are made in ``work``)."""
    return dropin.load(label, dropin.QUICK if quick else dropin.FULL, Path(work))


def validation_split(label: str, data: dict) -> tuple[tuple, tuple]:
    """``((x_fit, y_fit), (x_val, y_val))`` from the training split: a seeded 20 % of the
    sequences (Pong: the last 20 % of the windows, whole rounds apart from one)."""
    n = len(data["xtr"])
    k = max(1, int(round(VAL_FRACTION * n)))
    if label == "pong":
        order = torch.arange(n)
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(12345))
    fit, val = order[:n - k], order[n - k:]
    return (data["xtr"][fit], data["ytr"][fit]), (data["xtr"][val], data["ytr"][val])


# ----------------------------------------------------------------------------- tuning
def objective(key: str, config: dict, index: int, context: dict) -> dict:
    """One trial: ``key`` = ``"<task>/<model>"``; seed 0 trained on the fit part, validation loss."""
    torch.set_num_threads(1)
    label, name = key.split("/", 1)
    cfg = dropin.QUICK if context["quick"] else dropin.FULL
    data = task_data(label, context["quick"], context["work"])
    (xf, yf), (xv, yv) = validation_split(label, data)
    torch.manual_seed(TUNE_SEED)
    model = dropin.build(name, data["c"], data["o"], cfg["budget"], TUNE_SEED, data["timed"], strict=not context["quick"])
    t0 = time.time()
    diagnose.train(model, xf, yf, data["loss_of"], cfg["tasks"][label], cfg["batch"], float(config["lr"]), cfg["clip"],
                   seed=TUNE_SEED)
    val = diagnose.evaluate(model, xv, yv, data["loss_of"], data["acc_of"])
    out = {"score": float(val["loss"]), "seconds": time.time() - t0, "n_val": int(len(xv))}
    if "accuracy" in val:
        out["val_accuracy"] = float(val["accuracy"])
    return out


def tune(tasks: list[str], models: list[str], trials: int, quick: bool, work: str, out: Path, backend: str,
         num_cpus: int | None) -> dict:
    keys = {f"{t}/{m}": SPACE for t in tasks for m in models}
    plan = sample_trials(keys, trials, TUNE_SEED)
    cfg = dropin.QUICK if quick else dropin.FULL
    fingerprint = {"settings": json.loads(json.dumps(cfg)), "val_fraction": VAL_FRACTION, "seed": TUNE_SEED}
    import dropin_tuned  # by module name, so Ray's workers import it rather than unpickle __main__'s

    return run_search(dropin_tuned.objective, plan, out, context={"quick": quick, "work": work}, fingerprint=fingerprint,
                      mode="min", backend=backend, num_cpus=num_cpus, spaces=keys, log=print,
                      reuse_workers=True)


# ----------------------------------------------------------------------------- final cells
def final_cell(label: str, name: str, seed: int, lr: float, quick: bool, work: str) -> dict:
    torch.set_num_threads(1)
    cfg = dict(dropin.QUICK if quick else dropin.FULL, lr=lr)
    rec = dropin.run_cell(label, name, seed, task_data(label, quick, work), cfg)
    rec["lr"] = lr
    return rec


def best_lrs(summary: dict) -> dict:
    """``{task: {model: lr}}`` of every search that finished."""
    out: dict = {}
    for key, v in summary["models"].items():
        if v["best"] is not None and v["finished"] == v["planned"]:
            label, name = key.split("/", 1)
            out.setdefault(label, {})[name] = diagnose.compact(float(v["best"]["config"]["lr"]))  # as stored
    return out


def run_finals(tasks, models, lrs: dict, quick: bool, work: str, path: Path, jobs: int) -> dict:
    cfg = dropin.QUICK if quick else dropin.FULL
    seeds = [0] if quick else FINAL_SEEDS
    settings = json.loads(json.dumps(cfg)) | {"seeds": seeds, "tuned": "lr, equal trials per model"}
    prev = json.loads(path.read_text()) if path.is_file() else {}
    if prev.get("settings") != settings:  # resume only cells made with these settings (and the same lr)
        prev = {}
    old_results, old_lrs = prev.get("results", {}), prev.get("lrs", {})
    order = [*tasks, *(t for t in dropin.FULL["tasks"] if t not in tasks)]  # the tables' row order
    doc = {"settings": settings, "quick": quick, "torch": torch.__version__,
           "results": {t: old_results[t] for t in order if t in old_results},
           # the rates of models tuned by an earlier call (--models) stay beside this call's
           "lrs": {t: old_lrs.get(t, {}) | lrs.get(t, {}) for t in order if t in old_lrs or t in lrs}}
    todo = []
    for label in tasks:
        data = task_data(label, quick, work)  # Pong's data made once, before the workers read them
        entry = doc["results"].setdefault(label, {"models": {}})
        entry.update(constant=data["constant"], T=data["T"], updates=cfg["tasks"][label])
        for name in models:
            lr = lrs[label][name]
            for seed in seeds:
                rec = entry["models"].get(name, {}).get(str(seed))
                if rec is None or rec.get("lr") != lr:
                    todo.append((label, name, seed, lr))
    print(f"finals: {len(todo)} cell(s) to run, {jobs} process(es)", flush=True)
    t0 = time.time()
    ctx = multiprocessing.get_context("fork")
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futs = {pool.submit(final_cell, *job, quick, work): job for job in todo}
        for fut in cf.as_completed(futs):
            label, name, seed, lr = futs[fut]
            rec = fut.result()
            doc["results"][label]["models"].setdefault(name, {})[str(seed)] = rec
            atomic_write_text(path, json.dumps(diagnose.compact(doc), separators=(",", ":")))
            print(f"{label:13s} {name:22s} seed {seed} lr {lr:.2e} test {rec['test']['loss']:.4f} "
                  f"[{rec['seconds']:.0f}s, total {time.time() - t0:.0f}s]", flush=True)
    doc["seconds"] = sum(r["seconds"] for e in doc["results"].values() for m in e["models"].values() for r in m.values())
    return doc


# ----------------------------------------------------------------------------- tables
def tuning_table(doc: dict) -> str:
    tasks = list(doc["lrs"])
    seen = list(dict.fromkeys(m for t in tasks for m in doc["lrs"][t]))
    names = [m for m in MODELS if m in seen] + [m for m in seen if m not in MODELS]
    lines = ["| task | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(f"{doc['lrs'][t][m]:.2g}" if m in doc["lrs"][t] else "-" for m in names) + " |")
    return "\n".join(lines)


def before_after(doc: dict, before: str = "tnd-v0", between: str = "tnd-allin-span",
                 after: str = "tnd-gated-allin-span") -> str:
    """Per task: the constant predictor, the LSTM and the TND before the default changes, after
    the first (inputs and time constants) and after the second (the gated family), on the primary
    metric, mean over the seeds [95 % percentile-bootstrap CI of the mean]."""
    def cell(label: str, name: str) -> str:
        seeds = doc["results"][label]["models"].get(name)
        if not seeds:
            return "-"
        key = dropin.PRIMARY[label][0]
        vals = [dropin.metric(r, key) for r in seeds.values()]
        lo, hi = bootstrap_ci(vals, np.mean)
        d = 4 if key == "loss" else 3
        return f"{np.mean(vals):.{d}f} [{lo:.{d}f}, {hi:.{d}f}]"

    names = ("lstm", before, between, after)
    lines = [f"| task | metric | constant | LSTM | TND before ({before}) | TND between ({between}) | TND after ({after}) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for label, entry in doc["results"].items():
        key, what, higher = dropin.PRIMARY[label]
        const = entry["constant"].get(key)
        c = "-" if const is None else f"{const:.4g}"
        lines.append(f"| {label} | {what} ({'higher' if higher else 'lower'} is better) | {c} | "
                     + " | ".join(cell(label, n) for n in names) + " |")
    return "\n".join(lines)


def tables(doc: dict) -> str:
    return "\n".join(["## Before / after (mean over seeds [95 % bootstrap CI])", "", before_after(doc), "",
                      "## Chosen learning rates (best validation loss of the equal trials)", "", tuning_table(doc), "",
                      "## Against the earlier default (tnd-v0)", "", dropin.summary_table(doc, ref="tnd-v0"), "",
                      dropin.tables(doc)])


# ----------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    dropin.add_selection_arguments(ap, "dropin_tuned.json", MODELS)
    ap.add_argument("--trials", type=int, default=6, help="learning-rate trials per (task, model), the same for all")
    ap.add_argument("--backend", default="auto", choices=("auto", "ray", "local"), help="where the trials run")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for the trials and final cells")
    ap.add_argument("--table", default=None, metavar="JSON", help="print the tables of a dropin_tuned.json; runs nothing")
    args = ap.parse_args(argv)
    if args.table:
        print(tables(json.loads(Path(args.table).read_text())))
        return {}
    tasks, models = dropin.selection(ap, args, MODELS)
    if args.jobs < 1:
        ap.error(f"--jobs: expected an integer >= 1, got {args.jobs}")
    torch.set_num_threads(1)
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="dropin-tuned-")) if args.quick else ROOT / "docs" / "figures")
    out.mkdir(parents=True, exist_ok=True)
    search = out / "dropin_tuned_search" if args.quick else ROOT / "runs" / "dropin-tuned"
    work = search / "pong-data"
    work.mkdir(parents=True, exist_ok=True)
    if "pong" in tasks:
        task_data("pong", bool(args.quick), str(work))  # made once here, read by every trial
    summary = tune(tasks, models, args.trials, bool(args.quick), str(work), search, args.backend,
                   None if args.backend == "local" else args.jobs)
    lrs = best_lrs(summary)
    missing = [f"{t}/{m}" for t in tasks for m in models if m not in lrs.get(t, {})]
    if missing:
        raise SystemExit(f"tuning did not finish for {', '.join(missing)}: rerun to resume")
    doc = run_finals(tasks, models, lrs, bool(args.quick), str(work), out / "dropin_tuned.json", args.jobs)
    # compute of every trial of this call's models (a resumed search's wall time would say nothing)
    doc["tuning_seconds"] = sum(t["result"]["seconds"] for v in summary["models"].values() for t in v["trials"]
                                if t["result"])
    atomic_write_text(out / "dropin_tuned.json", json.dumps(diagnose.compact(doc), separators=(",", ":")))
    print(tables(doc))
    return doc


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
