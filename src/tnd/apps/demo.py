"""``tnd demo``: train TND on a small built-in sequence task and print its metrics.

The task (multi-timescale filtering): one noisy input channel; the targets are its
exponential moving averages at a fast (tau = 2 steps) and a slow (tau = 30 steps) timescale.
A model must keep both a short and a long memory. Metrics: test MSE and R^2 per target,
beside an ``nn.LSTM`` trained with the same budget and the same number of parameters (roughly).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
from torch import nn

from tnd.dynamics import TAU_INIT_V0
from tnd.graph import NeuronGraph
from tnd.graph_errors import GraphError
from tnd.model import TND
from .settings import UsageError, add_options, from_args, setting


@dataclass
class DemoConfig:
    """Settings of ``tnd demo`` (numbers below 2**31; sizes that a 5-second demo can hold)."""

    seed: int = 0
    """seed of the data, the graph and the initial weights"""
    num_neurons: int = setting(32, low=2, high=4096)
    """neurons in TND's graph"""
    density: float = setting(0.2, low=0.0, high=1.0, low_open=True)
    """edge density of TND's random graph"""
    steps: int = setting(300, low=1, high=10**7)
    """Adam steps for each model"""
    batch: int = setting(32, low=1, high=512)
    """sequences per step"""
    length: int = setting(64, low=1, high=10_000)
    """sequence length"""
    taus: tuple[float, ...] = setting((2.0, 30.0), low=0.0, low_open=True)
    """time constants of the target moving averages (not an option: the demo's task)"""


#: DemoConfig fields that are not command-line options
NOT_OPTIONS = ("taus",)


def make_data(n: int, length: int, taus: tuple[float, ...], gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, length, 1, generator=gen)
    ys, y = [], torch.zeros(n, len(taus))
    a = torch.tensor([1.0 / t for t in taus])
    for t in range(length):
        y = y + a * (x[:, t] - y)
        ys.append(y)
    return x, torch.stack(ys, 1) * torch.tensor([t**0.5 for t in taus])  # unit-scale targets


class _LSTM(nn.Module):
    def __init__(self, hidden: int, out: int) -> None:
        super().__init__()
        self.rnn, self.head = nn.LSTM(1, hidden, batch_first=True), nn.Linear(hidden, out)

    def forward(self, x):
        return self.head(self.rnn(x)[0]), None


def train(model: nn.Module, cfg: DemoConfig, data, gen: torch.Generator) -> dict[str, float]:
    xtr, ytr, xte, yte = data
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    t0 = time.perf_counter()
    for _ in range(cfg.steps):
        idx = torch.randint(xtr.shape[0], (cfg.batch,), generator=gen)
        loss = ((model(xtr[idx])[0] - ytr[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = model(xte)[0]
    mse = ((pred - yte) ** 2).mean(dim=(0, 1))
    r2 = 1 - mse / yte.var(dim=(0, 1))
    out = {"train_s": time.perf_counter() - t0, "params": sum(p.numel() for p in model.parameters())}
    for i, tau in enumerate(cfg.taus):
        out[f"mse_tau{tau:g}"], out[f"r2_tau{tau:g}"] = float(mse[i]), float(r2[i])
    return out


def demo_graph(cfg: DemoConfig) -> NeuronGraph:
    """TND's graph. Input and output sets overlap: in discrete time a signal needs one step per
    hop, and the fast target needs the newest input at once. Raises :class:`tnd.GraphError` when
    the settings leave an output neuron unreachable."""
    n = cfg.num_neurons
    return NeuronGraph.random(n, cfg.density, seed=cfg.seed, num_inputs=n // 2, num_outputs=3 * n // 4)


def run_demo(cfg: DemoConfig) -> dict[str, dict[str, float]]:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = (*make_data(512, cfg.length, cfg.taus, gen), *make_data(256, cfg.length, cfg.taus, gen))
    graph = demo_graph(cfg)
    results = {}
    torch.manual_seed(cfg.seed)
    tnd_model = TND(1, graph, len(cfg.taus), dynamics="leaky", dynamics_kw={"tau_init": TAU_INIT_V0})  # the documented demo's F and init
    results["TND"] = train(tnd_model, cfg, data, torch.Generator().manual_seed(cfg.seed + 1))
    budget = results["TND"]["params"]
    hidden = max(1, round((-(6 + 4 * 2) + ((6 + 4 * 2) ** 2 + 16 * (budget - 2)) ** 0.5) / 8))  # 4h^2+14h+2 ~ budget
    torch.manual_seed(cfg.seed)
    results["LSTM"] = train(_LSTM(hidden, len(cfg.taus)), cfg, data, torch.Generator().manual_seed(cfg.seed + 1))
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, DemoConfig, skip=NOT_OPTIONS)


def run(args: argparse.Namespace) -> int:
    cfg = from_args(DemoConfig, args, skip=NOT_OPTIONS)
    try:  # refuse settings that give an unusable graph before any work
        demo_graph(cfg)
    except GraphError as e:
        raise UsageError(f"--num-neurons {cfg.num_neurons} with --density {cfg.density} (--seed {cfg.seed}) "
                         f"gives no usable graph ({e}); raise --density or --num-neurons") from None
    torch.set_num_threads(1)  # these sizes are too small to gain from threads
    results = run_demo(cfg)
    keys = [k for k in results["TND"] if k not in ("train_s", "params")]
    print(f"Multi-timescale filtering (targets: EMAs with tau = {cfg.taus}), {cfg.steps} Adam steps each\n")
    print("| model | params | " + " | ".join(keys) + " | train s |")
    print("|---|---|" + "---|" * len(keys) + "---|")
    for name, r in results.items():
        print(f"| {name} | {r['params']} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + f" | {r['train_s']:.1f} |")
    return 0
