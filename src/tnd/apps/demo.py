"""``tnd demo``: train TND on a small built-in sequence task and print its metrics.

The task (multi-timescale filtering): one noisy input channel; the targets are its
exponential moving averages at a fast (tau = 2 steps) and a slow (tau = 30 steps) timescale.
A model must keep both a short and a long memory. Metrics: test MSE and R^2 per target,
beside an ``nn.LSTM`` trained with the same budget and the same number of parameters (roughly).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from tnd.graph import NeuronGraph
from tnd.graph_errors import GraphError
from tnd.model import TND


@dataclass
class DemoConfig:
    seed: int = 0
    """Seed of the data, the graph and the initial weights."""
    num_neurons: int = 32
    """Neurons in TND's graph."""
    density: float = 0.2
    """Edge density of TND's random graph."""
    steps: int = 300
    """Adam steps for each model."""
    batch: int = 32
    """Sequences per step."""
    length: int = 64
    """Sequence length."""
    taus: tuple[float, ...] = (2.0, 30.0)
    """Time constants of the target moving averages."""


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
    tnd_model = TND(1, graph, len(cfg.taus))
    results["TND"] = train(tnd_model, cfg, data, torch.Generator().manual_seed(cfg.seed + 1))
    budget = results["TND"]["params"]
    hidden = max(1, round((-(6 + 4 * 2) + ((6 + 4 * 2) ** 2 + 16 * (budget - 2)) ** 0.5) / 8))  # 4h^2+14h+2 ~ budget
    torch.manual_seed(cfg.seed)
    results["LSTM"] = train(_LSTM(hidden, len(cfg.taus)), cfg, data, torch.Generator().manual_seed(cfg.seed + 1))
    return results


#: accepted range of each numeric option: (low, high, low is exclusive); counts stay below 2**31
#: (C ints), sizes below what a 5-second demo can hold in memory.
LIMITS: dict[str, tuple[float, float, bool]] = {
    "seed": (0, 2**31 - 1, False), "num_neurons": (2, 4096, False), "density": (0.0, 1.0, True),
    "steps": (1, 10**7, False), "batch": (1, 512, False), "length": (1, 10_000, False),
}


def _ranged(name: str, typ: type):
    """An argparse type: ``typ`` parsed, finite and inside ``LIMITS[name]`` (else a usage error naming it)."""
    lo, hi, lo_open = LIMITS[name]
    expect = f"{'an int' if typ is int else 'a number'} in {'(' if lo_open else '['}{lo:g}, {hi:g}]"

    def parse(text: str):
        try:
            v = typ(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expect}, got {text!r}") from None
        if not math.isfinite(v) or v < lo or (lo_open and v == lo) or v > hi:
            raise argparse.ArgumentTypeError(f"expected {expect}, got {text!r}")
        return v

    parse.__name__ = typ.__name__  # argparse names the type in some messages
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, default in asdict(DemoConfig()).items():
        if isinstance(default, tuple):
            continue
        parser.add_argument(f"--{name.replace('_', '-')}", type=_ranged(name, type(default)), default=default,
                            help=f"default {default}")


def run(args: argparse.Namespace) -> int:
    cfg = DemoConfig(**{k: v for k, v in vars(args).items() if k in DemoConfig.__dataclass_fields__})
    try:  # refuse settings that give an unusable graph before any work
        demo_graph(cfg)
    except GraphError as e:
        print(f"tnd demo: error: --num-neurons {cfg.num_neurons} with --density {cfg.density} (--seed {cfg.seed}) "
              f"gives no usable graph ({e}); raise --density or --num-neurons", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # these sizes are too small to gain from threads
    results = run_demo(cfg)
    keys = [k for k in results["TND"] if k not in ("train_s", "params")]
    print(f"Multi-timescale filtering (targets: EMAs with tau = {cfg.taus}), {cfg.steps} Adam steps each\n")
    print("| model | params | " + " | ".join(keys) + " | train s |")
    print("|---|---|" + "---|" * len(keys) + "---|")
    for name, r in results.items():
        print(f"| {name} | {r['params']} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + f" | {r['train_s']:.1f} |")
    return 0
