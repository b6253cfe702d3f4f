"""Equal-budget hyper-parameter search, shared by every experiment: search spaces, seeded trials,
and a resumable runner on Ray Tune (or in this process).

Fairness is the point: every model gets the **same number of trials** over its **own documented
search space**, scored on validation data only. The spaces and the seeded trial lists are
:mod:`tnd.apps.search_space` (re-exported here): :class:`SearchSpace`, one :class:`Domain` per
knob, and :func:`sample_trials` (trial 0 the default configuration, then seeded random draws).

:func:`run_search` evaluates ``objective(model, config, index, context) -> {"score": float, ...}``
for every (model, trial) and writes, in the run folder:

* ``trials/<model>/trial-<i>.json``: one finished trial (config, result, its key), written
  atomically by the driver as soon as the trial ends. A rerun skips every trial whose file exists
  with the same key (our own resume, whatever state Ray kept); a failed trial is retried.
* ``tuning.json``: every trial's config and score, the best per model, failed trials;
  ``tuning.md``: the same as tables.

The best trial of a model is the highest score (``mode="max"``) or the lowest (``"min"``);
ties go to the lowest trial index; a trial whose score is None or not finite (e.g. infeasible)
never wins. Backends: ``local`` runs the trials one after another in this process (no Ray; used
in tests); ``ray`` runs them through ``ray.tune.Tuner``, one trial per CPU, on a local Ray
started (and shut down) here with ``num_cpus`` or, with ``ray_address``, on an existing cluster;
``auto`` picks ``ray`` when it is importable. The objective must be a module-level function (the
workers import it) and ``context`` JSON-able. ``import tnd.apps.tuning`` never imports Ray.

Ctrl-C / SIGTERM: the handlers of :func:`tnd.apps.runs.on_signals` stay in place (Ray Tune's own
SIGINT handler is disabled), so the interrupt reaches the runner at once; finished trials are on
disk, the summary of those is written, and the exception propagates (the command exits
128 + the signal number).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from tnd.io import atomic_write_text
from .settings import UsageError
from .search_space import (Choice, Domain, LogUniform, RandInt, SearchSpace, Uniform, choice, loguniform, randint,
                           sample_trials, uniform)

__all__ = ["Domain", "Choice", "LogUniform", "Uniform", "RandInt", "choice", "loguniform", "uniform", "randint",
           "SearchSpace", "sample_trials", "trial_key", "run_search", "summarize", "write_summary", "summary_markdown",
           "BACKENDS",
           "MODES", "resolve_backend", "ray_tune_missing", "check_backend_options", "write_best_configs",
           "resolve_tuned_path", "read_tuned_file"]

BACKENDS = ("auto", "ray", "local")
MODES = ("max", "min")
FORMAT = "tnd.tuning/1"


def trial_key(model: str, index: int, config: dict[str, Any], fingerprint: dict[str, Any]) -> str:
    """Hash of what a trial's result depends on (the caller's ``fingerprint``: its settings)."""
    d = {"model": model, "index": int(index), "config": config, "fingerprint": fingerprint}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- trial files
def _trial_path(out: Path, model: str, index: int) -> Path:
    return out / "trials" / model / f"trial-{index}.json"


def _finished(out: Path, job: dict[str, Any]) -> dict[str, Any] | None:
    p = _trial_path(out, job["model"], job["index"])
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and d.get("key") == job["key"] and isinstance(d.get("result"), dict) else None


def _write_trial(out: Path, job: dict[str, Any], result: dict[str, Any], wall_s: float) -> dict[str, Any]:
    rec = {"format": FORMAT, **job, "result": result, "wall_time_s": wall_s}
    p = _trial_path(out, job["model"], job["index"])
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(rec, indent=1))
    return rec


def _check_result(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict) or "score" not in result:
        raise TypeError(f"objective: expected a dict with a 'score', got {type(result).__name__} {result!r:.80}")
    return json.loads(json.dumps(result))


def _score(rec: dict[str, Any]) -> float | None:
    s = rec["result"].get("score")
    return float(s) if isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) else None


# ----------------------------------------------------------------------------- the runner
def ray_tune_missing() -> str | None:
    """Why Ray Tune cannot be imported (``ray[tune]`` needs pyarrow, pandas, fsspec), or None."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install 'ray[tune]')"
    try:
        import ray.tune  # noqa: F401
    except ImportError as e:
        return f"Ray Tune cannot be imported ({e.__cause__ or e}; pip install 'ray[tune]')"
    return None


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``ray`` when Ray Tune is importable, else ``local``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    return "ray" if ray_tune_missing() is None else "local"


def run_search(objective: Callable[..., dict[str, Any]], trials: dict[str, list[dict[str, Any]]], out: str | Path,
               *, context: dict[str, Any] | None = None, fingerprint: dict[str, Any] | None = None,
               mode: str = "max", backend: str = "auto", ray_address: str | None = None,
               num_cpus: int | None = None, progress: bool = True, spaces: dict[str, SearchSpace] | None = None,
               log: Callable[[str], None] | None = None, reuse_workers: bool = False) -> dict[str, Any]:
    """Run every (model, trial) of ``trials`` not finished in ``out``; returns the summary (also
    written to ``out/tuning.json`` and ``out/tuning.md``, see :func:`summarize`).

    ``context``: JSON-able settings handed to every objective call; ``fingerprint``: the settings
    the results depend on (a trial file with another fingerprint is run again); ``spaces``: shown in
    the summary. ``reuse_workers``: Ray runs the trials in long-lived worker processes (Tune's
    ``reuse_actors``) instead of a new process per trial, saving the ~5-10 s of process start and
    imports per trial; only for objectives that leave no state behind that changes a later trial's
    result (a per-process data cache is fine). On KeyboardInterrupt (Ctrl-C, SIGTERM under ``tnd``) the summary of the finished
    trials is written and the exception, given a ``partial`` line, propagates."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    log = log or (lambda msg: None)
    if backend == "auto" and resolve_backend(backend) == "local":
        log(f"tuning: --backend auto: {ray_tune_missing()}: the trials run in this process")
    backend = resolve_backend(backend)
    out = Path(out).resolve()
    fp = json.loads(json.dumps(fingerprint or {}))
    jobs = [{"model": m, "index": i, "config": c, "key": trial_key(m, i, c, fp)}
            for m, cs in trials.items() for i, c in enumerate(cs)]
    done = {(j["model"], j["index"]): r for j in jobs if (r := _finished(out, j)) is not None}
    todo = [j for j in jobs if (j["model"], j["index"]) not in done]
    log(f"tuning: {len(done)} finished trial(s) kept, {len(todo)} to run ({backend})")
    errors: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def finish(job: dict[str, Any], result: Any, wall_s: float) -> None:
        done[(job["model"], job["index"])] = _write_trial(out, job, _check_result(result), wall_s)

    def fail(job: dict[str, Any], error: str) -> None:
        errors.append({"model": job["model"], "index": job["index"], "config": job["config"], "error": error})
        log(f"tuning: {job['model']} trial {job['index']} failed: {error.strip().splitlines()[-1]}")

    try:
        if todo:
            runner = _run_ray if backend == "ray" else _run_local
            runner(objective, todo, out, {} if context is None else context, finish, fail, progress=progress, ray_address=ray_address,
                   num_cpus=num_cpus, reuse_workers=reuse_workers)
    except KeyboardInterrupt as e:
        summary = write_summary(out, trials, done, errors, mode=mode, spaces=spaces, backend=backend,
                                wall_time_s=time.perf_counter() - t0, fingerprint=fp)
        e.partial = (f"{summary['finished']} of {summary['planned']} trials finished and kept in {out} "
                     f"(partial summary: {out / 'tuning.md'})")
        raise
    return write_summary(out, trials, done, errors, mode=mode, spaces=spaces, backend=backend,
                         wall_time_s=time.perf_counter() - t0, fingerprint=fp)


def _bar(total: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, dynamic_ncols=True)


def _run_local(objective, jobs, out, context, finish, fail, *, progress: bool, **_: Any) -> None:
    bar = _bar(len(jobs), progress, "trials (local)")
    try:
        for job in jobs:
            bar.set_postfix_str(f"{job['model']} #{job['index']}")
            t = time.perf_counter()
            try:
                result = _check_result(objective(job["model"], job["config"], job["index"], context))
            except Exception:  # noqa: BLE001 - recorded, retried by the next run
                fail(job, traceback.format_exc())
            else:
                finish(job, result, time.perf_counter() - t)
            bar.update(1)
    finally:
        bar.close()


def _ray_trial(config: dict[str, Any], objective=None, jobs=None, context=None) -> None:
    """One Ray Tune trial: ``config["job"]`` indexes ``jobs``; reports the result as JSON (Ray
    flattens nested metrics)."""
    from ray import tune

    job = jobs[config["job"]]
    t = time.perf_counter()
    result = _check_result(objective(job["model"], job["config"], job["index"], context))
    tune.report({"score_reported": float(result["score"]) if _score({"result": result}) is not None else float("nan"),
                 "result_json": json.dumps(result), "wall_s": time.perf_counter() - t})


def _run_ray(objective, jobs, out, context, finish, fail, *, progress: bool, ray_address: str | None = None,
             num_cpus: int | None = None, reuse_workers: bool = False) -> None:
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # keep tnd's handlers (runs.on_signals)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray
    from ray import tune

    started = False
    if not ray.is_initialized():
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        started = True
    bar = _bar(len(jobs), progress, "trials (ray)")

    class Persist(tune.Callback):
        """In the driver: each trial's file as soon as it reports (workers need no shared disk)."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            job = jobs[trial.config["job"]]
            finish(job, json.loads(result["result_json"]), float(result.get("wall_s", 0.0)))
            bar.set_postfix_str(f"{job['model']} #{job['index']}")
            bar.update(1)

        def on_trial_error(self, iteration, trials, trial, **info):
            try:
                error = trial.get_error()
            except Exception:  # noqa: BLE001 - the error text is a courtesy
                error = None
            fail(jobs[trial.config["job"]], str(error or "the Ray trial failed"))
            bar.update(1)

    name = f"tune-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}"
    try:
        trainable = tune.with_resources(tune.with_parameters(_ray_trial, objective=objective, jobs=jobs,
                                                             context=context), {"cpu": 1})
        tuner = tune.Tuner(
            trainable, param_space={"job": tune.grid_search(list(range(len(jobs))))},
            tune_config=tune.TuneConfig(num_samples=1, reuse_actors=reuse_workers),
            run_config=tune.RunConfig(name=name, storage_path=str(out / "ray"), verbose=0, callbacks=[Persist()],
                                      failure_config=tune.FailureConfig(max_failures=0)))
        tuner.fit()
    finally:
        bar.close()
        if started:
            ray.shutdown()


# ----------------------------------------------------------------------------- the summary
def summarize(trials: dict[str, list[dict[str, Any]]], done: dict[tuple[str, int], dict[str, Any]],
              mode: str = "max") -> dict[str, Any]:
    """Per model: every trial (config, score, result; None when unfinished) and the best one."""
    models = {}
    for m, cs in trials.items():
        rows = []
        for i, c in enumerate(cs):
            rec = done.get((m, i))
            rows.append({"index": i, "config": c, "score": None if rec is None else _score(rec),
                         "result": None if rec is None else rec["result"], "finished": rec is not None})
        scored = [r for r in rows if r["score"] is not None]
        sign = 1.0 if mode == "max" else -1.0
        best = min(scored, key=lambda r: (-sign * r["score"], r["index"])) if scored else None
        models[m] = {"trials": rows, "finished": sum(r["finished"] for r in rows), "planned": len(rows),
                     "best": None if best is None else {"index": best["index"], "config": best["config"],
                                                        "score": best["score"]}}
    return models


def write_summary(out: Path, trials, done, errors, *, mode: str, spaces=None, backend: str = "",
                  wall_time_s: float = 0.0, fingerprint: dict[str, Any] | None = None) -> dict[str, Any]:
    """``tuning.json`` and ``tuning.md`` in ``out``; returns the summary."""
    models = summarize(trials, done, mode)
    summary = {"format": FORMAT, "mode": mode, "backend": backend, "wall_time_s": wall_time_s,
               "trials_per_model": max((len(c) for c in trials.values()), default=0),
               "finished": sum(v["finished"] for v in models.values()),
               "planned": sum(v["planned"] for v in models.values()),
               "models": models, "errors": errors, "fingerprint": fingerprint or {},
               "spaces": {m: s.to_dict() for m, s in (spaces or {}).items()}}
    atomic_write_text(out / "tuning.json", json.dumps(summary, indent=1))
    atomic_write_text(out / "tuning.md", summary_markdown(summary))
    return summary


def check_backend_options(backend: str, ray_address: str | None, num_cpus: int | None) -> None:
    """The options of a search's backend that are valid alone but not together (UsageError)."""
    if backend == "local":
        for name, value in (("ray_address", ray_address), ("num_cpus", num_cpus)):
            if value is not None:
                raise UsageError(f"--{name.replace('_', '-')}: only used with --backend ray or auto "
                                 "(this run is --backend local)")
    if ray_address is not None and num_cpus is not None:
        raise UsageError("--num-cpus: sets the CPUs of a local Ray; a cluster (--ray-address) has its own")


def write_best_configs(out: Path, summary: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    """``best_configs.json`` in ``out``: ``header`` (the format, command, budget, ...) and, per
    model with a best trial, its ``trial``, ``score``, ``config`` and whether its search is
    ``complete``; recorded in ``summary["best_configs"]``. Returns the file's content."""
    best = {**header, "models": {m: {"trial": v["best"]["index"], "score": v["best"]["score"],
                                     "config": v["best"]["config"], "complete": v["finished"] == v["planned"]}
                                 for m, v in summary["models"].items() if v["best"] is not None}}
    atomic_write_text(out / "best_configs.json", json.dumps(best, indent=1))
    summary["best_configs"] = str(out / "best_configs.json")
    return best


def resolve_tuned_path(tuned: str | None, default: Path) -> Path | None:
    """``--tuned``: None -> ``default`` when that file exists, ``none`` -> no tuned configurations."""
    if tuned is None:
        return default if default.is_file() else None
    if tuned == "none":
        return None
    return Path(tuned)


def read_tuned_file(path: str | Path, fmt: str, command: str) -> dict[str, Any]:
    """The content of a chosen-configurations file of format ``fmt`` (``best_configs.json`` of
    ``command``); UsageError naming --tuned on a file that cannot be read or is not one."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"--tuned: cannot read {path} ({e.strerror or e})") from None
    except ValueError as e:
        raise UsageError(f"--tuned: {path} is not JSON ({e})") from None
    if not isinstance(d, dict) or d.get("format") != fmt or not isinstance(d.get("models"), dict):
        raise UsageError(f"--tuned: expected a {fmt} file (best_configs.json of {command}), got {path}")
    return d


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as markdown: the best trial per model, then every trial of each model."""
    mode = summary["mode"]
    lines = [f"# Tuning ({summary['finished']} of {summary['planned']} trials finished; "
             f"{summary['trials_per_model']} per model; best = {'highest' if mode == 'max' else 'lowest'} "
             "validation score, ties to the lowest trial)", "",
             "| model | best trial | score | configuration |", "|---|---|---|---|"]
    for m, v in summary["models"].items():
        b = v["best"]
        lines.append(f"| {m} | {'-' if b is None else b['index']} | {_cell(None if b is None else b['score'])} | "
                     f"{'-' if b is None else ', '.join(f'{k}={_cell(x)}' for k, x in b['config'].items())} |")
    for m, v in summary["models"].items():
        knobs = list(v["trials"][0]["config"]) if v["trials"] else []
        results = [r["result"] for r in v["trials"] if r["result"]]
        extra = sorted({k for res in results for k, x in res.items()
                        if k != "score" and isinstance(x, (int, float)) and not isinstance(x, bool)
                        and (len(results) < 2 or len({json.dumps(q.get(k)) for q in results}) > 1)})
        lines += ["", f"## {m} ({v['finished']} of {v['planned']} trials)", "",
                  "| trial | score | " + " | ".join(knobs + extra) + " |",
                  "|" + "---|" * (2 + len(knobs) + len(extra))]
        for r in v["trials"]:
            res = r["result"] or {}
            lines.append(f"| {r['index']} | {_cell(r['score']) if r['finished'] else 'not run'} | "
                         + " | ".join([_cell(r["config"][k]) for k in knobs] + [_cell(res.get(k)) for k in extra])
                         + " |")
    if summary["errors"]:
        lines += ["", "## Failed trials (retried by the next run)", ""]
        lines += [f"* {e['model']} trial {e['index']}: {e['error'].strip().splitlines()[-1]}" for e in summary["errors"]]
    return "\n".join(lines) + "\n"
