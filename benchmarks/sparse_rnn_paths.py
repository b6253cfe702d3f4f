"""The Sparse RNN's two recurrent products, dense masked matmul and edge list, in one process.

    python benchmarks/sparse_rnn_paths.py [--steps 10] [--budgets 2000 6000 20000]

For each parameter budget: the Pong Sparse RNN of that size (``tnd.apps.pong.models.build_model``:
hidden width and mask density as ``tnd pong`` builds them), one training step (batch 64, window
32, forward + backward + Adam, one thread) with ``edge_list=False`` and with ``edge_list=True``,
alternating, so a change of machine load hits both alike. Prints CPU ms per step of each, the
ratio, and which path ``edge_list=None`` (the default) picks. The threshold of that default comes
from this table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from tnd.apps.baselines import SparseRNN
from tnd.apps.pong.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per path and budget")
    ap.add_argument("--budgets", type=int, nargs="+", default=[2000, 6000, 20000])
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.rand(64, 32, 5)
    y = torch.randint(0, 3, (64, 32))
    print("| budget | hidden | density | dense ms/step | edge-list ms/step | dense / edge-list | default |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for budget in args.budgets:
        _, spec = build_model("sparse_rnn", 5, 3, budget, window=32)
        h, kw = spec["hidden_size"], spec["kwargs"]
        models = {}
        for edge_list in (False, True):
            torch.manual_seed(0)
            m = SparseRNN(5, 3, h, edge_list=edge_list, **kw)
            models[edge_list] = (m, torch.optim.Adam(m.parameters(), 5e-3))
        times = {False: [], True: []}
        for i in range(args.steps + 2):
            for edge_list, (m, opt) in models.items():
                t0 = time.process_time()
                logits, _ = m(x)
                loss = F.cross_entropy(logits.reshape(-1, 3), y.reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
                if i >= 2:  # two warm-up steps
                    times[edge_list].append(time.process_time() - t0)
        d, e = (1000 * statistics.median(times[k]) for k in (False, True))
        default = "edge list" if SparseRNN(5, 3, h, **kw).edge_list else "dense"
        print(f"| {budget} | {h} | {kw['density']:.4f} | {d:.1f} | {e:.1f} | {d / e:.2f} | {default} |", flush=True)


if __name__ == "__main__":
    main()
