"""``tnd suite tune``: the equal-budget hyper-parameter search of the suite.

One search per **(task, model)** (the tuning runner's "model" is ``"<task>/<model>"``): every
pair of ``--tasks`` x ``--models`` that the suite runs (its skip rules, ``--no-skip``) gets
``--trials`` trials, the same number for every model, over the model's own space
(:mod:`tnd.apps.suite.tuning_spaces`). The configurations drawn depend on the model and
``--search-seed`` only, so every task tries the same list (trial 0: the untuned setting). A trial
trains one cell like ``tnd suite`` does -- the task's protocol (update cap, early stopping,
validation every ``eval_every`` updates), its parameter budget, one training seed
(``--tune-seed``) -- and is scored on the **validation split only**: minus the validation loss
of the state early stopping keeps (its lowest validation loss, the score early stopping watches).
The test split is never read (:func:`tnd.apps.suite.train.train_and_evaluate` with ``test=False``).

Why the loss, not the metric: a validation accuracy over a few dozen sequences moves in whole
sequences (JapaneseVowels: 54, steps of 1.85 points), so most trials of a search tie at the top
and the tie-break, not the search, chooses (docs/SUITE.md, "Tuning"); the loss ranks every
trial. On regression tasks the loss is the MSE. Scores are maximised; the task's metric is stored
beside the score (``val_accuracy`` / ``val_mse``, and ``val_loss``). A model that misses the
budget by more than :data:`~tnd.apps.suite.tuning_spaces.BUDGET_TOLERANCE` scores None (never
chosen).

Run folder::

    <out>/tune.json                          the search's settings (marks the folder)
    <out>/trials/<task>/<model>/trial-<i>.json  one finished trial (written as it ends)
    <out>/tuning.json, tuning.md             every trial's configuration and score, the best per pair
    <out>/best_configs.json                  the chosen configuration per (task, model): tnd suite --tuned FILE

``--resume`` keeps the finished trials (``--tasks``, ``--models``, ``--trials``, the backend may
change; the protocol may not) and runs the rest; ``--force`` starts over. Ctrl-C keeps the
finished trials and writes the summary of those.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..runs import FolderOptions, Interrupted, note, open_run_folder, set_resume_command
from ..settings import UsageError, add_options, command_args, from_args, setting
from ..tasks import TASKS
from ..tuning import BACKENDS, check_backend_options, ray_tune_missing, run_search, sample_trials, write_best_configs
from .models import MODEL_NAMES

__all__ = ["TuneSettings", "add_arguments", "run", "run_tune", "suite_objective", "plan_pairs", "command_line"]

#: settings a resumed search may change: which trials run and where, not what a trial computes
TUNE_MAY_CHANGE = ("tasks", "models", "trials", "backend", "ray_address", "num_cpus", "progress", "threads")


@dataclass
class TuneSettings:
    """Settings of ``tnd suite tune``."""

    out: str | None = setting(None, kind="folder", example="--out runs/suite-tune")
    """run folder (default: runs/suite-tune, or runs/suite-tune-quick with --quick)"""
    tasks: tuple[str, ...] | None = setting(None, choices=(*sorted(TASKS), "all"), metavar="TASK",
                                            example="--tasks multiscale adding_100")
    """tasks to tune on, or all; default: the default suite's (one search per task and model)"""
    models: tuple[str, ...] | None = setting(None, choices=(*MODEL_NAMES, "all"), metavar="MODEL",
                                             example="--models tnd lstm")
    """models to tune, or all; default: the default suite's"""
    trials: int = setting(20, low=1, high=10_000, high_open=False)
    """trials per (task, model), the same for every model (trial 0: the untuned configuration; the
    others random draws from the model's space; a larger --trials on --resume extends the search)"""
    search_seed: int = 0
    """seed of the random search (which configurations are drawn)"""
    tune_seed: int = 0
    """training seed of every trial (initial weights and batch order)"""
    quick: bool = False
    """tiny data and budget (smoke test, seconds per trial)"""
    resume: bool = False
    """continue the search in --out: keep its finished trials, run the others (the protocol must match)"""
    backend: str = setting("auto", choices=BACKENDS)
    """where the trials run: ray (Ray Tune, one CPU per trial), local (one after another in this
    process) or auto (ray when Ray Tune is installed)"""
    ray_address: str | None = setting(None, metavar="ADDR", example="--ray-address auto")
    """address of a running Ray cluster (auto, or ray://<head>:10001); default: a local Ray started
    for the search and shut down after it"""
    num_cpus: int | None = setting(None, low=1, high=100_000)
    """CPUs of the local Ray, i.e. trials at once (default: all of this machine's)"""
    threads: int = setting(1, low=1, high=4096)
    """torch threads per trial"""
    max_updates: int | None = setting(None, low=1, example="--max-updates 200")
    """override the update cap of every task (as tnd suite --max-updates)"""
    param_budget: int | None = setting(None, low=1, high=10**7, example="--param-budget 2000")
    """override the parameter budget (as tnd suite --param-budget)"""
    batch_size: int | None = setting(None, low=1, example="--batch-size 32")
    """override the batch size (as tnd suite --batch-size)"""
    skip: bool = True
    """tune slow models at every length too (by default the pairs tnd suite skips are not tuned)"""
    progress: bool = True
    """hide the progress bar (not the messages about resuming, --force and interrupts)"""

    def check(self) -> None:
        for name in ("tasks", "models"):
            chosen = getattr(self, name)
            if chosen is not None and "all" in chosen and len(chosen) > 1:
                raise UsageError(f"--{name}: expected names or all alone, got {' '.join(chosen)!r}")
        check_backend_options(self.backend, self.ray_address, self.num_cpus)
        if self.resume and self.out is not None and not Path(self.out).is_dir():
            raise UsageError(f"--resume: the run folder --out {self.out} does not exist (start it without --resume)")

    @property
    def folder(self) -> str:
        return self.out or ("runs/suite-tune-quick" if self.quick else "runs/suite-tune")

    @property
    def overrides(self) -> dict[str, Any]:
        o = {"max_updates": self.max_updates, "param_budget": self.param_budget, "batch_size": self.batch_size}
        return {k: v for k, v in o.items() if v is not None}

    def chosen(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        from .sweep import DEFAULT_MODELS, DEFAULT_TASKS, FULL_MODELS, FULL_TASKS

        tasks = DEFAULT_TASKS if self.tasks is None else (FULL_TASKS if self.tasks == ("all",) else self.tasks)
        models = DEFAULT_MODELS if self.models is None else (FULL_MODELS if self.models == ("all",) else self.models)
        return tuple(tasks), tuple(models)


def plan_pairs(s: TuneSettings) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """``(pairs, skipped)``: the (task, model) searches, and ``(task, model, reason)`` of those the
    suite's skip rules leave out."""
    from .sweep import skip_reason

    tasks, models = s.chosen()
    pairs, skipped = [], []
    for t in tasks:
        for m in models:
            reason = skip_reason(t, m, no_skip=not s.skip)
            (skipped.append((t, m, reason)) if reason else pairs.append((t, m)))
    return pairs, skipped


def _option(key: str, value: Any) -> str:
    """One stored setting as a user types it."""
    name = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return name if value else f"no {name}"
    if isinstance(value, (list, tuple)):
        return f"{name} {' '.join(map(str, value))}"
    return f"{name} {value}"


def _protocol(s: TuneSettings) -> dict[str, Any]:
    """What a trial's result depends on (its fingerprint)."""
    return {"quick": s.quick, "overrides": s.overrides, "tune_seed": s.tune_seed}


# ----------------------------------------------------------------------------- one trial
@lru_cache(maxsize=4)
def _task(name: str, seed: int, small: bool):
    from ..tasks import load_task

    return load_task(name, seed=seed, small=small)


def suite_objective(key: str, config: dict[str, Any], index: int, context: dict[str, Any]) -> dict[str, Any]:
    """Train one cell of ``key`` (``"<task>/<model>"``) with trial ``config`` and score it on the
    validation split (accuracy, or minus the MSE; None when the model misses the budget)."""
    import torch

    from .models import build_model, takes_timespans
    from .sweep import train_config
    from .train import train_and_evaluate
    from .tuning_spaces import BUDGET_TOLERANCE, build_options, split_key

    task_name, model_name = split_key(key)
    s = context["settings"][task_name]
    seed = int(context["seed"])
    threads = torch.get_num_threads()
    torch.set_num_threads(int(context.get("threads", 1)))
    try:
        task = _task(task_name, int(s["data_seed"]), bool(s["small"]))
        opts = build_options(model_name, config)
        torch.manual_seed(seed)
        net, spec = build_model(model_name, task.input_size, int(task.output_size), int(s["param_budget"]),
                                graph_seed=int(s["graph_seed"]), seq_len=task.seq_len, options=opts["options"])
        cfg = train_config(s, lr=opts["lr"])
        use_ts = takes_timespans(model_name) and task.is_irregular
        t0 = time.perf_counter()
        res = train_and_evaluate(net, task, cfg, seed, use_timespans=use_ts, test=False)
        train_s = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    metric, hib = res["metric"], bool(res["higher_is_better"])
    val, val_loss = float(res[f"val_{metric}"]), float(res["val_loss"])
    within = abs(spec["params"] - int(s["param_budget"])) <= BUDGET_TOLERANCE * int(s["param_budget"])
    score = -val_loss if within and math.isfinite(val_loss) else None
    return {"score": score, "metric": metric, "higher_is_better": hib, f"val_{metric}": val, "val_loss": val_loss,
            "best_update": int(res["best_update"]), "updates": int(res["updates"]), "hit_cap": bool(res["hit_cap"]),
            "params": int(spec["params"]), "within_budget": bool(within), "n_val": int(res["n_val"]),
            "train_s": train_s}


# ----------------------------------------------------------------------------- the search
def command_line(s: TuneSettings) -> str:
    """The ``tnd suite tune`` command that reproduces ``s``."""
    parts = command_args(s, TuneSettings(), skip=("resume", "progress"))
    if s.out is None:
        parts += ["--out", s.folder]
    return " ".join(["tnd", "suite", "tune", *parts])


def run_tune(s: TuneSettings, force: bool = False, log=None) -> dict[str, Any]:
    """Run (or continue) the search; returns the summary (``<out>/tuning.json``) and writes
    ``<out>/best_configs.json``."""
    from tnd.io import atomic_write_text

    from .sweep import task_settings
    from .tuning_spaces import SPACES, TUNED_FORMAT, pair_key

    if s.backend == "ray" and (missing := ray_tune_missing()):
        raise UsageError(f"--backend ray: {missing}; or use --backend local")
    pairs, skipped = plan_pairs(s)
    if not pairs:
        raise UsageError("--tasks/--models: every pair is skipped by the suite's rules "
                         + "; ".join(f"{t} {m}: {r}" for t, m, r in skipped) + " (use --no-skip to tune them)")
    out = Path(s.folder)
    stored = {k: v for k, v in asdict(s).items() if k not in ("out", "resume")}
    open_run_folder(out, "suite tune", "tune.json", stored, lambda p: json.loads(p.read_text())["settings"],
                    resume=s.resume, force=force, may_change=TUNE_MAY_CHANGE,
                    option=_option)
    out.mkdir(parents=True, exist_ok=True)
    set_resume_command(command_line(s) + " --resume")
    atomic_write_text(out / "tune.json", json.dumps({"command": command_line(s), "settings": stored}, indent=1))
    log = log or (lambda msg: None)
    for t, m, r in skipped:
        log(f"tnd suite tune: not tuned: {t} {m} ({r})")
    models = sorted({m for _, m in pairs})
    per_model = sample_trials({m: SPACES[m] for m in models}, s.trials, s.search_seed)
    trials = {pair_key(t, m): per_model[m] for t, m in pairs}
    tasks = sorted({t for t, _ in pairs})
    settings = {t: task_settings(t, s.quick, s.overrides) for t in tasks}
    context = {"settings": settings, "seed": s.tune_seed, "threads": s.threads}
    try:
        summary = run_search(suite_objective, trials, out, context=context, fingerprint=_protocol(s), mode="max",
                             backend=s.backend, ray_address=s.ray_address, num_cpus=s.num_cpus, progress=s.progress,
                             spaces={k: SPACES[k.partition("/")[2]] for k in trials}, log=log,
                             reuse_workers=True)  # a trial seeds all it draws and restores torch's threads
    except KeyboardInterrupt as e:
        if isinstance(e, Interrupted) and getattr(e, "partial", None):
            e.partial += f"; continue with: {command_line(s)} --resume"
        raise
    budgets = sorted({int(v["param_budget"]) for v in settings.values()})
    write_best_configs(out, summary, {
        "format": TUNED_FORMAT, "command": command_line(s), "param_budget": budgets[0] if len(budgets) == 1 else None,
        "quick": s.quick, "trials_per_model": s.trials, "tune_seed": s.tune_seed,
        "score": "minus the validation loss of the state early stopping keeps, one training run "
                 "(seed --tune-seed); the test split is never read"})
    return summary


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`TuneSettings` field (help = the field's docstring), and ``--force``."""
    add_options(parser, TuneSettings)
    add_options(parser, FolderOptions)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tnd suite tune``."""
    import sys

    from ..tuning import summary_markdown

    s = from_args(TuneSettings, args)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if s.progress else note
    summary = run_tune(s, force=bool(getattr(args, "force", None)), log=say)
    print(summary_markdown(summary).split("\n## ")[0].rstrip())
    print(f"\nchosen configurations: {summary['best_configs']} (use: tnd suite --tuned {summary['best_configs']})")
    if summary["errors"]:
        note(f"tnd suite tune: {len(summary['errors'])} trial(s) failed (see tuning.md); rerun with --resume "
             "to retry them")
        return 1
    return 0
