"""DAgger (dataset aggregation, Ross et al. 2011) for a Pong cell: ``tnd pong --protocol dagger``.

Iteration 0 is behaviour cloning on the demonstrations, exactly as ``--protocol bc`` trains.
Iteration ``i = 1 .. --dagger-iterations``:

1. the learner (the model after iteration ``i - 1``) plays ``--dagger-rounds`` rounds closed loop,
   one observation at a time, greedy, its state reset at each serve, as
   :mod:`tnd.apps.pong.evaluate` plays; with probability ``beta_i = --dagger-beta ** i`` a step
   executes the expert's action instead (a seeded draw per round and step);
2. the expert (:class:`~tnd.apps.pong.policies.ExpertPolicy`, on the true state) labels every
   visited observation, as the demonstrations are labelled (:mod:`tnd.apps.pong.data`);
3. the rounds are cut into training windows (stride T/2, rounds shorter than T give none) and
   added to the windows so far (the demonstrations' and every earlier iteration's);
4. the model retrains from its weights through the same ``train_model`` (a fresh Adam, early
   stopping on the same demonstration validation windows, the best weights kept).

After every iteration the model plays ``--dagger-val-rounds`` closed-loop validation rounds.
Serves: the learner's rounds of iteration ``i`` are ``DAGGER_SEED_BASE + (i - 1) * rounds + j``, the
validation rounds ``DAGGER_VAL_SEED_BASE + j``: disjoint from the demonstration serves (below
``EVAL_SEED_BASE``) and the evaluation serves (``EVAL_SEED_BASE + j``). Iteration ``i`` trains
with seed ``seed + i * 2**31`` (``seed`` itself for iteration 0); the cell is a function of its
settings and seed.

Resume: each finished iteration is kept in ``<work>/iter-<i>/`` (``rollouts.npz`` + ``.json``, the
weights ``model.safetensors``, ``metrics.json`` written last, which marks it done), so a killed
cell resumed redoes at most its unfinished iteration (with ``--checkpoint-every`` that one too
continues from its training checkpoint), with the same final weights as an uninterrupted run.
The cell keeps the model of the iteration with the best closed-loop validation score
(``--dagger-select best``, ties to the later one) or of the last (``--dagger-select last``).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from tnd.checks import check_int, check_real
from tnd.io import atomic_write_text, load_tensors, save_tensors
from ..baselines import map_state
from .config import DAGGER_SEED_BASE, DAGGER_VAL_SEED_BASE, PongConfig
from .data import (ROUND_END_CAP, ROUND_END_MISS, ROUND_END_RECORDING_CUT, ROUND_END_STEP_LIMIT, load_dataset,
                   make_windows, save_dataset)
from .batch_env import PongBatch
from .evaluate import play_rounds, step_function
from .lockstep_draws import LockstepDraws
from .policies import expert_actions

__all__ = ["rollout_seed", "beta_at", "train_seed", "collect_rollouts", "rollout_windows", "aggregate",
           "run_dagger", "select_iteration", "completed_iterations", "plot_dagger_curves"]

ITER_SEED_STRIDE = 2**31  # training seeds stay C ints below it, so seed + i * stride never collide
MIX_BLOCK = 256  # expert-or-learner draws per round at a time


def rollout_seed(iteration: int, rounds: int) -> int:
    """The serve seed of round 0 of the learner's rounds in ``iteration`` (>= 1)."""
    return DAGGER_SEED_BASE + (check_int("iteration", iteration, 1) - 1) * check_int("rounds", rounds, 1)


def beta_at(beta: float, iteration: int) -> float:
    """The probability that a step of ``iteration`` (>= 1) executes the expert's action."""
    return float(check_real("beta", beta, 0.0, 1.0)) ** check_int("iteration", iteration, 1)


def train_seed(seed: int, iteration: int) -> int:
    """The training seed of ``iteration`` (0: behaviour cloning, with the cell's seed itself)."""
    return int(seed) + int(iteration) * ITER_SEED_STRIDE


@torch.inference_mode()
def collect_rollouts(model: nn.Module, rounds: int, *, seed: int, beta: float = 0.0, mix_seed: int = 0,
                     env_kwargs: dict[str, Any] | None = None,
                     max_steps_per_round: int = 300) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The learner plays ``rounds`` rounds (round ``j`` served by ``reset(seed=seed + j)``) and the
    expert labels every visited observation.

    Closed loop and greedy, the model's state reset at each serve and carried one observation at
    a time; a step executes the expert's action with probability ``beta`` (a draw from
    ``numpy.random.default_rng([mix_seed, seed + j])`` per step of round ``j``). A round is
    recorded until a miss, the cap, the env's step limit or ``max_steps_per_round`` steps. Returns
    the rounds in :mod:`tnd.apps.pong.data`'s layout (``actions``: the expert's labels; ``states``:
    the true states, float64; ``round_numbers`` = ``round_seeds``) and statistics. The rounds step
    together in a :class:`~tnd.apps.pong.batch_env.PongBatch`, labelled by
    :func:`~tnd.apps.pong.policies.expert_actions` (``ExpertPolicy`` bit for bit): the arrays of
    stepping each round's env alone."""
    rounds = check_int("rounds", rounds, 1)
    seed = check_int("seed", seed, 0)
    beta = float(check_real("beta", beta, 0.0, 1.0))
    max_steps_per_round = check_int("max_steps_per_round", max_steps_per_round, 1)
    was_training = model.training
    model.eval()
    batch, obs = PongBatch.serve([dict(env_kwargs or {})] * rounds, [seed + j for j in range(rounds)])
    caps = batch.max_catches.copy()
    # each round's rng.random() per step (the still-recording rounds step together)
    mix = LockstepDraws([np.random.default_rng([int(mix_seed), seed + j]).random for j in range(rounds)],
                        min(max_steps_per_round, MIX_BLOCK)) if 0.0 < beta < 1.0 else None
    log: list[tuple[np.ndarray, ...]] = []  # per lockstep step: rows, observations, states, labels, own, rewards
    catches = np.zeros(rounds, dtype=np.int64)
    ends = np.full(rounds, ROUND_END_RECORDING_CUT, dtype=np.int8)
    h: Any = None
    dtype = next(model.parameters()).dtype
    step = step_function(model)
    try:
        while len(batch):
            logits, h = step(torch.from_numpy(obs).to(dtype), h)
            own = logits.argmax(-1).cpu().numpy()
            rows = batch.rows
            states = np.stack([batch.bx, batch.by, batch.vx, batch.vy, batch.py], axis=1)
            labels = expert_actions(batch.bx, batch.by, batch.vx, batch.vy, batch.py, batch.paddle_x, batch.pmin,
                                    0.5 * batch.paddle_speed)  # ExpertPolicy on the true state
            if beta >= 1.0:
                executed = labels
            else:
                executed = own if mix is None else np.where(mix.next(rows) < beta, labels, own)
            before = batch.catches.copy()
            nxt, term, trunc, now, steps = batch.step(executed)
            log.append((rows, obs, states, labels, own, np.where(now > before, 1.0, np.where(term, -1.0, 0.0))))
            catches[rows] = now
            ends[rows[term]] = ROUND_END_MISS
            ends[rows[trunc]] = np.where(now[trunc] >= caps[rows[trunc]], ROUND_END_CAP, ROUND_END_STEP_LIMIT)
            done = term | trunc
            cut = ~done & (steps >= max_steps_per_round)  # the recording cut: the round leaves unended
            batch.drop(cut[~done])
            keep = np.flatnonzero(~(done | cut))
            if keep.size < rows.size and keep.size:
                h = map_state(h, lambda t, idx=torch.from_numpy(keep): t.index_select(0, idx))
            obs = nxt[keep]
    finally:
        model.train(was_training)
    rows, o, st, lab, own, rew = (np.concatenate(x) for x in zip(*log))
    order = np.argsort(rows, kind="stable")  # round by round, each in step order
    lengths = np.bincount(rows, minlength=rounds).astype(np.int64)
    seeds = seed + np.arange(rounds, dtype=np.int64)
    starts = np.zeros(int(lengths.sum()), dtype=bool)
    starts[np.concatenate([[0], np.cumsum(lengths)[:-1]])] = True
    labels, own = lab[order].astype(np.int64), own[order].astype(np.int64)
    data = {
        "observations": o[order].astype(np.float32),
        "actions": labels,
        "rewards": rew[order].astype(np.float32),
        "states": st[order].astype(np.float64),
        "round_ids": np.repeat(seeds, lengths),
        "episode_starts": starts,
        "round_numbers": seeds,
        "round_seeds": seeds,
        "round_lengths": lengths,
        "round_catches": catches,
        "round_end": ends,
    }
    stats = {"rounds": rounds, "steps": int(lengths.sum()), "first_seed": seed, "beta": beta,
             "mean_catches": float(np.mean(catches)), "misses": int(np.sum(data["round_end"] == ROUND_END_MISS)),
             "learner_agreement": float(np.mean(own == labels))}
    return data, stats


def rollout_windows(data: dict[str, np.ndarray], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Training windows of learner rounds (stride ``window // 2``, as the demonstrations'); empty
    arrays when every round is shorter than ``window``."""
    if int(np.max(data["round_lengths"])) < window:
        c = data["observations"].shape[1]
        return np.zeros((0, window, c), dtype=np.float32), np.zeros((0, window), dtype=np.int64)
    return make_windows(data, window, stride=max(1, window // 2))


def aggregate(X: np.ndarray, Y: np.ndarray, parts: list[dict[str, np.ndarray]], window: int):
    """The demonstrations' training windows ``(X, Y)`` followed by every part's windows, in order."""
    ws = [rollout_windows(p, window) for p in parts]
    return np.concatenate([X] + [w[0] for w in ws]), np.concatenate([Y] + [w[1] for w in ws])


# ----------------------------------------------------------------------------- the loop
def _iter_dir(work: Path, i: int) -> Path:
    return work / f"iter-{i}"


def completed_iterations(work: str | Path) -> int:
    """The number of iterations (0, 1, ... in a row) finished in ``work``."""
    n = 0
    while (_iter_dir(Path(work), n) / "metrics.json").is_file():
        n += 1
    return n


def run_dagger(model: nn.Module, cfg: PongConfig, X: np.ndarray, Y: np.ndarray, seed: int, work: str | Path,
               train: Callable[[np.ndarray, np.ndarray, int], dict[str, Any]], *, resume: bool = False,
               env_kwargs: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Behaviour cloning then ``cfg.dagger_iterations`` DAgger iterations on ``model`` (in place).

    ``X, Y``: the demonstrations' training windows; ``train(X, Y, iteration)`` trains ``model`` in
    place (``train_model``'s result). ``work``: the folder of the finished iterations; with
    ``resume`` the finished ones are kept and the run continues after them, else it starts over.
    Returns ``(train, dagger)``: the whole training in ``train_model``'s keys (the histories of
    every iteration in a row, steps counted from the start) and the per-iteration records."""
    work = Path(work)
    if not resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    n_iter = cfg.dagger_iterations
    records: list[dict[str, Any]] = []
    parts: list[dict[str, np.ndarray]] = []
    start = min(completed_iterations(work), n_iter + 1) if resume else 0
    if start:
        for i in range(start):
            d = _iter_dir(work, i)
            records.append(json.loads((d / "metrics.json").read_text()))
            if i:
                parts.append(load_dataset(d / "rollouts.npz")[0])
        model.load_state_dict(load_tensors(_iter_dir(work, start - 1) / "model.safetensors"))
    for i in range(start, n_iter + 1):
        t0 = time.perf_counter()
        torch.manual_seed(train_seed(seed, i))  # nothing inherits the global RNG across a resume
        d = _iter_dir(work, i)
        d.mkdir(parents=True, exist_ok=True)
        stats = None
        if i:
            data, stats = collect_rollouts(model, cfg.dagger_rounds, seed=rollout_seed(i, cfg.dagger_rounds),
                                           beta=beta_at(cfg.dagger_beta, i), mix_seed=train_seed(seed, i),
                                           env_kwargs=env_kwargs, max_steps_per_round=cfg.demo_steps_per_round)
            save_dataset(d / "rollouts.npz", data, {"iteration": i, "beta": stats["beta"],
                                                    "round_seeds": f"{stats['first_seed']} + j for j in "
                                                                   f"range({cfg.dagger_rounds})",
                                                    "labels": "expert (true state)"})
            parts.append(data)
        Xa, Ya = aggregate(X, Y, parts, cfg.window)
        tr = train(Xa, Ya, i)
        val = play_rounds(model, cfg.dagger_val_rounds, seed=DAGGER_VAL_SEED_BASE, env_kwargs=env_kwargs)
        rec = {"iteration": i, "beta": None if stats is None else stats["beta"], "rollout": stats,
               "rollout_steps_total": int(sum(int(p["round_lengths"].sum()) for p in parts)),
               "train_windows": int(Xa.shape[0]), "val_loss": tr["best_val_loss"], "val_accuracy": tr["val_accuracy"],
               "val_closed_loop": {k: val[k] for k in ("mean_catches", "catch_rate", "median_catches",
                                                        "rounds_at_cap", "rounds", "seed", "per_round")},
               "train": tr, "time_s": time.perf_counter() - t0}
        save_tensors(d / "model.safetensors", model.state_dict(), metadata={"iteration": str(i), "seed": str(seed)})
        atomic_write_text(d / "metrics.json", json.dumps(rec, indent=1))  # written last: the iteration is done
        records.append(rec)
    selected = select_iteration(records, cfg.dagger_select)
    if selected != records[-1]["iteration"]:
        model.load_state_dict(load_tensors(_iter_dir(work, selected) / "model.safetensors"))
    model.eval()
    return _whole_training(records), {"iterations": records, "selected_iteration": selected, "settings": {
        "select": cfg.dagger_select,
        "iterations": n_iter, "rounds": cfg.dagger_rounds, "beta": cfg.dagger_beta,
        "max_steps": cfg.dagger_max_steps or cfg.max_steps, "val_rounds": cfg.dagger_val_rounds,
        "rollout_seed_base": DAGGER_SEED_BASE, "val_seed_base": DAGGER_VAL_SEED_BASE}}


def select_iteration(records: list[dict[str, Any]], how: str) -> int:
    """The iteration a cell keeps: ``"last"``, or ``"best"``: the highest closed-loop validation
    mean catches (validation serves only), the later iteration on a tie."""
    if how == "last":
        return int(records[-1]["iteration"])
    if how != "best":
        raise ValueError(f"dagger_select: expected 'best' or 'last', got {how!r}")
    best = max(range(len(records)), key=lambda j: (records[j]["val_closed_loop"]["mean_catches"], j))
    return int(records[best]["iteration"])


def _whole_training(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``train_model`` result for every iteration together (steps counted from the start)."""
    hist, offset = [], 0
    for r in records:
        hist += [dict(h, step=h["step"] + offset, iteration=r["iteration"]) for h in r["train"]["history"]]
        offset += r["train"]["steps"]
    last = records[-1]["train"]
    return {"history": hist, "best_step": offset - last["steps"] + last["best_step"],
            "best_val_loss": last["best_val_loss"], "val_accuracy": last["val_accuracy"], "steps": offset,
            "stopped_early": last["stopped_early"],
            "train_time_s": float(sum(r["train"]["train_time_s"] for r in records))}


# ----------------------------------------------------------------------------- report
def _curves(models: dict[str, Any]) -> dict[str, list[list[dict[str, Any]]]]:
    return {n: m["dagger_iterations"] for n, m in models.items() if m.get("dagger_iterations")}


def plot_dagger_curves(results: dict[str, Any], path: str | Path) -> None:
    """Validation loss, validation accuracy and closed-loop validation catches against the DAgger
    iteration (one line per seed, one colour per model; the style of :mod:`.plots`)."""
    from tnd.apps import viz
    from .plots import catch_count_axis

    fig = viz.new_figure((13.0, 4.2))
    axes = fig.subplots(1, 3)
    top = 1.0
    for k, (name, per_seed) in enumerate(_curves(results["models"]).items()):
        for j, recs in enumerate(per_seed):
            it = [r["iteration"] for r in recs]
            kw = {"color": f"C{k % 10}", "alpha": 0.8, "lw": 1.2, "marker": "o", "markersize": 3,
                  "label": name if j == 0 else None}
            axes[0].plot(it, [r["val_loss"] for r in recs], **kw)
            axes[1].plot(it, [r["val_accuracy"] for r in recs], **kw)
            catches = [r["val_closed_loop"]["mean_catches"] for r in recs]
            axes[2].plot(it, catches, **kw)
            top = max([top] + catches)
    for ax, label in zip(axes, ("validation cross-entropy (lower is better)",
                                "validation action accuracy (higher is better)",
                                "closed-loop validation mean catches")):
        ax.set_xlabel("DAgger iteration (0: behaviour cloning)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    catch_count_axis(axes[2], math.ceil(top))  # linear up to 20 catches, symmetric-log above (as the other plots)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="model", title_fontsize=8)
    fig.suptitle("DAgger iterations (one line per training seed)", fontsize=11)
    viz.save_figure(fig, path, dpi=110)
