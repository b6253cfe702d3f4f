"""``tnd bench``: speed and memory of TND against its peers, in one process.

Models at equal neuron count N (hidden size N for the layer-wise ones): TND (leaky F, linear I,
random graph of density 0.25, discrete mode: the fused fast path), TND with gated dynamics (fused
fast path, d = 1 and d = 2) and with per-neuron-MLP dynamics (fused fast path), TND with the
attention interaction (leaky F, fused fast path), ``nn.RNN``, ``nn.LSTM``, ncps CfC
and LTC with a fully-connected and an AutoNCP wiring, and a small causal ``nn.TransformerEncoder``
(d_model 64, 2 layers, 4 heads). Each is timed after a warm-up, as the median over repeats, in
microseconds per sequence step (the time of one call over T steps divided by T), for training
(forward + backward of ``y.sum()``) and inference (``torch.no_grad``); ratios are against
``nn.LSTM`` at the same shape. The single-step table (B = 1, one step per call, state carried, no
grad: a control loop) times ``TND.step`` (the control-loop API) and ``TND.forward`` on a one-step
sequence against ``nn.LSTM``. ``--large`` adds the large-graph rows (N = 65,536, mean in-degree
16 and 32, B = 8, T = 64, sparse, forward + backward), each in a subprocess that reports its
peak resident memory during one call (``VmHWM`` after resetting it) above what it held before.

``--device cuda`` times the main tables on the GPU (models and inputs there, the clock read after
``torch.cuda.synchronize()``); there every TND row runs the readable torch loop (the fused kernels
are C, CPU-only), and the single-step, warm-up and large-graph rows are skipped (they time the C
path).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

from .settings import Parser, UsageError, add_options, from_args, setting

C_IN, C_OUT = 8, 4
CLOCK = time.perf_counter  # or time.process_time (--cpu-time)
FULL_SHAPES = [(1, 64), (1, 256), (64, 64), (64, 256)]
QUICK_SHAPES = [(1, 16), (4, 16)]


@dataclass
class BenchSettings:
    """Settings of ``tnd bench``."""

    quick: bool = False
    """a tiny run (smoke test): B in {1,4}, N=16, T=16"""
    large: bool = False
    """add the large-graph rows (N=65,536, sparse)"""
    out: str | None = setting(None, kind="file", example="--out bench.md")
    """also write the Markdown table here"""
    threads: int = setting(2, low=1, high=1024)
    """torch threads"""
    steps: int | None = setting(None, low=1, high=100_000, example="--steps 256")
    """sequence length T (default: 256; with --quick 16)"""
    repeats: int | None = setting(None, low=1, high=10_000, example="--repeats 5")
    """timed repeats per cell (default: 5; with --quick 2)"""
    models: tuple[str, ...] | None = setting(None, metavar="NAME", example="--models lstm tnd")
    """the models whose name contains one of these words (case-insensitive; default: all)"""
    json: str | None = setting(None, kind="file", example="--json bench.json")
    """also write the raw numbers as JSON"""
    cpu_time: bool = False
    """time with the process's CPU time instead of wall time (with --threads 1: a proxy for an idle
    machine's wall time when the machine is shared)"""
    device: str = setting("cpu", choices=("cpu", "cuda"))
    """where the main tables' models run; cuda: the GPU, wall time after synchronising (the
    single-step, warm-up and large-graph rows are CPU-only and skipped)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, BenchSettings)


# ------------------------------------------------------------------------------ models
class _Seq(nn.Module):
    """Wraps a (B, T, C) -> (y, h) module so every model has the same call."""

    def __init__(self, core: nn.Module, readout: nn.Module | None = None):
        super().__init__()
        self.core, self.readout = core, readout

    def forward(self, x):
        y = self.core(x)[0]
        return self.readout(y) if self.readout is not None else y


class _Transformer(nn.Module):
    def __init__(self, d_model: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        self.inp = nn.Linear(C_IN, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, 2 * d_model, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(d_model, C_OUT)

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], device=x.device)
        return self.out(self.enc(self.inp(x), mask=mask, is_causal=True))


def _tnd(n: int, seed: int = 0, **kw):
    from tnd.graph import NeuronGraph
    from tnd.model import TND

    g = NeuronGraph.random(n, 0.25, seed=seed, num_inputs=max(1, n // 4), num_outputs=max(1, n // 4))
    kw.setdefault("dynamics", "leaky")  # the rows' names say their F; the library default may change
    return TND(C_IN, g, C_OUT, **kw)


def _ncps(kind: str, wiring: str, n: int):
    from ncps.torch import LTC, CfC
    from ncps.wirings import AutoNCP, FullyConnected

    w = FullyConnected(n) if wiring == "fc" else AutoNCP(n, C_OUT)
    return _Seq(CfC(C_IN, w, batch_first=True)) if kind == "cfc" else _Seq(LTC(C_IN, w, batch_first=True))


MODELS = {
    "TND (leaky, linear; fast path)": lambda n: _Seq(_tnd(n)),
    "TND (gated; fast path)": lambda n: _Seq(_tnd(n, dynamics="gated")),
    "TND (gated, d=2; fast path)": lambda n: _Seq(_tnd(n, dynamics="gated", state_size=2)),
    "TND (MLP F; fast path)": lambda n: _Seq(_tnd(n, dynamics="mlp")),
    "TND (attention I; fast path)": lambda n: _Seq(_tnd(n, interaction="attention")),
    "nn.RNN": lambda n: _Seq(nn.RNN(C_IN, n, batch_first=True), nn.Linear(n, C_OUT)),
    "nn.LSTM": lambda n: _Seq(nn.LSTM(C_IN, n, batch_first=True), nn.Linear(n, C_OUT)),
    "ncps CfC (fully connected)": lambda n: _ncps("cfc", "fc", n),
    "ncps CfC (AutoNCP)": lambda n: _ncps("cfc", "ncp", n),
    "ncps LTC (fully connected)": lambda n: _ncps("ltc", "fc", n),
    "ncps LTC (AutoNCP)": lambda n: _ncps("ltc", "ncp", n),
    "Transformer (causal, d64, 2 layers)": lambda n: _Transformer(),
}
SLOW = ("ncps LTC",)


def _median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = CLOCK()
        fn()
        ts.append(CLOCK() - t0)
    return statistics.median(ts)


def _saved_bytes(model, x) -> int:
    """Bytes of the tensors autograd saves for backward in one forward call (unique storages)."""
    seen: dict[int, int] = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        except Exception:  # pragma: no cover - exotic tensors
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values())


def _skip_reason(name: str, b: int, n: int, steps: int, quick: bool) -> str | None:
    if quick:
        return None
    if name.startswith("ncps LTC") and b * n * steps > 64 * 64 * 256:
        return "skipped (minutes per call)"
    return None


def measure(names, shapes, steps, repeats, log=print, device: str = "cpu") -> dict:
    """Per shape: build every model, warm each up, then time them in interleaved rounds (model 1,
    model 2, ..., model 1, ...) so that a change of machine load hits all of them alike; medians.
    ``device="cuda"``: models and inputs on the GPU, each call ends with a synchronise."""
    res: dict = {}
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for b, n in shapes:
        key = f"{b},{n}"
        torch.manual_seed(0)
        x = torch.randn(b, steps, C_IN).to(dev)
        cases = []
        for name in names:
            skip = _skip_reason(name, b, n, steps, steps <= 32)
            if skip:
                res.setdefault(name, {})[key] = {"skip": skip}
                continue
            model = MODELS[name](n).to(dev)
            slow = name.startswith(SLOW) and steps > 32  # per-step cost does not depend on T
            xx = x[:, :32] if slow else x

            def train(model=model, xx=xx):
                model.zero_grad(set_to_none=True)
                model(xx).sum().backward()
                sync()

            def infer(model=model, xx=xx):
                with torch.no_grad():
                    model(xx)
                sync()

            t0 = time.perf_counter()
            train()
            first = time.perf_counter() - t0
            infer()
            cases.append(dict(name=name, train=train, infer=infer, T=xx.shape[1], reps=max(1, repeats // 2) if slow else repeats,
                              first=first, saved=_saved_bytes(model, xx), tr=[], inf=[]))
        for rnd in range(repeats):
            for c in cases:
                if rnd >= c["reps"]:
                    continue
                for fn, bucket in ((c["train"], c["tr"]), (c["infer"], c["inf"])):
                    t0 = CLOCK()
                    fn()
                    bucket.append(CLOCK() - t0)
        for c in cases:
            tr, inf = statistics.median(c["tr"]) / c["T"] * 1e6, statistics.median(c["inf"]) / c["T"] * 1e6
            res.setdefault(c["name"], {})[key] = {"train_us": tr, "infer_us": inf, "first_call_s": c["first"],
                                                  "saved_mb": c["saved"] / 2**20, "T": c["T"]}
            log(f"  B={b:<3d} N={n:<4d} {c['name']:<38s} train {tr:9.1f} us/step  no-grad {inf:9.1f} us/step  "
                f"saved {c['saved'] / 2**20:7.1f} MB  (load {os.getloadavg()[0]:.2f})")
    return res


def single_step(n: int = 64, repeats: int = 200) -> dict:
    """B = 1, one step per call, state carried (a control loop), no grad: ``TND.step`` (the
    control-loop API, one C call per step) and ``TND.forward`` on a one-step sequence."""
    out: dict = {"N": n}
    torch.manual_seed(0)
    x = torch.randn(1, 1, C_IN)
    x1 = x[:, 0].contiguous()
    model = _tnd(n)
    h = h1 = None
    with torch.no_grad():
        def tnd_forward():
            nonlocal h
            _, h = model(x, h)

        def tnd_step():
            nonlocal h1
            _, h1 = model.step(x1, h1)

        # interleaved rounds of 10 calls each, so that a change of machine load hits both alike
        t_fwd, t_step = [], []
        for _ in range(10):
            tnd_forward()
            tnd_step()
        for _ in range(max(1, repeats // 10)):
            for fn, bucket in ((tnd_forward, t_fwd), (tnd_step, t_step)):
                t0 = CLOCK()
                for _ in range(10):
                    fn()
                bucket.append((CLOCK() - t0) / 10)
        out["TND (leaky, linear; TND.step)"] = statistics.median(t_step) * 1e6
        out["TND (leaky, linear; forward on a 1-step sequence)"] = statistics.median(t_fwd) * 1e6
        gated, hg = _tnd(n, dynamics="gated"), None

        def gated_step():
            nonlocal hg
            _, hg = gated.step(x1, hg)

        out["TND (gated, the default F; TND.step)"] = _median_time(gated_step, repeats, warmup=10) * 1e6
        lstm = nn.LSTM(C_IN, n, batch_first=True)
        hc = None

        def lstm_step():
            nonlocal hc
            _, hc = lstm(x, hc)

        out["nn.LSTM"] = _median_time(lstm_step, repeats, warmup=10) * 1e6
    return out


# ------------------------------------------------------------------------ large graphs
_LARGE_CHILD = r"""
import json, resource, sys, time, torch
torch.set_num_threads({threads})
from tnd.graph import NeuronGraph
from tnd.model import TND
n, deg, b, steps = {n}, {deg}, {b}, {steps}
g = torch.Generator().manual_seed(0)
src = torch.randint(0, n, (n * deg,), generator=g)
tgt = torch.arange(n).repeat_interleave(deg)
key = torch.unique(tgt * n + src)
graph = NeuronGraph(n, torch.stack([key % n, key // n]), range(n // 64), range(n - n // 64, n), allow_unreachable=True)
model = TND(8, graph, 4, impl="sparse", dynamics="leaky")  # the documented rows' F
x = torch.randn(b, steps, 8)
small = x[:, :2]
model(small)[0].sum().backward()  # compile / load the kernel, allocator warm-up on a short sequence

def status_kb(key):  # VmRSS / VmHWM of this process (ru_maxrss would include the parent's peak on Linux)
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith(key + ":"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
except OSError:
    pass
base = status_kb("VmRSS")
t0 = {clock}(); model(x)[0].sum().backward(); first = {clock}() - t0
peak = status_kb("VmHWM")
ts = []
for _ in range({repeats}):
    model.zero_grad(set_to_none=True)
    t0 = {clock}(); model(x)[0].sum().backward(); ts.append({clock}() - t0)
ts.sort()
print(json.dumps(dict(edges=graph.num_edges, time_s=ts[len(ts) // 2], first_s=first, peak_mb=(peak - base) / 1024,
                      process_peak_mb=peak / 1024)))
"""


def large_graph(threads: int, repeats: int = 3, n: int = 65536, b: int = 8, steps: int = 64, log=print) -> dict:
    out = {}
    for deg in (16, 32):
        clock = "time.process_time" if CLOCK is time.process_time else "time.perf_counter"
        code = _LARGE_CHILD.format(threads=threads, n=n, deg=deg, b=b, steps=steps, repeats=repeats, clock=clock)
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
        if res.returncode != 0:
            raise RuntimeError(f"large-graph child failed:\n{res.stderr[-3000:]}")
        out[deg] = json.loads(res.stdout.strip().splitlines()[-1])
        log(f"  large graph, in-degree {deg}: {out[deg]}")
    return out


def warmup_time() -> dict:
    """First call in a fresh process with an empty kernel cache (includes the compile), and with
    the cache filled (a later process)."""
    import tempfile

    code = ("import time, torch; t0 = time.perf_counter(); from tnd.apps.bench import _tnd; m = _tnd(64); "
            "m(torch.randn(4, 16, 8))[0].sum().backward(); print(time.perf_counter() - t0)")
    out = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, TND_CACHE_DIR=d)
        for label in ("cold (compile)", "cached"):
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
            out[label] = float(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else float("nan")
    return out


# ----------------------------------------------------------------------------- tables
def _fmt(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def tables(res: dict, shapes, steps: int, single: dict | None, large: dict | None, warm: dict | None,
           header: str) -> str:
    cols = [f"B={b}, N={n}" for b, n in shapes]
    lines = [header, ""]
    for metric, title in (("train_us", f"Training (forward + backward), microseconds per step, T = {steps}"),
                          ("infer_us", f"Inference (no grad), microseconds per step, T = {steps}")):
        lines += [f"### {title}", "", "| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for name, per in res.items():
            cells = []
            for b, n in shapes:
                r = per.get(f"{b},{n}", {})
                if "skip" in r or metric not in r:
                    cells.append(r.get("skip", "-"))
                    continue
                ref = res.get("nn.LSTM", {}).get(f"{b},{n}", {}).get(metric)
                cell = _fmt(r[metric]) + (f" ({r[metric] / ref:.2f}x)" if ref else "")
                if r.get("T", steps) != steps:
                    cell += f" [T={r['T']}]"
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### Memory saved for backward (MB, one training call)", "", "| model | " + " | ".join(cols) + " |",
              "|---|" + "---|" * len(cols)]
    for name, per in res.items():
        cells = [f"{per[f'{b},{n}']['saved_mb']:.1f}" if "saved_mb" in per.get(f"{b},{n}", {}) else "-"
                 for b, n in shapes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    if single:
        n1 = single.pop("N", 64)
        lines += [f"### Single step (B = 1, T = 1, N = {n1}, state carried, no grad), microseconds per call", "",
                  "| model | us per call |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in single.items()]
        lines.append("")
    if warm:
        lines += ["### Warm-up (first training call of a new process, N = 64)", "", "| kernel cache | seconds |",
                  "|---|---|"] + [f"| {k} | {v:.2f} |" for k, v in warm.items()] + [""]
    if large:
        lines += ["### Large graph (N = 65,536, B = 8, T = 64, sparse, forward + backward)", "",
                  "| mean in-degree | edges | seconds per call | us per step | peak RSS above baseline (MB) "
                  "| peak RSS of the process (MB) |",
                  "|---|---|---|---|---|---|"]
        for deg, r in large.items():
            lines.append(f"| {deg} | {r['edges']:,} | {r['time_s']:.2f} | {r['time_s'] / 64 * 1e6:.0f} | "
                         f"{r['peak_mb']:.0f} | {r.get('process_peak_mb', float('nan')):.0f} |")
        if 16 in large and 32 in large:
            lines.append("")
            lines.append(f"Doubling the edges costs {large[32]['time_s'] / large[16]['time_s']:.2f}x the time.")
        lines.append("")
    return "\n".join(lines)


def machine_line(threads: int, cpu_time: bool = False, device: str = "cpu") -> str:
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.processor())
    except OSError:
        cpu = platform.processor()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    from tnd import fast

    gpu = f"GPU {torch.cuda.get_device_name()}, models on the GPU; " if device == "cuda" else ""
    return (f"Machine: {cpu}, {os.cpu_count()} cores, {gpu}torch {torch.__version__}, {threads} threads, "
            f"C kernel {'on' if fast.c_available() else 'off'}; "
            f"{'CPU time of the process' if cpu_time else 'wall time'}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
            f"at the end of the run; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")


def run(args: argparse.Namespace) -> int:
    global CLOCK
    cfg = from_args(BenchSettings, args)
    names = list(MODELS)
    if cfg.models is not None:
        wanted = list(cfg.models)
        unknown = [w for w in wanted if not any(w.lower() in m.lower() for m in names)]
        if unknown:
            raise UsageError(f"--models: no model matches {' '.join(unknown)!r}; models: {', '.join(names)}")
        names = [m for m in names if any(w.lower() in m.lower() for w in wanted)]
        if "nn.LSTM" not in names:
            names.append("nn.LSTM")
    torch.set_num_threads(cfg.threads)
    CLOCK = time.process_time if cfg.cpu_time else time.perf_counter
    quick = cfg.quick
    shapes = QUICK_SHAPES if quick else FULL_SHAPES
    steps = cfg.steps or (16 if quick else 256)
    repeats = cfg.repeats or (2 if quick else 5)
    if quick:
        names = [m for m in names if not m.startswith("TND (") or "fast" in m] if cfg.models is None else names
    from tnd import fast

    gpu = cfg.device == "cuda"
    if gpu and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device on this machine")
    if gpu and cfg.cpu_time:
        raise UsageError("--cpu-time times the CPU; with --device cuda the wall time is what counts")
    fast.c_available()  # compile / load the kernel before timing
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))
    res = measure(names, shapes, steps, repeats, log=log, device=cfg.device)
    single = None if gpu else single_step(16 if quick else 64, 20 if quick else 300)
    warm = None if quick or gpu else warmup_time()
    large = large_graph(cfg.threads, log=log) if cfg.large and not gpu else None
    text = tables(res, shapes, steps, single, large, warm, machine_line(cfg.threads, cfg.cpu_time, cfg.device))
    print(text)
    from tnd.io import atomic_write_text

    if cfg.out:
        atomic_write_text(cfg.out, text + "\n")
    if cfg.json:
        atomic_write_text(cfg.json, json.dumps({"results": res, "single": single, "large": large, "warmup": warm},
                                               indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="bench_speed", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except UsageError as e:
        print(f"bench_speed: error: {e}", file=sys.stderr)
        return 2
