"""Mamba's final state after the parallel scan: closed form against a second, stepped pass.

    python benchmarks/mamba_paths.py [--steps 5] [--lengths 132 256]

For each sequence length: the suite's Mamba at 2,000 parameters (``tnd.apps.suite.models``),
batch 32, one thread. Times, alternating so a change of machine load hits both alike:

* a training step (forward + backward + Adam) on ``model(x)``: the package's parallel scan plus
  the final state in closed form (what the baseline runs now), against the same step followed
  by a stepped pass without gradients for the state (one ``model(x_t, h)`` call per step; what
  the baseline ran before 2026-12-04);
* an evaluation call without gradients: ``model(x)`` against stepping the sequence.

Prints ms per call of each, the ratio, and the largest difference of the two final states.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tnd.apps.suite.models import build_model


def _timed(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed calls per path and length")
    ap.add_argument("--lengths", type=int, nargs="+", default=[132, 256])
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("| T | train, closed form ms | train, stepped state ms | ratio | eval, parallel ms | eval, stepped ms "
          "| ratio | max state difference |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for T in args.lengths:
        m = build_model("mamba", 8, 2, 2000, seq_len=T)[0]
        x = torch.randn(32, T, 8)
        opt = torch.optim.Adam(m.parameters())

        def stepped(h=None):
            for t in range(T):
                _, h = m(x[:, t:t + 1], h)
            return h

        def train(closed: bool):
            out, _ = m(x)
            if not closed:
                with torch.no_grad():
                    stepped()
            loss = out[:, -1].pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        def evaluate(parallel: bool):
            with torch.no_grad():
                return m(x)[1] if parallel else stepped()

        train(True), train(False)  # warm-up
        times = {k: [] for k in ("tc", "ts", "ep", "es")}
        for _ in range(args.steps):
            times["tc"].append(_timed(lambda: train(True), 1))
            times["ts"].append(_timed(lambda: train(False), 1))
            times["ep"].append(_timed(lambda: evaluate(True), 1))
            times["es"].append(_timed(lambda: evaluate(False), 1))
        med = {k: statistics.median(v) for k, v in times.items()}
        (h1, c1), (h2, c2) = evaluate(True), evaluate(False)
        diff = max(float((h1 - h2).abs().max()), float((c1 - c2).abs().max()))
        print(f"| {T} | {med['tc']:.1f} | {med['ts']:.1f} | {med['ts'] / med['tc']:.2f} | {med['ep']:.1f} | "
              f"{med['es']:.1f} | {med['es'] / med['ep']:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
