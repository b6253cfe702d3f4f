"""``tnd topology``: how much does TND's Pong score depend on its graph, and can the graph be learned?

The sweep trains the default Pong TND (leaky, per-neuron F, state size 2, discrete time) on
graphs of every family in ``families`` at every mean out-degree in ``degrees``
(:func:`tnd.graph_builders.degree_kw` turns a degree into each family's own knob), each matched to
the same parameter budget (the number of neurons absorbs the difference), over the same seeds,
data and evaluation rounds as ``tnd pong``. Then, when ``learned`` is on, a learnable topology
(:class:`tnd.apps.prune_regrow.PruneRegrow` on a fully connected candidate graph) is trained with the
neurons and the edge budget of the best fixed variant, so the two have the same parameter count.
Outputs: ``topology.json``, ``topology.md`` (table with bootstrap CIs over seeds, a sensitivity
summary) and ``topology.png``; cells live in ``cells/<label>/seed-<s>/`` as in ``tnd pong`` and
``--resume`` skips finished ones. ``tnd inspect OUT --model <label>`` draws any of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .experiment import QUICK, PongConfig, _field_docs, _validate, cell_done, run_cells, start_run

__all__ = ["TopologyConfig", "add_arguments", "run", "run_sweep", "attach_learner", "finish_learner", "variants"]

FAMILIES = ("random", "small_world", "scale_free", "ring", "layered")


@dataclass
class TopologyConfig(PongConfig):
    """Settings of ``tnd topology`` (the Pong settings, plus the sweep's own)."""

    families: tuple[str, ...] = FAMILIES
    """graph families to compare (random, small_world, scale_free, ring, layered)"""
    degrees: tuple[float, ...] = (2.0, 4.0, 8.0)
    """mean out-degrees (sparsity levels) to compare, every family at each"""
    learned: bool = True
    """also train a learnable topology at the best fixed variant's neurons and edge budget"""
    learn_every: int = 100
    """learnable topology: steps between prune-and-regrow updates"""
    learn_drop_fraction: float = 0.1
    """learnable topology: fraction of the edge budget moved at the first update (cosine-annealed)"""
    learn_stop: float = 0.75
    """learnable topology: the graph stops changing after this fraction of --max-steps"""
    learn_regrow: str = "gradient"
    """learnable topology: regrowth rule, gradient (RigL: largest |dL/dw|, grown at weight 0) or
    sensitivity (most negative dL/dmask, grown at the latent weight)"""


QUICK_TOPOLOGY: dict[str, Any] = {**QUICK, "families": ("random", "ring"), "degrees": (2.0,), "learn_every": 4}


def variants(cfg: TopologyConfig) -> list[dict[str, Any]]:
    """The fixed-topology variants (one per family x degree), as ``run_cell`` variants."""
    return [{"label": f"{fam}-k{deg:g}", "family": fam, "degree": float(deg),
             "tnd": {"graph": fam, "graph_kw": {"mean_degree": float(deg), "allow_unreachable": True}}}
            for fam in cfg.families for deg in cfg.degrees]


def _cell_variant(v: dict[str, Any]) -> dict[str, Any]:
    return {k: v[k] for k in ("label", "tnd", "learn") if k in v}


def attach_learner(model, learn: dict[str, Any], seed: int):
    """A :class:`tnd.apps.prune_regrow.PruneRegrow` on the TND inside ``model`` (``learn``: its settings)."""
    from ..prune_regrow import PruneRegrow

    return PruneRegrow(model, int(learn["budget"]), every=int(learn["every"]), drop_fraction=float(learn["drop_fraction"]),
                       stop_step=int(learn["stop_step"]), seed=int(seed),
                       regrow=str(learn.get("regrow", "sensitivity")))


def finish_learner(model, spec: dict[str, Any], learner):
    """Replace the candidate TND by the pruned one on the learned graph; update the spec."""
    from ..baselines import count_parameters
    from ..prune_regrow import prune_to_graph
    from .models import ScaledInput

    learner.finish()
    pruned = prune_to_graph(model)
    if isinstance(model, ScaledInput):
        model.inner = pruned
    else:
        model = pruned
    g = pruned.graph
    spec = dict(spec, tnd=dict(spec["tnd"], graph="explicit", graph_dict=g.to_dict(), graph_kw={}),
                params=count_parameters(pruned, effective=True), graph_edges=int(g.num_edges),
                graph_density=float(g.density), learned_topology=learner.state())
    return model, spec


def _spec_graph(spec: dict[str, Any]):
    import torch

    from ..lesions import find_tnd
    from .models import model_from_spec

    with torch.random.fork_rng(devices=[]):
        return find_tnd(model_from_spec(spec)).graph


def _learned_variant(cfg: TopologyConfig, best: dict[str, Any]) -> dict[str, Any]:
    """Candidate graph: fully connected on the best variant's neurons, with its input and output
    neurons (so the readout, hence the parameter count, is the same)."""
    import torch

    from tnd.graph import NeuronGraph

    spec = best["spec"]
    g = _spec_graph(spec)
    n = g.num_neurons
    src, tgt = torch.nonzero(~torch.eye(n, dtype=torch.bool), as_tuple=True)
    cand = NeuronGraph(n, torch.stack([src, tgt]), g.input_neurons, g.output_neurons)
    return {"label": f"learned-{best['name']}", "family": "learned", "degree": best["degree"],
            "tnd": {"graph": "explicit", "graph_dict": cand.to_dict(), "graph_kw": {}},
            "learn": {"budget": int(spec["graph_edges"]), "every": cfg.learn_every,
                      "drop_fraction": cfg.learn_drop_fraction, "stop_step": int(cfg.learn_stop * cfg.max_steps),
                      "regrow": cfg.learn_regrow}}


def _run_cells(cfg: TopologyConfig, todo: list[tuple[dict[str, Any], int]], data_path: Path, out: Path,
               say) -> dict[tuple[str, int], dict[str, Any]]:
    pong_dict = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(PongConfig)}
    if any("learn" in v for v, _ in todo):
        pong_dict["checkpoint_every"] = 0  # a learner's state is not checkpointed (cells still resume whole)
    done: dict[tuple[str, int], dict[str, Any]] = {}
    run: list[tuple[dict[str, Any], int]] = []
    for v, s in todo:
        prev = cell_done(PongConfig(**pong_dict), out, v["label"], s, _cell_variant(v)) if cfg.resume else None
        if prev is not None:
            done[(v["label"], s)] = prev
        else:
            run.append((v, s))
    def finished(key: tuple[str, int], r: dict[str, Any]) -> None:
        done[key] = r
        say(f"  {key[0]} seed {key[1]}: {r['eval']['mean_catches']:.2f} mean catches")

    run_cells([((v["label"], s), (pong_dict, "tnd", s, str(data_path), str(out), False, _cell_variant(v)))
               for v, s in run], cfg.workers, finished)
    return done


def run_sweep(cfg: TopologyConfig) -> dict[str, Any]:
    """Run the sweep; returns the results (also written to ``<out>/topology.json``)."""
    from tnd.io import atomic_write_text
    from . import report

    t0 = time.perf_counter()
    cfg, out, say, data_path = start_run(cfg, "topology")
    fixed = variants(cfg)
    cells = _run_cells(cfg, [(v, s) for v in fixed for s in cfg.seeds], data_path, out, say)
    rows = []
    for v in fixed:
        agg = report.aggregate_model(v["label"], [cells[(v["label"], s)] for s in cfg.seeds])
        rows.append({**agg, "family": v["family"], "degree": v["degree"]})
    if cfg.learned:
        best = max(rows, key=lambda r: (r["mean_consecutive_catches"], r["catch_rate"]))
        lv = _learned_variant(cfg, best)
        cells.update(_run_cells(cfg, [(lv, s) for s in cfg.seeds], data_path, out, say))
        agg = report.aggregate_model(lv["label"], [cells[(lv["label"], s)] for s in cfg.seeds])
        rows.append({**agg, "family": "learned", "degree": best["degree"], "compared_with": best["name"]})
    for r in rows:  # the per-round lists are in the cells' metrics; keep the summary small
        for k in ("learning_curves", "per_round_catches"):
            r.pop(k, None)
        r["reachable_outputs"] = _reachable_fraction(r["spec"])
    results = {"format": "tnd.pong.topology/1", "config": dataclasses.asdict(cfg), "variants": rows,
               "sensitivity": sensitivity(rows), "wall_time_s": time.perf_counter() - t0,
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    report.write_results_json(out / "topology.json", results)
    plot_sweep(results, out / "topology.png")
    atomic_write_text(out / "topology.md", markdown(results))
    return results


def _reachable_fraction(spec: dict[str, Any]) -> float:
    graph = _spec_graph(spec)
    reach = graph.reachable_from_inputs()
    outs = graph.output_neurons.tolist()
    return sum(o in reach for o in outs) / len(outs)


def sensitivity(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How much the score moves with the topology: the range over fixed variants, against the
    typical width of one variant's CI (differences smaller than that are noise)."""
    import numpy as np

    fixed = [r for r in rows if r["family"] != "learned"]
    vals = np.array([r["mean_consecutive_catches"] for r in fixed])
    widths = np.array([r["mean_consecutive_catches_ci"][1] - r["mean_consecutive_catches_ci"][0] for r in fixed])
    best, worst = fixed[int(vals.argmax())], fixed[int(vals.argmin())]
    by_family = {}
    for r in fixed:
        by_family.setdefault(r["family"], []).append(r["mean_consecutive_catches"])
    return {"best": best["name"], "best_score": float(vals.max()), "worst": worst["name"],
            "worst_score": float(vals.min()), "range": float(vals.max() - vals.min()),
            "median_ci_width": float(np.median(widths)),
            "family_means": {k: float(np.mean(v)) for k, v in by_family.items()}}


def markdown(results: dict[str, Any]) -> str:
    from .report import format_ci as _ci, format_number as _fmt

    cfg = results["config"]
    lines = [f"# Topology sweep (Pong, TND at {cfg['param_budget']} parameters)", "",
             f"Seeds {list(cfg['seeds'])}, {cfg['eval_rounds']} evaluation rounds per seed, at most "
             f"{cfg['max_steps']} gradient steps; 95 % bootstrap CIs over seeds. Wall time "
             f"{results['wall_time_s'] / 60:.1f} min.", "",
             "| variant | family | mean degree: target / realised | neurons | edges | density | reachable outputs | "
             "params | catch rate [95% CI] | mean consecutive catches [95% CI] | offline acc. | train s / seed |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|"]
    for r in results["variants"]:
        sp = r["spec"]
        lines.append(
            f"| {r['name']} | {r['family']} | {r['degree']:g} / {sp['graph_edges'] / sp['num_neurons']:.2f} | "
            f"{sp['num_neurons']} | {sp['graph_edges']} | "
            f"{sp['graph_density']:.3f} | {r['reachable_outputs']:.2f} | {r['params']} | "
            f"{_fmt(r['catch_rate'])}{_ci(r['catch_rate_ci'], 3)} | "
            f"{_fmt(r['mean_consecutive_catches'], 2)}{_ci(r['mean_consecutive_catches_ci'], 2)} | "
            f"{_fmt(r['offline_action_accuracy'])} | {sum(r['train_time_s_per_seed']) / len(r['seeds']):.1f} |")
    s = results["sensitivity"]
    lines += ["", "## Sensitivity", "",
              f"Best fixed variant **{s['best']}** ({s['best_score']:.2f} mean consecutive catches), worst "
              f"**{s['worst']}** ({s['worst_score']:.2f}): a range of {s['range']:.2f}, against a median CI width "
              f"of {s['median_ci_width']:.2f} for one variant.", "",
              "Mean over degrees per family: " + ", ".join(f"{k} {v:.2f}" for k, v in s["family_means"].items()) + "."]
    learned = [r for r in results["variants"] if r["family"] == "learned"]
    for r in learned:
        lines += ["", f"Learned topology ({r['name']}): {r['mean_consecutive_catches']:.2f} mean consecutive catches "
                  f"with the neurons and the {r['spec']['graph_edges']} edges of {r['compared_with']}."]
    lines += ["", "![topology sweep](topology.png)", ""]
    return "\n".join(lines)


def plot_sweep(results: dict[str, Any], path: Path) -> None:
    """Mean consecutive catches per family vs mean degree, with CIs; the learned topology as a star."""
    import numpy as np
    from matplotlib.figure import Figure

    from ..viz import save_figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    rows = results["variants"]
    fams = [f for f in dict.fromkeys(r["family"] for r in rows) if f != "learned"]
    for i, fam in enumerate(fams):
        rs = sorted((r for r in rows if r["family"] == fam), key=lambda r: r["degree"])
        x = np.array([r["degree"] for r in rs]) * (1 + 0.03 * (i - len(fams) / 2))  # dodge
        y = np.array([r["mean_consecutive_catches"] for r in rs])
        lo = y - np.array([r["mean_consecutive_catches_ci"][0] for r in rs])
        hi = np.array([r["mean_consecutive_catches_ci"][1] for r in rs]) - y
        ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=fam)
    for r in rows:
        if r["family"] == "learned":
            ci = r["mean_consecutive_catches_ci"]
            y = r["mean_consecutive_catches"]
            ax.errorbar([r["degree"]], [y], yerr=[[y - ci[0]], [ci[1] - y]], marker="*", markersize=14, color="k",
                        capsize=3, linestyle="none", label=f"learned ({r['compared_with']} budget)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("mean out-degree (matched parameter budget)")
    ax.set_ylabel("mean consecutive catches per round")
    ax.set_title("TND on Pong: sensitivity to the graph")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    docs = {**_field_docs(PongConfig), **_field_docs(TopologyConfig)}
    for f in dataclasses.fields(TopologyConfig):
        if f.name in ("models", "frame_steps"):
            continue  # the sweep trains TND variants only and draws no frames
        opt = "--" + f.name.replace("_", "-")
        default = f.default
        help_text = docs.get(f.name, "") + ("" if f.name == "out" else f" (default: {default})")
        if f.name in ("quick", "resume"):
            parser.add_argument(opt, action="store_true", default=None, help=help_text)
        elif f.name == "learned":
            parser.add_argument("--no-learned", dest="learned", action="store_false", default=None,
                                help="skip the learnable topology")
        elif f.name == "progress":
            parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                                help="hide progress messages")
        elif f.name == "families":
            parser.add_argument(opt, nargs="+", choices=FAMILIES, default=None, metavar="FAMILY", help=help_text)
        elif f.name == "learn_regrow":
            parser.add_argument(opt, choices=("gradient", "sensitivity"), default=None, help=help_text)
        elif f.name in ("seeds", "degrees"):
            parser.add_argument(opt, nargs="+", type=int if f.name == "seeds" else float, default=None,
                                metavar=f.name[:-1].upper(), help=help_text)
        else:
            typ = {int: int, float: float}.get(type(default), str)
            parser.add_argument(opt, type=typ, default=None, help=help_text)


def config_from_args(args: argparse.Namespace) -> TopologyConfig:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TopologyConfig)
             if getattr(args, f.name, None) is not None}
    values: dict[str, Any] = dict(QUICK_TOPOLOGY) if given.get("quick") else {}
    values.update(given)
    for k in ("seeds", "families", "degrees"):
        if k in values:
            values[k] = tuple(values[k])
    cfg = TopologyConfig(**values)
    _validate(cfg)
    if not cfg.families or not cfg.degrees:
        raise ValueError("--families and --degrees need at least one value each")
    if any(not (1.0 <= d < math.inf) for d in cfg.degrees) or len(set(cfg.degrees)) != len(cfg.degrees):
        raise ValueError(f"--degrees must be distinct finite numbers >= 1, got {list(cfg.degrees)}")
    if len(set(cfg.families)) != len(cfg.families):
        raise ValueError(f"--families must be distinct, got {list(cfg.families)}")
    if not 1 <= cfg.learn_every < 2**31:
        raise ValueError(f"--learn-every must be an int in [1, 2**31), got {cfg.learn_every}")
    if not 0.0 <= cfg.learn_drop_fraction <= 1.0:
        raise ValueError(f"--learn-drop-fraction must lie in [0, 1], got {cfg.learn_drop_fraction}")
    if not 0.0 < cfg.learn_stop <= 1.0:
        raise ValueError(f"--learn-stop must lie in (0, 1], got {cfg.learn_stop}")
    return cfg


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tnd topology``."""
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        print(f"tnd topology: error: {e}", file=sys.stderr)
        return 2
    results = run_sweep(cfg)
    print(markdown(results))
    return 0
