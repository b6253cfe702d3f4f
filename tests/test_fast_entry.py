"""The entries into the fused C kernel take any input without crashing the process.

A wrong pointer or a zero-size batch used to kill the interpreter (SIGFPE at B = 0, SIGSEGV for a
'meta' tensor in ``TND.step``); these tests run such inputs in a subprocess, so a crash shows up as
a failed test (a negative return code: killed by a signal) instead of taking pytest down with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tnd.fast as fast
from tnd import TND
from tnd.fast import _util, abi, cbuild
from tnd.fast.loop import LoopSpec, LeakyArgs
from tnd.graph import NeuronGraph

SRC = str(Path(__file__).resolve().parents[1] / "src")
needs_c = pytest.mark.skipif(not fast.c_available(), reason="no C compiler")


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)


# ------------------------------------------------------------- one worker process
RUNNER = """
import json, sys, torch
from tnd import TND, NeuronGraph
g = NeuronGraph.small_world(16, k=4, rewire_prob=0.1, seed=0, num_inputs=4, num_outputs=4)  # issue 17's graph
models = {}
def model(family, inter, dtype, seq):
    key = (family, inter, dtype, seq)
    if key not in models:
        torch.manual_seed(0)
        models[key] = TND(3, g, 2, return_sequences=seq, dynamics=family, interaction=inter).to(dtype)
    return models[key]
DT = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "int64": torch.int64}
def tensor(shape, dtype, device):
    return torch.randn(shape).to(dtype) if device == "cpu" else torch.empty(shape, dtype=dtype, device=device)
def run(c):
    M = model(c["family"], c["inter"], torch.float64 if c["dtype"] == "float64" else torch.float32, c["seq"])
    dtype = DT[c["dtype"]]
    fwd = c["entry"] == "forward"
    B, T = c["B"], c["T"]
    dev = {k: c["device"] if c["on"] == k else "cpu" for k in ("x", "h", "dt")}
    x = tensor((B, T, 3) if fwd else (B, 3), dtype, dev["x"])
    h = (tensor((B, 16), dtype, dev["h"]) * 0.5).clamp(-1, 1) if c["with_h"] else None  # inside the state bound
    dt = tensor((B, T) if fwd else (B,), dtype, dev["dt"]).abs() + 0.5 if c["with_dt"] else None
    out = {"id": c["id"]}
    try:
        with torch.set_grad_enabled(c["grad"]):
            M.use_fast_path = True
            if fwd:
                xr = x.clone().requires_grad_(c["grad"] and x.is_floating_point())
                y, hn = M(xr, h, dt)
            else:
                y, hn = M.step(x, h, dt)
            M.use_fast_path = False
            y_ref, h_ref = M(x, h, dt) if fwd else M.step(x, h, dt)
        tol = 1e-9 if dtype == torch.float64 else 2e-5
        out["ok"] = True
        out["shapes"] = [list(y.shape), list(hn.shape), list(y_ref.shape), list(h_ref.shape)]
        out["close"] = bool(torch.allclose(y, y_ref, rtol=tol, atol=tol) and torch.allclose(hn, h_ref, rtol=tol, atol=tol))
        if fwd and c["grad"]:
            (y.square().sum() + hn.sum()).backward()
            out["grad_shape"] = list(xr.grad.shape) if xr.grad is not None else None
    except Exception as e:
        out["ok"] = False
        out["error"] = type(e).__name__
        out["message"] = str(e)[:300]
    return out
while True:
    line = sys.stdin.readline()
    if not line:
        break
    if line.strip() == "END":
        print("END", flush=True)
        continue
    print(json.dumps(run(json.loads(line))), flush=True)
"""


class Worker:
    """One subprocess running cases (JSON lines) until told to stop; restarted if it died."""

    def __init__(self) -> None:
        self.proc = None

    def run(self, cases: list) -> tuple[list, int | None]:
        """``(results, None)``, or ``(results so far, return code)`` where the process ended."""
        if self.proc is None or self.proc.poll() is not None:
            env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
            self.proc = subprocess.Popen([sys.executable, "-c", RUNNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, env=env)
        p = self.proc
        try:
            p.stdin.write("".join(json.dumps(dict(c, id=i)) + "\n" for i, c in enumerate(cases)) + "END\n")
            p.stdin.flush()
        except BrokenPipeError:
            return [], p.wait(timeout=60)
        results = []
        while True:
            line = p.stdout.readline()
            if not line:
                return results, p.wait(timeout=60)
            if line.strip() == "END":
                return results, None
            results.append(json.loads(line))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


def on_meta(c: dict) -> bool:
    """Whether the case hands a 'meta' tensor over (x, or h / dt where it passes them)."""
    on = c["on"]
    return c["device"] == "meta" and (on == "x" or (on == "h" and c["with_h"]) or (on == "dt" and c["with_dt"]))


def expected_failure(c: dict) -> tuple | None:
    """The errors a case must raise (a tuple of exception names), or None where it must run."""
    if on_meta(c):
        return ("ValueError", "TypeError")  # naming the argument and the device
    if c["dtype"] not in ("float32", "float64"):
        return ("TypeError",)
    if c["entry"] == "forward" and c["T"] == 0:
        return ("ValueError",)
    return None


def check_results(cases: list, results: list, code) -> None:
    assert code is None or code >= 0, f"the process was killed by signal {-code} (case {len(results)}: {cases[len(results)]})"
    assert code is None, f"the process exited ({code}) at case {len(results)}"
    assert [r["id"] for r in results] == list(range(len(cases)))
    for c, r in zip(cases, results):
        fail = expected_failure(c)
        if fail is None:
            assert r["ok"], (c, r)
            y, h, y_ref, h_ref = r["shapes"]
            assert y == y_ref and h == h_ref, (c, r)
            assert y[0] == c["B"] and h[0] == c["B"], (c, r)
            assert r["close"], (c, r)
            if c["entry"] == "forward" and c["grad"]:
                assert r["grad_shape"] == [c["B"], c["T"], 3], (c, r)
        else:
            assert not r["ok"] and r["error"] in fail, (c, r)
            if on_meta(c) and c["entry"] == "step":
                assert "meta" in r["message"] and c["on"] in r["message"], (c, r)


BASE = dict(entry="forward", family="leaky", inter="linear", dtype="float32", device="cpu", on="x", B=0, T=5,
            seq=True, grad=True, with_h=False, with_dt=False)


def test_issue_cases_run_or_raise(worker):
    """Issue 17: B = 0 (SIGFPE, leaky and gated, with and without grad) and 'meta' tensors handed
    to TND.step (SIGSEGV) now run like the reference or raise an error naming the argument."""
    cases = [dict(BASE, family=f, grad=gr) for f in ("leaky", "gated") for gr in (True, False)]
    cases += [dict(BASE, entry="step", B=2, grad=False, device="meta", on=on, with_h=True, with_dt=True)
              for on in ("x", "h", "dt")]
    results, code = worker.run(cases)
    check_results(cases, results, code)
    assert [r["error"] for r in results[4:]] == ["ValueError"] * 3


case = st.fixed_dictionaries({
    "entry": st.sampled_from(["forward", "step"]),
    "family": st.sampled_from(["leaky", "gated", "mlp"]),
    "inter": st.sampled_from(["linear", "attention"]),
    "dtype": st.sampled_from(["float32", "float64", "float32", "float64", "float16", "int64"]),
    "device": st.sampled_from(["cpu", "cpu", "cpu", "meta"]),
    "on": st.sampled_from(["x", "h", "dt"]),
    "B": st.integers(0, 5),
    "T": st.integers(0, 4),
    "seq": st.booleans(),
    "grad": st.booleans(),
    "with_h": st.booleans(),
    "with_dt": st.booleans(),
})


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(case, min_size=5, max_size=15))
def test_random_entries_never_crash(worker, cases):
    results, code = worker.run(cases)
    check_results(cases, results, code)


# ------------------------------------------------------ the one check, the ABI
def test_tensor_check_names_argument_device_dtype_shape():
    good = torch.zeros(2, 3)
    assert _util.tensor_problem("P", good, torch.float32, (2, 3)) is None
    cases = [(torch.zeros(2, 3, device="meta"), ValueError, "meta"), (torch.zeros(2, 3).double(), TypeError, "float64"),
             (torch.zeros(3, 2), ValueError, "(2, 3)"), (torch.zeros(3, 2).t(), ValueError, "contiguous"),
             ([0.0] * 6, TypeError, "Tensor")]
    for t, err, words in cases:
        with pytest.raises(err, match="P") as info:
            _util.check_tensor("P", t, torch.float32, (2, 3))
        assert words in str(info.value)


def _leaky_spec(n: int = 4) -> LoopSpec:
    return LoopSpec(backend="c", sparse=False, act=0, seq_out=True, in_idx=torch.tensor([0]), out_idx=torch.tensor([n - 1]),
                    rowptr=torch.zeros(n + 1, dtype=torch.long), src32=torch.zeros(0, dtype=torch.int32))


@needs_c
def test_kernel_entries_reject_what_the_kernel_cannot_take():
    from tnd.fast.loop import forward_loop

    n, T, B = 4, 3, 2
    spec = _leaky_spec(n)
    P, s0, W = torch.randn(T, B, 1), torch.zeros(B, n), torch.zeros(n, n)
    r, bias = torch.ones(n), torch.zeros(n)
    outs, s_last, _, _ = forward_loop(spec, P, s0, W, r, bias, None, save=False)
    assert outs.shape == (T, B, 1) and s_last.shape == (B, n)
    bad = {"s0": (torch.zeros(B, n, device="meta"), ValueError), "W": (torch.zeros(n, n + 1), ValueError),
           "r": (torch.ones(n).double(), TypeError), "bias": (torch.zeros(2 * n)[::2], ValueError)}
    for name, (t, err) in bad.items():
        args = dict(P=P, s0=s0, W=W, r=r, bias=bias)
        args[name] = t
        with pytest.raises(err, match=name):
            forward_loop(spec, *args.values(), None, save=False)
    with pytest.raises(ValueError, match="dt"):
        forward_loop(spec, P, s0, W, r, bias, torch.ones(T + 1, B), save=False)
    with pytest.raises(ValueError, match="time step"):
        forward_loop(spec, P[:0], s0, W, r, bias, None, save=False)
    outs, s_last, _, _ = forward_loop(spec, P[:, :0], s0[:0], W, r, bias, None, save=False)  # B = 0
    assert outs.shape == (T, 0, 1) and s_last.shape == (0, n)


def test_struct_layouts_are_checked():
    assert LeakyArgs.layout.split()[0] == "i:T_" and LeakyArgs.kinds["P"] == "f"
    with pytest.raises(ValueError, match="kind"):
        abi.struct("bogus_family", "i:T_ q:P")
    abi.STRUCTS.pop("bogus_family", None)


@needs_c
def test_library_abi_matches_and_a_mismatch_is_refused(monkeypatch):
    lib = cbuild.load()
    assert abi.check_library(lib) is None
    assert set(abi.STRUCTS) >= {"leaky", "gated", "mlp", "attn"}
    monkeypatch.setattr(abi, "ABI_VERSION", abi.ABI_VERSION + 1)
    assert "ABI version" in abi.check_library(lib)
    monkeypatch.undo()
    Reordered = type("Reordered", (), {"layout": " ".join(reversed(LeakyArgs.layout.split()))})
    monkeypatch.setitem(abi.STRUCTS, "leaky", Reordered)
    assert "leaky" in abi.check_library(lib)


@needs_c
def test_stale_library_falls_back_to_torch(tmp_path):
    """A library whose ABI differs (here: one reporting another version) is refused at load."""
    cxx = cbuild._compiler()
    so = tmp_path / "stale.so"
    src = tmp_path / "stale.cpp"
    src.write_text('extern "C" int tnd_abi_version(void) { return 1; }\n')
    assert subprocess.run([cxx, "-shared", "-fPIC", str(src), "-o", str(so)]).returncode == 0
    code = f"""
from pathlib import Path
from tnd.fast import cbuild
cbuild.build = lambda verbose=False: Path({str(so)!r})
import tnd.fast as fast
from tnd import TND, NeuronGraph
import torch
assert not fast.c_available() and "ABI version" in cbuild.last_error, cbuild.last_error
m = TND(3, NeuronGraph.small_world(8, k=2, rewire_prob=0.1, seed=0, num_inputs=2, num_outputs=2), 2)
y, h = m(torch.randn(2, 4, 3))
print("torch", tuple(y.shape))
"""
    res = run_python(code)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "torch (2, 4, 2)"


def test_one_key_per_family():
    from tnd.fast import families

    for key, fam in families.FAMILIES.items():
        assert key == (fam.interaction, fam.dynamics)
    m = TND(3, NeuronGraph.small_world(8, k=2, rewire_prob=0.1, seed=0, num_inputs=2, num_outputs=2), 2, dynamics="gated")
    assert fast.family(m).name == "gated"
    m.cell.solver = "rk4"
    assert fast.family(m) is None


def test_a_first_call_in_inference_mode_leaves_training_working():
    """The fused path's index cache built under torch.inference_mode (a control loop before any
    training, e.g. a resumed DAgger iteration's rollouts) must not hold inference tensors."""
    import torch

    from tnd import TND, NeuronGraph

    torch.manual_seed(0)
    m = TND(3, NeuronGraph.small_world(16, k=4, rewire_prob=0.1, seed=0), 2)
    with torch.inference_mode():
        m(torch.rand(2, 5, 3))
        m.step(torch.rand(2, 3))
    y, _ = m(torch.rand(2, 5, 3))
    y.sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
