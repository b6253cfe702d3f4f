"""Aggregation, ``results.json`` and the Markdown report of a Pong run (the plots are in
:mod:`.plots`, re-exported here).

Statistics
----------
* ``catch_rate`` is **pooled**: all catches of all evaluation rounds of all training seeds
  divided by (catches + misses). A round that reaches the cap ends without a miss, so a model
  that always reaches the cap has rate 1.0. Per-seed values are pooled within the seed.
* ``mean_consecutive_catches`` is the mean over all rounds of all seeds (every seed plays the
  same rounds, so it is also the mean of the per-seed means); ``median_consecutive_catches`` is
  the median over the same pooled rounds.
* The 95 % confidence intervals are **percentile bootstraps over training seeds**: seeds are
  resampled with replacement (``n_boot`` times, a fixed RNG seed) and the pooled statistic is
  recomputed from the resampled seeds' rounds. With 3 seeds the interval is coarse (it can only
  take values formed from 3 seeds); it shows seed-to-seed spread, not evaluation-round noise.
* The **generalisation** columns (``--shifts``, :mod:`.shifts`) are the same mean consecutive
  catches and CI, computed from each cell's rounds in a shifted environment (``"shifts"`` of a
  model's entry in results.json; the expert's and the tracker's under their reference entries).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tnd.io import atomic_write_text
from .references import REFERENCE_NAMES
from .plots import plot_bars, plot_catch_distribution, plot_learning_curves, save_frame_strip

__all__ = [
    "bootstrap_ci",
    "format_ci",
    "format_number",
    "aggregate_model",
    "aggregate_shift",
    "reference_entry",
    "write_results_json",
    "write_report_md",
    "dagger_table",
    "generalisation_table",
    "plot_bars",
    "plot_learning_curves",
    "plot_catch_distribution",
    "save_frame_strip",
]

N_BOOT = 10_000


def _pooled_rate(catches: np.ndarray, misses: np.ndarray) -> float:
    c, m = float(np.sum(catches)), float(np.sum(misses))
    return c / (c + m) if c + m > 0 else float("nan")


def bootstrap_ci(per_seed: Sequence[Any], stat, n_boot: int = N_BOOT, seed: int = 0,
                 level: float = 0.95) -> list[float]:
    """Percentile bootstrap CI of ``stat(list_of_resampled_items)`` resampling ``per_seed``."""
    items = list(per_seed)
    if not items:
        return [float("nan"), float("nan")]
    if len(items) == 1:
        v = float(stat(items))
        return [v, v]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(items), size=(n_boot, len(items)))
    vals = np.array([stat([items[i] for i in row]) for row in idx], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return [float("nan"), float("nan")]
    a = (1.0 - level) / 2.0
    return [float(np.quantile(vals, a)), float(np.quantile(vals, 1.0 - a))]


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def _mean_catches(items) -> float:
    """Mean consecutive catches over the pooled rounds of ``(catches, misses, per_round)`` items."""
    rs = [x for i in items for x in i[2]]
    return float(np.mean(rs)) if rs else float("nan")


def aggregate_shift(evals: list[dict[str, Any]], n_boot: int = N_BOOT) -> dict[str, Any]:
    """One shift's closed-loop results of a model's seeds (their ``eval``-like dicts, seed order):
    pooled catch rate, mean consecutive catches with its 95 % bootstrap CI over seeds, per seed."""
    items = [(int(sum(e["per_round"])), int(e["misses"]), list(e["per_round"])) for e in evals]
    return {
        "catch_rate": _pooled_rate(np.array([i[0] for i in items]), np.array([i[1] for i in items])),
        "mean_consecutive_catches": _mean_catches(items),
        "mean_consecutive_catches_ci": bootstrap_ci(items, _mean_catches, n_boot),
        "mean_consecutive_catches_per_seed": [float(e["mean_catches"]) for e in evals],
        "rounds_at_cap": int(sum(e["rounds_at_cap"] for e in evals)),
        "rounds": int(sum(e["rounds"] for e in evals)),
        "overrides": evals[0].get("overrides"),
        "per_round_catches": [i[2] for i in items],
    }


def aggregate_model(name: str, cells: list[dict[str, Any]], n_boot: int = N_BOOT,
                    shifts: Sequence[str] | None = None) -> dict[str, Any]:
    """Aggregate the per-seed cell metrics of one model (see the module docstring); ``shifts``:
    the shifted environments to aggregate too (each one that every cell has; None: all such)."""
    cells = sorted(cells, key=lambda c: c["seed"])
    per_round = [list(c["eval"]["per_round"]) for c in cells]
    misses = [int(c["eval"]["misses"]) for c in cells]
    catches = [int(sum(r)) for r in per_round]
    pooled = [x for r in per_round for x in r]
    seed_items = list(zip(catches, misses, per_round))

    def rate(items):
        return _pooled_rate(np.array([i[0] for i in items]), np.array([i[1] for i in items]))

    mean_c = _mean_catches
    stored = [c.get("shifts") or {} for c in cells]
    names = [n for n in (stored[0] if shifts is None else shifts) if all(n in st for st in stored)]
    spec = cells[0]["spec"]
    acc = [float(c["train"]["val_accuracy"]) for c in cells]
    return {
        "name": name,
        "seeds": [int(c["seed"]) for c in cells],
        "catch_rate": rate(seed_items),
        "catch_rate_ci": bootstrap_ci(seed_items, rate, n_boot),
        "catch_rate_per_seed": [float(c["eval"]["catch_rate"]) for c in cells],
        "mean_consecutive_catches": mean_c(seed_items),
        "mean_consecutive_catches_ci": bootstrap_ci(seed_items, mean_c, n_boot),
        "mean_consecutive_catches_per_seed": [float(c["eval"]["mean_catches"]) for c in cells],
        "median_consecutive_catches": float(statistics.median(pooled)) if pooled else float("nan"),
        "median_consecutive_catches_per_seed": [float(c["eval"]["median_catches"]) for c in cells],
        "rounds_at_cap": int(sum(c["eval"]["rounds_at_cap"] for c in cells)),
        "rounds_at_cap_per_seed": [int(c["eval"]["rounds_at_cap"]) for c in cells],
        "rounds": int(sum(c["eval"]["rounds"] for c in cells)),
        "rounds_per_seed": int(cells[0]["eval"]["rounds"]),
        "cap": int(cells[0]["eval"]["cap"]),
        "offline_action_accuracy": float(np.mean(acc)),
        "offline_action_accuracy_per_seed": acc,
        "best_val_loss_per_seed": [float(c["train"]["best_val_loss"]) for c in cells],
        "params": int(spec["params"]),
        "param_budget": int(spec["param_budget"]),
        "spec": spec,
        "train_time_s": float(sum(c["train"]["train_time_s"] for c in cells)),
        "train_time_s_per_seed": [float(c["train"]["train_time_s"]) for c in cells],
        "eval_time_s_per_seed": [float(c.get("eval_time_s", float("nan"))) for c in cells],
        "cpu_time_s_per_seed": [float(c.get("cpu_time_s", float("nan"))) for c in cells],
        "train_steps_per_seed": [int(c["train"]["steps"]) for c in cells],
        "best_step_per_seed": [int(c["train"]["best_step"]) for c in cells],
        "stopped_early_per_seed": [bool(c["train"]["stopped_early"]) for c in cells],
        "learning_curves": [c["train"]["history"] for c in cells],
        "per_round_catches": per_round,
        "shifts": {n: aggregate_shift([st[n] for st in stored], n_boot) for n in names},
    }


def reference_entry(name: str, ev: dict[str, Any]) -> dict[str, Any]:
    """A reference policy's scores in the same keys as a model's (no seeds, no CI); ``ev["shifts"]``
    (name -> ``evaluate_policy``'s metrics in that shift), when present, as ``"shifts"``."""
    out = {
        "name": name,
        "catch_rate": float(ev["catch_rate"]),
        "mean_consecutive_catches": float(ev["mean_catches"]),
        "median_consecutive_catches": float(ev["median_catches"]),
        "rounds_at_cap": int(ev["rounds_at_cap"]),
        "rounds": int(ev["rounds"]),
        "cap": int(ev["cap"]),
        "per_round_catches": [list(ev["per_round"])],
    }
    if ev.get("shifts"):
        out["shifts"] = {n: {"catch_rate": float(e["catch_rate"]), "mean_consecutive_catches": float(e["mean_catches"]),
                             "rounds_at_cap": int(e["rounds_at_cap"]), "rounds": int(e["rounds"]),
                             "per_round_catches": [list(e["per_round"])]} for n, e in ev["shifts"].items()}
    return out


def _json_default(o: Any):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o: Any) -> Any:
    """Replace NaN/inf by None so the file is strict JSON."""
    if isinstance(o, float):
        return _finite(o)
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def write_results_json(path: str | Path, results: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(_clean(results), indent=1, default=_json_default, allow_nan=False) + "\n")


# --------------------------------------------------------------------------- Markdown
def format_number(x: Any, nd: int = 3) -> str:
    """``x`` with ``nd`` decimals, or ``n/a`` for None, NaN and inf."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{nd}f}"


def format_ci(ci: Sequence[float] | None, nd: int) -> str:
    """A confidence interval as `` [lo, hi]`` (leading space, ``nd`` decimals), or "" if there is none."""
    if not ci or ci[0] is None:
        return ""
    return f" [{format_number(ci[0], nd)}, {format_number(ci[1], nd)}]"


def results_table(results: dict[str, Any]) -> str:
    """The main table (models, then reference policies) as Markdown."""
    lines = [
        "| model | params | catch rate [95% CI] | mean consecutive catches [95% CI] | median | rounds at cap | offline action acc. | train time / seed (s) |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for name, m in results["models"].items():
        t = m["train_time_s_per_seed"]
        lines.append(
            f"| {name} | {m['params']} | {format_number(m['catch_rate'])}{format_ci(m['catch_rate_ci'], 3)} | "
            f"{format_number(m['mean_consecutive_catches'], 2)}{format_ci(m['mean_consecutive_catches_ci'], 2)} | "
            f"{format_number(m['median_consecutive_catches'], 1)} | {m['rounds_at_cap']}/{m['rounds']} | "
            f"{format_number(m['offline_action_accuracy'])} | {format_number(float(np.mean(t)), 1)} |")
    for name, r in results.get("references", {}).items():
        lines.append(
            f"| *{name} (reference)* | - | {format_number(r['catch_rate'])} | {format_number(r['mean_consecutive_catches'], 2)} | "
            f"{format_number(r['median_consecutive_catches'], 1)} | {r['rounds_at_cap']}/{r['rounds']} | - | - |")
    return "\n".join(lines)


def generalisation_table(results: dict[str, Any]) -> str:
    """Mean consecutive catches [95 % CI over seeds] of each model and of the expert and the
    tracker, in the training environment and in each shift of the run's ``--shifts`` (Markdown;
    "" when the run has none)."""
    from .shifts import describe_shift

    names = list(results.get("config", {}).get("shifts") or [])
    if not names:
        return ""
    lines = ["| model | default env | " + " | ".join(f"{n} ({describe_shift(n)})" for n in names) + " |",
             "|---|" + "---|" * (len(names) + 1)]

    def cell(entry: dict[str, Any] | None) -> str:
        if not entry:
            return "n/a"
        return (format_number(entry["mean_consecutive_catches"], 2)
                + format_ci(entry.get("mean_consecutive_catches_ci"), 2))

    rows = [(n, m) for n, m in results["models"].items()]
    rows += [(f"*{n} (reference)*", r) for n, r in results.get("references", {}).items() if n in ("expert", "tracker")]
    for label, e in rows:
        shifted = e.get("shifts") or {}
        lines.append(f"| {label} | {cell(e)} | " + " | ".join(cell(shifted.get(n)) for n in names) + " |")
    return "\n".join(lines)


def _dagger_curves(models: dict[str, Any]) -> dict[str, list[list[dict[str, Any]]]]:
    return {n: m["dagger_iterations"] for n, m in models.items() if m.get("dagger_iterations")}


def dagger_table(results: dict[str, Any]) -> str:
    """Per model and iteration, the means over seeds: validation loss and accuracy, closed-loop
    validation catches, learner rollout steps and agreement with the expert (Markdown)."""
    lines = ["| model | iteration | beta | val. loss | val. acc. | val. mean catches (closed loop) | learner steps "
             "added | learner = expert | train windows |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return float(np.mean(xs)) if xs else float("nan")

    for name, per_seed in _dagger_curves(results["models"]).items():
        for i in range(min(len(s) for s in per_seed)):
            rs = [s[i] for s in per_seed]
            ro = [r["rollout"] for r in rs]
            beta = "-" if ro[0] is None else f"{ro[0]['beta']:.3g}"
            steps = "-" if ro[0] is None else f"{mean([o['steps'] for o in ro]):.0f}"
            agree = "-" if ro[0] is None else f"{mean([o['learner_agreement'] for o in ro]):.3f}"
            lines.append(f"| {name} | {i} | {beta} | {mean([r['val_loss'] for r in rs]):.3f} | "
                         f"{mean([r['val_accuracy'] for r in rs]):.3f} | "
                         f"{mean([r['val_closed_loop']['mean_catches'] for r in rs]):.2f} | {steps} | {agree} | "
                         f"{mean([r['train_windows'] for r in rs]):.0f} |")
    return "\n".join(lines)


def per_seed_table(results: dict[str, Any]) -> str:
    lines = ["| model | seed | params | catch rate | mean catches | median | at cap | offline acc. | best step / steps | train s | eval s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for name, m in results["models"].items():
        for i, s in enumerate(m["seeds"]):
            lines.append(
                f"| {name} | {s} | {m['params']} | {format_number(m['catch_rate_per_seed'][i])} | "
                f"{format_number(m['mean_consecutive_catches_per_seed'][i], 2)} | {format_number(m['median_consecutive_catches_per_seed'][i], 1)} | "
                f"{m['rounds_at_cap_per_seed'][i]}/{m['rounds_per_seed']} | {format_number(m['offline_action_accuracy_per_seed'][i])} | "
                f"{m['best_step_per_seed'][i]} / {m['train_steps_per_seed'][i]} | {format_number(m['train_time_s_per_seed'][i], 1)} | "
                f"{format_number(m['eval_time_s_per_seed'][i], 1)} |")
    return "\n".join(lines)


def memory_headline(models: dict[str, Any]) -> list[str]:
    """Report lines saying what the task demanded of memory: whether the best sequence model beat
    the memoryless MLP and the k-frame MLP (said first, whichever way it goes)."""
    score = {n: m.get("mean_consecutive_catches") for n, m in models.items()}
    seq = {n: s for n, s in score.items() if n not in REFERENCE_NAMES and s is not None}
    if not seq or not any(score.get(r) is not None for r in REFERENCE_NAMES):
        return []
    best = max(seq, key=seq.get)
    out = []
    for ref, what in (("mlp_k", "the MLP on the last k observations (no recurrence)"),
                      ("mlp", "the MLP on the current observation alone (no memory)")):
        if score.get(ref) is None:
            continue
        r, b = format_number(score[ref], 2), format_number(seq[best], 2)
        if score[ref] > seq[best]:
            out.append(f"**{what[0].upper() + what[1:]} beats every sequence model**: {r} mean consecutive "
                       f"catches against {b} for the best sequence model, {best} (means over seeds; CIs below).")
        else:
            out.append(f"The best sequence model, {best} ({b} mean consecutive catches), beats {what} ({r}).")
    return [line for o in out for line in (o, "")]


def report_title(cfg: dict[str, Any], models: dict[str, Any]) -> str:
    """The report's title: the protocol and what the run compared (the models it trained)."""
    from .models import BASELINE_NAMES, REFERENCE_NAMES, TND_NAMES

    protocol = "DAgger" if cfg.get("protocol") == "dagger" else "behaviour cloning"
    names = [str(k) for k in models]  # keyed by model name
    tnds = sum(n in TND_NAMES for n in names)
    base = sum(n in BASELINE_NAMES for n in names)
    refs = sum(n in REFERENCE_NAMES for n in names)
    words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}

    def count(n: int, what: str) -> str:
        return f"{words.get(n, str(n))} {what}{'' if n == 1 else 's'}"
    parts = [p for p, n in ((count(base, "baseline"), base), (count(refs, "non-recurrent reference"), refs)) if n]
    lead = "TND" if tnds else "models"
    return f"Single-player Pong, {protocol}: {lead}" + (f" against {' and '.join(parts)}" if parts else "")


def write_report_md(path: str | Path, results: dict[str, Any], protocol_md: str, plots: dict[str, str]) -> None:
    """Write the Markdown report: table, paper comparison, per-seed table, protocol, plots."""
    cfg = results["config"]
    models = results["models"]
    lines = [f"# {report_title(cfg, models)}", ""]
    resumed = results.get("resumed_cells") or 0
    lines += [f"Run: `{results.get('command', 'tnd pong')}`; wall time {format_number(results.get('wall_time_s'), 1)} s"
              + (f" ({resumed} cell(s) resumed from an earlier run, not counted)" if resumed else "") + "; "
              f"{len(cfg['seeds'])} training seed(s) per model, {cfg['eval_rounds']} evaluation rounds per trained "
              f"model, cap {cfg['max_catches']} consecutive catches" + (" (**--quick**: a smoke-test budget, the "
              "numbers mean nothing)" if cfg.get("quick") else "") + ".", ""]
    lines += memory_headline(models)
    lines += ["## Results", "", results_table(results), ""]
    lines += ["Catch rate is pooled over all rounds of all seeds; the 95 % CIs are percentile bootstraps over "
              "training seeds. Rounds that reach the cap end without a miss.", ""]
    # the paper's claim beside ours
    if models:
        best_base = max((m for n, m in models.items() if not n.startswith("tnd") and n not in REFERENCE_NAMES),
                        key=lambda m: m["mean_consecutive_catches"] or -1, default=None)
        lines += ["## Beside the paper's claim", ""]
        lines += ["The paper reports TND at **17.47 mean consecutive catches per round**, more than **3x** the "
                  "strongest baseline (its cap, if any, is unknown)."]
        if "tnd" in models:
            t = models["tnd"]["mean_consecutive_catches"]
            s = f"Here TND reaches **{format_number(t, 2)}** mean consecutive catches (cap {cfg['max_catches']})"
            if best_base is not None and best_base["mean_consecutive_catches"]:
                ratio = t / best_base["mean_consecutive_catches"]
                s += (f"; the strongest baseline is {best_base['name']} with "
                      f"{format_number(best_base['mean_consecutive_catches'], 2)} (ratio {format_number(ratio, 2)}x)")
            lines += ["", s + "."]
        lines += [""]
    gen = generalisation_table(results)
    if gen:
        lines += ["## Generalisation", "", "Mean consecutive catches [95 % CI over training seeds] on the same "
                  "evaluation serves, in the training environment and in shifted ones that training never saw "
                  f"({cfg.get('shift_rounds') or cfg['eval_rounds']} rounds per trained model each; "
                  "`--shifts`, docs/PONG.md section 8). The references show what each shift costs a policy that "
                  "knows the physics (the expert) and a reactive one (the tracker).", "", gen, ""]
    if any(m.get("dagger_iterations") for m in models.values()):
        lines += ["## DAgger iterations", "", "Means over training seeds; iteration 0 is behaviour cloning. "
                  "Validation: the demonstration validation windows (offline) and closed-loop validation serves.",
                  "", dagger_table(results), ""]
    lines += ["## Plots", ""]
    for title, fn in plots.items():
        lines += [f"### {title}", "", f"![{title}]({fn})", ""]
    lines += ["## Per seed", "", per_seed_table(results), ""]
    lines += ["## Models", "", "| model | size | params | spec |", "|---|---|---:|---|"]
    for name, m in models.items():
        sp = m["spec"]
        size = f"{sp['num_neurons']} neurons, {sp.get('graph_edges')} edges" if sp["kind"] == "tnd" else f"hidden {sp['hidden_size']}"
        extra = {k: v for k, v in (sp.get("tnd") or sp.get("kwargs") or {}).items()}
        lines.append(f"| {name} | {size} | {m['params']} | `{json.dumps(extra, default=_json_default)}` |")
    lines += ["", "## Protocol", "", protocol_md.strip(), ""]
    atomic_write_text(path, "\n".join(lines) + "\n")
