"""Long-rollout stability of TND: every dynamics family x time mode x weights, on bounded input.

    python benchmarks/stability.py                       # the full grid, 100,000 steps each
    python benchmarks/stability.py --steps 2000 --out runs/stability
    python benchmarks/stability.py --families leaky --modes rk4,euler --weights trained,x10

For each configuration one sequence of ``--steps`` steps of input uniform in
[-``input_scale``, ``input_scale``] is rolled out (in chunks, carrying the state) through a TND
whose readout is every neuron's state, so the maximum of |state| over every neuron and every
step is exact. Recorded: max |state|, the solver's proven bound (``tnd.solvers.STATE_BOUND``,
docs/STABILITY.md), whether everything stayed finite, the resting time constants' range, the
rate evaluations per step (the automatic sub-steps at work) and the wall time.

Modes: ``discrete`` (the paper's update; the fused fast path), and ``continuous`` with
``euler``, ``midpoint``, ``rk4`` and ``exp_euler``, each with ``substeps`` (default 2) as the
minimum number of sub-steps per unit step (the explicit solvers add sub-steps where the rates
need them). Weights: ``untrained`` (the initialisation, seed ``seed``), ``trained``
(``train_steps`` Adam steps in discrete mode on a two-timescale filtering regression; the same
weights then run in every mode) and ``x10`` (untrained weights times 10: time constants pushed
to ``tau_min``, targets saturated -- the stiff worst case). Writes ``<out>/stability.md`` and
``<out>/stability.json`` atomically. The test suite runs :func:`run_grid` with a small budget.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import json
import math
import platform
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tnd import TND, NeuronGraph
from tnd.io import atomic_write_text
from tnd.solvers import STATE_BOUND

FAMILIES = ("leaky", "gated", "mlp")
MODES = ("discrete", "euler", "midpoint", "rk4", "exp_euler")
WEIGHTS = ("untrained", "trained", "x10")
C_IN = 3


@dataclass
class StabilityConfig:
    """Settings of the stability benchmark."""

    steps: int = 100_000
    """steps rolled out per configuration"""
    discrete_steps: int | None = None
    """steps for the discrete mode (the fast path; default: --steps)"""
    families: tuple[str, ...] = FAMILIES
    """dynamics families (leaky, gated, mlp)"""
    modes: tuple[str, ...] = MODES
    """time modes: discrete, or a continuous-mode solver (euler, midpoint, rk4, exp_euler)"""
    weights: tuple[str, ...] = WEIGHTS
    """weights: untrained, trained, x10 (untrained weights times 10)"""
    substeps: int = 2
    """sub-steps per step of the continuous modes (a minimum for euler/midpoint/rk4)"""
    neurons: int = 16
    """neurons of the random graph (4 input neurons; every neuron is read out)"""
    input_scale: float = 2.0
    """input is uniform in [-input_scale, input_scale]"""
    train_steps: int = 300
    """Adam steps of the trained weights (discrete mode, batch 32, 64-step windows)"""
    chunk: int = 10_000
    """steps per forward call (the state is carried between calls)"""
    seed: int = 0
    """seed of the initial weights and of the input"""
    threads: int = 1
    """torch threads"""
    out: str | None = None
    """folder for stability.md and stability.json (default: print only)"""


def _field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (cleanrl style)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body  # type: ignore[attr-defined]
    return {a.target.id: b.value.value.strip() for a, b in itertools.pairwise(body)
            if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr)
            and isinstance(getattr(b, "value", None), ast.Constant) and isinstance(b.value.value, str)}


def mode_kwargs(mode: str, substeps: int) -> dict[str, Any]:
    if mode == "discrete":
        return {"mode": "discrete"}
    return {"mode": "continuous", "solver": mode, "substeps": substeps}


def _graphs(n: int) -> tuple[NeuronGraph, NeuronGraph]:
    """The graph used for training (4 output neurons) and the same graph reading out every neuron."""
    g = NeuronGraph.random(n, 0.3, seed=7, num_inputs=4, num_outputs=4)
    return g, NeuronGraph(n, g.edge_index, g.input_neurons, list(range(n)), allow_unreachable=True)


def _filtering_batch(gen: torch.Generator, batch: int, length: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Input uniform in [-scale, scale]; targets: moving averages of channel 0 (tau 2) and 1 (tau 30)."""
    x = (torch.rand(batch, length, C_IN, generator=gen) * 2 - 1) * scale
    a = torch.tensor([1 / 2.0, 1 / 30.0])
    y, ys = torch.zeros(batch, 2), []
    for t in range(length):
        y = y + a * (x[:, t, :2] - y)
        ys.append(y)
    return x, torch.stack(ys, 1) / scale * torch.tensor([2.0**0.5, 30.0**0.5])


def cell_weights(family: str, kind: str, cfg: StabilityConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The cell's weights for ``kind`` (untrained, trained, x10) and what training did."""
    g, _ = _graphs(cfg.neurons)
    torch.manual_seed(cfg.seed)
    model = TND(C_IN, g, 2, dynamics=family)
    info: dict[str, Any] = {}
    if kind == "trained":
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x_val, y_val = _filtering_batch(torch.Generator().manual_seed(cfg.seed + 2), 64, 64, cfg.input_scale)
        with torch.no_grad():
            info["val_mse_before"] = float(((model(x_val)[0] - y_val) ** 2).mean())
        for _ in range(cfg.train_steps):
            x, y = _filtering_batch(gen, 32, 64, cfg.input_scale)
            loss = ((model(x)[0] - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            info["val_mse_after"] = float(((model(x_val)[0] - y_val) ** 2).mean())
    cell = {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith("cell.")}
    if kind == "x10":
        cell = {k: v * 10.0 if v.is_floating_point() else v for k, v in cell.items()}
    elif kind not in ("untrained", "trained"):
        raise ValueError(f"weights must be one of {WEIGHTS}, got {kind!r}")
    return cell, info


def rollout_model(family: str, mode: str, cell: dict[str, torch.Tensor], cfg: StabilityConfig) -> TND:
    """A TND with the given cell weights whose outputs are every neuron's state."""
    _, g_all = _graphs(cfg.neurons)
    m = TND(C_IN, g_all, cfg.neurons, readout="identity", dynamics=family, **mode_kwargs(mode, cfg.substeps))
    missing, unexpected = m.load_state_dict(cell, strict=False)
    if unexpected or any(k.startswith("cell.") for k in missing):
        raise RuntimeError(f"cell weights do not fit: missing {missing}, unexpected {unexpected}")
    return m


def rollout(model: TND, steps: int, cfg: StabilityConfig) -> dict[str, Any]:
    dy = model.cell.dynamics
    evals = [0]
    real = dy.rate_and_target

    def counting(*a, **kw):  # counts F evaluations: sub-steps x stages (+ retries)
        evals[0] += 1
        return real(*a, **kw)

    dy.rate_and_target = counting  # instance attribute: the cell looks it up at every step
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    h, worst, finite, done = None, 0.0, True, 0
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            while done < steps:
                n = min(cfg.chunk, steps - done)
                x = (torch.rand(1, n, C_IN, generator=gen) * 2 - 1) * cfg.input_scale
                y, h = model(x, h)  # y: every neuron's state at every step (identity readout)
                finite = finite and bool(torch.isfinite(y).all()) and bool(torch.isfinite(h).all())
                worst = max(worst, float(y.abs().max()), float(h.abs().max()))
                done += n
                if not finite:
                    break
    finally:
        del dy.rate_and_target
    tau = dy.time_constants().detach()
    return {"steps": done, "max_abs_state": worst, "finite": finite, "tau_min": float(tau.min()),
            "tau_max": float(tau.max()), "tau_bounds": [dy.tau_min, dy.tau_max],
            "rate_evals_per_step": evals[0] / max(done, 1), "wall_s": time.perf_counter() - t0}


def run_grid(cfg: StabilityConfig, log: Callable[[str], None] | None = None,
             on_row: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """Roll out every (family, mode, weights) of ``cfg``; one result dict per configuration.
    ``on_row(rows so far)`` is called after each configuration (e.g. to save partial results)."""
    for name, allowed in (("families", FAMILIES), ("modes", MODES), ("weights", WEIGHTS)):
        bad = [v for v in getattr(cfg, name) if v not in allowed]
        if bad or not getattr(cfg, name):
            raise ValueError(f"--{name} must be a non-empty subset of {list(allowed)}, got {list(getattr(cfg, name))}")
    for name in ("steps", "substeps", "neurons", "chunk", "threads"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.train_steps < 0 or (cfg.discrete_steps is not None and cfg.discrete_steps < 1):
        raise ValueError("--train-steps must be >= 0 and --discrete-steps >= 1")
    if not (math.isfinite(cfg.input_scale) and cfg.input_scale > 0):
        raise ValueError(f"--input-scale must be a finite number > 0, got {cfg.input_scale}")
    torch.set_num_threads(cfg.threads)
    rows = []
    for fam in cfg.families:
        for kind in cfg.weights:
            cell, info = cell_weights(fam, kind, cfg)
            for mode in cfg.modes:
                steps = (cfg.discrete_steps or cfg.steps) if mode == "discrete" else cfg.steps
                r = rollout(rollout_model(fam, mode, cell, cfg), steps, cfg)
                solver = "exp_euler" if mode == "discrete" else mode
                r.update(family=fam, mode=mode, weights=kind, bound=STATE_BOUND[solver], **info,
                         substeps=None if mode == "discrete" else cfg.substeps)
                r["within_bound"] = r["finite"] and r["max_abs_state"] <= r["bound"] * (1 + 1e-5)
                rows.append(r)
                if on_row:
                    on_row(rows)
                if log:
                    log(f"{fam:6s} {mode:9s} {kind:9s} max|s| {r['max_abs_state']:.6f} (bound {r['bound']:.3f}) "
                        f"finite {r['finite']} tau [{r['tau_min']:.3g}, {r['tau_max']:.3g}] "
                        f"{r['rate_evals_per_step']:.2f} F/step {r['wall_s']:.1f} s")
    return rows


def markdown(rows: list[dict[str, Any]], cfg: StabilityConfig) -> str:
    lines = [
        ("| family | mode | weights | steps | max \\|state\\| | proven bound | finite | resting tau [min, max] "
         "| F evals/step | wall s |"),
        "|---|---|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in rows:
        mode = r["mode"] if r["mode"] == "discrete" else f"{r['mode']} (>= {r['substeps']} sub-steps)"
        evals = "fused" if r["mode"] == "discrete" else f"{r['rate_evals_per_step']:.2f}"  # the C kernel
        lines.append(f"| {r['family']} | {mode} | {r['weights']} | {r['steps']:,} | {r['max_abs_state']:.6f} | "
                     f"{r['bound']:.4g} | {'yes' if r['finite'] else '**NO**'} | "
                     f"[{r['tau_min']:.3g}, {r['tau_max']:.3g}] | {evals} | {r['wall_s']:.1f} |")
    trained = {r["family"]: (r["val_mse_before"], r["val_mse_after"]) for r in rows if "val_mse_after" in r}
    if trained:
        lines.append("")
        lines.append(f"Trained weights ({cfg.train_steps} Adam steps): validation MSE "
                     + ", ".join(f"{f} {a:.3f} -> {b:.3f}" for f, (a, b) in trained.items()) + ".")
    lines.append(f"\n{_cpu()}, torch {torch.__version__}, "
                 f"{cfg.threads} thread(s); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    return "\n".join(lines)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv: list[str] | None = None) -> StabilityConfig:
    docs = _field_docs(StabilityConfig)
    p = argparse.ArgumentParser(prog="stability", description=__doc__.splitlines()[0])
    for f in dataclasses.fields(StabilityConfig):
        opt, default = "--" + f.name.replace("_", "-"), f.default
        if isinstance(default, tuple):
            p.add_argument(opt, default=",".join(default), help=f"{docs[f.name]}; comma-separated (default: %(default)s)")
        else:
            typ = int if f.name in ("steps", "discrete_steps") or isinstance(default, int) else (
                float if isinstance(default, float) else str)
            p.add_argument(opt, type=typ, default=default, help=f"{docs[f.name]} (default: %(default)s)")
    ns = vars(p.parse_args(argv))
    for f in dataclasses.fields(StabilityConfig):
        if isinstance(f.default, tuple):
            ns[f.name] = tuple(s.strip() for s in ns[f.name].split(",") if s.strip())
    return StabilityConfig(**ns)


def save(rows: list[dict[str, Any]], cfg: StabilityConfig, wall_s: float, complete: bool) -> None:
    """Write ``<out>/stability.json`` and ``stability.md`` atomically (after every configuration,
    so a killed run keeps what it measured)."""
    out = Path(cfg.out or ".")
    atomic_write_text(out / "stability.json", json.dumps(
        {"config": dataclasses.asdict(cfg), "complete": complete, "rows": rows, "wall_s": wall_s}, indent=1))
    atomic_write_text(out / "stability.md", markdown(rows, cfg) + ("" if complete else "\n\n(partial: still running)") + "\n")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    t0 = time.perf_counter()
    partial = (lambda rows: save(rows, cfg, time.perf_counter() - t0, False)) if cfg.out else None
    try:
        rows = run_grid(cfg, log=lambda s: print(s, file=sys.stderr, flush=True), on_row=partial)
    except ValueError as e:
        print(f"stability: error: {e}", file=sys.stderr)
        return 2
    print(markdown(rows, cfg))
    if cfg.out:
        save(rows, cfg, time.perf_counter() - t0, True)
    bad = [r for r in rows if not r["within_bound"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
