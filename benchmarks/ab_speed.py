"""Same-process A/B of TND's speed between two source trees (e.g. a previous commit's ``src``).

    python benchmarks/ab_speed.py --a /path/to/old/src --b src [--repeats 15]

Both versions are imported into one process (the ``tnd`` modules of A are set aside before B is
imported; their C libraries are separate files), their models are built from the same seed, and
the calls alternate A, B, A, B ... so that a change of machine load hits both alike. Prints the
median time per call of each and the ratio B/A per configuration (training: forward + backward
at T = 256; inference under no_grad). ``TND.step`` is not timed here: its snapshot watches
module registrations process-wide, which two imported versions disturb; ``tnd bench`` times it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

CONFIGS = [  # (label, B, N, TND keyword arguments)
    ("leaky, B=1, N=64", 1, 64, {"dynamics": "leaky"}),
    ("leaky, B=64, N=64", 64, 64, {"dynamics": "leaky"}),
    ("leaky, B=64, N=256", 64, 256, {"dynamics": "leaky"}),
    ("gated, B=64, N=64", 64, 64, {"dynamics": "gated"}),
    ("gated d=2, B=1, N=64", 1, 64, {"dynamics": "gated", "state_size": 2}),
    ("mlp, B=64, N=64", 64, 64, {"dynamics": "mlp"}),
    ("attention, B=64, N=64", 64, 64, {"interaction": "attention", "dynamics": "leaky"}),
    ("leaky sparse, B=8, N=2048", 8, 2048, {"density": 1 / 128, "dynamics": "leaky"}),
]
T, C_IN, C_OUT = 256, 3, 2


def load(src: str):
    """Import ``tnd`` from ``src``; returns (TND, NeuronGraph) and removes it from sys.modules."""
    for k in [k for k in sys.modules if k == "tnd" or k.startswith("tnd.")]:
        del sys.modules[k]
    sys.path.insert(0, src)
    try:
        import tnd  # noqa: F401
        from tnd import TND, NeuronGraph
    finally:
        sys.path.remove(src)
    mods = {k: v for k, v in sys.modules.items() if k == "tnd" or k.startswith("tnd.")}
    for k in mods:
        del sys.modules[k]
    return TND, NeuronGraph, mods


def activate(lib) -> None:
    """Put ``lib``'s modules in sys.modules, so that its lazy imports find its own code."""
    for k in [k for k in sys.modules if k == "tnd" or k.startswith("tnd.")]:
        del sys.modules[k]
    sys.modules.update(lib[2])


def build(lib, b, n, kw):
    activate(lib)
    TND, NeuronGraph, _ = lib
    kw = dict(kw)
    density = kw.pop("density", 0.25)
    torch.manual_seed(0)
    g = NeuronGraph.random(n, density, seed=0, num_inputs=max(1, n // 4), num_outputs=max(1, n // 4))
    return TND(C_IN, g, C_OUT, **kw)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="source folder of version A (the one holding tnd/)")
    ap.add_argument("--b", required=True, help="source folder of version B")
    ap.add_argument("--repeats", type=int, default=15, help="timed calls of each version per case")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    A, B = load(args.a), load(args.b)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; A = {args.a}, B = {args.b}")
    print("| case | A (ms) | B (ms) | B/A |\n|---|---:|---:|---:|")
    for label, b, n, kw in CONFIGS:
        ma, mb = build(A, b, n, kw), build(B, b, n, kw)
        torch.manual_seed(1)
        x = torch.randn(b, T, C_IN)

        def train(m):
            y, _ = m(x)
            y.square().mean().backward()

        def infer(m):
            with torch.no_grad():
                m(x)

        for what, fn in (("train", train), ("infer", infer)):
            for lib, m in ((A, ma), (B, mb)):  # warm up (compiles the kernels once)
                activate(lib)
                fn(m)
            ta, tb = [], []
            for _ in range(args.repeats):
                activate(A)
                ta.append(timed(lambda: fn(ma)))
                activate(B)
                tb.append(timed(lambda: fn(mb)))
            a, bb = statistics.median(ta) * 1e3, statistics.median(tb) * 1e3
            print(f"| {label}, {what} | {a:.3f} | {bb:.3f} | {bb / a:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
