"""Pong pilot (docs/PONG.md, section 9): behaviour cloning of one seed at a long step cap, so that
early stopping (patience 10 x 200 steps) ends training; optionally with ball and paddle F times faster.

Usage: python benchmarks/pong_pilots/converge.py F MODELS MAX_STEPS [LR]
  e.g. converge.py 1 lstm,tnd,mlp_k,transformer 30000   (convergence, positions only)
       converge.py 3 mlp,mlp_k,lstm,tnd 2500            (3x coarser time step)
"""
import json, sys, time
import torch
from tnd.apps.pong.data import generate_perturbed_demonstrations, make_windows, train_val_split
from tnd.apps.pong.models import build_model
from tnd.apps.pong.train import train_model
from tnd.apps.pong.evaluate import play_rounds
from tnd.apps.pong.policies import evaluate_policy, ExpertPolicy, TrackerPolicy
torch.set_num_threads(1)
f = float(sys.argv[1]); models = sys.argv[2].split(","); steps = int(sys.argv[3]) if len(sys.argv) > 3 else 2500
ek = {"max_catches": 100, "ball_speed": 0.03 * f, "paddle_speed": 0.015 * f}
out = {}
for name, pol in (("expert", ExpertPolicy), ("tracker", TrackerPolicy)):
    out[name] = evaluate_policy(pol, 100, env_kwargs=ek)["mean_catches"]
print(f, out, flush=True)
t0 = time.time()
demos = generate_perturbed_demonstrations(3000, seed=0, env_kwargs=ek, max_steps_per_round=300, perturb_prob=1.0, perturb_max_len=1)
tr, va = train_val_split(demos, 0.2, seed=0)
Xt, Yt = make_windows(tr, 32, stride=16); Xv, Yv = make_windows(va, 32, stride=32); Xv, Yv = Xv[:256], Yv[:256]
print("data", time.time() - t0, Xt.shape, flush=True)
for m in models:
    torch.manual_seed(0)
    model, spec = build_model(m, Xt.shape[-1], 3, 2000, window=32)
    t0 = time.time()
    r = train_model(model, Xt, Yt, Xv, Yv, max_steps=steps, batch_size=64, lr=float(sys.argv[4]) if len(sys.argv) > 4 else 5e-3, eval_every=200, patience=10, grad_clip=1.0, seed=0)
    ev = play_rounds(model, 100, env_kwargs=ek)
    out[m] = {"catches": ev["mean_catches"], "train": {k: v for k, v in r.items() if k not in ("history", "curve")}, "s": round(time.time() - t0)}
    print(f, m, out[m], flush=True)
json.dump(out, open(sys.argv[5] if len(sys.argv) > 5 else f"conv-{f}-{steps}.json", "w"), indent=1)
