"""The sweep runner: models x tasks x seeds x topologies, resumable, locally or on Ray.

A *cell* is one (task, model, topology, seed). Each finished cell is written atomically as
``<out>/cells/<cell_id>.json``; a rerun with the same settings skips every cell whose file
exists with ``status == "ok"`` and the same settings key, so an interrupted sweep resumes
without losing work (failed cells are retried). When the sweep ends -- or is interrupted
(KeyboardInterrupt: Ctrl-C, or SIGTERM under ``tnd``) -- ``report.md`` and ``results.json`` are
(re)written from all the plan's finished cells.

Backends: ``local`` runs the cells one after another in this process (no Ray needed);
``ray`` runs them as Ray tasks (one CPU each) on a local instance started -- and shut down --
by the runner (``ray.init(num_cpus=...)``) or, with ``ray_address``, on an existing cluster.
If Ray is already initialised by the caller it is used as is and left running. The driver
writes the cell files, so workers of a cluster need no shared file system. ``auto`` picks
``ray`` when it is importable. ``import tnd.apps.suite`` never imports Ray.

Mid-cell resume: with ``SweepSpec.checkpoint_every = N`` (``tnd suite --checkpoint-every N``)
every cell writes a training checkpoint (:mod:`tnd.apps.checkpoint`) every ``N`` updates into
``<out>/checkpoints/<cell_id>-<key>/`` and a rerun continues a killed cell from it, with the same
scores as an uninterrupted run; the folder is removed when the cell is done. (Workers of a Ray
cluster write it on their own disk: mid-cell resume needs the run folder on a shared or local disk.)

Topologies apply to the TND models only; the baselines run once per seed (topology ``na``).

Tuned configurations (``SweepSpec.tuned``: ``{"<task>/<model>": configuration}``, from
``tnd suite --tuned``, :mod:`.tuning_spaces`): a cell of a tuned (task, model) trains with the
configuration's learning rate and build options, and its settings hold the configuration, so its
key (resume) depends on it. A tuned TND cell runs on its configuration's graph family (its
topology), once per seed; ``topologies`` applies to untuned TND cells.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import statistics
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tnd.io import atomic_write_text
from .figures import figures_section, headline_table, mean_ci95, write_group_figures
from .models import MEMORYLESS, MODEL_NAMES, TND_NAMES, TOPOLOGIES, build_model, takes_timespans
from .train import TrainConfig, reference_score, train_and_evaluate
from .tuning_spaces import build_options, pair_key

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_SEEDS",
    "DEFAULT_TASKS",
    "FULL_MODELS",
    "FULL_TASKS",
    "Cell",
    "SweepSpec",
    "build_cell_model",
    "format_metric",
    "load_cells",
    "plan",
    "run_cell",
    "run_sweep",
    "task_settings",
    "train_config",
    "write_report",
]

#: every task of the suite (``tnd suite --full``), in report order
FULL_TASKS = (
    "japanese_vowels", "italy_power_demand",
    "irregular_japanese_vowels_30", "irregular_japanese_vowels_50", "irregular_japanese_vowels_70",
    "multiscale",
    "electricity", "sunspots", "sunspots_1913",
    "adding_100", "adding_500", "adding_1000",
    "copy_100", "copy_500", "copy_1000",
)
#: every model of the suite (``--full``)
FULL_MODELS = ("tnd", "tnd_shared", "tnd_ct", "tnd_ct_shared", "lstm", "lstm_chrono", "cfc", "ltc", "transformer", "mamba", "lru",
               "ode_rnn", MEMORYLESS)
#: ``tnd suite`` without ``--full``: the tasks that matter most (multi-timescale, irregular,
#: one real classification, memory at 100 and 1000 steps; docs/SUITE.md, "Cost"). Electricity,
#: the one forecast, runs with --full only: no model beats its seasonal-naive reference (docs/SUITE.md,
#: "Electricity leaves the default suite")
DEFAULT_TASKS = (
    "japanese_vowels", "irregular_japanese_vowels_50", "multiscale", "sunspots",
    "adding_100", "adding_1000", "copy_100", "copy_1000",
)
#: the LSTM twice: PyTorch's initialisation, and the chrono one (forget-gate time constants up to T),
#: the stronger LSTM on the timescale tasks (docs/SUITE.md, "Results of 2026-12-07, night")
DEFAULT_MODELS = ("tnd", "tnd_shared", "lstm", "lstm_chrono", "transformer", "ode_rnn", MEMORYLESS)
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
NA_TOPOLOGY = "na"

#: nominal sequence length of each task (used by the skip rules without loading data)
NOMINAL_LENGTH = {
    "multiscale": 256, "japanese_vowels": 29, "italy_power_demand": 24, "electricity": 336,
    "sunspots": 132, "sunspots_1913": 132,
    "irregular_japanese_vowels_30": 21, "irregular_japanese_vowels_50": 15,
    "irregular_japanese_vowels_70": 9,
    "adding_100": 100, "adding_500": 500, "adding_1000": 1000,
    "copy_100": 120, "copy_500": 520, "copy_1000": 1020,
}
#: longest nominal sequence each slow model runs on (speed, see docs/SUITE.md)
MAX_LENGTH = {"ltc": 64, "tnd_ct": 300, "tnd_ct_shared": 300, "transformer": 400,
              "lru": 128}  # lru-pytorch loops over batch and time in Python

#: default protocol, then per-task budgets (the same for every model of a task). A budget is set
#: by convergence: training ends when the validation loss has not improved by more than 1 % for
#: ``patience`` validations (one every ``eval_every`` updates); ``max_updates`` is a cap that a
#: cell should rarely hit (each cell records whether it did). Why these numbers: docs/SUITE.md,
#: "Budgets".
BASE_SETTINGS: dict[str, Any] = {
    "param_budget": 2000, "max_updates": 2000, "batch_size": 32, "lr": 3e-3, "clip": 1.0,
    "eval_every": 25, "patience": 8, "monitor": "loss", "min_rel_delta": 0.01, "max_train": None, "max_val": 256,
    "max_test": None, "data_seed": 0, "graph_seed": 0,
}
_SMALL_DATA = {"max_updates": 2000, "eval_every": 25, "patience": 8}  # ~200 train sequences: 7 updates an epoch
# sunspots (both forecast origins): ~1,400-1,800 training windows (44-57 updates an epoch); every
# validation window (409, 35 years)
_SUNSPOTS = {"max_updates": 3000, "eval_every": 50, "patience": 8, "max_val": None}
# memory tasks: an LSTM leaves adding_100's plateau after ~3,000-10,000 updates at batch 32
# (docs/SUITE.md, "Budgets"): 5,000 updates of patience, so the plateau does not end training, and
# a 30,000 cap; an improvement must also exceed 3e-4 of loss (0.2 % of the constant predictor's MSE
# on adding), or a solved model's noise at MSE 1e-5 keeps resetting the patience until the cap
_MEMORY = {"max_updates": 30000, "eval_every": 200, "patience": 25, "min_abs_delta": 3e-4}
_MEMORY_SHORT = {**_MEMORY, "max_test": 500}
# copy_100: TND was still improving at 30,000 updates on 4 of 5 seeds (docs/SUITE.md, "Copy at 100
# steps to convergence"); every model gets the higher cap, early stopping still ends the others
_COPY_SHORT = {**_MEMORY_SHORT, "max_updates": 100000}
# at 500 and 1000 steps the plateau outlasts 5,000 updates of patience: on copy_1000 TND left it
# after 400, 3,800, 7,800 and 15,400 updates on four seeds and the shared-F TND after 21,600 on
# one, while the old patience ended three of five TND seeds on it at 5,200 (docs/SUITE.md,
# "Results of 2026-12-07"): 30,000 updates of patience, for every model alike. The cap was 120,000
# until both cells that learned copy_1000 (chrono LSTM, TND) hit it still improving (best at
# 117,600 and 118,200; docs/SUITE.md, "Results of 2026-12-07, night"): now 400,000
_MEMORY_LONG = {**_MEMORY, "patience": 150, "max_updates": 400000, "max_val": 128, "max_test": 256}
TASK_OVERRIDES: dict[str, dict[str, Any]] = {
    "japanese_vowels": _SMALL_DATA,
    "italy_power_demand": {"max_updates": 1000, "eval_every": 10, "patience": 10},  # 53 train sequences
    "irregular_japanese_vowels_30": _SMALL_DATA,
    "irregular_japanese_vowels_50": _SMALL_DATA,
    "irregular_japanese_vowels_70": _SMALL_DATA,
    "multiscale": {"max_updates": 3000, "eval_every": 50, "patience": 8, "max_test": 1000},
    # every validation window (weeks 9-10): the first 256 (5 days) score the seasonal-naive forecast
    # at 0.0097 where all of them score 0.024 and the test weeks 0.012 -- too few days to stop on
    "electricity": {"max_updates": 2000, "eval_every": 50, "patience": 8, "max_val": None},
    "sunspots": _SUNSPOTS, "sunspots_1913": _SUNSPOTS,
    "adding_100": _MEMORY_SHORT, "copy_100": _COPY_SHORT,
    "adding_500": _MEMORY_LONG, "copy_500": _MEMORY_LONG,
    "adding_1000": _MEMORY_LONG, "copy_1000": _MEMORY_LONG,
}
QUICK_SETTINGS: dict[str, Any] = {
    "param_budget": 300, "max_updates": 3, "batch_size": 8, "eval_every": 2, "patience": 2,
    "max_train": 32, "max_val": 8, "max_test": 8,
}
#: the settings of a cell's protocol (those :class:`tnd.apps.suite.train.TrainConfig` takes);
#: ``min_abs_delta`` is set by the tasks that need it only, so the keys of the other cells stay
TRAIN_KEYS = ("max_updates", "batch_size", "lr", "clip", "eval_every", "patience", "monitor", "min_rel_delta",
              "min_abs_delta", "max_train", "max_val", "max_test")


def train_config(settings: dict[str, Any], **changes: Any) -> TrainConfig:
    """The :class:`TrainConfig` of a cell's ``settings`` (a protocol key it lacks keeps the
    config's default), with ``changes`` on top."""
    return TrainConfig(**{**{k: settings[k] for k in TRAIN_KEYS if k in settings}, **changes})


def task_settings(task: str, quick: bool = False, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The protocol of ``task``: defaults, per-task overrides, ``quick`` tiny budget, then ``overrides``."""
    s = dict(BASE_SETTINGS)
    s.update(TASK_OVERRIDES.get(task, {}))
    if quick:
        s.update(QUICK_SETTINGS)
    s.update({k: v for k, v in (overrides or {}).items() if v is not None})
    s["small"] = bool(quick)
    return s


def skip_reason(task: str, model: str, *, no_skip: bool = False) -> str | None:
    """Why ``model`` does not run on ``task`` by default (None: it runs)."""
    if no_skip:
        return None
    if model == "ode_rnn" and not task.startswith("irregular"):
        return "ODE-RNN runs on the irregular tasks only"
    limit = MAX_LENGTH.get(model)
    length = NOMINAL_LENGTH.get(task)
    if limit is not None and length is not None and length > limit:
        return f"{model} too slow on CPU for T={length} (runs up to T={limit})"
    return None


@dataclass(frozen=True)
class Cell:
    task: str
    model: str
    topology: str
    seed: int
    settings: dict[str, Any] = field(hash=False, compare=False)

    @property
    def cell_id(self) -> str:
        return f"{self.task}__{self.model}__{self.topology}__seed{self.seed}"

    @property
    def key(self) -> str:
        blob = json.dumps({"task": self.task, "model": self.model, "topology": self.topology,
                           "seed": self.seed, "settings": self.settings}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "model": self.model, "topology": self.topology, "seed": self.seed,
                "settings": dict(self.settings), "cell_id": self.cell_id, "key": self.key}


@dataclass
class SweepSpec:
    tasks: Sequence[str] = DEFAULT_TASKS
    models: Sequence[str] = DEFAULT_MODELS
    seeds: Sequence[int] = DEFAULT_SEEDS
    topologies: Sequence[str] = ("small_world",)
    quick: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    no_skip: bool = False
    threads: int = 1
    checkpoint_every: int = 0  # write a training checkpoint every N updates of a cell (0: never)
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)  # "<task>/<model>" -> chosen configuration

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": list(self.tasks), "models": list(self.models), "seeds": list(self.seeds),
                "topologies": list(self.topologies), "quick": self.quick,
                "overrides": dict(self.overrides), "no_skip": self.no_skip, "threads": self.threads,
                "checkpoint_every": self.checkpoint_every, "tuned": dict(self.tuned)}


def plan(spec: SweepSpec):
    """``(cells, skipped)``: the cells to run and ``(task, model, reason)`` of skipped pairs."""
    from ..tasks import TASKS

    for t in spec.tasks:
        if t not in TASKS:
            raise ValueError(f"unknown task {t!r}; valid: {', '.join(sorted(TASKS))}")
    for m in spec.models:
        if m not in MODEL_NAMES:
            raise ValueError(f"unknown model {m!r}; valid: {', '.join(MODEL_NAMES)}")
    for g in spec.topologies:
        if g not in TOPOLOGIES:
            raise ValueError(f"unknown topology {g!r}; valid: {', '.join(TOPOLOGIES)}")
    cells: list[Cell] = []
    skipped = []
    for task in spec.tasks:
        settings = task_settings(task, spec.quick, spec.overrides)
        settings["threads"] = int(spec.threads)
        for model in spec.models:
            reason = skip_reason(task, model, no_skip=spec.no_skip)
            if reason:
                skipped.append((task, model, reason))
                continue
            tuned = spec.tuned.get(pair_key(task, model))
            cell_settings = settings
            topos = spec.topologies if model in TND_NAMES else (NA_TOPOLOGY,)
            if tuned is not None:
                cell_settings = dict(settings, lr=build_options(model, tuned)["lr"], tuned=dict(tuned))
                if model in TND_NAMES:
                    topos = (tuned["graph"],)
            for topo in topos:
                for seed in spec.seeds:
                    cells.append(Cell(task, model, topo, int(seed), cell_settings))
    return cells, skipped


# ------------------------------------------------------------------------------ one cell
@lru_cache(maxsize=4)
def _load_task(name: str, seed: int, small: bool):
    from ..tasks import load_task

    return load_task(name, seed=seed, small=small)


def build_cell_model(cell: dict[str, Any]):
    """``(task, model, spec)`` of a cell (a dict from :meth:`Cell.to_dict`): its task loaded, the
    global torch RNG seeded with the cell's seed, the model built at the cell's budget, topology,
    graph seed and tuned options -- the model a cell trains, before training."""
    import torch

    s = cell["settings"]
    task = _load_task(cell["task"], int(s["data_seed"]), bool(s["small"]))
    torch.manual_seed(int(cell["seed"]))
    topo = cell["topology"] if cell["topology"] != NA_TOPOLOGY else "small_world"
    options = build_options(cell["model"], s["tuned"])["options"] if s.get("tuned") else None
    model, spec = build_model(cell["model"], task.input_size, int(task.output_size),
                              int(s["param_budget"]), topology=topo,
                              graph_seed=int(s["graph_seed"]), seq_len=task.seq_len, options=options)
    return task, model, spec


def run_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one cell (a dict from :meth:`Cell.to_dict`); never raises.

    Returns the cell dict plus ``status`` (``"ok"`` or ``"error"``), the model ``spec`` and the
    scores of :func:`tnd.apps.suite.train.train_and_evaluate` (or ``error`` with the traceback).
    With ``cell["checkpoint"] = {"dir": ..., "every": N}`` training writes checkpoints there and
    resumes from one it finds; the folder is removed once the cell is done.
    """
    import torch

    s = cell["settings"]
    torch.set_num_threads(int(s.get("threads", 1)))
    out = dict(cell)
    ckpt = out.pop("checkpoint", None)  # where, not what: not part of the result
    t0 = time.perf_counter()
    before_resume = 0.0
    try:
        task, model, spec = build_cell_model(cell)
        cfg = train_config(s)
        use_ts = takes_timespans(cell["model"]) and task.is_irregular
        ck_kw: dict[str, Any] = {}
        if ckpt:
            ck_kw = {"checkpoint_dir": ckpt["dir"], "checkpoint_every": int(ckpt["every"]), "resume": True}
        res = train_and_evaluate(model, task, cfg, int(cell["seed"]), use_timespans=use_ts, **ck_kw)
        before_resume = float(res["wall_before_resume_s"])
        if ckpt:
            shutil.rmtree(ckpt["dir"], ignore_errors=True)
        out.update(status="ok", spec=spec, used_timespans=use_ts, seq_len=task.seq_len, **res)
        out["reference"] = _reference(task, cfg)
    except Exception as exc:  # noqa: BLE001 - a failed cell is recorded and retried on the next run
        out.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    out["wall_time_s"] = time.perf_counter() - t0 + before_resume  # a resumed cell's earlier processes included
    return out


def _reference(task, cfg: TrainConfig) -> dict[str, Any]:
    """The task's reference scores: ``test_reference`` (named ``test_reference_name``) is the
    reference predictor's score on the cell's own test sequences
    (:func:`tnd.apps.suite.train.reference_score`), the rest come from the task's metadata."""
    md = task.metadata
    keys = ("chance_accuracy", "chance_accuracy_test", "seasonal_naive_mse", "daily_naive_mse",
            "persistence_mse", "linear_ar_mse", "linear_ar_params", "baseline_mse", "baseline_mse_test", "success_mse")
    ref: dict[str, Any] = {k: md[k] for k in keys if isinstance(md.get(k), (int, float))}
    score = reference_score(task, cfg)
    ref.update(test_reference=score["value"], test_reference_name=score["name"])
    return ref


# ----------------------------------------------------------------------------- the sweep
def _cell_path(out: Path, cell_id: str) -> Path:
    return out / "cells" / f"{cell_id}.json"


def _finished(out: Path, cell: Cell) -> dict[str, Any] | None:
    p = _cell_path(out, cell.cell_id)
    if not p.exists():
        return None
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if d.get("status") == "ok" and d.get("key") == cell.key:
        return d
    return None


def _write_cell(out: Path, result: dict[str, Any]) -> None:
    atomic_write_text(_cell_path(out, result["cell_id"]), json.dumps(result, indent=1, sort_keys=True))


def _progress(total: int, enabled: bool, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    if tqdm is None or not enabled:
        class _Null:
            def update(self, n=1): pass
            def set_postfix_str(self, s): pass
            def close(self): pass
        return _Null()
    return tqdm(total=total, desc=desc, unit="cell", dynamic_ncols=True)


def resolve_backend(backend: str) -> str:
    if backend not in ("auto", "ray", "local"):
        raise ValueError(f"backend must be 'auto', 'ray' or 'local', got {backend!r}")
    if backend == "auto":
        try:
            import ray  # noqa: F401
        except ImportError:
            return "local"
        return "ray"
    return backend


def run_sweep(spec: SweepSpec, out: str | os.PathLike, *, backend: str = "auto",
              ray_address: str | None = None, num_cpus: int | None = None,
              progress: bool = True, log=print) -> dict[str, Any]:
    """Run (or resume) the sweep ``spec`` into folder ``out`` and write its report.

    Returns ``{"ran", "skipped_done", "failed", "planned", "backend", "wall_time_s",
    "results": [...]}`` (``skipped_done``: cells already finished by an earlier run).
    """
    out = Path(out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    cells, skipped = plan(spec)
    done = {c.cell_id: _finished(out, c) for c in cells}
    todo = [c for c in cells if done[c.cell_id] is None]
    backend = resolve_backend(backend)
    atomic_write_text(out / "sweep.json", json.dumps({"spec": spec.to_dict(), "backend": backend,
                                                      "cells": len(cells)}, indent=1))
    log(f"[suite] {len(cells)} cells planned, {len(cells) - len(todo)} already done, "
        f"{len(todo)} to run on backend={backend}; {len(skipped)} model/task pairs skipped by rule")
    t0 = time.perf_counter()
    new: list[dict[str, Any]] = []
    if todo:
        runner = _run_ray if backend == "ray" else _run_local
        try:
            new = runner(todo, out, progress=progress, ray_address=ray_address, num_cpus=num_cpus,
                         checkpoint_every=int(spec.checkpoint_every))
        except KeyboardInterrupt as e:  # Ctrl-C / SIGTERM: a report of the cells finished so far
            ok = [d for d in (_finished(out, c) for c in cells) if d is not None]
            write_report(out, spec, ok, skipped, wall_time_s=time.perf_counter() - t0, backend=backend,
                         planned=len(cells))
            e.partial = (f"{len(ok)} of {len(cells)} cells finished and kept in {out} "
                         f"(partial report: {out / 'report.md'})")
            raise
    wall = time.perf_counter() - t0
    runs = _read_runs(out) + [{"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - wall)),
                               "wall_time_s": wall, "ran": len(new), "backend": backend,
                               "tasks": sorted({c.task for c in todo})}]
    atomic_write_text(out / "runs.json", json.dumps(runs, indent=1))
    results = [done[c.cell_id] or next((r for r in new if r["cell_id"] == c.cell_id), None) for c in cells]
    ok = [r for r in results if r is not None and r.get("status") == "ok"]
    failed = [r for r in new if r.get("status") != "ok"]
    for r in failed:
        log(f"[suite] cell {r['cell_id']} failed: {r.get('error')}")
    md = write_report(out, spec, ok, skipped, wall_time_s=wall, backend=backend, planned=len(cells))
    log("\n" + headline_table(md) + "\n")
    return {"ran": len(new), "skipped_done": len(cells) - len(todo), "failed": len(failed),
            "planned": len(cells), "backend": backend, "wall_time_s": wall, "results": ok}


def _payload(c: Cell, out: Path, checkpoint_every: int) -> dict[str, Any]:
    """What a worker gets: the cell, and where to keep its training checkpoints (if any)."""
    d = c.to_dict()
    if checkpoint_every > 0:
        d["checkpoint"] = {"dir": str((out / "checkpoints" / f"{c.cell_id}-{c.key}").resolve()),
                           "every": int(checkpoint_every)}
    return d


def _run_local(cells: list[Cell], out: Path, *, progress: bool, checkpoint_every: int = 0,
               **_: Any) -> list[dict[str, Any]]:
    bar = _progress(len(cells), progress, "suite (local)")
    res = []
    try:
        for c in cells:
            bar.set_postfix_str(c.cell_id)
            r = run_cell(_payload(c, out, checkpoint_every))
            _write_cell(out, r)
            res.append(r)
            bar.update(1)
    finally:
        bar.close()
    return res


def _run_ray(cells: list[Cell], out: Path, *, progress: bool, checkpoint_every: int = 0,
             ray_address: str | None = None,
             num_cpus: int | None = None) -> list[dict[str, Any]]:
    import ray

    started = False
    if not ray.is_initialized():
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False)
        started = True
    bar = _progress(len(cells), progress, "suite (ray)")
    res = []
    try:
        threads = int(cells[0].settings.get("threads", 1)) if cells else 1
        remote = ray.remote(num_cpus=threads, max_retries=1)(run_cell)
        pending = {remote.remote(_payload(c, out, checkpoint_every)): c for c in cells}
        while pending:
            # a timeout keeps the driver responsive to Ctrl-C (ray.wait blocks signals)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                c = pending.pop(ref)
                try:
                    r = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - worker crash: record, retry on the next run
                    r = dict(c.to_dict(), status="error", error=f"{type(exc).__name__}: {exc}")
                _write_cell(out, r)
                res.append(r)
                bar.set_postfix_str(c.cell_id)
                bar.update(1)
    finally:
        bar.close()
        if started:
            ray.shutdown()
    return res


def report_only(spec: SweepSpec, out: str | os.PathLike) -> int:
    """Rewrite the report of ``spec`` from the finished cells in ``out`` (runs nothing).

    The wall time reported is the summed wall time of the previous runs recorded in
    ``out/runs.json`` (0 if none). Returns the number of finished cells used."""
    out = Path(out)
    cells, skipped = plan(spec)
    ok = [d for d in (_finished(out, c) for c in cells) if d is not None]
    wall = sum(float(r.get("wall_time_s", 0.0)) for r in _read_runs(out))
    write_report(out, spec, ok, skipped, wall_time_s=wall, backend="(report only)", planned=len(cells))
    return len(ok)


def _read_runs(out: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads((out / "runs.json").read_text()))
    except (OSError, ValueError):
        return []


def load_cells(out: str | os.PathLike) -> list[dict[str, Any]]:
    """Every cell result stored under ``out/cells``."""
    res = []
    for p in sorted((Path(out) / "cells").glob("*.json")):
        try:
            res.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return res


# ------------------------------------------------------------------------------ the report
PUBLISHED = {
    "japanese_vowels": "published (Fawaz et al. 2019): FCN 99.3 %, ResNet 99.2 %, MLP 97.6 %",
}


def reference_value(ref: dict[str, Any], metric: str):
    """``(name, value)`` of the task's reference score (see the report), or None."""
    if isinstance(ref.get("test_reference"), (int, float)):
        return str(ref.get("test_reference_name", "reference")), float(ref["test_reference"])
    order = (("chance", "chance_accuracy_test"), ("chance", "chance_accuracy")) if metric == "accuracy" else \
        (("seasonal naive", "seasonal_naive_mse"), ("constant", "baseline_mse_test"), ("constant", "baseline_mse"))
    for name, key in order:
        if key in ref:
            return name, float(ref[key])
    return None


def beats_reference(value: float, ref, metric: str) -> str:
    if ref is None:
        return "-"
    ok = value > ref[1] + 0.03 if metric == "accuracy" else value < 0.95 * ref[1]
    return "yes" if ok else "**no**"


def _mse(v: float, scale: float | None = None) -> str:
    """An MSE at the precision of ``scale`` (default: itself): a solved memory task prints 1.7e-05, not 0.0000."""
    scale = v if scale is None else scale
    return f"{v:.4f}" if abs(scale) >= 1e-3 or scale == 0 else f"{v:.1e}"


def format_metric(mean: float, std: float | None, metric: str, *, sep: str = " ± ", unit: str = " %") -> str:
    """``mean ± std`` of a metric as the reports print it: accuracy in percent (followed by
    ``unit``), an MSE with 4 decimals, or in scientific notation below 1e-3 (``std`` at the
    mean's precision); ``std=None``: the mean alone."""
    if metric == "accuracy":
        return f"{100 * mean:.1f}" + ("" if std is None else f"{sep}{100 * std:.1f}") + unit
    return _mse(mean) + ("" if std is None else f"{sep}{_mse(std, mean)}")


def _fmt_ci(lo: float, hi: float, metric: str) -> str:
    if metric == "accuracy":
        return f"[{100 * lo:.1f}, {100 * hi:.1f}] %"
    return f"[{_mse(lo)}, {_mse(hi)}]"


def _hit_cap(r: dict[str, Any]) -> bool:
    """Whether the cell's training ended at its update cap (cells from before the field: not stopped early)."""
    return bool(r.get("hit_cap", not r.get("stopped_early", False)))


def aggregate(results: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{task: {"model/topology": stats}}``: mean, std and Student-t 95 % CI of the test metric over
    seeds, and when training stopped (``updates``: the update each seed stopped at; ``cap_hits``:
    how many seeds ran into the update cap instead of stopping early)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["task"], r["model"], r["topology"]), []).append(r)
    agg: dict[str, dict[str, dict[str, Any]]] = {}
    for (task, model, topo), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: int(r["seed"]))
        metric = rs[0]["metric"]
        vals = [float(r[f"test_{metric}"]) for r in rs]
        _, lo, hi = mean_ci95(vals)
        updates = [int(r["updates"]) for r in rs]
        label = model if topo == NA_TOPOLOGY else f"{model}/{topo}"
        agg.setdefault(task, {})[label] = {
            "model": model, "topology": topo, "metric": metric,
            "higher_is_better": bool(rs[0]["higher_is_better"]),
            "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "ci95": [lo, hi],
            "n_seeds": len(vals), "seeds": [int(r["seed"]) for r in rs], "values": vals,
            "params": int(rs[0]["spec"]["params"]),
            "size": rs[0]["spec"].get("num_neurons", rs[0]["spec"].get("hidden_size")),
            "sec_per_cell": statistics.fmean(float(r["wall_time_s"]) for r in rs),
            "sec_per_update": statistics.fmean(float(r["sec_per_update"]) for r in rs),
            "mean_updates": statistics.fmean(updates), "updates": updates,
            "best_updates": [int(r.get("best_update", 0)) for r in rs],
            "cap_hits": sum(_hit_cap(r) for r in rs),
            "diverged": [[int(r["seed"]), int(r["diverged_at"]), int(r.get("best_update", 0))]
                         for r in rs if r.get("diverged_at") is not None],
            "reference": rs[0].get("reference", {}),
            "seq_len": rs[0].get("seq_len"),
        }
    return agg


def _stops(a: dict[str, Any]) -> str:
    u = a["updates"]
    return f"{statistics.fmean(u):.0f}" + (f" ({min(u)}-{max(u)})" if len(u) > 1 and min(u) != max(u) else "")


def write_report(out: str | os.PathLike, spec: SweepSpec, results: list[dict[str, Any]],
                 skipped: Sequence[tuple], *, wall_time_s: float, backend: str, planned: int) -> str:
    """Write ``report.md`` and ``results.json`` into ``out``; returns the Markdown."""
    out = Path(out)
    agg = aggregate(results)
    cell_time = sum(float(r["wall_time_s"]) for r in results)
    lines = ["# TND suite results", ""]
    wall_txt = (f"summed wall time of the recorded runs (runs.json) {wall_time_s:.0f} s" if backend == "(report only)"
                else f"backend `{backend}`; wall time of this run {wall_time_s:.0f} s")
    lines.append(f"{len(results)}/{planned} cells finished; {wall_txt}; summed cell time {cell_time:.0f} s"
                 + (" (**quick** budget: smoke test, not a benchmark)" if spec.quick else "") + ".")
    lines.append(f"Seeds {list(spec.seeds)}; topologies {list(spec.topologies)} (TND only). "
                 "Test metric: accuracy (higher is better) or MSE in normalised units (lower is better), "
                 "mean ± std over seeds and the Student-t 95 % confidence interval of the mean. "
                 "\"stopped at\": the update at which early stopping ended training (mean over seeds, range); "
                 "\"cap hit\": seeds that ran into the update cap instead (their budget did not converge).")
    tuned = sorted(k for k in spec.tuned if k.partition("/")[0] in spec.tasks and k.partition("/")[2] in spec.models)
    if tuned:
        lines.append("")
        lines.append("Tuned configurations (`tnd suite --tuned`, chosen on validation by `tnd suite tune`; each cell "
                     "uses its own learning rate and layout, untuned cells the defaults below): "
                     + "; ".join(f"{k}: " + ", ".join(f"{n}={json.dumps(v)}" for n, v in spec.tuned[k].items())
                                 for k in tuned) + ".")
    lines.append("")
    summary_rows = []
    for task in [t for t in spec.tasks if t in agg]:
        rows = agg[task]
        any_row = next(iter(rows.values()))
        metric, hib = any_row["metric"], any_row["higher_is_better"]
        st = task_settings(task, spec.quick, spec.overrides)
        ordered = sorted(rows.items(), key=lambda kv: (-kv[1]["mean"] if hib else kv[1]["mean"]))
        lines.append(f"## {task}")
        lines.append("")
        lines.append(f"T = {any_row['seq_len']}; budget: {st['param_budget']} parameters, batch {st['batch_size']}, "
                     f"Adam lr {st['lr']}; training stops after {st['patience']} validations without improvement of the "
                     f"validation {'loss' if st['monitor'] == 'loss' else metric}"
                     + (f" by more than {100 * st['min_rel_delta']:g} %" if st.get("min_rel_delta") else "")
                     + (f" and more than {st['min_abs_delta']:g}" if st.get("min_abs_delta") else "") + " "
                     f"(one every {st['eval_every']} updates), capped at {st['max_updates']} updates.")
        lines.append("")
        lines.append(f"| rank | model | params | size | test {metric} | 95 % CI | seeds | stopped at | cap hit | "
                     "s/update | s/cell |")
        lines.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for i, (label, a) in enumerate(ordered, 1):
            lines.append(f"| {i} | {label} | {a['params']} | {a['size']} | {format_metric(a['mean'], a['std'], metric)} | "
                         f"{_fmt_ci(*a['ci95'], metric)} | {a['n_seeds']} | {_stops(a)} | "
                         f"{a['cap_hits']}/{a['n_seeds']} | {a['sec_per_update']:.3f} | {a['sec_per_cell']:.1f} |")
        ref = any_row["reference"]
        rv = reference_value(ref, metric)
        if rv is not None:
            lines.append(f"| - | *reference: {rv[0]}* | 0 | - | {format_metric(rv[1], None, metric)} | - | - | - | - | - | - |")
        if isinstance(ref.get("linear_ar_mse"), (int, float)):  # the simple model a learned forecast should beat
            lines.append(f"| - | *reference: linear autoregression (ridge)* | {ref.get('linear_ar_params', '-')} | - | "
                         f"{format_metric(ref['linear_ar_mse'], None, metric)} | - | - | - | - | - | - |")
        other = {k: v for k, v in sorted(ref.items())
                 if isinstance(v, (int, float)) and not k.startswith("test_reference")}
        if other:
            lines.append("")
            lines.append("Task metadata: " + ", ".join(f"{k} = {v:.4g}" for k, v in other.items()))
        dv = [f"{label} seed {sd} at update {at} (scored with its best weights, update {bu})"
              for label, a in ordered for sd, at, bu in a["diverged"]]
        if dv:
            lines.append("")
            lines.append("Diverged (a non-finite loss or gradient ended training; \"stopped at\" counts it, \"cap hit\" "
                         "does not): " + "; ".join(dv) + ".")
        if task in PUBLISHED:
            lines.append("")
            lines.append(PUBLISHED[task] + " (full-size models, long training; not the same budget).")
        sk = [(m, r) for t, m, r in skipped if t == task]
        if sk:
            lines.append("")
            lines.append("Not run: " + "; ".join(f"{m} ({r})" for m, r in sk) + ".")
        if MEMORYLESS in rows:
            lines.append("")
            lines.append(f"`{MEMORYLESS}` is the memoryless reference: an MLP on the current observation alone.")
        lines.append("")
        best_label, best = ordered[0]
        tnd_rows = [(lab, a) for lab, a in ordered if a["model"].startswith("tnd")]
        best_tnd = tnd_rows[0] if tnd_rows else None
        seq_rows = [(lab, a) for lab, a in ordered if a["model"] != MEMORYLESS]
        summary_rows.append((task, metric, best_label, best, best_tnd,
                             {lab: i for i, (lab, _) in enumerate(ordered, 1)}, len(ordered),
                             rows.get(MEMORYLESS), seq_rows[0] if seq_rows else None))
    # overall summary
    lines.append("## Summary")
    lines.append("")
    lines.append("| task | metric | reference | best model | best | best TND | TND rank | any model beats the reference? "
                 "| memoryless MLP | best sequence model beats it? |")
    lines.append("|---|---|---|---|---:|---|---:|---|---:|---|")
    for task, metric, bl, b, bt, ranks, n, mlp, bs in summary_rows:
        tnd_txt = f"{bt[0]}: {format_metric(bt[1]['mean'], bt[1]['std'], metric)}" if bt else "-"
        rank_txt = f"{ranks[bt[0]]}/{n}" if bt else "-"
        ref = reference_value(b["reference"], metric)
        ref_txt = f"{ref[0]} {format_metric(ref[1], None, metric)}" if ref else "-"
        mlp_txt = format_metric(mlp["mean"], mlp["std"], metric) if mlp else "-"
        seq_beats = beats_reference(bs[1]["mean"], ("mlp", mlp["mean"]), metric) if mlp and bs else "-"
        lines.append(f"| {task} | {metric} | {ref_txt} | {bl} | {format_metric(b['mean'], b['std'], metric)} | {tnd_txt} | "
                     f"{rank_txt} | {beats_reference(b['mean'], ref, metric)} | {mlp_txt} | {seq_beats} |")
    lines.append("")
    lines.append("Reference: the reference predictor of each task, scored on the same test sequences as the "
                 "models: chance (the most frequent training class), a constant predictor (the mean training "
                 "target: adding), the seasonal-naive forecast (electricity) or persistence (sunspots); forecasting "
                 "models forecast the residual on top of it. \"Beats\" means accuracy more than 3 points above chance, "
                 "or MSE more than 5 % below the reference: where no model does, the ranking is noise "
                 "(no model learned the task within the budget). The memoryless MLP sees the current observation "
                 "alone: where the best sequence model does not beat it by the same margins, the task as posed does "
                 "not demand memory.")
    lines.append("")
    # mean rank per model label over the tasks it ran on
    mean_rank: dict[str, list[int]] = {}
    for *_, ranks, _n, _mlp, _bs in summary_rows:
        for lab, r in ranks.items():
            mean_rank.setdefault(lab, []).append(r)
    if mean_rank:
        lines.append("Mean rank per model over the tasks it ran on (lower is better):")
        lines.append("")
        lines.append("| model | mean rank | tasks |")
        lines.append("|---|---:|---:|")
        for lab, rs in sorted(mean_rank.items(), key=lambda kv: statistics.fmean(kv[1])):
            lines.append(f"| {lab} | {statistics.fmean(rs):.2f} | {len(rs)} |")
        lines.append("")
    lines += figures_section(write_group_figures(out, agg, spec.tasks, reference_value))
    md = "\n".join(lines)
    atomic_write_text(out / "report.md", md)
    slim = [{k: v for k, v in r.items() if k not in ("history", "traceback")} for r in results]
    payload = {"spec": spec.to_dict(), "backend": backend, "planned": planned, "finished": len(results),
               "wall_time_s": wall_time_s, "summed_cell_time_s": cell_time,
               "skipped": [{"task": t, "model": m, "reason": r} for t, m, r in skipped],
               "aggregate": agg, "cells": slim}
    atomic_write_text(out / "results.json", json.dumps(payload, indent=1, sort_keys=True, default=_json_default))
    return md


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)
