"""``tnd pong tune``: the equal-budget hyper-parameter search of the Pong comparison.

Every model of ``--models`` gets ``--trials`` trials (the same number for every model) over its own
search space (:mod:`tnd.apps.pong.tuning_spaces`; trial 0 is the default configuration), each
trained like a ``tnd pong`` cell (same data, step budget, early stopping; one training seed,
``--tune-seed``) and scored by **closed-loop validation play**: the mean consecutive catches over
``--tune-val-rounds`` rounds served with seeds 15 000 000 + j (the DAgger validation serves),
disjoint from the demonstration serves and from the evaluation serves (10 000 000 + i), which
tuning never plays. The best-validation loss and the step where training stopped are recorded too.
Trials run on Ray Tune (:mod:`tnd.apps.tuning`; a local Ray by default, ``--ray-address`` for a
cluster) or in this process (``--backend local``).

Run folder::

    <out>/config.json                    the resolved TuneConfig (marks the folder)
    <out>/data/demos.npz + demos.json    the demonstrations (as in tnd pong)
    <out>/trials/<model>/trial-<i>.json  one finished trial (written as it ends)
    <out>/tuning.json, tuning.md         every trial's configuration and score, the best per model
    <out>/best_configs.json              the chosen configuration per model: tnd pong --tuned FILE

``--resume`` keeps the finished trials (any ``--models``, ``--trials``, ``--backend``; the other
settings must match) and runs the rest; ``--force`` starts over. Ctrl-C stops at once, keeps the
finished trials and writes the summary of those.
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
from ..tuning import BACKENDS, check_backend_options, ray_tune_missing, run_search, sample_trials, write_best_configs
from .models import MODEL_NAMES
from .config import DAGGER_SEED_BASE, DAGGER_VAL_SEED_BASE, QUICK, RESUME_MAY_CHANGE, PongConfig, presets_for

__all__ = ["TuneConfig", "QUICK_TUNE", "TUNE_VAL_SEED_BASE", "add_arguments", "config_from_args",
           "run", "run_tune", "pong_objective", "command_line"]

#: base seed of the tuning validation serves (round j: + j): the DAgger validation serves
TUNE_VAL_SEED_BASE = DAGGER_VAL_SEED_BASE


@dataclass
class TuneConfig(PongConfig):
    """Settings of ``tnd pong tune`` (the Pong training settings, plus the search's own)."""

    out: str | None = setting(None, kind="folder", example="--out runs/pong-tune")
    """run folder (default: runs/pong-tune-<UTC timestamp>)"""
    models: tuple[str, ...] = setting(PongConfig.__dataclass_fields__["models"].default, choices=MODEL_NAMES,
                                      metavar="MODEL")
    """models to tune (each gets --trials trials over its own search space)"""
    resume: bool = False
    """continue the search in --out: keep its finished trials, run the others (the settings must match)"""
    trials: int = setting(20, low=1, high=10_000, high_open=False)
    """trials per model, the same for every model (trial 0: the default configuration; the others
    random draws from the model's search space; a larger --trials on --resume extends the search)"""
    search_seed: int = 0
    """seed of the random search (which configurations are drawn)"""
    tune_seed: int = 0
    """training seed of every trial (initial weights and batch order)"""
    tune_val_rounds: int = setting(100, low=1, high=DAGGER_SEED_BASE - DAGGER_VAL_SEED_BASE, high_open=False)
    """closed-loop validation rounds per trial, the score (mean consecutive catches): serves
    15 000 000 + j, never the evaluation serves"""
    backend: str = setting("auto", choices=BACKENDS)
    """where the trials run: ray (Ray Tune, one CPU per trial), local (one after another in this
    process) or auto (ray when it is installed)"""
    ray_address: str | None = setting(None, metavar="ADDR", example="--ray-address auto")
    """address of a running Ray cluster (auto, or ray://<head>:10001); default: a local Ray started
    for the search and shut down after it"""
    num_cpus: int | None = setting(None, low=1)
    """CPUs of the local Ray, i.e. trials at once (default: all of this machine's)"""

    def check(self) -> None:
        """The Pong checks, and the backend's options."""
        super().check()
        check_backend_options(self.backend, self.ray_address, self.num_cpus)


QUICK_TUNE: dict[str, Any] = {**QUICK, "trials": 2, "tune_val_rounds": 8}
#: the Pong settings tuning does not use: it trains one seed per trial (--tune-seed), plays
#: validation serves in the training environment instead of evaluation serves (no shifted
#: environments: a shift is a test-time measurement, never a score), searches lr and mlp_k's k,
#: and runs on Ray
NOT_OPTIONS = ("seeds", "workers", "lr", "mlp_frames", "eval_rounds", "frame_steps", "tuned", "checkpoint_every",
               "shifts", "shift_rounds")
#: settings a resumed search may change: which trials run and where, not what a trial computes
TUNE_MAY_CHANGE = (*RESUME_MAY_CHANGE, "trials", "backend", "ray_address", "num_cpus")


# ----------------------------------------------------------------------------- one trial
def pong_objective(model: str, config: dict[str, Any], index: int, context: dict[str, Any]) -> dict[str, Any]:
    """Train ``model`` with trial ``config`` and play the validation serves; the score is the mean
    consecutive catches (None when the model misses the parameter budget's tolerance)."""
    import torch

    from .cells import env_kwargs, prepare_data, train_cell
    from .evaluate import play_rounds
    from .tuning_spaces import BUDGET_TOLERANCE, build_options

    cfg = PongConfig(**context["pong"])
    out = Path(context["out"])
    variant = {"label": f"{model}-trial-{index}", **build_options(model, config)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data_path = prepare_data(cfg, out)  # the driver's copy; a cluster worker without it makes its own
        t0 = time.perf_counter()
        net, spec, tr, dag = train_cell(cfg, model, int(context["seed"]), data_path, out, variant=variant)
        train_s = time.perf_counter() - t0
        val = play_rounds(net, int(context["val_rounds"]), seed=TUNE_VAL_SEED_BASE, env_kwargs=env_kwargs(cfg))
    finally:
        torch.set_num_threads(threads)
    within = abs(spec["params"] - cfg.param_budget) <= BUDGET_TOLERANCE * cfg.param_budget
    result = {"score": float(val["mean_catches"]) if within else None, "mean_catches": float(val["mean_catches"]),
              "catch_rate": float(val["catch_rate"]), "val_loss": float(tr["best_val_loss"]),
              "val_accuracy": float(tr["val_accuracy"]), "best_step": int(tr["best_step"]), "steps": int(tr["steps"]),
              "params": int(spec["params"]), "within_budget": bool(within), "train_s": train_s,
              "val_seed_base": TUNE_VAL_SEED_BASE, "val_rounds": int(context["val_rounds"])}
    if dag is not None:
        result["dagger_val_mean_catches"] = [it["val_closed_loop"]["mean_catches"] for it in dag["iterations"]]
    return result


# ----------------------------------------------------------------------------- the search
def _pong_part(cfg: TuneConfig) -> dict[str, Any]:
    d = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(PongConfig)}
    d["tuned"] = None
    d["shifts"] = ()  # a trial plays validation serves in the training environment only
    return d


def _fingerprint(cfg: TuneConfig) -> dict[str, Any]:
    """The settings a trial's result depends on."""
    skip = set(TUNE_MAY_CHANGE) | set(NOT_OPTIONS) | {"search_seed"}
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}


def command_line(cfg: TuneConfig) -> str:
    """The ``tnd pong tune`` command that reproduces ``cfg``."""
    default = TuneConfig(**presets_for(cfg.protocol, cfg.quick, QUICK_TUNE, skip=NOT_OPTIONS))
    parts = (["tnd", "pong", "tune"] + (["--quick"] if cfg.quick else [])
             + (["--protocol", "bc"] if cfg.protocol == "bc" else []))
    return " ".join(parts + command_args(cfg, default, skip=("quick", "resume", "progress", *NOT_OPTIONS)))


def resume_command(cfg: TuneConfig) -> str:
    return command_line(cfg) + " --resume"


def run_tune(cfg: TuneConfig, force: bool = False) -> dict[str, Any]:
    """Run (or continue) the search; returns the summary (``<out>/tuning.json``) and writes
    ``<out>/best_configs.json``."""
    from .cells import start_run
    from .tuning_spaces import TUNED_FORMAT, protocol_settings, spaces_for

    missing = ray_tune_missing() if cfg.backend == "ray" else None
    if missing:
        raise UsageError(f"--backend ray: {missing}; or use --backend local")
    if cfg.out is None:
        cfg = dataclasses.replace(cfg, out=f"runs/pong-tune-{_dt.datetime.now(_dt.timezone.utc):%Y%m%d-%H%M%S}")
    cfg, out, say, _ = start_run(cfg, "pong tune", resume_command, force, may_change=TUNE_MAY_CHANGE)
    all_spaces = spaces_for(cfg.tnd_base)  # trial 0 of a TND = the untuned model of this base
    spaces = {m: all_spaces[m] for m in cfg.models}
    trials = sample_trials(spaces, cfg.trials, cfg.search_seed)
    context = {"pong": _pong_part(cfg), "out": str(Path(out).resolve()), "seed": cfg.tune_seed,
               "val_rounds": cfg.tune_val_rounds}
    try:
        summary = run_search(pong_objective, trials, out, context=context, fingerprint=_fingerprint(cfg), mode="max",
                             backend=cfg.backend, ray_address=cfg.ray_address, num_cpus=cfg.num_cpus,
                             progress=cfg.progress, spaces=spaces, log=note if cfg.resume else say,
                             reuse_workers=True)  # a trial seeds all it draws and restores torch's threads
    except KeyboardInterrupt as e:
        if isinstance(e, Interrupted) and getattr(e, "partial", None):
            e.partial += f"; continue with: {resume_command(cfg)}"
        raise
    write_best_configs(out, summary, {
        "format": TUNED_FORMAT, "command": command_line(cfg), "param_budget": cfg.param_budget,
        "trials_per_model": cfg.trials, "settings": protocol_settings(cfg),
        "score": f"mean consecutive catches on the validation serves {TUNE_VAL_SEED_BASE} + j, j < {cfg.tune_val_rounds}"})
    return summary


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`TuneConfig` field (help = the field's docstring), and ``--force``."""
    add_options(parser, TuneConfig, skip=NOT_OPTIONS)
    add_options(parser, FolderOptions)


def config_from_args(args: argparse.Namespace) -> TuneConfig:
    """Defaults <- --quick presets <- explicit options; checked (UsageError names the option)."""
    presets = presets_for(getattr(args, "protocol", None), bool(getattr(args, "quick", None)), QUICK_TUNE,
                          skip=NOT_OPTIONS)
    return from_args(TuneConfig, args, presets, skip=NOT_OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tnd pong tune``."""
    from ..tuning import summary_markdown

    cfg = config_from_args(args)
    summary = run_tune(cfg, force=bool(getattr(args, "force", None)))
    md = summary_markdown(summary)
    print(md.split("\n## ")[0].rstrip())
    print(f"\nchosen configurations: {summary['best_configs']} (use: tnd pong --tuned {summary['best_configs']})")
    if summary["errors"]:
        note(f"tnd pong tune: {len(summary['errors'])} trial(s) failed (see tuning.md); rerun with --resume "
             "to retry them")
        return 1
    return 0
