"""``tnd pong``: the paper's experiment in one command.

Single-player Pong imitation of an analytic expert: expert-labelled demonstrations -> every model of
:mod:`tnd.apps.pong.models` trained by the same protocol (:mod:`tnd.apps.pong.train`; by default,
``--protocol dagger``, followed by DAgger iterations, :mod:`tnd.apps.pong.dagger`; ``--protocol bc``
brings the earlier releases' protocol, ``config.BC_V1``) for several seeds ->
closed-loop evaluation (:mod:`tnd.apps.pong.evaluate`) beside the reference policies -> a run
folder with ``results.json``, ``report.md``, plots and a frame strip of TND playing
(:mod:`tnd.apps.pong.report`).

Run folder layout::

    <out>/config.json                       the resolved PongConfig
    <out>/data/demos.npz + demos.json       the demonstrations and their metadata
    <out>/cells/<model>/seed-<s>/           one (model, seed) cell:
        model.safetensors                   best-validation weights
        checkpoint.json                     the model spec (rebuild: models.model_from_spec)
        metrics.json                        training history + closed-loop evaluation (also
                                            in each --shifts environment: "shifts")
        dagger-<cell key>/iter-<i>/         --protocol dagger: iteration i's learner rounds
                                            (rollouts.npz), weights and metrics (resume)
    <out>/results.json, report.md, *.png

An ``--out`` that already holds a run is refused unless ``--resume`` (continue it: same settings,
any models and seeds) or ``--force`` (start over; the old run is moved to ``<out>.old-<time>``).
``--resume`` skips every cell whose three files exist and whose recorded cell key (a hash of
the settings that affect it) matches the current settings; a kept cell that lacks a shift of
``--shifts`` (evaluation only, :mod:`tnd.apps.pong.shifts`) plays it with its saved model. With
``--checkpoint-every N`` each cell also writes a training checkpoint (:mod:`tnd.apps.checkpoint`) every ``N`` gradient steps into
``cells/<model>/seed-<s>/train-ckpt-<cell key>/`` (removed when the cell is done), and
``--resume`` continues a killed cell from it, bit-identically. Everything is written atomically. Ctrl-C (SIGINT) or SIGTERM stops the
workers at once, keeps the finished cells, writes a partial ``results.json`` and ``report.md`` for
them and exits with 128 + the signal number (130 for Ctrl-C), naming the ``--resume`` command.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..runs import FolderOptions, Interrupted, note
from ..settings import add_options, command_args, from_args
from .cells import (add_missing_shifts, cell_done, cell_key, env_kwargs, load_cell_model, missing_shifts,
                    prepare_data, run_cell, run_cells, start_run)
from .config import QUICK, PongConfig, presets_for

__all__ = ["PongConfig", "QUICK", "add_arguments", "run", "config_from_args", "run_experiment", "run_cell",
           "cell_done", "cell_key", "prepare_data", "load_cell_model", "command_line", "PROTOCOL"]


PROTOCOL = """
Everything the paper leaves open is fixed here (docs/PAPER-NOTES.md lists what is unknown; docs/PONG.md gives the evidence behind each decision).

* **Environment** (`tnd.apps.pong.env`): field [0, 1]^2, paddle at x = 0.05, half-length 0.08, speed
  0.015/step (half the ball's 0.03, so the agent must anticipate), additive deflection; a round is
  one serve and ends at the first miss or at the cap of `{max_catches}` consecutive catches.
  Observation: {obs_md}; observation noise std `{obs_noise}`.
* **Expert and data**: the analytic-intercept expert (true state, wall bounces unfolded) labels
  every step. `{demo_rounds}` demonstration rounds (seeds `{data_seed}` + i, disjoint from the
  evaluation seeds 10 000 000 + i), at most `{demo_steps_per_round}` steps each. **Expert-labelled
  exploration** (DART-style noise injection taken to its limit): the *executed* action is perturbed
  (a perturbation starts with probability `{perturb_prob}` per step and lasts U{{1..{perturb_max_len}}}
  steps, one random action; rounds start with one of U{{0..{serve_perturb_max_len}}} steps) while every
  *label* is the expert's action for the recorded observation. At the defaults every executed action
  is random. Why: with the expert executing its own actions, the paddle's motion (visible in the
  next observation) predicts the next label, and every model learned to continue whatever the
  paddle was doing (the "copycat" shortcut of imitation learning). Fully random execution
  removes the cue (the executed action is independent of the label given the state; numbers in
  docs/PONG.md). The price: the data cover mostly serves and first returns (a random paddle
  rarely catches). Split by whole rounds: {val_pct:.0f} % validation. Windows of
  T = `{window}` steps inside rounds (stride T/2 for training, T for validation; every round of at
  least T steps contributes its serve window); the first `{val_windows}` validation windows are used.
* **Models** (`tnd.apps.pong.models`): matched to `{param_budget}` trainable parameters (counts in the
  table; the sparse RNN on its unmasked parameters). TND: small-world graph (k = 4, 10 % rewired),
  leaky dynamics (per-neuron learnable time constants), per-neuron F, state size 2, linear
  interaction, discrete update; {tnd_base_md}; `tnd_shared` the paper's shared F (same family,
  more neurons).
  Sparse RNN mask density = the TND graph's. CfC = `ncps.torch.CfC` (backbone 32 units, 1 layer).
  Transformer: 1 pre-norm layer, 2 heads, relative positions, sliding window of T steps.
  Non-recurrent references (`tnd.apps.pong.references`): `mlp` on the current observation alone
  and `mlp_k` on the last k = `{mlp_frames}` observations stacked (at each serve the frame buffer
  holds copies of the serve's observation), 2 hidden ReLU layers of one width, same budget.
  The graph / mask are fixed by graph seed `{graph_seed}`; training seeds `{seeds}` change
  initial weights and batch order.
* **Training** (`tnd.apps.pong.train`), identical for every model: cross-entropy on every step of each
  window (zero initial state), Adam (lr `{lr}`), batch `{batch_size}` windows, gradient clipping
  `{grad_clip}`, at most `{max_steps}` gradient steps (a step budget, not a wall-clock budget),
  validation every `{eval_every}` steps, early stopping after `{patience}` validations without a
  better validation loss; the best-validation weights are kept.
{dagger_md}* **Evaluation** (`tnd.apps.pong.evaluate`): `{eval_rounds}` rounds per trained model, the same serves
  for every model and for the reference policies; greedy actions; the hidden state is reset at
  each serve and carried through the round, one observation at a time. Metrics: pooled catch
  rate, mean and median consecutive catches per round, rounds that reach the cap, 95 % percentile
  bootstrap CIs over training seeds (10 000 resamples). Offline action accuracy on validation
  windows is reported too, but it is not the metric.
* **Reference policies**: expert (reaches the cap), reactive tracker, random, on the same rounds.
{shifts_md}* **Budget and difficulty**: a step budget (`{max_steps}` gradient steps per cell), not a
  wall-clock budget; this run's wall time is in the header of the results table. The learning
  curves show whether training converged; `--max-steps` raises the budget. No observation noise
  by default (`--obs-noise` adds it).
""".strip()


DAGGER_PROTOCOL = """* **DAgger** (`--protocol dagger`, `tnd.apps.pong.dagger`): after the behaviour cloning above
  (iteration 0), `{dagger_iterations}` iterations; in iteration i the model plays `{dagger_rounds}`
  rounds closed loop (greedy, state reset at each serve; a step executes the expert's action with
  probability `{dagger_beta}`^i), the expert labels every visited observation from the true state,
  the rounds' windows (at most `{demo_steps_per_round}` steps per round, stride T/2) are added to all
  windows so far, and the model retrains from its weights (`{dagger_steps}` gradient steps at most,
  same optimiser settings and early stopping on the same validation windows). The learner's serves
  (20 000 000 + ...) and the closed-loop validation serves after each iteration (`{dagger_val_rounds}`
  rounds, 15 000 000 + j) are disjoint from the demonstration and evaluation serves. The model of
  the {dagger_select_md} is evaluated.
"""


TND_BASE_TEXT = {
    "control": "`--tnd-base control`: every neuron an input, time constants initialised log-uniformly "
               "from 0.25 to 10 steps (some neurons follow the newest observation within a step), 2 rounds "
               "of interaction per observation (docs/PONG.md, section 9)",
    "v1": "`--tnd-base v1`: a quarter of the neurons input, the last quarter output, time constants "
          "from 1 to 10 steps, one round of interaction per observation",
}


OBSERVATION_TEXT = {
    "positions": "positions only (ball x, ball y, paddle y), so velocity must be inferred from history",
    "motion": "`--obs-mode motion`: positions and the ball's displacement since the previous observation "
              "(in ball speeds), so one frame gives the velocity",
}


def shifts_text(cfg: PongConfig) -> str:
    """The protocol's generalisation bullet ("" without shifts)."""
    if not cfg.shifts:
        return ""
    from .shifts import describe_shift

    names = "; ".join(f"`{n}`: {describe_shift(n)}" for n in cfg.shifts)
    return (f"* **Generalisation** (`--shifts`, `tnd.apps.pong.shifts`): every trained model, the expert and the "
            f"tracker also play `{cfg.shift_eval_rounds}` rounds of the same evaluation serves in shifted "
            f"environments that training never saw ({names}); everything else as above.\n")


def protocol_text(cfg: PongConfig) -> str:
    """The protocol section of the report for ``cfg``."""
    d = dataclasses.asdict(cfg)
    chosen = ("iteration with the best closed-loop validation score (`--dagger-select best`)"
              if cfg.dagger_select == "best" else "last iteration (`--dagger-select last`)")
    dagger = DAGGER_PROTOCOL.format(**d, dagger_steps=cfg.dagger_max_steps or cfg.max_steps,
                                    dagger_select_md=chosen) \
        if cfg.protocol == "dagger" else ""
    obs = OBSERVATION_TEXT[cfg.obs_mode]
    text = PROTOCOL.format(**d, val_pct=100 * cfg.val_fraction, dagger_md=dagger, obs_md=obs,
                           shifts_md=shifts_text(cfg), tnd_base_md=TND_BASE_TEXT[cfg.tnd_base])
    from .tuning_spaces import tuned_variants

    tuned = tuned_variants(cfg.tuned, cfg.models)
    if tuned:  # the chosen configurations replace the defaults above for these models
        rows = "; ".join(f"{m}: " + ", ".join(f"{k}={json.dumps(x)}" for k, x in v["tuned"].items())
                         for m, v in tuned.items())
        text += (f"\n* **Tuned configurations** (`--tuned`, chosen by `tnd pong tune` on validation serves; "
                 f"docs/PONG.md, Tuning) replace the defaults above for: {rows}.")
    return text


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`PongConfig` field (help = the field's docstring), and ``--force``."""
    add_options(parser, PongConfig)
    add_options(parser, FolderOptions)


def config_from_args(args: argparse.Namespace) -> PongConfig:
    """Defaults <- --protocol bc's and --quick's presets <- explicit options; checked (UsageError
    names the option)."""
    return from_args(PongConfig, args, presets_for(getattr(args, "protocol", None), bool(getattr(args, "quick", None))))


def command_line(cfg: PongConfig) -> str:
    """The ``tnd pong`` command that reproduces ``cfg`` (options that differ from the defaults)."""
    default = PongConfig(**presets_for(cfg.protocol, cfg.quick))
    parts = ["tnd", "pong"] + (["--quick"] if cfg.quick else []) + (["--protocol", "bc"] if cfg.protocol == "bc" else [])
    return " ".join(parts + command_args(cfg, default, skip=("quick", "resume", "progress")))


def resume_command(cfg: PongConfig) -> str:
    return command_line(cfg) + " --resume"


def evaluate_references(cfg: PongConfig) -> dict[str, Any]:
    from .policies import ExpertPolicy, RandomPolicy, TrackerPolicy, evaluate_policy
    from .shifts import evaluate_reference_shifts

    ek = env_kwargs(cfg)
    refs = {
        "expert": evaluate_policy(lambda env: ExpertPolicy(env), cfg.eval_rounds, env_kwargs=ek),
        "tracker": evaluate_policy(lambda env: TrackerPolicy(env), cfg.eval_rounds, env_kwargs=ek),
        "random": evaluate_policy(RandomPolicy(0), cfg.eval_rounds, env_kwargs=ek),
    }
    for name, shifted in evaluate_reference_shifts(tuple(cfg.shifts), cfg.shift_eval_rounds, ek).items():
        refs[name]["shifts"] = shifted
    return refs


def run_experiment(cfg: PongConfig, force: bool = False) -> dict[str, Any]:
    """Run the whole comparison; returns the results dict (also written to ``<out>/results.json``).
    ``force``: start over in an ``out`` that holds a run (see :func:`tnd.apps.pong.cells.start_run`)."""
    from tqdm.auto import tqdm

    from . import report
    from .evaluate import record_frames

    t_start = time.perf_counter()
    from .tuning_spaces import DEFAULT_TUNED, committed_mismatch, tuned_budget, tuned_variants

    mismatch = committed_mismatch(cfg)
    if mismatch:  # the committed choices belong to the protocol they were searched under
        cfg = dataclasses.replace(cfg, tuned="none")
    tuned = tuned_variants(cfg.tuned, cfg.models)  # before the folder opens: a bad --tuned file changes nothing
    cfg, out, say, data_path = start_run(cfg, "pong", resume_command, force)
    if mismatch and not cfg.quick:  # a smoke test is untuned by design: nothing to say
        shown = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in list(mismatch.items())[:4])
        say(f"the committed tuned configurations ({DEFAULT_TUNED.name}) were chosen under other settings "
            f"({shown}{', ...' if len(mismatch) > 4 else ''}): every model runs untuned; "
            f"--tuned {DEFAULT_TUNED} uses them anyway")
    if tuned:
        say(f"tuned configurations for {', '.join(tuned)} (--tuned)")
        budget = tuned_budget(cfg.tuned)
        if budget is not None and budget != cfg.param_budget:
            note(f"tnd pong: note: the --tuned configurations were chosen at --param-budget {budget}; this run "
                 f"is --param-budget {cfg.param_budget} (the sizes are matched again, the choices may not carry over)")
    cells = [(m, s) for m in cfg.models for s in cfg.seeds]
    results_cells: dict[tuple[str, int], dict[str, Any]] = {}
    todo = collect_finished(cfg, out, cells, results_cells, tuned, shifts=True) if cfg.resume else list(cells)
    if cfg.resume:  # shown with --no-progress too
        print(f"tnd pong: resume: {len(results_cells)} finished cell(s) kept, {len(todo)} to run", file=sys.stderr,
              flush=True)
    cfg_dict = dataclasses.asdict(cfg)
    bar = tqdm(total=len(cells), initial=len(results_cells), desc="cells (model x seed)", disable=not cfg.progress,
               dynamic_ncols=True)
    # the slowest cells (TND) first, so a pool ends together
    order = sorted(todo, key=lambda c: (not c[0].startswith("tnd"), c[0] != "transformer"))

    def done(key: tuple[str, int], r: dict[str, Any]) -> None:
        results_cells[key] = r
        bar.set_postfix_str(f"{key[0]} s{key[1]}: {r['eval']['mean_catches']:.2f} catches")
        bar.update(1)

    def start(key: tuple[str, int]) -> None:
        bar.set_description(f"cells: {key[0]} s{key[1]}")

    try:
        run_cells([((m, s), (cfg_dict, m, s, str(data_path), str(out), cfg.progress and cfg.workers <= 1,
                             tuned.get(m))) for m, s in order], cfg.workers, done, start)
    except KeyboardInterrupt as e:
        bar.close()
        # a worker may have finished a cell whose result had not reached us yet
        collect_finished(cfg, out, [k for k in todo if k not in results_cells], results_cells, tuned)
        n = write_partial(cfg, out, results_cells, len(cells), data_path, t_start, len(cells) - len(todo))
        if isinstance(e, Interrupted):
            e.partial = (f"{n} of {len(cells)} cells finished and kept in {out} (partial results: "
                         f"{out / 'report.md'}); continue with: {resume_command(cfg)}")
        raise
    bar.close()

    say("evaluating reference policies ...")
    refs = evaluate_references(cfg)
    models = {m: report.aggregate_model(m, [results_cells[(m, s)] for s in cfg.seeds], shifts=tuple(cfg.shifts))
              for m in cfg.models}
    if cfg.protocol == "dagger":
        for m in cfg.models:
            models[m]["dagger_iterations"] = [results_cells[(m, s)]["dagger"]["iterations"] for s in cfg.seeds]
    results: dict[str, Any] = {
        "format": "tnd.pong.results/1",
        "command": command_line(cfg),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": dataclasses.asdict(cfg),
        "env_kwargs": env_kwargs(cfg),
        "dataset": json.loads(data_path.with_suffix(".json").read_text()),
        "models": models,
        "references": {n: report.reference_entry(n, ev) for n, ev in refs.items()},
        "paper_claim": {"tnd_mean_consecutive_catches": 17.47, "ratio_to_strongest_baseline": ">3"},
        "resumed_cells": len(cells) - len(todo),
    }
    # plots
    plots = {"Catch rate and mean consecutive catches": "bars.png", "Learning curves": "learning_curves.png",
             "Distribution of consecutive catches": "catch_distribution.png"}
    report.plot_bars(results, out / "bars.png")
    report.plot_learning_curves(results, out / "learning_curves.png")
    if cfg.protocol == "dagger":
        from .dagger import plot_dagger_curves

        plots = {**dict(list(plots.items())[:2]), "DAgger iterations": "dagger_curves.png",
                 **dict(list(plots.items())[2:])}
        plot_dagger_curves(results, out / "dagger_curves.png")
    report.plot_catch_distribution(results, out / "catch_distribution.png")
    player = "tnd" if "tnd" in cfg.models else cfg.models[0]
    frames, steps, info = record_frames(load_cell_model(out, player, cfg.seeds[0]), env_kwargs=env_kwargs(cfg),
                                        max_steps=cfg.frame_steps)
    report.save_frame_strip(frames, steps, out / "frames.png",
                            f"{player} (seed {cfg.seeds[0]}) playing evaluation round 0: "
                            f"{info.get('catches', 0)} catch(es) in {steps[-1]} steps shown")
    plots[f"{player} playing (frame strip)"] = "frames.png"
    results["plots"] = list(plots.values())
    results["wall_time_s"] = time.perf_counter() - t_start
    protocol = protocol_text(cfg)
    results["protocol"] = protocol
    report.write_results_json(out / "results.json", results)
    report.write_report_md(out / "report.md", results, protocol, plots)
    return results


def collect_finished(cfg: PongConfig, out: Path, keys: list[tuple[str, int]],
                     results: dict[tuple[str, int], dict[str, Any]],
                     tuned: dict[str, dict[str, Any]] | None = None, shifts: bool = False) -> list[tuple[str, int]]:
    """Put the (model, seed) cells of ``keys`` that are finished on disk (with the current
    settings; ``tuned``: the models' cell variants from --tuned) into ``results``; returns the
    others, in order. ``shifts``: first play the shifts of ``--shifts`` such a cell lacks
    (:func:`~tnd.apps.pong.cells.add_missing_shifts`)."""
    left = []
    for key in keys:
        done = cell_done(cfg, out, *key, (tuned or {}).get(key[0]))
        if done is not None and shifts:
            missing = missing_shifts(cfg, done)
            if missing:  # shown with --no-progress too, like the resume count
                note(f"tnd pong: resume: {key[0]} seed {key[1]}: playing shift(s) {', '.join(missing)} with the "
                     "saved model (--shifts; not retrained)")
                done = add_missing_shifts(cfg, out, *key, done)
        if done is not None:
            results[key] = done
        else:
            left.append(key)
    return left


def write_partial(cfg: PongConfig, out: Path, results_cells: dict[tuple[str, int], dict[str, Any]], planned: int,
                  data_path: Path, t_start: float, resumed: int) -> int:
    """``results.json`` and ``report.md`` of the finished cells of an interrupted run (no reference
    policies, no plots); returns the number of finished cells."""
    from . import report

    models = {}
    for m in cfg.models:
        got = [results_cells[(m, s)] for s in cfg.seeds if (m, s) in results_cells]
        if got:
            models[m] = report.aggregate_model(m, got, shifts=tuple(cfg.shifts))
            if cfg.protocol == "dagger":
                got.sort(key=lambda c: c["seed"])
                models[m]["dagger_iterations"] = [c["dagger"]["iterations"] for c in got]
    n = len(results_cells)
    results: dict[str, Any] = {
        "format": "tnd.pong.results/1",
        "command": f"{command_line(cfg)} (interrupted: {n} of {planned} cells finished)",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": dataclasses.asdict(cfg), "env_kwargs": env_kwargs(cfg),
        "dataset": json.loads(data_path.with_suffix(".json").read_text()),
        "models": models, "references": {}, "resumed_cells": resumed,
        "partial": {"finished_cells": n, "planned_cells": planned, "resume": resume_command(cfg)},
        "wall_time_s": time.perf_counter() - t_start,
    }
    protocol = protocol_text(cfg)
    results["protocol"] = protocol
    report.write_results_json(out / "results.json", results)
    report.write_report_md(out / "report.md", results, protocol, {})
    return n


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tnd pong``."""
    cfg = config_from_args(args)
    results = run_experiment(cfg, force=bool(getattr(args, "force", None)))
    out = Path(results["config"]["out"])
    from .report import results_table

    print(results_table(results))
    print(f"\nwall time {results['wall_time_s']:.1f} s; report: {out / 'report.md'}")
    return 0
