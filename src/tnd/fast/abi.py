"""The C ABI of the fused kernels: every entry point takes one struct, mirrored here.

A family's struct is a list of 64-bit fields ``"kind:name"`` with kind ``i`` (integer),
``d`` (double), ``f`` (pointer to the float type), ``l`` (pointer to int64) or ``n``
(pointer to int32), the same list as the family's ``TND_<FAMILY>_FIELDS`` in ``csrc/``.
:func:`struct` makes the ``ctypes.Structure`` from it; :func:`check_library` compares the
loaded library's ``tnd_abi_version()`` and each ``tnd_layout_<family>()`` with the structs
declared here, so that a stale or mismatched library is refused (the torch loop runs then)
instead of reading its arguments from the wrong places.
"""

from __future__ import annotations

import ctypes

#: must equal TND_ABI_VERSION in csrc/tnd_loop.cpp
ABI_VERSION = 5

_CTYPES = {"i": ctypes.c_int64, "d": ctypes.c_double, "f": ctypes.c_void_p, "l": ctypes.c_void_p,
           "n": ctypes.c_void_p}

#: family -> its struct class, for every struct declared so far
STRUCTS: dict[str, type[ctypes.Structure]] = {}


def struct(family: str, layout: str) -> type[ctypes.Structure]:
    """The ``ctypes.Structure`` of ``family`` from its field list ``"kind:name kind:name ..."``.

    The class has ``family``, ``layout`` (normalised, as the C side spells it) and ``kinds``
    (field name -> kind)."""
    fields = [tuple(f.split(":")) for f in layout.split()]
    bad = [f for f in fields if len(f) != 2 or f[0] not in _CTYPES]
    if bad:
        raise ValueError(f"layout of {family!r}: fields must be 'kind:name' with kind in {sorted(_CTYPES)}, got {bad}")
    cls = type(f"{family.capitalize()}Args", (ctypes.Structure,), {
        "_fields_": [(name, _CTYPES[kind]) for kind, name in fields],
        "family": family,
        "layout": " ".join(f"{k}:{n}" for k, n in fields),
        "kinds": {name: kind for kind, name in fields},
    })
    STRUCTS[family] = cls
    return cls


def library_layout(lib: ctypes.CDLL, family: str) -> str | None:
    """The library's field list of ``family`` (normalised), or None where it has none."""
    fn = getattr(lib, f"tnd_layout_{family}", None)
    if fn is None:
        return None
    fn.restype, fn.argtypes = ctypes.c_char_p, []
    return " ".join(fn().decode().split())


def check_library(lib: ctypes.CDLL, families=None) -> str | None:
    """Why ``lib`` does not match this module's ABI (a message), or None where it does."""
    fn = getattr(lib, "tnd_abi_version", None)
    if fn is None:
        return "the library has no tnd_abi_version()"
    fn.restype, fn.argtypes = ctypes.c_int, []
    version = fn()
    if version != ABI_VERSION:
        return f"the library's ABI version is {version}, this tnd needs {ABI_VERSION}"
    for family in STRUCTS if families is None else families:
        have, want = library_layout(lib, family), STRUCTS[family].layout
        if have != want:
            return f"the library's {family} struct is {have!r}, this tnd's is {want!r}"
    return None


_ENTRIES: dict = {}


def entry(lib: ctypes.CDLL, name: str, args: type[ctypes.Structure], restype=None):
    """The library function ``name`` taking one pointer to an ``args`` struct (its layout checked
    against the library on first use; RuntimeError where they differ)."""
    key = (id(lib), name)
    fn = _ENTRIES.get(key)
    if fn is None:
        problem = check_library(lib, [args.family])
        if problem:
            raise RuntimeError(f"the C kernel does not match tnd.fast ({problem}); delete the cached library "
                               "(tnd.fast.cbuild.cache_dir()) or set TND_NO_CEXT=1")
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, [ctypes.POINTER(args)]
        _ENTRIES[key] = fn
    return fn
