"""What the fused families share (private to :mod:`tnd.fast`): the call spec, the cached index
data of a model, and :func:`call_kernel`, the one road into the C kernel, which checks every
tensor it hands over (device, dtype, contiguity, shape) before the kernel sees a pointer."""

from __future__ import annotations

import ctypes
import weakref
from dataclasses import dataclass
from typing import Callable

import torch

from . import abi, cbuild


@dataclass
class LoopSpec:
    """Everything about one call that is not a differentiable tensor."""

    backend: str  # "c" or "torch"
    sparse: bool
    act: int  # 0 tanh, 1 identity
    seq_out: bool  # outputs at every step (True) or after the last step only
    in_idx: torch.Tensor  # (n_in,) int64 flat input units
    out_idx: torch.Tensor  # (n_out,) int64 flat output units
    rowptr: torch.Tensor | None = None  # sparse: CSR over targets, (M + 1,) int64
    src32: torch.Tensor | None = None  # sparse: (E,) int32 sources in CSR order
    src: torch.Tensor | None = None  # sparse: (E,) int64 sources in CSR order (torch backend)
    tgt: torch.Tensor | None = None  # sparse: (E,) int64 targets in CSR order (torch backend)
    nnz: int = 0  # sparse: number of (flat) edges
    in_range: tuple | None = None  # (start, length) when in_idx is a contiguous range
    out_range: tuple | None = None  # (start, length) when out_idx is a contiguous range
    threads: int = 0  # C kernel worker threads; 0 chooses by size


@dataclass(frozen=True)
class FusedFamily:
    """One fused configuration of a cell, declared once in its own module and registered in
    :mod:`tnd.fast.families` (looked up by the exact types ``(interaction, dynamics)``).

    ``prepare(inter, dyn, idx, n, d, sparse)``: the differentiable per-sequence tensors (weights
    laid out for the kernel, the dynamics' parameters flat); ``sequence(cell, spec, idx, P, s0,
    prepared, dt, grad)``: the fused loop over the input projection ``P`` ``(T, B, n_in * d)``
    from the flat state ``s0`` ``(B, M)``, returning ``(outs (T', B, n_out * d), s_last (B, M))``
    (through its autograd Function where ``grad``); ``act(dyn)``: "tanh" or "identity";
    ``accepts(cell)``: further conditions; ``torch_loop``: whether it also has a pure-torch loop
    (else it runs in the C kernel only, on CPU)."""

    name: str
    interaction: type
    dynamics: type
    prepare: Callable
    sequence: Callable
    act: Callable = lambda dyn: "tanh"
    accepts: Callable = lambda cell: True
    torch_loop: bool = False


def suffix(dtype: torch.dtype) -> str:
    return "f32" if dtype == torch.float32 else "f64"


def threads_for(spec: LoopSpec, steps: int, batch: int, units: int) -> int:
    """Worker threads of the C kernel: each runs whole sequences of a part of the batch, so
    threads pay off only where a call has enough work to cover starting them (about 50 us)."""
    if spec.threads > 0:
        return spec.threads
    per_row = spec.nnz if spec.sparse else units * units
    if steps * batch * per_row < (1 << 22):
        return 1
    return max(1, min(torch.get_num_threads(), batch if spec.sparse else max(1, batch // 4)))


def take(x: torch.Tensor, dim: int, idx: torch.Tensor, rng: tuple | None) -> torch.Tensor:
    """``x.index_select(dim, idx)``, a cheap slice where the indices are a contiguous range."""
    return x.narrow(dim, rng[0], rng[1]) if rng is not None else x.index_select(dim, idx)


def incoming_grads(spec: LoopSpec, S: torch.Tensor, g_outs, g_last):
    """``(T, B, M, g_outs, g_last)`` of a backward over saved states ``S`` ``(T+1, B, M)``: a
    missing output gradient becomes zeros, both made contiguous for the kernels."""
    T1, B, M = S.shape
    if g_outs is None:
        g_outs = S.new_zeros(T1 - 1 if spec.seq_out else 1, B, spec.out_idx.numel())
    return T1 - 1, B, M, g_outs.contiguous(), None if g_last is None else g_last.contiguous()


# ------------------------------------------------------------------------- the C road
_DTYPES = {"l": torch.int64, "n": torch.int32}


def tensor_problem(name: str, t, dtype: torch.dtype, shape: tuple):
    """Why ``t`` cannot go to the C kernel as ``name`` (``(exception type, message)``), or None:
    it must be a CPU tensor of ``dtype`` and ``shape``, contiguous (the kernel reads raw memory)."""
    if isinstance(t, torch.Tensor) and t.is_cpu and t.dtype == dtype and t.shape == shape and t.is_contiguous():
        return None  # the common case in one cheap test (about 0.4 us); the details only on failure
    if not isinstance(t, torch.Tensor):
        return TypeError, f"{name} must be a torch.Tensor, got {type(t).__name__}"
    if t.device.type != "cpu":
        return ValueError, f"{name} must be on the CPU for the C kernel, got a tensor on device {t.device}"
    if t.dtype != dtype:
        return TypeError, f"{name} must have dtype {dtype} for the C kernel, got {t.dtype}"
    if t.shape != shape:
        return ValueError, f"{name} must have shape {tuple(shape)} for the C kernel, got {tuple(t.shape)}"
    if not t.is_contiguous():
        return ValueError, f"{name} must be contiguous for the C kernel"
    return None


def check_tensor(name: str, t, dtype: torch.dtype, shape: tuple) -> None:
    """Raise the error of :func:`tensor_problem`, if any."""
    problem = tensor_problem(name, t, dtype, shape)
    if problem is not None:
        raise problem[0](problem[1])


def library():
    """The loaded C kernel; RuntimeError where there is none."""
    lib = cbuild.load()
    if lib is None:
        raise RuntimeError(f"the C kernel is not available ({cbuild.last_error})")
    return lib


def graph_fields(spec: LoopSpec, M: int, W: torch.Tensor | None, WT: torch.Tensor | None = None,
                 field: str = "w") -> dict:
    """The coupling's pointer fields of a call: dense ``W`` (forward) or ``WT`` (backward) ``(M, M)``,
    or, sparse, the CSR (``rowptr``, ``src``) and the CSR-ordered weights ``W`` as ``field``."""
    E = spec.src32.numel() if spec.src32 is not None else 0
    out = {"rowptr": (spec.rowptr, (M + 1,)), "src": (spec.src32, (E,))}
    if spec.sparse:
        if spec.rowptr is None or spec.src32 is None or W is None:
            raise ValueError("a sparse fused call needs the CSR (spec.rowptr, spec.src32) and the edge weights")
        out[field] = (W, (E,))
    elif WT is not None:
        out["WT"] = (WT, (M, M))
    else:
        if W is None:
            raise ValueError("a dense fused call needs the (M, M) weight matrix")
        out["W"] = (W, (M, M))
    return out


def call_kernel(args: type[ctypes.Structure], name: str, dtype: torch.dtype, sizes: dict, tensors: dict) -> None:
    """Call the C entry ``name`` (``tnd_<family>_<direction>``, the dtype's suffix appended) with
    one ``args`` struct: ``sizes`` its integer and double fields, ``tensors`` ``{field: (tensor or
    None, shape)}`` its pointers, each checked by :func:`check_tensor` (float fields have
    ``dtype``, index fields int64 or int32). Unset fields are 0 / NULL."""
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"the C kernel takes float32 or float64 tensors, got {dtype}")
    if sizes.get("T_", 1) < 1:
        raise ValueError(f"the fused kernels need at least one time step, got T = {sizes['T_']}")
    fn = abi.entry(library(), f"{name}_{suffix(dtype)}", args)
    plan_key = (args, tuple(sizes), tuple(tensors))
    plan = _PLANS.get(plan_key)
    if plan is None:  # the field names are checked once per call shape, not per call
        kinds = args.kinds
        for k in sizes:
            if kinds.get(k) not in ("i", "d"):
                raise KeyError(f"{args.family} has no integer or double field {k!r}")
        for k in tensors:
            if kinds.get(k) not in ("f", "l", "n"):
                raise KeyError(f"{args.family} has no pointer field {k!r}")
        plan = _PLANS[plan_key] = {k: _DTYPES.get(kinds[k]) for k in tensors}  # None: the call's dtype
    ptrs = {}
    for k, (t, shape) in tensors.items():
        if t is not None:
            check_tensor(k, t, plan[k] or dtype, shape)
            ptrs[k] = t.data_ptr()
    fn(ctypes.byref(args(**sizes, **ptrs)))


#: (struct, size fields, tensor fields) -> each tensor field's index dtype (None: float), checked
_PLANS: dict = {}


# --------------------------------------------------------------------- index data
_cache: weakref.WeakKeyDictionary[torch.nn.Module, dict] = weakref.WeakKeyDictionary()


def index_data(model, d: int, device: torch.device) -> dict:
    """Flat unit indices and the CSR of the flat edge list, cached per model and device (the
    dict also keeps the model's prepared no-grad parameters and loop specs)."""
    inter = model.cell.interaction
    key = (d, str(device), inter.src.data_ptr(), inter.src._version, inter.tgt._version)
    per_model = _cache.setdefault(model, {})
    if per_model.get("key") == key:
        return per_model
    # built outside inference mode even when first asked for inside it (a control loop before
    # any training): inference tensors in the cache would break every later training call
    with torch.inference_mode(False):
        return _build_index_data(model, d, device, key, per_model)


def _build_index_data(model, d: int, device: torch.device, key: tuple, per_model: dict) -> dict:
    inter = model.cell.interaction
    n = model.num_neurons
    m = n * d
    ar = torch.arange(d, device=device)
    src = (inter.src[:, None] * d + ar).reshape(-1)
    tgt = (inter.tgt[:, None] * d + ar).reshape(-1)
    order = torch.argsort(tgt * m + src)
    src_o, tgt_o = src[order], tgt[order]
    rowptr = torch.zeros(m + 1, dtype=torch.long, device=device)
    rowptr[1:] = torch.cumsum(torch.bincount(tgt_o, minlength=m), 0)
    in_pos = torch.full((n,), -1, dtype=torch.long, device=device)  # neuron -> its input slot, or -1
    in_pos[model.cell.input_neurons] = torch.arange(model.cell.input_neurons.numel(), device=device)
    per_model.clear()
    per_model.update(
        key=key,
        in_idx=(model.cell.input_neurons[:, None] * d + ar).reshape(-1).contiguous(),
        out_idx=(model.output_neurons[:, None] * d + ar).reshape(-1).contiguous(),
        in_pos=in_pos,
        dense_index=(src * m + tgt).contiguous(),  # position of (edge, dim) in the flat (M, M) matrix
        order=order,
        identity_order=bool(torch.equal(order, torch.arange(order.numel(), device=device))),
        rowptr=rowptr,
        src=src_o.contiguous(),
        tgt=tgt_o.contiguous(),
        src32=src_o.to(torch.int32).contiguous(),
    )
    return per_model


def as_range(idx: torch.Tensor) -> tuple | None:
    if idx.numel() == 0:
        return None
    start = int(idx[0])
    return (start, idx.numel()) if torch.equal(idx, torch.arange(start, start + idx.numel(), device=idx.device)) else None


def edge_weights(w: torch.Tensor, idx: dict, m: int, sparse: bool) -> torch.Tensor:
    """Per-(edge, dim) weights ``w`` ``(E * d,)`` as the kernels take them: CSR order (sparse) or
    the dense ``(M, M)`` matrix (``W[j, i]``: edge j -> i), differentiable (autograd)."""
    if sparse:
        return w if idx["identity_order"] else w[idx["order"]]
    return w.new_zeros(m * m).index_put((idx["dense_index"],), w).view(m, m)
