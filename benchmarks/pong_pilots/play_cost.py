"""Pong pilot: wall time of closed-loop play, the lockstep batch (``play_rounds`` on
:class:`~tnd.apps.pong.batch_env.PongBatch`) against the loop it replaced (a list of
``SinglePlayerPong`` stepped one ``env.step`` per round per step, :func:`scalar_play`), in one
process and alternating, so the ratio is fair on a shared machine; the per-round results must be
identical. 100 rounds, cap 100, motion mode, obs noise 0.01, one thread; the models: a seeded
untrained LSTM (2,000 parameters; its rounds are short) and the same LSTM whose actions a
hand-made intercept policy overrides (:class:`Steered`: rounds of thousands of steps, as a
trained model's); with ``--cell RUN SEED_LABEL`` (e.g. ``runs/x lstm``) also a trained cell's
model (seed 0, :func:`~tnd.apps.pong.cells.load_cell_model`; its stored evaluation must be
reproduced when ROUNDS is its ``eval_rounds``), and the cell's whole closed-loop evaluation: the
evaluation and the three shifts (ROUNDS each) played one after the other by the old loop against
``evaluate_with_shifts`` (one batch; the per-round results compared with separate plays).
``env only``: the same rounds' recorded actions replayed without the model.

Usage: python benchmarks/pong_pilots/play_cost.py [ROUNDS] [REPEATS] [--cell RUN LABEL]
"""
import sys, time
import numpy as np
import torch
from torch import nn
from tnd.apps.pong.batch_env import PongBatch
from tnd.apps.pong.env import SinglePlayerPong
from tnd.apps.pong.evaluate import play_rounds, play_rounds_reference
from tnd.apps.pong.models import build_model
from tnd.apps.pong.policies import EVAL_SEED_BASE


class Steered(nn.Module):
    """The LSTM's step (its cost), then the actions of a hand-made intercept policy on the motion
    observation, so that rounds last (about 18 mean catches, rounds of thousands of steps) as a
    trained model's do: the velocity is a running average (rate ``alpha``) of the displacement,
    restarted when its x sign flips; the paddle moves towards the unfolded intercept. ``log``
    keeps each call's actions (for the env-only replay)."""

    def __init__(self, inner: nn.Module, alpha: float = 0.5, unit: float = 0.03) -> None:
        super().__init__()
        self.inner, self.alpha, self.unit, self.log = inner, alpha, unit, []

    def forward(self, x, h=None):
        ih, v = (None, None) if h is None else h
        logits, ih = self.inner(x, ih)
        o = x[:, -1]
        d = o[:, 2:4] * self.unit
        if v is None:
            v = d.clone()
        else:
            flip = torch.sign(d[:, 0]) != torch.sign(v[:, 0])
            v = torch.where(flip[:, None], d, v + self.alpha * (d - v))
        vx = torch.where(v[:, 0].abs() < 1e-3, torch.full_like(v[:, 0], -1e-3), v[:, 0])
        t = torch.where(vx < 0, (o[:, 0] - 0.05) / -vx, (2.0 - o[:, 0] - 0.05) / vx)
        m = torch.remainder(o[:, 1] + t * v[:, 1], 2.0)
        e = torch.where(m <= 1, m, 2 - m).clamp(0.08, 0.92) - o[:, 4]
        act = torch.where(e > 0.0075, 0, torch.where(e < -0.0075, 2, 1))
        self.log.append(act.numpy().copy())
        return logits * 0.0 + nn.functional.one_hot(act, 3).to(logits.dtype)[:, None], (ih, v)


@torch.inference_mode()
def scalar_play(model, rounds, env_kwargs, seed=EVAL_SEED_BASE):
    """The loop ``play_rounds`` ran before the batch (its reference): one ``env.step`` per round per step."""
    return play_rounds_reference(model, rounds, seed, env_kwargs)[:2]


def replay_scalar(log, rounds, env_kwargs, seed=EVAL_SEED_BASE):
    envs = [SinglePlayerPong(**env_kwargs) for _ in range(rounds)]
    for i, env in enumerate(envs):
        env.reset(seed=seed + i)
    active = list(range(rounds))
    for acts in log:
        still = []
        for i, a in zip(active, acts.tolist()):
            _o, _r, term, trunc, _info = envs[i].step(a)
            if not (term or trunc):
                still.append(i)
        active = still


def replay_batch(log, rounds, env_kwargs, seed=EVAL_SEED_BASE):
    batch, _ = PongBatch.serve([env_kwargs] * rounds, [seed + i for i in range(rounds)])
    for acts in log:
        batch.step(acts)


torch.set_num_threads(1)
args = sys.argv[1:]
cell = None
if "--cell" in args:
    k = args.index("--cell")
    cell, args = args[k + 1:k + 3], args[:k] + args[k + 3:]
rounds = int(args[0]) if args else 100
repeats = int(args[1]) if len(args) > 1 else 1
kw = {"max_catches": 100, "obs_noise": 0.01, "obs_mode": "motion"}
torch.manual_seed(0)
lstm, _ = build_model("lstm", 5, 3, 2000)
models = [("lstm", lstm), ("lstm+steered", Steered(lstm))]
if cell is not None:
    import json, pathlib
    from tnd.apps.pong.cells import load_cell_model
    stored = json.loads((pathlib.Path(cell[0]) / "cells" / cell[1] / "seed-0" / "metrics.json").read_text())["eval"]
    models.append((f"trained {cell[1]}", load_cell_model(cell[0], cell[1], 0)))
for label, model in models:
    t_old = t_new = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        old = scalar_play(model, rounds, kw)
        t_old += time.perf_counter() - t0
        if isinstance(model, Steered):
            model.log.clear()
        t0 = time.perf_counter()
        ev = play_rounds(model, rounds, env_kwargs=kw)
        t_new += time.perf_counter() - t0
    assert old == (ev["per_round"], ev["per_round_steps"]), "the batch changed a round's result"
    if label.startswith("trained") and rounds == stored["rounds"]:
        assert ev["per_round"] == stored["per_round"], "the stored evaluation was not reproduced"
        print(f"{label}: the stored evaluation ({stored['mean_catches']:.2f} mean catches) reproduced", flush=True)
    print(f"{label:13s} play_rounds: before {t_old / repeats:6.2f} s, after {t_new / repeats:6.2f} s, "
          f"x{t_old / t_new:.2f}  ({ev['total_steps']} env steps, longest round {max(ev['per_round_steps'])}, "
          f"mean catches {ev['mean_catches']:.2f})", flush=True)
    if isinstance(model, Steered):
        log = list(model.log)
        t0 = time.perf_counter()
        replay_scalar(log, rounds, kw)
        t1 = time.perf_counter()
        replay_batch(log, rounds, kw)
        t2 = time.perf_counter()
        print(f"{label:13s} env only:    before {t1 - t0:6.2f} s, after {t2 - t1:6.2f} s, "
              f"x{(t1 - t0) / (t2 - t1):.2f}  ({len(log)} lockstep steps)", flush=True)

if cell is not None:
    from tnd.apps.pong.shifts import SHIFT_NAMES, evaluate_with_shifts, shifted_env_kwargs

    model = models[-1][1]
    t0 = time.perf_counter()
    old = [scalar_play(model, rounds, k) for k in [kw] + [shifted_env_kwargs(kw, n) for n in SHIFT_NAMES]]
    t1 = time.perf_counter()
    ev, _, shifted = evaluate_with_shifts(model, rounds, SHIFT_NAMES, rounds, kw)
    t2 = time.perf_counter()
    new = [ev] + [shifted[n] for n in SHIFT_NAMES]
    same = [o[0] == e["per_round"] for o, e in zip(old, new)]
    print(f"{models[-1][0]} evaluation + {len(SHIFT_NAMES)} shifts: before {t1 - t0:6.2f} s, after {t2 - t1:6.2f} s, "
          f"x{(t1 - t0) / (t2 - t1):.2f}; per-round results identical to separate plays: {same}", flush=True)
