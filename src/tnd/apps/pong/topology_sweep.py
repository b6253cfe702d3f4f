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
``--resume`` skips finished ones (``--force`` starts over; an ``--out`` that holds a run is refused
without one of them, as in ``tnd pong``). ``tnd inspect OUT --model <label>`` draws any of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs import FolderOptions, Interrupted, note
from ..settings import UsageError, add_options, command_args, from_args, setting
from .cells import cell_done, run_cells, start_run
from .config import BC_V1, OBSERVATIONS, PROTOCOLS, QUICK, RESUME_MAY_CHANGE, TND_BASES, PongConfig

__all__ = ["TopologyConfig", "add_arguments", "run", "run_sweep", "variants", "config_from_args"]

FAMILIES = ("random", "small_world", "scale_free", "ring", "layered")


@dataclass
class TopologyConfig(PongConfig):
    """Settings of ``tnd topology`` (the Pong settings, plus the sweep's own)."""

    out: str | None = setting(None, kind="folder", example="--out runs/topology")
    """run folder (default: runs/topology-<UTC timestamp>)"""
    # the sweep keeps the earlier releases' protocol (config.BC_V1, its defaults read from there):
    # its documented numbers were measured with it, and the learnable topology trains by behaviour
    # cloning only
    seeds: tuple[int, ...] = setting(BC_V1["seeds"], metavar="SEED")
    """training seeds (initial weights and batch order); one cell per (variant, seed)"""
    protocol: str = setting(BC_V1["protocol"], choices=PROTOCOLS)
    """training protocol: bc (behaviour cloning on the demonstrations) or dagger (with --no-learned)"""
    obs_mode: str = setting(BC_V1["obs_mode"], choices=OBSERVATIONS)
    """what a model observes: positions or motion (docs/PONG.md, section 1)"""
    obs_noise: float = setting(BC_V1["obs_noise"], low=0.0)
    """std of Gaussian observation noise (demonstrations and evaluation)"""
    max_steps: int = setting(BC_V1["max_steps"], low=1)
    """gradient-step budget per cell (the same for every variant)"""
    eval_every: int = setting(BC_V1["eval_every"], low=1)
    """validate every this many gradient steps"""
    patience: int = setting(BC_V1["patience"], low=1)
    """early stopping: validations without improvement of the validation loss"""
    tnd_base: str = setting(BC_V1["tnd_base"], choices=tuple(TND_BASES))
    """the TND architecture the variants change: v1 (the earlier releases' default) or control"""
    families: tuple[str, ...] = setting(FAMILIES, choices=FAMILIES, metavar="FAMILY")
    """graph families to compare"""
    degrees: tuple[float, ...] = setting((2.0, 4.0, 8.0), low=1.0, metavar="DEGREE")
    """mean out-degrees (sparsity levels) to compare, every family at each"""
    learned: bool = True
    """skip the learnable topology (by default one is trained at the best fixed variant's neurons
    and edge budget)"""
    learn_every: int = setting(100, low=1)
    """learnable topology: steps between prune-and-regrow updates"""
    learn_drop_fraction: float = setting(0.1, low=0.0, high=1.0)
    """learnable topology: fraction of the edge budget moved at the first update (cosine-annealed)"""
    learn_stop: float = setting(0.75, low=0.0, high=1.0, low_open=True)
    """learnable topology: the graph stops changing after this fraction of --max-steps"""
    learn_regrow: str = setting("gradient", choices=("gradient", "sensitivity"))
    """learnable topology: regrowth rule, gradient (RigL: largest |dL/dw|, grown at weight 0) or
    sensitivity (most negative dL/dmask, grown at the latent weight)"""

    def check(self) -> None:
        """The Pong checks, and the learnable topology's: it trains by behaviour cloning only."""
        super().check()
        if self.learned and self.protocol == "dagger":
            raise UsageError("--protocol dagger: the learnable topology trains by behaviour cloning only; "
                             "add --no-learned or use --protocol bc")


QUICK_TOPOLOGY: dict[str, Any] = {**QUICK, "families": ("random", "ring"), "degrees": (2.0,), "learn_every": 4}
#: the Pong settings a sweep does not use (it trains TND variants only, untuned, draws no frames and
#: plays no shifted environments)
NOT_OPTIONS = ("models", "frame_steps", "mlp_frames", "tuned", "shifts", "shift_rounds")


def variants(cfg: TopologyConfig) -> list[dict[str, Any]]:
    """The fixed-topology variants (one per family x degree), as ``run_cell`` variants."""
    return [{"label": f"{fam}-k{deg:g}", "family": fam, "degree": float(deg),
             "tnd": {"graph": fam, "graph_kw": {"mean_degree": float(deg), "allow_unreachable": True}}}
            for fam in cfg.families for deg in cfg.degrees]


def _cell_variant(v: dict[str, Any]) -> dict[str, Any]:
    return {k: v[k] for k in ("label", "tnd", "learn") if k in v}


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
    pong_dict["shifts"] = ()  # the sweep's tables have no generalisation columns (yet)
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
    if cfg.resume:  # shown with --no-progress too
        note(f"tnd topology: resume: {len(done)} finished cell(s) kept, {len(run)} to run")

    def finished(key: tuple[str, int], r: dict[str, Any]) -> None:
        done[key] = r
        say(f"  {key[0]} seed {key[1]}: {r['eval']['mean_catches']:.2f} mean catches")

    run_cells([((v["label"], s), (pong_dict, "tnd", s, str(data_path), str(out), False, _cell_variant(v)))
               for v, s in run], cfg.workers, finished)
    return done


def run_sweep(cfg: TopologyConfig, force: bool = False) -> dict[str, Any]:
    """Run the sweep; returns the results (also written to ``<out>/topology.json``). ``force``:
    start over in an ``out`` that holds a run."""
    t0 = time.perf_counter()
    cfg, out, say, data_path = start_run(cfg, "topology", resume_command, force,
                                         RESUME_MAY_CHANGE + ("families", "degrees", "learned"))
    try:
        return _sweep(cfg, out, say, data_path, t0)
    except Interrupted as e:
        n = len(list(out.glob("cells/*/seed-*/metrics.json")))
        e.partial = (f"{n} finished cell(s) kept in {out} (topology.md is written when the sweep ends); "
                     f"continue with: {resume_command(cfg)}")
        raise


def _sweep(cfg: TopologyConfig, out: Path, say, data_path: Path, t0: float) -> dict[str, Any]:
    from tnd.io import atomic_write_text
    from . import report

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

    fig = Figure(figsize=(8.5, 4.5))
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
    degrees = sorted({float(r["degree"]) for r in rows})
    ax.set_xticks(degrees, [f"{d:g}" for d in degrees])  # the swept degrees, as plain numbers
    ax.minorticks_off()
    ax.set_xlabel("mean out-degree (matched parameter budget)")
    ax.set_ylabel("mean consecutive catches per round")
    ax.set_title("TND on Pong: sensitivity to the graph")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)  # outside the data
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`TopologyConfig` field (help = the field's docstring), and ``--force``."""
    add_options(parser, TopologyConfig, skip=NOT_OPTIONS)
    add_options(parser, FolderOptions)


def config_from_args(args: argparse.Namespace) -> TopologyConfig:
    """Defaults <- --quick presets <- explicit options; checked (UsageError names the option)."""
    return from_args(TopologyConfig, args, QUICK_TOPOLOGY if getattr(args, "quick", None) else None,
                     skip=NOT_OPTIONS)


def command_line(cfg: TopologyConfig) -> str:
    """The ``tnd topology`` command that reproduces ``cfg``."""
    default = TopologyConfig(**QUICK_TOPOLOGY) if cfg.quick else TopologyConfig()
    parts = ["tnd", "topology"] + (["--quick"] if cfg.quick else [])
    return " ".join(parts + command_args(cfg, default, skip=("quick", "resume", "progress", *NOT_OPTIONS)))


def resume_command(cfg: TopologyConfig) -> str:
    return command_line(cfg) + " --resume"


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tnd topology``."""
    cfg = config_from_args(args)
    results = run_sweep(cfg, force=bool(getattr(args, "force", None)))
    print(markdown(results))
    return 0
