"""Compile-at-first-use of the C++ time loops (``csrc/tnd_loop.cpp``), loaded with ctypes.

The shared library is cached under ``$TND_CACHE_DIR`` (default ``~/.cache/tnd``), keyed by a
hash of the source, the compiler command and the CPU, so one compile (a few seconds: the two
precisions compile in parallel) serves every later process. Without a working compiler (or with ``TND_NO_CEXT=1``) :func:`load` returns None
and the fast path runs its pure-torch loop instead. A library whose ABI (``tnd_abi_version()`` and
the field lists of the argument structs, :mod:`tnd.fast.abi`) does not match this package is
refused at load the same way, with the reason in :data:`last_error`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from . import abi

# one translation unit per precision: tnd_loop.cpp #includes the csrc/*.inc.cpp parts (named .cpp so
# that the package data, fast/csrc/*.cpp, ships them)
SOURCE = Path(__file__).with_name("csrc") / "tnd_loop.cpp"
FLAGS = ["-O3", "-march=native", "-fPIC", "-std=c++17", "-pthread"]
# Preferred: -ffast-math at compile time (lets gcc vectorise tanh/exp through glibc's libmvec),
# linked WITHOUT -ffast-math (which would link crtfastmath.o and flush denormals process-wide).
VARIANTS = [(["-ffast-math"], ["-lmvec", "-lm", "-pthread"]), (["-fno-math-errno"], ["-lm", "-pthread"])]

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
last_error: str | None = None


def cache_dir() -> Path:
    return Path(os.environ.get("TND_CACHE_DIR") or Path.home() / ".cache" / "tnd")


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
        return "".join(lines)
    except OSError:
        return platform.processor()


def _key(cxx: str) -> str:
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    h = hashlib.sha256()
    headers = b"".join(p.read_bytes() for p in sorted(SOURCE.parent.glob("*.inc.cpp")))
    for part in (SOURCE.read_bytes(), headers, " ".join(FLAGS).encode(), repr(VARIANTS).encode(), version.encode(), _cpu_signature().encode(),
                 platform.machine().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:20]


def build(verbose: bool = False) -> Path:
    """Compile (if not cached) and return the shared library's path; raises on failure."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (g++, c++ or clang++)")
    out_dir = cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    lib_path = out_dir / f"tnd_loop_{_key(cxx)}.so"
    if lib_path.exists():
        return lib_path
    errors = []
    with tempfile.TemporaryDirectory(dir=out_dir) as tmpdir:
        objs = [os.path.join(tmpdir, f"tnd_loop_{p}.o") for p in ("f32", "f64")]
        so = os.path.join(tmpdir, "tnd_loop.so")
        for cflags, libs in VARIANTS:
            # the two precisions compile in parallel, one translation unit each
            cmds = [[cxx, *FLAGS, *cflags, f"-DTND_SKIP_{skip}", "-c", str(SOURCE), "-o", obj]
                    for skip, obj in zip(("F64", "F32"), objs)]
            procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
            outs = [p.communicate(timeout=300) for p in procs]
            failed = [(c, o[1]) for c, o, p in zip(cmds, outs, procs) if p.returncode != 0]
            if not failed:
                link = [cxx, "-shared", *objs, "-o", so, *libs]
                res = subprocess.run(link, capture_output=True, text=True, timeout=120)
                if res.returncode != 0:
                    failed = [(link, res.stderr)]
            if failed:
                errors += [f"{' '.join(c)}\n{err[-1000:]}" for c, err in failed]
                continue
            try:  # the library must load (libmvec present at run time too)
                ctypes.CDLL(so)
            except OSError as e:
                errors.append(str(e))
                continue
            os.replace(so, lib_path)  # atomic: concurrent builders never see a half-written file
            return lib_path
    raise RuntimeError("compile failed:\n" + "\n".join(errors))


def load() -> ctypes.CDLL | None:
    """The loaded library, or None where it cannot be built (the torch loop is used then)."""
    global _lib, _tried, last_error
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        if os.environ.get("TND_NO_CEXT", "") not in ("", "0"):
            last_error = "disabled by TND_NO_CEXT"
        else:
            try:
                path = build()
                lib = ctypes.CDLL(str(path))
                problem = abi.check_library(lib)
                if problem:  # a stale or foreign library under our name: never call into it
                    raise RuntimeError(f"{path} does not match this tnd ({problem}); delete it to recompile")
                _lib = lib
            except Exception as e:  # no compiler, read-only cache, ...: fall back silently
                last_error = f"{type(e).__name__}: {e}"
                _lib = None
        _tried = True
    return _lib
