"""``tnd suite``: run the benchmark suite (or part of it) as a resumable sweep.

Examples::

    tnd suite                                   # the default suite: 8 tasks, 5 models, seeds 0..4 (2 cores)
    tnd suite --full --ray-address auto         # every task and model, on an existing Ray cluster
    tnd suite --tasks multiscale --models tnd lstm --seeds 0 1 2
    tnd suite --quick --out runs/smoke          # tiny budget, a smoke test
    tnd suite --topologies small_world,random,ring --models tnd,tnd_shared --tasks multiscale
    tnd suite tune --tasks multiscale --models tnd lstm --trials 20   # equal tuning (tnd.apps.suite.tune)
    tnd suite --tuned runs/suite-tune/best_configs.json                 # the sweep with the chosen configs

Lists take space- or comma-separated values, like every ``tnd`` command (``--seeds 0 1 2``, the
seeds themselves, never a count). An ``--out`` that already holds a sweep is refused unless
``--resume`` (skip the finished cells; tasks, models, seeds and topologies may change, the
protocol may not) or ``--force`` (start over; the old sweep is moved to ``<out>.old-<time>``).
With ``--checkpoint-every N`` a resumed sweep also continues a killed cell from its last
training checkpoint. Ctrl-C stops the sweep, keeps the finished cells and writes a partial report.

Invalid options are refused before anything runs, with one line naming the option (exit code 2).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs import FolderOptions, Interrupted, note, open_run_folder, set_resume_command
from ..settings import UsageError, add_options, command_args, from_args, setting
from ..tasks import TASKS
from .models import MODEL_NAMES, TOPOLOGIES
from .sweep import DEFAULT_MODELS, DEFAULT_SEEDS, DEFAULT_TASKS, FULL_MODELS, FULL_TASKS

__all__ = ["SuiteSettings", "add_arguments", "run"]


@dataclass
class SuiteSettings:
    """Settings of ``tnd suite``."""

    out: str | None = setting(None, kind="folder", example="--out runs/suite")
    """run folder (default: runs/suite, or runs/suite-quick with --quick)"""
    tasks: tuple[str, ...] | None = setting(None, choices=(*sorted(TASKS), "all"), metavar="TASK",
                                            example="--tasks multiscale adding_100")
    """tasks to run, or all (every task of the suite); default: the default suite's (tnd suite --list shows
    the plan), every task with --full"""
    models: tuple[str, ...] | None = setting(None, choices=(*MODEL_NAMES, "all"), metavar="MODEL",
                                             example="--models tnd lstm")
    """models to run, or all (every model of the suite); default: the default suite's, every model with --full"""
    seeds: tuple[int, ...] = setting(DEFAULT_SEEDS, metavar="SEED")
    """training seeds; one cell per (task, model, topology, seed)"""
    full: bool = False
    """every task (memory at 100, 500 and 1000 steps too) and every model (mamba and lru too) not chosen by
    --tasks / --models: hours of CPU, meant for a Ray cluster (--ray-address); resumable cell by cell"""
    topologies: tuple[str, ...] = setting(("small_world",), choices=TOPOLOGIES, metavar="TOPOLOGY")
    """TND graph families (TND models only; the baselines run once per seed)"""
    quick: bool = False
    """tiny data and budget (smoke test, seconds per cell)"""
    resume: bool = False
    """continue the sweep in --out: skip its finished cells (the protocol settings must match)"""
    backend: str = setting("auto", choices=("auto", "ray", "local"))
    """auto: Ray if importable, else local (sequential)"""
    ray_address: str | None = setting(None, example="--ray-address auto", metavar="ADDRESS")
    """address of an existing Ray cluster (e.g. 'auto' or 'ray://host:10001'); default: start a local
    instance and shut it down at the end"""
    num_cpus: int | None = setting(None, low=1, high=100_000, example="--num-cpus 4")
    """CPUs of the local Ray instance (default: all)"""
    threads: int = setting(1, low=1, high=4096)
    """torch threads per cell"""
    max_updates: int | None = setting(None, low=1, example="--max-updates 200")
    """override the update cap of every task (training still stops early by validation)"""
    param_budget: int | None = setting(None, low=1, high=10**7, example="--param-budget 2000")
    """override the parameter budget"""
    batch_size: int | None = setting(None, low=1, example="--batch-size 32")
    """override the batch size"""
    checkpoint_every: int = 0
    """write a training checkpoint every N updates of a cell, so a killed sweep resumes mid-cell
    (0: only finished cells are kept)"""
    skip: bool = True
    """run slow models at every length (by default LTC, continuous TND, the Transformer are skipped
    beyond a length, ODE-RNN runs on irregular tasks only)"""
    progress: bool = True
    """hide the progress bar (not the messages about resuming, --force and interrupts)"""
    plan_only: bool = setting(False, option="--list")
    """print the plan (cells and skips) and exit"""
    report_only: bool = False
    """rewrite report.md/results.json from the finished cells of --out; run nothing"""
    tuned: str | None = setting(None, metavar="FILE", example="--tuned runs/suite-tune/best_configs.json")
    """chosen configurations per (task, model) (best_configs.json of tnd suite tune; none: the defaults);
    default: the committed src/tnd/apps/suite/tuned.json (its tasks; not with --quick or another
    --param-budget than it was searched at). A tuned cell uses its
    configuration's learning rate and layout (TND: its graph family instead of --topologies)"""

    def check(self) -> None:
        for name in ("tasks", "models"):
            chosen = getattr(self, name)
            if chosen is not None and "all" in chosen and len(chosen) > 1:
                raise UsageError(f"--{name}: expected names or all alone, got {' '.join(chosen)!r}")
        if self.plan_only and self.report_only:
            raise UsageError("--list and --report-only exclude each other (--list runs and writes nothing)")
        if self.report_only and not Path(self.folder).is_dir():
            raise UsageError(f"--report-only: the run folder --out {self.folder} does not exist")
        if self.resume and not self.report_only and self.out is not None and not Path(self.out).is_dir():
            raise UsageError(f"--resume: the run folder --out {self.out} does not exist (start it without --resume)")

    @property
    def chosen_tasks(self) -> tuple[str, ...]:
        """The tasks of the plan: --tasks, else the default suite's (every task with --full)."""
        return _chosen(self.tasks, FULL_TASKS if self.full else DEFAULT_TASKS, FULL_TASKS)

    @property
    def chosen_models(self) -> tuple[str, ...]:
        return _chosen(self.models, FULL_MODELS if self.full else DEFAULT_MODELS, FULL_MODELS)

    @property
    def folder(self) -> str:
        return self.out or ("runs/suite-quick" if self.quick else "runs/suite")


def _chosen(given: tuple[str, ...] | None, default: tuple[str, ...], every: tuple[str, ...]) -> tuple[str, ...]:
    if given is None:
        return default
    return every if given == ("all",) else given


#: sweep settings a resumed sweep may change (which cells run), against those it may not (the protocol)
RESUME_MAY_CHANGE = ("tasks", "models", "seeds", "topologies", "checkpoint_every")
#: the options of SuiteSettings that are a SweepSpec setting
_SPEC_OPTIONS = {"quick": "--quick", "no_skip": "--no-skip", "threads": "--threads"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, SuiteSettings)
    add_options(parser, FolderOptions)


def _tuned(s: SuiteSettings) -> dict[str, dict[str, Any]]:
    """The chosen configurations of --tuned (every entry of the file: --tasks may change on resume).
    The committed file (no --tuned) holds the defaults of the protocol it was searched under only:
    --quick, or another --param-budget, runs untuned unless --tuned names a file."""
    from .sweep import BASE_SETTINGS, QUICK_SETTINGS
    from .tuning_spaces import load_tuned, resolve_tuned_path

    path = resolve_tuned_path(s.tuned)
    if path is None:
        return {}
    loaded = load_tuned(path)
    budget = s.param_budget or (QUICK_SETTINGS if s.quick else BASE_SETTINGS)["param_budget"]
    other_budget = loaded["param_budget"] not in (None, budget)
    if s.tuned is None and (s.quick or other_budget):
        if not s.quick:
            note(f"tnd suite: the committed {path.name} was searched at --param-budget {loaded['param_budget']}; "
                 f"this sweep ({budget}) runs every model untuned (--tuned {path} applies it anyway)")
        return {}
    if other_budget:
        note(f"tnd suite: --tuned {path}: searched at --param-budget {loaded['param_budget']}, this sweep uses "
             f"{budget} (the configurations apply; the widths are matched to this budget)")
    return loaded["configs"]


def _spec(s: SuiteSettings):
    from .sweep import SweepSpec

    overrides = {"max_updates": s.max_updates, "param_budget": s.param_budget, "batch_size": s.batch_size}
    return SweepSpec(tasks=list(s.chosen_tasks), models=list(s.chosen_models), seeds=list(s.seeds), topologies=list(s.topologies),
                     quick=s.quick, overrides={k: v for k, v in overrides.items() if v is not None},
                     no_skip=not s.skip, threads=s.threads, checkpoint_every=s.checkpoint_every, tuned=_tuned(s))


def _option(key: str, value: Any) -> str:
    """One SweepSpec setting as a user types it."""
    if key == "overrides":
        return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(value.items())) or "no overrides"
    if key == "tuned":
        return f"--tuned with {len(value)} chosen configuration(s)" if value else "no --tuned"
    if key in ("quick", "no_skip"):
        return _SPEC_OPTIONS[key] if value else f"no {_SPEC_OPTIONS[key]}"
    return f"--{key.replace('_', '-')} {value}"


def resume_command(s: SuiteSettings) -> str:
    base = SuiteSettings()
    parts = command_args(s, base, skip=("resume", "progress", "plan_only", "report_only"))
    if s.out is None:
        parts += ["--out", s.folder]
    return " ".join(["tnd", "suite", *parts, "--resume"])


def run(args: argparse.Namespace) -> int:
    from .sweep import plan, run_sweep

    s = from_args(SuiteSettings, args)
    spec = _spec(s)
    out = s.folder
    try:
        cells, skipped = plan(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if s.plan_only:
        for c in cells:
            print(c.cell_id)
        for t, m, r in skipped:
            print(f"skip {t} {m}: {r}")
        print(f"{len(cells)} cells, {len(skipped)} skipped model/task pairs")
        return 0
    if s.report_only:
        from .sweep import report_only

        n = report_only(spec, out)
        print(f"[suite] report of {n}/{len(cells)} finished cells: {out}/report.md, {out}/results.json")
        return 0
    open_run_folder(Path(out), "suite", "sweep.json", spec.to_dict(), lambda p: {"tuned": {}, **json.loads(p.read_text())["spec"]},
                    resume=s.resume, force=bool(getattr(args, "force", None)), may_change=RESUME_MAY_CHANGE,
                    option=_option)
    set_resume_command(resume_command(s))
    try:
        summary = run_sweep(spec, out, backend=s.backend, ray_address=s.ray_address, num_cpus=s.num_cpus,
                            progress=s.progress)
    except Interrupted as e:
        e.partial = f"{e.partial or 'the finished cells are kept in ' + out}; continue with: {resume_command(s)}"
        raise
    print(f"[suite] ran {summary['ran']} cells, {summary['skipped_done']} already done, "
          f"{summary['failed']} failed, in {summary['wall_time_s']:.0f} s (backend {summary['backend']})")
    print(f"[suite] report: {out}/report.md, {out}/results.json")
    return 1 if summary["failed"] else 0
