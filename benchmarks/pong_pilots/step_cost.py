"""Pong pilot: CPU seconds per training step (batch 64, window 32, 2,000 parameters or PARAM_BUDGET, motion
observations, one thread) of every model of the default ``tnd pong`` run, in one process, so the
ratios say where the main job's time goes. TND is the protocol's default (``TND_BASES["control"]``:
2 rounds of interaction) and, for comparison, with 1 round.

Usage: python benchmarks/pong_pilots/step_cost.py [STEPS] [PARAM_BUDGET]   (defaults 200, 2000)
"""
import sys
import time

import torch
import torch.nn.functional as F

from tnd.apps.pong.config import TND_BASES, PongConfig
from tnd.apps.pong.models import build_model

torch.set_num_threads(1)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
budget = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
control = TND_BASES["control"]
models = [(m, control if m.startswith("tnd") else None) for m in PongConfig().models]
models.append(("tnd", {**control, "propagation_steps": 1}))
x = torch.rand(64, 32, 5)
y = torch.randint(0, 3, (64, 32))
out = {}
for name, ov in models:
    torch.manual_seed(0)
    m, spec = build_model(name, 5, 3, budget, window=32, tnd_overrides=ov)
    opt = torch.optim.Adam(m.parameters(), 5e-3)
    label = name + ("" if ov is None else f"-p{ov.get('propagation_steps', 1)}")
    for phase in ("warm", "timed"):
        n = steps if phase == "timed" else min(20, steps)
        t0 = time.process_time()  # CPU time: another busy process on the machine does not count
        for _ in range(n):
            logits, _ = m(x)
            loss = F.cross_entropy(logits.reshape(-1, 3), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()
        dt = (time.process_time() - t0) / n
    out[label] = dt
    print(f"{label:14s} {spec['params']:5d} params  {1000 * dt:6.2f} ms/step  x{dt / out.get('lstm', dt):.2f} of lstm",
          flush=True)
