"""The cells of a Pong run folder, shared by ``tnd pong`` and ``tnd topology``.

A cell is one (model, seed) -- or, in a topology sweep, one (graph variant, seed) -- trained and
evaluated by :func:`run_cell` into ``<out>/cells/<label>/seed-<s>/`` (``model.safetensors``,
``checkpoint.json``, then ``metrics.json``, which marks it done; with ``--protocol dagger`` also
``dagger-<cell key>/``, the finished DAgger iterations, :mod:`.dagger`). metrics.json also holds the
closed-loop results in the shifted environments of ``--shifts`` (``"shifts"``, :mod:`.shifts`), which
are evaluation only: :func:`add_missing_shifts` plays a missing one with the saved model. :func:`cell_key` hashes every
setting that changes a cell's trained model and main evaluation; :func:`cell_done` returns a finished cell's metrics when its
key matches. :func:`start_run` opens the run folder (:func:`tnd.apps.runs.open_run_folder`),
writes ``config.json`` and the demonstrations; :func:`run_cells` runs cells, in worker processes
when asked (:func:`tnd.apps.runs.run_calls`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..runs import open_run_folder, run_calls, set_resume_command
from .config import DAGGER_FIELDS, RESUME_MAY_CHANGE, TND_BASES, PongConfig, stored_settings
from .models import TND_NAMES

__all__ = ["env_kwargs", "data_settings", "cell_key", "prepare_data", "load_windows", "cell_dir", "cell_done",
           "run_cell", "train_cell", "load_cell_model", "missing_shifts", "add_missing_shifts", "run_cells", "start_run"]


def env_kwargs(cfg: PongConfig) -> dict[str, Any]:
    kw = {"max_catches": cfg.max_catches, "obs_noise": cfg.obs_noise}
    if cfg.obs_mode != "positions":  # absent for the default, so existing cell keys and data stay valid
        kw["obs_mode"] = cfg.obs_mode
    return kw


def data_settings(cfg: PongConfig) -> dict[str, Any]:
    d = {k: getattr(cfg, k) for k in ("demo_rounds", "demo_steps_per_round", "perturb_prob", "perturb_max_len",
                                      "serve_perturb_max_len", "data_seed", "max_catches", "obs_noise")}
    if cfg.obs_mode != "positions":  # see env_kwargs
        d["obs_mode"] = cfg.obs_mode
    return d


def cell_key(cfg: PongConfig, model: str, seed: int, variant: dict[str, Any] | None = None) -> str:
    """Hash of every setting that changes a (model, seed) cell's result (``variant``: see
    :func:`run_cell`)."""
    keys = ("param_budget", "window", "batch_size", "lr", "max_steps", "eval_every", "patience", "grad_clip",
            "val_fraction", "val_windows", "graph_seed", "eval_rounds")
    d = {k: getattr(cfg, k) for k in keys}
    d.update(data_settings(cfg), model=model, seed=seed)
    # the newer settings enter only the cells they change, so behaviour-cloning cells keep their keys
    if cfg.protocol != "bc":
        d.update({k: getattr(cfg, k) for k in DAGGER_FIELDS}, protocol=cfg.protocol)
        if cfg.dagger_select != "last":  # absent for "last", what DAgger cells kept before the option
            d["dagger_select"] = cfg.dagger_select
    if model == "mlp_k":
        d["mlp_frames"] = cfg.mlp_frames
    if model in TND_NAMES and cfg.tnd_base != "v1":  # absent for v1, what TND cells were before the option
        d["tnd_base"] = cfg.tnd_base
    if variant is not None:
        d["variant"] = variant
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- data
def prepare_data(cfg: PongConfig, out: Path) -> Path:
    """Generate (or, when the settings match, reuse) the demonstrations; return the .npz path."""
    from .data import generate_perturbed_demonstrations, save_dataset

    path = out / "data" / "demos.npz"
    meta_path = path.with_suffix(".json")
    settings = data_settings(cfg)
    if path.is_file() and meta_path.is_file():
        try:
            if json.loads(meta_path.read_text()).get("settings") == settings:
                return path
        except ValueError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    demos = generate_perturbed_demonstrations(
        cfg.demo_rounds, seed=cfg.data_seed, env_kwargs=env_kwargs(cfg), max_steps_per_round=cfg.demo_steps_per_round,
        perturb_prob=cfg.perturb_prob, perturb_max_len=cfg.perturb_max_len,
        serve_perturb_max_len=cfg.serve_perturb_max_len)
    meta = {"settings": settings, "expert": "expert (DART-perturbed execution, expert labels)",
            "env_id": "tnd/SinglePlayerPong-v0", "env_kwargs": env_kwargs(cfg), "num_steps": int(demos["actions"].shape[0]),
            "round_seeds": f"{cfg.data_seed} + i for i in range({cfg.demo_rounds})", "obs_mode": cfg.obs_mode}
    save_dataset(path, demos, meta)
    return path


def load_windows(cfg: PongConfig, data_path: Path):
    from .data import load_dataset, make_windows, train_val_split

    demos, _ = load_dataset(data_path)
    tr, va = train_val_split(demos, cfg.val_fraction, seed=cfg.data_seed)
    Xt, Yt = make_windows(tr, cfg.window, stride=max(1, cfg.window // 2))
    Xv, Yv = make_windows(va, cfg.window, stride=cfg.window)
    return Xt, Yt, Xv[: cfg.val_windows], Yv[: cfg.val_windows]


# ----------------------------------------------------------------------------- one cell
def cell_dir(out: Path, model: str, seed: int) -> Path:
    return out / "cells" / model / f"seed-{seed}"


def cell_done(cfg: PongConfig, out: Path, model: str, seed: int,
              variant: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The stored metrics of a finished cell with matching settings, else None (``model``: the
    cell's label, i.e. the variant's label when there is one)."""
    d = cell_dir(out, model, seed)
    if not all((d / f).is_file() for f in ("model.safetensors", "checkpoint.json", "metrics.json")):
        return None
    try:
        metrics = json.loads((d / "metrics.json").read_text())
    except ValueError:
        return None
    return metrics if metrics.get("cell_key") == cell_key(cfg, model, seed, variant) else None


def run_cell(cfg_dict: dict[str, Any], model_name: str, seed: int, data_path: str, out: str,
             show_progress: bool = False, variant: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and evaluate one (model, seed) cell and write its files; returns its metrics.

    ``variant``: see :func:`train_cell`. Single-threaded torch for the duration (restored
    afterwards), so the numbers are a function of the settings and the seed only. The evaluation
    and the shifts play in one lockstep batch (:func:`~tnd.apps.pong.shifts.evaluate_with_shifts`):
    ``eval_time_s`` and each shift's ``eval_time_s`` are their shares of that play's wall time, in
    proportion to their env steps."""
    import torch

    from tnd.io import atomic_write_text, save_tensors
    from .shifts import evaluate_with_shifts

    cfg = PongConfig(**cfg_dict)
    cpu0 = time.process_time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, spec, tr, dag = train_cell(cfg, model_name, seed, Path(data_path), Path(out), show_progress, variant)
        ev, eval_time, shifted = evaluate_with_shifts(model, cfg.eval_rounds, tuple(cfg.shifts),
                                                      cfg.shift_eval_rounds, env_kwargs(cfg))
    finally:
        torch.set_num_threads(threads)
    variant = variant or {}
    label = variant.get("label", model_name)
    d = cell_dir(Path(out), label, seed)
    d.mkdir(parents=True, exist_ok=True)
    save_tensors(d / "model.safetensors", model.state_dict(), metadata={"model": label, "seed": str(seed)})
    atomic_write_text(d / "checkpoint.json", json.dumps({"format": "tnd.pong.cell/1", "model": label, "seed": seed,
                                                         "spec": spec}, indent=1))
    metrics = {"model": label, "seed": seed, "cell_key": cell_key(cfg, label, seed, variant or None), "spec": spec,
               "train": tr, "eval": ev, "eval_time_s": eval_time, "cpu_time_s": time.process_time() - cpu0}
    if "tuned" in variant:  # --tuned: the chosen configuration of this model
        metrics["tuned"] = variant["tuned"]
    if dag is not None:
        metrics["dagger"] = dag
    if shifted:
        metrics["shifts"] = shifted
    atomic_write_text(d / "metrics.json", json.dumps(metrics, indent=1))  # written last: marks the cell done
    if cfg.checkpoint_every and cfg.checkpoint_every > 0:
        import shutil

        shutil.rmtree(d / f"train-ckpt-{cell_key(cfg, label, seed, variant or None)}", ignore_errors=True)
    return metrics


def train_cell(cfg: PongConfig, model_name: str, seed: int, data_path: Path, out: Path, show_progress: bool = False,
               variant: dict[str, Any] | None = None):
    """Build and train one cell's model (behaviour cloning, then DAgger with ``--protocol dagger``);
    returns ``(model, spec, training record, DAgger record or None)``. Writes only the training
    checkpoints (``--checkpoint-every``) and DAgger's iterations under the cell's folder; the
    evaluation is the caller's (:func:`run_cell`; tuning plays validation serves instead).

    ``variant``: ``{"label": folder name of the cell, "tnd": build_model's tnd_overrides,
    "model_kw": build_model's model_kw, "lr": the learning rate instead of ``cfg.lr``, "learn":
    optional PruneRegrow settings (a learnable topology; see :mod:`tnd.apps.pong.topology_sweep`)}``;
    tuned cells (``--tuned``) and tuning trials use ``tnd`` / ``model_kw`` / ``lr``."""
    import torch

    from .models import build_model
    from .train import train_model

    Xt, Yt, Xv, Yv = load_windows(cfg, data_path)
    torch.manual_seed(seed)
    variant = variant or {}
    label = variant.get("label", model_name)
    lr = float(variant.get("lr", cfg.lr))
    tnd = {**TND_BASES[cfg.tnd_base], **(variant.get("tnd") or {})} if model_name in TND_NAMES else variant.get("tnd")
    model, spec = build_model(model_name, Xt.shape[-1], 3, cfg.param_budget, window=cfg.window,
                              graph_seed=cfg.graph_seed, tnd_overrides=tnd or None,
                              mlp_frames=cfg.mlp_frames, model_kw=variant.get("model_kw"))
    dagger = cfg.protocol == "dagger"
    if dagger and variant.get("learn"):
        raise ValueError("--protocol dagger: a learnable topology is trained by behaviour cloning only")
    learner = None
    if variant.get("learn"):
        from .learner import attach_learner

        learner = attach_learner(model, variant["learn"], seed)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        total = cfg.max_steps + (cfg.dagger_iterations * (cfg.dagger_max_steps or cfg.max_steps) if dagger else 0)
        bar = tqdm(total=total, desc=f"  train {label} s{seed}", leave=False, dynamic_ncols=True)

    def progress(step: int, info: dict[str, Any]) -> None:
        bar.update(1)
        if "val_loss" in info:
            bar.set_postfix(val_loss=f"{info['val_loss']:.3f}", acc=f"{info['val_acc']:.3f}")

    ckpt_dir = None
    if cfg.checkpoint_every and cfg.checkpoint_every > 0:
        ckpt_dir = cell_dir(out, label, seed) / f"train-ckpt-{cell_key(cfg, label, seed, variant or None)}"
    dag = None
    if dagger:
        from .dagger import run_dagger, train_seed

        def train_iteration(X, Y, i: int) -> dict[str, Any]:
            steps = (cfg.dagger_max_steps or cfg.max_steps) if i else cfg.max_steps
            return train_model(model, X, Y, Xv, Yv, max_steps=steps, batch_size=cfg.batch_size, lr=lr,
                               eval_every=cfg.eval_every, patience=cfg.patience, grad_clip=cfg.grad_clip,
                               seed=train_seed(seed, i), progress=progress if bar is not None else None,
                               checkpoint_dir=None if ckpt_dir is None else ckpt_dir / f"iter-{i}",
                               checkpoint_every=max(1, int(cfg.checkpoint_every)), resume=bool(cfg.resume))

        work = cell_dir(out, label, seed) / f"dagger-{cell_key(cfg, label, seed, variant or None)}"
        tr, dag = run_dagger(model, cfg, Xt, Yt, seed, work, train_iteration, resume=bool(cfg.resume),
                             env_kwargs=env_kwargs(cfg))
    else:
        tr = train_model(model, Xt, Yt, Xv, Yv, max_steps=cfg.max_steps, batch_size=cfg.batch_size, lr=lr,
                         eval_every=cfg.eval_every, patience=cfg.patience, grad_clip=cfg.grad_clip, seed=seed,
                         progress=progress if bar is not None else None,
                         checkpoint_dir=ckpt_dir, checkpoint_every=max(1, int(cfg.checkpoint_every)),
                         resume=bool(cfg.resume), step_hook=learner.after_step if learner is not None else None)
    if learner is not None:
        from .learner import finish_learner

        model, spec = finish_learner(model, spec, learner)
    if bar is not None:
        bar.close()
    return model, spec, tr, dag


def load_cell_model(out: str | Path, model: str, seed: int):
    """Rebuild a cell's trained model from its checkpoint (safetensors + JSON)."""
    import torch

    from tnd.io import load_tensors
    from .models import model_from_spec

    d = cell_dir(Path(out), model, seed)
    spec = json.loads((d / "checkpoint.json").read_text())["spec"]
    with torch.random.fork_rng(devices=[]):
        m = model_from_spec(spec)
    m.load_state_dict(load_tensors(d / "model.safetensors"))
    m.eval()
    return m


def missing_shifts(cfg: PongConfig, metrics: dict[str, Any]) -> tuple[str, ...]:
    """The shifts of ``cfg.shifts`` a finished cell's ``metrics`` lack (or played with other
    rounds or physics)."""
    from .shifts import stored_shift_is_current

    have = metrics.get("shifts") or {}
    return tuple(n for n in cfg.shifts if not stored_shift_is_current(have.get(n), n, cfg.shift_eval_rounds))


def add_missing_shifts(cfg: PongConfig, out: str | Path, label: str, seed: int,
                       metrics: dict[str, Any]) -> dict[str, Any]:
    """A finished cell's ``metrics`` with every shift of ``cfg.shifts`` evaluated: the shifts it
    lacks (or played with other rounds or physics) are played with the saved model
    (:func:`load_cell_model`, single-threaded as in :func:`run_cell`) and metrics.json is rewritten
    atomically; the model and the training record are untouched. Returns the (updated) metrics."""
    rounds = cfg.shift_eval_rounds
    have = metrics.get("shifts") or {}
    missing = missing_shifts(cfg, metrics)
    if not missing:
        return metrics
    import torch

    from tnd.io import atomic_write_text
    from .shifts import evaluate_shifts

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_cell_model(out, label, seed)
        new = evaluate_shifts(model, missing, rounds, env_kwargs(cfg))
    finally:
        torch.set_num_threads(threads)
    metrics = {**metrics, "shifts": {**have, **new}}
    atomic_write_text(cell_dir(Path(out), label, seed) / "metrics.json", json.dumps(metrics, indent=1))
    return metrics


# ----------------------------------------------------------------------------- a run
def run_cells(calls: list[tuple[Any, tuple]], workers: int, done, start=None) -> None:
    """``run_cell(*args)`` for every ``(key, args)`` in ``calls``; ``done(key, metrics)`` as each
    finishes. With ``workers > 1`` the cells run in a pool of spawned processes (each cell is
    single-threaded, so the results do not depend on it); ``start(key)`` is called before a cell
    only when they run in this process."""
    run_calls(run_cell, calls, workers, done, start)


def start_run(cfg: PongConfig, command: str, resume_command, force: bool = False,
              may_change: tuple[str, ...] = RESUME_MAY_CHANGE):
    """Open a run folder (``cfg.out`` or ``runs/<command>-<UTC time>``), write its config.json and
    the demonstrations; returns ``(cfg with out set, out, say, data_path)`` where ``say`` prints
    progress messages to stderr when ``cfg.progress``. A folder that holds a run is refused unless
    ``cfg.resume`` (same settings; ``may_change`` may differ) or ``force`` (the old run is moved
    aside); ``resume_command(cfg)`` is the command line named if the run is interrupted."""
    from tnd.io import atomic_write_text

    from ..settings import command_args

    out = Path(cfg.out or f"runs/{command}-{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%d-%H%M%S')}")
    cfg = dataclasses.replace(cfg, out=str(out))
    defaults = type(cfg)()

    def option(key: str, value: Any) -> str:
        shown = command_args(dataclasses.replace(defaults, **{key: _typed(defaults, key, value)}), defaults)
        return " ".join(shown) or f"--{key.replace('_', '-')} {value}"

    def stored(p: Path) -> dict[str, Any]:  # a run from before a setting existed used its old value
        return stored_settings(json.loads(p.read_text()), cfg)

    open_run_folder(out, command, "config.json", dataclasses.asdict(cfg), stored, resume=cfg.resume, force=force,
                    may_change=may_change, option=option)
    out.mkdir(parents=True, exist_ok=True)
    set_resume_command(resume_command(cfg))
    atomic_write_text(out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=1))
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if cfg.progress else (lambda *a: None)
    say(f"tnd {command}: run folder {out}")
    return cfg, out, say, prepare_data(cfg, out)


def _typed(defaults: Any, key: str, value: Any) -> Any:
    """A stored (JSON) value back in the field's Python form (lists -> tuples)."""
    return tuple(value) if isinstance(getattr(defaults, key), tuple) and isinstance(value, list) else value
