"""TND as a drop-in layer: the default TND and candidate defaults against a parameter-matched LSTM.

Exactly what a user would do: build ``TND(C, NeuronGraph.random(N, density=0.1), O)`` (N chosen
so the model has ``budget`` parameters) or an LSTM of the same size (``apps.baselines``,
``hidden_size_for_budget``), and train it in a plain loop: Adam (one lr for every model),
gradient-norm clipping at 1, the same number of updates of the same batch size for every model,
no schedule, no early stopping; then score the test split once. Seeded (weights, graph and batch
order follow the seed; the task data are fixed), single-threaded. The loop, the losses and the
Pong data are those of ``benchmarks/diagnose.py`` (imported).

Models (every TND option spelled out, so a later change of the library defaults does not change
what a name means; ``tnd-default`` passes nothing and the JSON records what that resolved to):

* ``lstm`` -- one-layer LSTM + linear readout.
* ``tnd-default`` -- no options: the library's defaults at the commit that ran.
* ``tnd-v0`` -- the defaults before docs/DROPIN.md: a quarter of the neurons take input
  (``num_inputs=N // 4``), ``tau_init=(1, 10)``, ``dynamics="leaky"`` (the family of every
  variant below whose name does not say ``gated``).
* ``tnd-allin`` -- every neuron an input neuron (``num_inputs=N``), ``tau_init=(1, 10)``.
* ``tnd-span`` -- a quarter input, ``tau_init="span"`` (1 to ``tau_max`` = 1,000 steps).
* ``tnd-allin-span`` -- both (the defaults from docs/DROPIN.md's first change until the gated family
  became the default).
* ``tnd-gated-allin-span`` -- both, with ``dynamics="gated"`` (today's defaults).
* ``tnd-gated-allin`` -- every neuron input, ``dynamics="gated"``, ``tau_init=(1, 10)``.

Tasks (``apps.tasks``; constant predictor as reference): ``adding_100`` / ``adding_1000`` (MSE of
the last step), ``copy_100`` (T = 120, cross-entropy and accuracy on the last 10 steps),
``multiscale`` (T = 256, fast + slow memory, accuracy of the last step), ``irregular_jv``
(JapaneseVowels with half the steps dropped, bundled in aeon; the TND gets the real elapsed
times as ``timespans``, the LSTM gets them as an extra input channel; accuracy at the last valid
step), ``pong`` (positions-only behaviour cloning on 600 expert rounds, validation CE/accuracy
and 100 closed-loop rounds).

``python benchmarks/dropin.py`` writes docs/figures/dropin.json (after every model, atomically;
a killed run resumes cell by cell) and prints the tables of docs/DROPIN.md;
``--table docs/figures/dropin.json`` prints them again; ``--quick`` is the seconds-long smoke
version (tests/test_dropin_smoke.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/diagnose.py, also when loaded by path

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import diagnose  # noqa: E402
from tnd import TND, NeuronGraph  # noqa: E402
from tnd.apps.baselines import count_parameters, hidden_size_for_budget, make_baseline, size_for_budget  # noqa: E402
from tnd.apps.tasks import load_task  # noqa: E402
from tnd.io import atomic_write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DENSITY = 0.1
OLD_TAU = (1.0, 10.0)

#: name -> TND options: "inputs" ("quarter" = N // 4, the old builder default; "all" = N),
#: "tau_init", "dynamics"; None: pass nothing (the library's defaults)
VARIANTS: dict[str, dict | None] = {
    "tnd-default": None,
    "tnd-v0": {"inputs": "quarter", "tau_init": OLD_TAU, "dynamics": "leaky"},
    "tnd-allin": {"inputs": "all", "tau_init": OLD_TAU, "dynamics": "leaky"},
    "tnd-span": {"inputs": "quarter", "tau_init": "span", "dynamics": "leaky"},
    "tnd-allin-span": {"inputs": "all", "tau_init": "span", "dynamics": "leaky"},
    "tnd-gated-allin-span": {"inputs": "all", "tau_init": "span", "dynamics": "gated"},
    "tnd-gated-allin": {"inputs": "all", "tau_init": OLD_TAU, "dynamics": "gated"},
    # fast neurons too: time constants from tau_min = 0.25 steps (a neuron can follow its input
    # within a step), to 10 or to tau_max (Pong pilots, docs/DROPIN.md)
    "tnd-allin-fast": {"inputs": "all", "tau_init": (0.25, 10.0), "dynamics": "leaky"},
    "tnd-allin-fastspan": {"inputs": "all", "tau_init": (0.25, 1000.0), "dynamics": "leaky"},
}
MODELS = ("lstm", *VARIANTS)

# updates per task (batch 32 for all): T ~ 100 gets 1,500; the long tasks fewer, for the one-core budget
FULL = {"quick": False, "budget": 2000, "lr": 5e-3, "clip": 1.0, "batch": 32, "seeds": [0, 1, 2],
        "tasks": {"adding_100": 1500, "copy_100": 1500, "adding_1000": 400, "multiscale": 600,
                  "irregular_jv": 600, "pong": 1500},
        "n_test": 1000, "n_train_long": 4000,
        "pong": {"demo_rounds": 600, "window": 32, "play_rounds": 100}}
QUICK = {"quick": True, "budget": 300, "lr": 5e-3, "clip": 1.0, "batch": 8, "seeds": [0],
         "tasks": {"adding_100": 4, "copy_100": 4, "adding_1000": 2, "multiscale": 3, "irregular_jv": 3, "pong": 3},
         "n_test": 32, "n_train_long": 64,
         "pong": {"demo_rounds": 12, "window": 16, "play_rounds": 3}}
SHORTEN = {"adding_100": 30, "copy_100": 20, "adding_1000": 60, "multiscale": 40}  # --quick lengths


# ----------------------------------------------------------------------------- models
class Timed(nn.Module):
    """A TND that reads the last input channel as the step's elapsed time (``timespans``), so the
    same packed ``x`` feeds the TND (times as timespans) and the LSTM (times as an input channel)."""

    def __init__(self, inner: TND) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, hx=None):
        return self.inner(x[..., :-1], hx, timespans=x[..., -1])


def tnd_kwargs(name: str, n: int) -> tuple[dict, dict]:
    """(graph options, TND options) of variant ``name`` at N = ``n`` neurons."""
    v = VARIANTS[name]
    if v is None:
        return {}, {}
    g = {"num_inputs": n if v["inputs"] == "all" else max(1, n // 4)}
    return g, {"dynamics": v["dynamics"], "dynamics_kw": {"tau_init": v["tau_init"]}}


def build_tnd(name: str, c: int, o: int, budget: int, seed: int, strict: bool = True) -> TND:
    """``TND(c, NeuronGraph.random(N, density=0.1, seed=seed, ...), o, ...)``, N matched to ``budget``
    (``strict=False``: allow output neurons no input reaches, as tiny --quick graphs may have)."""
    def make(n: int, strict: bool) -> TND:
        gopt, kw = tnd_kwargs(name, n)
        return TND(c, NeuronGraph.random(n, density=DENSITY, seed=seed, allow_unreachable=not strict, **gopt), o, **kw)

    def count(n: int) -> int:
        with torch.random.fork_rng(devices=[]):
            return count_parameters(make(n, False))

    return make(size_for_budget(count, budget, lo=8, hi=4096), strict)


def build(name: str, c: int, o: int, budget: int, seed: int, timed: bool, strict: bool = True) -> nn.Module:
    """Model ``name`` for ``c`` input channels (with ``timed``, the last one is the elapsed time)."""
    if name == "lstm":
        return make_baseline("lstm", c, o, hidden_size_for_budget("lstm", c, o, budget))
    if timed:
        return Timed(build_tnd(name, c - 1, o, budget, seed, strict))
    return build_tnd(name, c, o, budget, seed, strict)


def describe(model: nn.Module) -> dict:
    m = diagnose.core(model)
    if not isinstance(m, TND):
        return {"hidden_size": int(m.lstm.hidden_size)}
    dyn = m.cell.dynamics
    return {"num_neurons": m.num_neurons, "num_edges": m.graph.num_edges,
            "num_inputs": int(m.graph.input_neurons.numel()), "dynamics": dyn.name,
            "tau_init": list(dyn.tau_init), "tau_range": [dyn.tau_min, dyn.tau_max]}


# ----------------------------------------------------------------------------- tasks
def last_valid_ce(out, y):  # y (B, 2): label, index of the last valid step
    return F.cross_entropy(out[torch.arange(len(y)), y[:, 1]], y[:, 0])


def last_valid_acc(out, y):
    return (out[torch.arange(len(y)), y[:, 1]].argmax(-1) == y[:, 0]).float().mean()


def frequency_constant(ytr: torch.Tensor, yte: torch.Tensor, k: int) -> dict:
    freq = torch.bincount(ytr.flatten(), minlength=k).float()
    freq = freq / freq.sum()
    return {"loss": float(F.cross_entropy(freq.log().expand(yte.numel(), k), yte.flatten())),
            "accuracy": float((yte.flatten() == freq.argmax()).float().mean()), "what": "training label frequencies"}


def load(label: str, cfg: dict, work: Path) -> dict:
    """Train/test tensors, losses, constant predictor and sizes of task ``label``."""
    quick = cfg["quick"]
    timed = False
    if label.startswith(("adding", "copy")):
        kind, length = label.split("_")
        length = SHORTEN[label] if quick else int(length)
        kw = {"n_train": cfg["n_train_long"]} if (length > 100 or quick) else {}
        task = load_task(kind, seed=0, length=length, n_test=cfg["n_test"], n_val=16, **kw)
        xtr, ytr = task.split("train")
        xte, yte = task.split("test")
        k = int(task.metadata.get("k", 0))
        loss_of, acc_of = diagnose.task_losses(kind, k)
        if kind == "adding":
            constant = {"loss": float(task.metadata["baseline_mse_test"]), "what": "predict 1.0"}
            o = task.output_size
        else:
            constant = {"loss": math.log(task.num_classes), "accuracy": 1.0 / task.num_classes, "what": "uniform"}
            o = task.num_classes
    elif label == "multiscale":
        task = load_task("multiscale", seed=0, **({"length": SHORTEN[label], "n_train": 64, "n_test": 32} if quick else {}))
        xtr, ytr = task.split("train")
        xte, yte = task.split("test")
        o = task.num_classes
        loss_of = lambda out, y: F.cross_entropy(out[:, -1], y)  # noqa: E731
        acc_of = lambda out, y: (out[:, -1].argmax(-1) == y).float().mean()  # noqa: E731
        constant = frequency_constant(ytr, yte, o)
    elif label == "irregular_jv":
        task = load_task("irregular_japanese_vowels_50", seed=0)
        timed = True

        def pack(which):
            x, y = task.split(which)
            x = torch.cat([x, task.timespans(which).unsqueeze(-1)], -1)
            return x, torch.stack([y, task.lengths(which) - 1], 1)

        (xtr, ytr), (xte, yte) = pack("train"), pack("test")
        o = task.num_classes
        loss_of, acc_of = last_valid_ce, last_valid_acc
        constant = frequency_constant(ytr[:, 0], yte[:, 0], o)
    elif label == "pong":
        xtr, ytr, xte, yte, constant = diagnose.pong_data(cfg["pong"], quick, work)
        loss_of, acc_of = diagnose.task_losses("pong")
        o = 3
    else:
        raise ValueError(f"unknown task {label!r}; expected one of {', '.join(FULL['tasks'])}")
    if quick:
        xtr, ytr, xte, yte = xtr[:64], ytr[:64], xte[:32], yte[:32]
    return {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte, "loss_of": loss_of, "acc_of": acc_of,
            "constant": constant, "c": int(xtr.shape[-1]), "o": int(o), "T": int(xtr.shape[1]), "timed": timed}


# ----------------------------------------------------------------------------- one cell
def run_cell(label: str, name: str, seed: int, data: dict, cfg: dict) -> dict:
    torch.manual_seed(seed)
    model = build(name, data["c"], data["o"], cfg["budget"], seed, data["timed"], strict=not cfg["quick"])
    t0 = time.time()
    curve = diagnose.train(model, data["xtr"], data["ytr"], data["loss_of"], cfg["tasks"][label], cfg["batch"],
                           cfg["lr"], cfg["clip"], seed=seed)
    rec = {"params": count_parameters(model), "model": describe(model), "curve": curve,
           "test": diagnose.evaluate(model, data["xte"], data["yte"], data["loss_of"], data["acc_of"])}
    rec["train_seconds"] = time.time() - t0
    if label == "pong":
        rec.update(diagnose.pong_play(model, cfg["pong"]["play_rounds"], cfg["quick"]))
    rec["seconds"] = time.time() - t0
    return rec


# ----------------------------------------------------------------------------- tables
PRIMARY = {"adding_100": ("loss", "test MSE", False), "adding_1000": ("loss", "test MSE", False),
           "copy_100": ("accuracy", "accuracy", True), "multiscale": ("accuracy", "accuracy", True),
           "irregular_jv": ("accuracy", "accuracy", True), "pong": ("catch_rate", "closed-loop catch rate", True)}


def metric(rec: dict, key: str) -> float:
    if key == "catch_rate":
        return float(rec["play"]["catch_rate"])
    if key == "mean_catches":
        return float(rec["play"]["mean_catches"])
    return float(rec["test"][key])


def stats(vals: list[float]) -> dict:
    return {"mean": float(np.mean(vals)), "min": float(np.min(vals)), "max": float(np.max(vals)), "n": len(vals)}


def summarise(doc: dict) -> dict:
    """Per task and model: mean, min, max over seeds of the test loss, accuracy and closed-loop play."""
    out = {}
    for label, entry in doc["results"].items():
        out[label] = {}
        for name, seeds in entry["models"].items():
            recs = list(seeds.values())
            row = {"params": recs[0]["params"], "loss": stats([metric(r, "loss") for r in recs])}
            if "accuracy" in recs[0]["test"]:
                row["accuracy"] = stats([metric(r, "accuracy") for r in recs])
            if "play" in recs[0]:
                row["catch_rate"] = stats([metric(r, "catch_rate") for r in recs])
                row["mean_catches"] = stats([metric(r, "mean_catches") for r in recs])
            out[label][name] = row
    return out


def fmt(s: dict, digits: int) -> str:
    return f"{s['mean']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


#: differences of the primary metric below this count as "same": 1 % of the constant predictor's
#: MSE, one accuracy point, two catch-rate points (a few test sequences / rounds)
SAME = {"loss": 0.01, "accuracy": 0.01, "catch_rate": 0.02}


def compare(summ: dict, name: str, ref: str, consts: dict) -> dict:
    """Per task, ``name`` against ``ref`` on the task's primary metric: "better" / "worse" by the
    mean over seeds, "same" within ``SAME``; "clearly" when every seed of one lies beyond every
    seed of the other (at least 2 seeds each)."""
    out = {}
    for label, rows in summ.items():
        if name not in rows or ref not in rows:
            continue
        key, _, higher = PRIMARY[label]
        a, b = rows[name][key], rows[ref][key]
        tol = SAME[key] * (consts[label]["loss"] if key == "loss" else 1.0)
        sign = 1.0 if higher else -1.0
        d = sign * (a["mean"] - b["mean"])
        # a's worst seed against b's best seed, in the "higher is better" direction
        sep = sign * ((a["min"] - b["max"]) if higher else (a["max"] - b["min"]))
        sep_worse = sign * ((b["min"] - a["max"]) if higher else (b["max"] - a["min"]))
        many = a["n"] >= 2 and b["n"] >= 2
        if abs(d) < tol:
            out[label] = "same"
        elif d > 0:
            out[label] = "clearly better" if many and sep > 0 else "better"
        else:
            out[label] = "clearly worse" if many and sep_worse > 0 else "worse"
    return out


def summary_table(doc: dict, ref: str = "tnd-v0") -> str:
    """Tasks x models on each task's primary metric (mean over seeds), then each model against ``ref``."""
    summ = summarise(doc)
    names = [m for m in MODELS if any(m in rows for rows in summ.values())]
    lines = ["| task (metric) | constant | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    for label, rows in summ.items():
        key, what, higher = PRIMARY[label]
        const = doc["results"][label]["constant"]
        c = "-" if key == "catch_rate" else f"{const[key]:.4g}"
        cells = []
        for m in names:
            v = rows.get(m, {}).get(key)
            cells.append("-" if v is None else f"{v['mean']:.4g}")
        lines.append(f"| {label} ({what}, {'higher' if higher else 'lower'} is better) | {c} | " + " | ".join(cells) + " |")
    if ref not in names:  # nothing to compare against (a run without the reference model)
        return "\n".join(lines)
    lines += ["", f"| model | against `{ref}`, per task (mean over seeds; \"same\": within 1 % of the constant MSE, 1 accuracy point or 2 catch-rate points; \"clearly\": every seed beyond every seed of the other) |", "|---|---|"]
    for m in names:
        if m == ref:
            continue
        cmp = compare(summ, m, ref, {k: v["constant"] for k, v in doc["results"].items()})
        lines.append(f"| {m} | " + ", ".join(f"{k}: {v}" for k, v in cmp.items()) + " |")
    return "\n".join(lines)


def tables(doc: dict) -> str:
    summ = summarise(doc)
    lines = ["## Summary", "", summary_table(doc)]
    for label, rows in summ.items():
        entry = doc["results"][label]
        const = entry["constant"]
        key, what, higher = PRIMARY[label]
        lstm = rows.get("lstm")
        nseeds = max(r["loss"]["n"] for r in rows.values())
        lines += ["", f"### {label} (T = {entry['T']}, {entry['updates']} updates of batch {doc['settings']['batch']}, "
                  f"{nseeds} seed(s); constant predictor: loss {const['loss']:.4f}"
                  + (f", accuracy {const['accuracy']:.3f}" if "accuracy" in const else "") + ")", ""]
        head = "| model | params | test loss, mean [min, max] | loss / LSTM's |"
        sep = "|---|---:|---:|---:|"
        has_acc = any("accuracy" in r for r in rows.values())
        has_play = any("catch_rate" in r for r in rows.values())
        if has_acc:
            head += " accuracy, mean [min, max] |"
            sep += "---:|"
        if has_play:
            head += " catch rate | mean catches |"
            sep += "---:|---:|"
        lines += [head, sep]
        for name in MODELS:
            if name not in rows:
                continue
            r = rows[name]
            ratio = r["loss"]["mean"] / lstm["loss"]["mean"] if lstm else float("nan")
            line = f"| {name} | {r['params']} | {fmt(r['loss'], 4)} | {ratio:.2f} |"
            if has_acc:
                line += f" {fmt(r['accuracy'], 3)} |" if "accuracy" in r else " - |"
            if has_play:
                line += f" {fmt(r['catch_rate'], 3)} | {fmt(r['mean_catches'], 2)} |"
            lines.append(line)
    return "\n".join(lines)


def merge(paths: list[str], out: Path) -> dict:
    """One dropin.json from several runs (e.g. one per --only task or --models set); the
    settings must agree; a cell in more than one file must be the same cell (first one kept)."""
    docs = [json.loads(Path(p).read_text()) for p in paths]
    if any(d["settings"] != docs[0]["settings"] for d in docs):
        raise SystemExit("--merge: the files were made with different settings")
    doc = {"settings": docs[0]["settings"], "quick": docs[0]["quick"], "torch": docs[0]["torch"], "results": {},
           "seconds": sum(d.get("seconds", 0.0) for d in docs)}
    for d in docs:
        for label, entry in d["results"].items():
            dst = doc["results"].setdefault(label, {k: v for k, v in entry.items() if k != "models"} | {"models": {}})
            for name, seeds in entry["models"].items():
                for seed, rec in seeds.items():
                    dst["models"].setdefault(name, {}).setdefault(seed, rec)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "dropin.json", json.dumps(doc, separators=(",", ":")))
    return doc


# ----------------------------------------------------------------------------- main
def add_selection_arguments(ap: argparse.ArgumentParser, out_file: str, models=MODELS) -> None:
    """``--quick``, ``--out``, ``--only`` and ``--models``: what this script and dropin_tuned.py share."""
    ap.add_argument("--quick", action="store_true", help="tiny run in seconds (smoke test)")
    ap.add_argument("--out", default=None, help=f"folder for {out_file} (default docs/figures; --quick: a temporary one)")
    ap.add_argument("--only", default=None, help=f"comma-separated tasks ({','.join(FULL['tasks'])})")
    ap.add_argument("--models", default=None, help=f"comma-separated models ({','.join(models)})")


def selection(ap: argparse.ArgumentParser, args: argparse.Namespace, models=MODELS) -> tuple[list[str], list[str]]:
    """The tasks and models ``--only`` / ``--models`` name (default: all; ``models`` the default
    set), each checked against those that exist (``ap.error`` naming the option)."""
    cfg = QUICK if args.quick else FULL
    tasks = list(cfg["tasks"]) if not args.only else args.only.split(",")
    chosen = list(models) if not args.models else args.models.split(",")
    for t in tasks:
        if t not in cfg["tasks"]:
            ap.error(f"--only: unknown task {t!r}; expected some of {','.join(cfg['tasks'])}")
    for m in chosen:
        if m not in MODELS:
            ap.error(f"--models: unknown model {m!r}; expected some of {','.join(MODELS)}")
    return tasks, chosen


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_selection_arguments(ap, "dropin.json")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="merge the cells of earlier runs with the same settings into --out/dropin.json; runs nothing")
    ap.add_argument("--table", default=None, metavar="JSON", help="print the markdown tables of a dropin.json; runs nothing")
    ap.add_argument("--updates", type=int, default=None, metavar="N",
                    help="updates per cell for every --only task instead of each task's own (a longer budget); "
                         "the settings then differ from the default run's, so give a separate --out")
    args = ap.parse_args(argv)
    if args.table:
        print(tables(json.loads(Path(args.table).read_text())))
        return {}
    cfg = QUICK if args.quick else FULL
    if args.updates is not None:
        if args.updates < 1:
            ap.error(f"--updates: expected a positive number of updates, got {args.updates}")
        if not args.only or not args.out:
            ap.error("--updates needs --only (the tasks it applies to) and --out (a folder other than the default run's)")
        cfg = {**cfg, "tasks": {t: args.updates for t in args.only.split(",") if t in cfg["tasks"]}}
    if args.merge:
        return merge(args.merge, Path(args.out) if args.out else ROOT / "docs" / "figures")
    tasks, models = selection(ap, args)
    torch.set_num_threads(1)
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="dropin-")) if args.quick else ROOT / "docs" / "figures")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "dropin.json"
    settings = json.loads(json.dumps(cfg))
    doc = {"settings": settings, "quick": bool(args.quick), "torch": torch.__version__, "results": {}}
    if path.is_file():  # resume: keep the cells an earlier run with these settings finished
        prev = json.loads(path.read_text())
        if prev.get("settings") == settings:
            doc["results"] = prev["results"]
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="dropin-pong-") as work:
        for label in tasks:
            data = None
            for seed in cfg["seeds"]:
                for name in models:
                    entry = doc["results"].setdefault(label, {"models": {}})
                    if str(seed) in entry["models"].get(name, {}):
                        continue
                    if data is None:
                        data = load(label, cfg, Path(work))
                        entry.update(constant=data["constant"], T=data["T"], updates=cfg["tasks"][label])
                    rec = run_cell(label, name, seed, data, cfg)
                    entry["models"].setdefault(name, {})[str(seed)] = rec
                    doc["seconds"] = doc.get("seconds", 0.0) + rec["seconds"]
                    atomic_write_text(path, json.dumps(diagnose.compact(doc), separators=(",", ":")))
                    extra = f" acc {rec['test']['accuracy']:.3f}" if "accuracy" in rec["test"] else ""
                    if "play" in rec:
                        extra += f" catch {rec['play']['catch_rate']:.3f}"
                    print(f"{label:13s} {name:22s} seed {seed} params {rec['params']:5d} test {rec['test']['loss']:.4f}"
                          f"{extra} (const {data['constant']['loss']:.4f}) [{rec['seconds']:.0f}s, total {time.time() - t0:.0f}s]",
                          flush=True)
    print(tables(doc))
    return doc


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
