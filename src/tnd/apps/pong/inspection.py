"""``tnd inspect RUN_DIR --out DIR``: what a trained Pong TND does, in pictures.

For one TND cell of a finished ``tnd pong`` or ``tnd topology`` run it writes:

* ``graph.png`` -- the neuron graph by role, edge colour = sign, width = learned |weight|,
  neuron colour = learned time constant, the neurons the behaviour depends on outlined;
* ``timescales.png`` -- the learned time constants, per-neuron F next to the shared F of the
  same run when there is one (``--compare``);
* ``activity.png`` -- every neuron's state during one evaluation round, under the ball's and
  paddle's positions, with the chosen actions and the catches;
* ``lesions.png`` -- the drop in mean consecutive catches when each neuron (or group of neurons,
  for large graphs) and each of the strongest edges is removed (:func:`tnd.apps.lesions.lesioned`),
  re-evaluated closed-loop on the same rounds as the intact model (a paired comparison);
* ``inspect.json`` (every number) and ``report.html`` (self-contained, figures embedded).

Everything is deterministic for a given run, cell and settings: evaluation rounds are served by
fixed seeds, actions are greedy, layouts are seeded and PNGs carry no timestamps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..settings import UsageError, add_options, from_args, setting
from .cells import env_kwargs
from .config import PongConfig, stored_settings

__all__ = ["InspectSettings", "add_arguments", "run", "inspect_run", "record_round", "lesion_study", "find_cell", "run_env_kwargs"]


@dataclass
class InspectSettings:
    """Settings of ``tnd inspect``."""

    run_dir: str = setting(positional=True, metavar="RUN_DIR", example="runs/pong")
    """a finished `tnd pong` or `tnd topology` run folder"""
    out: str = setting(kind="folder", example="--out runs/pong/inspect")
    """folder for the figures, inspect.json and report.html"""
    model: str | None = setting(None, example="--model tnd", metavar="MODEL")
    """cell label to inspect (default: tnd, else the first TND cell)"""
    seed: int | None = setting(None, example="--seed 0")
    """training seed of the cell (default: the smallest)"""
    compare: tuple[str, ...] | None = setting(None, metavar="MODEL", allow_empty=True, example="--compare tnd_shared")
    """other TND cells whose time constants are drawn alongside (default: tnd_shared if present; none
    when given without a name)"""
    round: int = 0
    """evaluation round drawn in the activity figure"""
    activity_steps: int = setting(300, low=1)
    """steps of that round drawn"""
    lesion_rounds: int = 50
    """evaluation rounds per lesion (0: no lesion study)"""
    lesion_edges: int = 20
    """strongest edges lesioned one by one"""
    max_lesion_units: int = setting(200, low=1)
    """above this many neurons, lesion groups of neurons instead of single ones"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, InspectSettings)


def _cells(run_dir: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for d in sorted((run_dir / "cells").glob("*/seed-*")):
        if (d / "checkpoint.json").is_file() and (d / "model.safetensors").is_file():
            out.setdefault(d.parent.name, []).append(int(d.name.split("-", 1)[1]))
    return {k: sorted(v) for k, v in out.items()}


def _is_tnd(run_dir: Path, label: str, seed: int) -> bool:
    spec = json.loads((run_dir / "cells" / label / f"seed-{seed}" / "checkpoint.json").read_text())["spec"]
    return spec.get("kind") == "tnd"


def find_cell(run_dir: Path, model: str | None, seed: int | None) -> tuple[str, int]:
    """The (label, seed) to inspect; clear errors for a missing run, model or seed."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"RUN_DIR: {run_dir} is not a folder")
    cells = _cells(run_dir)
    if not cells:
        raise FileNotFoundError(f"RUN_DIR: {run_dir} holds no finished cells (cells/<model>/seed-<s>/)")
    if model is None:
        tnds = [m for m, seeds in cells.items() if _is_tnd(run_dir, m, seeds[0])]
        if not tnds:
            raise ValueError(f"RUN_DIR: {run_dir} holds no TND cell (found {sorted(cells)})")
        model = "tnd" if "tnd" in tnds else tnds[0]
    if model not in cells:
        raise ValueError(f"--model: {model!r} is not a cell of {run_dir} (found {sorted(cells)})")
    seed = cells[model][0] if seed is None else seed
    if seed not in cells[model]:
        raise ValueError(f"--seed: {model} has no seed {seed} in {run_dir} (found {cells[model]})")
    if not _is_tnd(run_dir, model, seed):
        raise ValueError(f"--model: {model!r} is not a TND (inspect draws graphs and neurons)")
    return model, seed


def run_env_kwargs(run_dir: Path) -> dict[str, Any]:
    """The environment settings the run's cells were trained and evaluated in (``{}`` without a
    readable ``config.json``): the same as the run's own ``cells.env_kwargs``, so the inspected
    model sees the observations it was trained on."""
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    # the run's observation as its cells saw it (a folder from before obs_mode existed: positions)
    stored = stored_settings(cfg, PongConfig())
    keep = {k: stored[k] for k in ("max_catches", "obs_noise", "obs_mode") if k in stored}
    return env_kwargs(dataclasses.replace(PongConfig(), **keep))


@torch.inference_mode()
def record_round(model, seed: int, env_kwargs: dict[str, Any], max_steps: int) -> dict[str, Any]:
    """Play one round step by step (greedy, as in evaluation) and record every neuron's state,
    the ball and paddle positions, the actions and the catch / miss events."""
    from ..lesions import find_tnd
    from .env import SinglePlayerPong

    tnd = find_tnd(model)
    env = SinglePlayerPong(**env_kwargs)
    obs, info = env.reset(seed=int(seed))
    dtype = next(model.parameters()).dtype
    was = model.training
    model.eval()
    states, ball, paddle, actions, events = [], [], [], [], []
    h, catches = None, 0
    for t in range(max_steps):
        st = env.get_state()
        ball.append([st.ball_x, st.ball_y])
        paddle.append(st.paddle_y)
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).to(dtype).reshape(1, 1, -1)
        logits, h = model(x, h)
        a = int(logits[0, -1].argmax())
        states.append(h.reshape(1, tnd.num_neurons, -1)[0].float().numpy().copy())
        actions.append(a)
        obs, _r, term, trunc, info = env.step(a)
        if int(info["catches"]) > catches:
            catches = int(info["catches"])
            events.append((t, "catch"))
        if term or trunc:
            events.append((t, "miss" if term else "end"))
            break
    model.train(was)
    return {"states": np.stack(states), "ball": np.array(ball), "paddle": np.array(paddle),
            "actions": np.array(actions), "events": events, "catches": catches, "steps": len(actions)}


def _groups(tnd, max_units: int) -> list[dict[str, Any]]:
    """Single neurons, or (above ``max_units``) contiguous groups within each role."""
    g = tnd.graph
    roles = _roles(g)
    if g.num_neurons <= max_units:
        return [{"name": str(i), "ids": [i], "role": roles[i]} for i in range(g.num_neurons)]
    by_role: dict[str, list[int]] = {}
    for i, r in enumerate(roles):
        by_role.setdefault(r, []).append(i)
    size = math.ceil(g.num_neurons / max_units)
    out = []
    for r, ids in by_role.items():
        for k in range(0, len(ids), size):
            part = ids[k:k + size]
            out.append({"name": f"{r} {part[0]}-{part[-1]}", "ids": part, "role": r})
    return out


def _roles(g) -> list[str]:
    ins, outs = set(g.input_neurons.tolist()), set(g.output_neurons.tolist())
    return ["both" if (i in ins and i in outs) else "input" if i in ins else "output" if i in outs else "hidden"
            for i in range(g.num_neurons)]


def lesion_study(model, rounds: int, env_kwargs: dict[str, Any], num_edges: int = 20,
                 max_units: int = 64, progress=None) -> dict[str, Any]:
    """Closed-loop drop in mean consecutive catches for each neuron (or group) and each of the
    ``num_edges`` strongest edges removed; the same ``rounds`` evaluation rounds every time."""
    from ..lesions import find_tnd, lesioned
    from .evaluate import play_rounds

    tnd = find_tnd(model)
    g = tnd.graph

    def score(**kw) -> tuple[float, list[int]]:
        with lesioned(model, **kw):
            ev = play_rounds(model, rounds, env_kwargs=env_kwargs)
        if progress is not None:
            progress()
        return float(ev["mean_catches"]), list(ev["per_round"])

    base, base_rounds = score()
    base_arr = np.array(base_rounds, dtype=np.float64)

    def entry(s: float, per: list[int]) -> dict[str, float]:
        diff = base_arr - np.array(per, dtype=np.float64)  # paired: the same serves
        se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
        return {"score": s, "drop": base - s, "drop_se": se}

    units = []
    single = g.num_neurons <= max_units
    for grp in _groups(tnd, max_units):
        s, per = score(neurons=grp["ids"])
        units.append({**({"id": grp["ids"][0]} if single else {"name": grp["name"]}), "ids": grp["ids"],
                      "role": grp["role"], **entry(s, per)})
    w = tnd.cell.interaction.effective_edge_weight().detach().reshape(g.num_edges, -1)
    strength = w.abs().sum(1)
    order = torch.argsort(strength, descending=True, stable=True)[: min(num_edges, g.num_edges)].tolist()
    edges = []
    for e in order:
        s, per = score(edges=[e])
        src, tgt = (int(v) for v in g.edge_index[:, e])
        edges.append({"edge": e, "source": src, "target": tgt, "weight": float(w[e].sum()),
                      "abs_weight": float(strength[e]), **entry(s, per)})
    # what the behaviour depends on: a drop of at least 20 % of the intact score and 2 standard errors
    critical = [u for u in units if u["drop"] >= max(0.2 * base, 2 * u["drop_se"]) and u["drop"] > 0]
    return {"metric": "mean consecutive catches", "baseline": base, "rounds": rounds,
            "neurons": units if single else [], "groups": None if single else units, "edges": edges, "critical": critical}


def _label(spec: dict[str, Any], label: str) -> str:
    per = spec.get("tnd", {}).get("per_neuron", True)
    return f"{label} ({'per-neuron' if per else 'shared'} F)"


def inspect_run(run_dir: str | Path, out: str | Path, *, model: str | None = None, seed: int | None = None,
                compare: list[str] | None = None, round_index: int = 0, activity_steps: int = 300,
                lesion_rounds: int = 50, lesion_edges: int = 20, max_lesion_units: int = 200,
                say=lambda *a: None) -> dict[str, Any]:
    """Write the figures, ``inspect.json`` and ``report.html`` for one TND cell; returns the summary."""
    from .. import viz
    from tnd.io import atomic_write_text
    from ..lesions import find_tnd
    from .cells import load_cell_model
    from .policies import EVAL_SEED_BASE

    for name, v, lo in (("--round", round_index, 0), ("--activity-steps", activity_steps, 1),
                        ("--lesion-rounds", lesion_rounds, 0), ("--lesion-edges", lesion_edges, 0),
                        ("--max-lesion-units", max_lesion_units, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < 2**31:
            raise ValueError(f"{name} must be an int in [{lo}, 2**31), got {v!r}")
    run_dir, out = Path(run_dir), Path(out)
    label, seed = find_cell(run_dir, model, seed)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    cells = _cells(run_dir)
    if compare is None:
        compare = [m for m in ("tnd_shared", "tnd") if m in cells and m != label]
    for m in compare:
        if m not in cells or not _is_tnd(run_dir, m, cells[m][0]):
            raise ValueError(f"--compare: {m!r} is not a TND cell of {run_dir} (found {sorted(cells)})")
    torch.manual_seed(0)
    m = load_cell_model(run_dir, label, seed)
    tnd = find_tnd(m)
    spec = json.loads((run_dir / "cells" / label / f"seed-{seed}" / "checkpoint.json").read_text())["spec"]
    ek = run_env_kwargs(run_dir)
    dyn = tnd.cell.dynamics
    tau = dyn.time_constants().detach()
    w = tnd.cell.interaction.effective_edge_weight().detach()
    summary: dict[str, Any] = {"run": str(run_dir), "model": label, "seed": seed, "spec": spec,
                               "num_neurons": tnd.num_neurons, "num_edges": tnd.graph.num_edges,
                               "time_constants": tau.tolist()}

    lesions = None
    if lesion_rounds > 0:
        say(f"lesion study: {label} seed {seed}, {lesion_rounds} rounds per lesion ...")
        lesions = lesion_study(m, lesion_rounds, ek, lesion_edges, max_lesion_units)
        summary["lesions"] = lesions
    critical = sorted({i for u in (lesions or {}).get("critical", []) for i in u["ids"]})
    figs: dict[str, Path] = {}
    figs["graph"] = viz.save_figure(viz.draw_graph(tnd.graph, w, tau, highlight=critical or None,
                                                   title=f"{label} (seed {seed}): {tnd.num_neurons} neurons, "
                                                         f"{tnd.graph.num_edges} edges"), out / "graph.png")
    spectra = {_label(spec, label): tau}
    for c in compare:
        cm = find_tnd(load_cell_model(run_dir, c, seed if seed in cells[c] else cells[c][0]))
        cspec = json.loads((run_dir / "cells" / c / f"seed-{cells[c][0]}" / "checkpoint.json").read_text())["spec"]
        spectra[_label(cspec, c)] = cm.cell.dynamics.time_constants().detach()
    figs["timescales"] = viz.save_figure(viz.plot_time_constants(spectra, title="learned time constants"),
                                         out / "timescales.png")
    rec = record_round(m, EVAL_SEED_BASE + round_index, ek, activity_steps)
    tau_mean = tau.reshape(tnd.num_neurons, -1).mean(1)
    roles = _roles(tnd.graph)
    role_rank = {"input": 0, "both": 1, "hidden": 2, "output": 3}
    order = sorted(range(tnd.num_neurons), key=lambda i: (role_rank[roles[i]], float(tau_mean[i]), i))
    figs["activity"] = viz.save_figure(viz.plot_activity(
        rec["states"], ball=rec["ball"], paddle=rec["paddle"], actions=rec["actions"], events=rec["events"],
        neuron_order=order, roles=roles,
        title=f"{label}: evaluation round {round_index} ({rec['catches']} catches in {rec['steps']} steps)"),
        out / "activity.png")
    summary["activity"] = {k: rec[k] for k in ("events", "catches", "steps")}
    if lesions is not None:
        figs["lesions"] = viz.save_figure(viz.plot_lesions(lesions, title=f"lesions: {label} seed {seed}"),
                                          out / "lesions.png")
    atomic_write_text(out / "inspect.json", json.dumps(summary, indent=1, default=float))
    viz.html_report(out / "report.html", f"tnd inspect: {label} (seed {seed})", _sections(summary, figs, spectra),
                    intro=f"Run {run_dir}. Every figure is reproduced by `tnd inspect {run_dir} --out {out} "
                          f"--model {label} --seed {seed}`.")
    summary["figures"] = {k: str(v) for k, v in figs.items()}
    return summary


def _sections(summary: dict[str, Any], figs: dict[str, Path], spectra: dict[str, Any]) -> list[dict[str, Any]]:
    spec = summary["spec"]
    ev = []
    sec = [{"heading": "Graph", "images": [figs["graph"]],
            "text": f"{summary['num_neurons']} neurons, {summary['num_edges']} edges, {spec.get('params')} trainable "
                    f"parameters. Inputs on the left, outputs on the right, hidden neurons in between by their hop "
                    f"distance from the inputs. Edge colour: sign; width: learned |weight|; neuron colour: learned "
                    f"time constant. Outlined: the neurons whose removal costs the most (lesion study)."}]
    rows = []
    for name, t in spectra.items():
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        rows.append({"model": name, "values": int(t.size), "min": f"{t.min():.2f}", "median": f"{np.median(t):.2f}",
                     "max": f"{t.max():.2f}", "max / min": f"{t.max() / t.min():.1f}"})
    sec.append({"heading": "Time constants", "images": [figs["timescales"]], "table": rows,
                "text": "Learned time constants tau (steps). A per-neuron F lets every neuron pick its own timescale; "
                        "a shared F gives all neurons one (per state dimension)."})
    act = summary["activity"]
    sec.append({"heading": "Activity during one round", "images": [figs["activity"]],
                "text": f"Every neuron's state (rows; inputs first, then hidden, then outputs, each by time constant) "
                        f"during one evaluation round: {act['catches']} catches in {act['steps']} steps."})
    les = summary.get("lesions")
    if les is not None:
        units = les.get("neurons") or les.get("groups") or []
        top = sorted(units, key=lambda u: -u["drop"])[:10]
        for u in top:
            ev.append({"unit": u.get("id", u.get("name")), "role": u["role"], "score": f"{u['score']:.2f}",
                       "drop": f"{u['drop']:.2f}", "drop s.e.": f"{u['drop_se']:.2f}"})
        crit = ", ".join(str(u.get("id", u.get("name"))) for u in les["critical"]) or "none"
        sec.append({"heading": "Lesions", "images": [figs["lesions"]], "table": ev,
                    "text": f"Intact: {les['baseline']:.2f} mean consecutive catches over {les['rounds']} rounds. "
                            f"Each neuron (or group) and each of the {len(les['edges'])} strongest edges removed in "
                            f"turn and the model re-evaluated on the same rounds. The behaviour depends on "
                            f"(drop >= 20 % of the intact score and >= 2 s.e.): {crit}."})
    return sec


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tnd inspect``."""
    cfg = from_args(InspectSettings, args)
    try:
        summary = inspect_run(cfg.run_dir, cfg.out, model=cfg.model, seed=cfg.seed,
                              compare=None if cfg.compare is None else list(cfg.compare), round_index=cfg.round,
                              activity_steps=cfg.activity_steps, lesion_rounds=cfg.lesion_rounds,
                              lesion_edges=cfg.lesion_edges, max_lesion_units=cfg.max_lesion_units,
                              say=lambda *a: print(*a, file=sys.stderr, flush=True))
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    for k, v in summary["figures"].items():
        print(f"{k}: {v}")
    print(f"report: {Path(cfg.out) / 'report.html'}")
    les = summary.get("lesions")
    if les:
        print("behaviour depends on: " + (", ".join(str(u.get("id", u.get("name"))) for u in les["critical"]) or "none"))
    return 0
