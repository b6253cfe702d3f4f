"""Pong pilot: seconds per training step (batch 64, window 32, 2,000 parameters, one thread) of the
models of the candidate protocol, in one process, so the ratios say where a cell's time goes.

Usage: python benchmarks/pong_pilots/step_cost.py [STEPS]
"""
import json, sys, time
import torch
import torch.nn.functional as F
from tnd.apps.pong.models import build_model

torch.set_num_threads(1)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
tnd_fast_p2 = {"input_fraction": 1.0, "dynamics_kw": {"tau_init": [0.25, 10.0]}, "propagation_steps": 2}
tnd_fast_p1 = {"input_fraction": 1.0, "dynamics_kw": {"tau_init": [0.25, 10.0]}}
models = [("lstm", None), ("mlp_k", None), ("transformer", None), ("tnd", tnd_fast_p1), ("tnd", tnd_fast_p2)]
x = torch.rand(64, 32, 5)
y = torch.randint(0, 3, (64, 32))
out = {}
for name, ov in models:
    torch.manual_seed(0)
    m, spec = build_model(name, 5, 3, 2000, window=32, tnd_overrides=ov)
    opt = torch.optim.Adam(m.parameters(), 5e-3)
    label = name + ("" if ov is None else f"-p{ov.get('propagation_steps', 1)}")
    for phase in ("warm", "timed"):
        t0 = time.perf_counter()
        for _ in range(steps if phase == "timed" else 20):
            logits, _ = m(x)
            loss = F.cross_entropy(logits.reshape(-1, 3), y.reshape(-1))
            opt.zero_grad(); loss.backward(); opt.step()
        dt = (time.perf_counter() - t0) / steps
    out[label] = dt
    print(f"{label:14s} {spec['params']:5d} params  {1000 * dt:6.2f} ms/step  x{dt / out['lstm']:.2f} of lstm", flush=True)
