"""Pong pilot: does resetting a trained model's state every K steps of play change its catches?
(tests whether long closed-loop rollouts drift away from the 32-step training windows)

Usage: python benchmarks/pong_pilots/state_reset.py RUN_FOLDER MODEL[,MODEL...] OBS_NOISE
"""
import sys, numpy as np, torch
from tnd.apps.pong.cells import load_cell_model
from tnd.apps.pong.env import SinglePlayerPong
torch.set_num_threads(1)
run, models, noise = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3])
ek = {"max_catches": 20, "obs_noise": noise, "obs_mode": "motion"}
def play(net, K, rounds=30):
    env = SinglePlayerPong(**ek); tot = 0
    for i in range(rounds):
        o, _ = env.reset(seed=10_000_000 + i); h = None; t = 0; done = False
        while not done:
            with torch.no_grad():
                y, h = net(torch.tensor(o)[None, None], h)
            a = int(y[0, -1].argmax()); t += 1
            if K and t % K == 0: h = None
            o, r, term, trunc, info = env.step(a); done = term or trunc
        tot += info["catches"]
    return tot / rounds
for m in models:
    net = load_cell_model(run, m, 0)
    print(m, {K: play(net, K) for K in (0, 32, 64)}, flush=True)
