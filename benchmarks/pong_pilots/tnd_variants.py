"""Pong pilot (docs/PONG.md, section 9): which TND options play Pong from motion observations
(behaviour cloning, cap 30,000 steps, early stopping 10 x 200, one seed).

Usage: python benchmarks/pong_pilots/tnd_variants.py OBS_NOISE VARIANT[,VARIANT...]
"""
import json, sys, time
import torch
from tnd.apps.pong.data import generate_perturbed_demonstrations, make_windows, train_val_split
from tnd.apps.pong.models import build_model
from tnd.apps.pong.train import train_model
from tnd.apps.pong.evaluate import play_rounds
torch.set_num_threads(1)
noise = float(sys.argv[1]); names = sys.argv[2].split(",")
VARIANTS = {
    "allin_span": {"input_fraction": 1.0, "dynamics_kw": {"tau_init": "span"}},
    "allin_fast": {"input_fraction": 1.0, "dynamics_kw": {"tau_init": [0.25, 10.0]}},
    "allin_fast_p2": {"input_fraction": 1.0, "dynamics_kw": {"tau_init": [0.25, 10.0]}, "propagation_steps": 2},
    "allin_fastspan": {"input_fraction": 1.0, "dynamics_kw": {"tau_init": [0.25, 1000.0]}},
    "allin_fastspan_p2": {"input_fraction": 1.0, "dynamics_kw": {"tau_init": [0.25, 1000.0]}, "propagation_steps": 2},
    "allin_gated": {"input_fraction": 1.0, "dynamics": "gated"},
    "allin_fast_s1": {"input_fraction": 1.0, "dynamics_kw": {"tau_init": [0.25, 10.0]}, "state_size": 1},
    "allin_vfast": {"input_fraction": 1.0, "dynamics_kw": {"tau_min": 0.05, "tau_init": [0.05, 10.0]}},
}
ek = {"max_catches": 100, "obs_noise": noise, "obs_mode": "motion"}
demos = generate_perturbed_demonstrations(3000, seed=0, env_kwargs=ek, max_steps_per_round=300, perturb_prob=1.0, perturb_max_len=1)
tr, va = train_val_split(demos, 0.2, seed=0)
Xt, Yt = make_windows(tr, 32, stride=16); Xv, Yv = make_windows(va, 32, stride=32); Xv, Yv = Xv[:256], Yv[:256]
for n in names:
    torch.manual_seed(0)
    model, spec = build_model("tnd", Xt.shape[-1], 3, 2000, window=32, tnd_overrides=VARIANTS[n])
    t0 = time.time()
    r = train_model(model, Xt, Yt, Xv, Yv, max_steps=30000, batch_size=64, lr=5e-3, eval_every=200, patience=10, grad_clip=1.0, seed=0)
    ev = play_rounds(model, 100, env_kwargs=ek)
    print(noise, n, spec["num_neurons"], spec["params"], "catches", ev["mean_catches"], "stop", r["steps"], "best", r["best_step"], "acc %.3f" % r["val_accuracy"], "s", round(time.time() - t0), flush=True)
