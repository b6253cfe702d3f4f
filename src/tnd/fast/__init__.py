"""Fast paths for the TND time loop: fused loops with an analytic backward, and a C kernel.

:class:`~tnd.TND` calls :func:`supports` and, where it returns True, :func:`run`, which returns
exactly what ``TND.run_reference`` returns (up to rounding): the output neurons' states per step
``(T', B, n_out, d)`` and the last full state ``(B, N, d)``.

Fast today: leaky dynamics (``per_neuron`` True or False, ``tanh`` or ``identity``) with the
linear interaction (dense or sparse, signed or unsigned, any ``edge_mask``), one-sub-step
exponential Euler (``mode="discrete"``, or ``mode="continuous"`` with ``solver="exp_euler"``
and ``substeps=1``), any ``propagation_steps`` K (K kernel steps of ``dt / K`` per input step,
the input drive repeated, every K-th state read out), with or without timespans, float32 /
float64, any state size d (a dense interaction with N * d > 2048 units runs through the edge
list, same maths). Gated dynamics
(``tnd.dynamics.gated``) and per-neuron MLP dynamics (``tnd.dynamics.mlp``) with the same
interactions, modes and options also run fused, in the C kernel only (CPU with a compiler), and
so does the attention interaction with leaky dynamics (:mod:`tnd.fast.attention`). Everything
else (attention with gated/MLP F, other solvers, sub-steps > 1) runs the reference loop.
One-step calls for control loops have their own lean path, :mod:`tnd.fast.step` (``TND.step``).
With the C kernel, graphs of low density run through the edge list even where the interaction is
dense (:func:`use_edge_list`).

Each fused family (:class:`tnd.fast._util.FusedFamily`) is declared once in its own module
(:mod:`~tnd.fast.loop` leaky, :mod:`~tnd.fast.gated`, :mod:`~tnd.fast.mlp`, :mod:`~tnd.fast.attention`)
and registered in :mod:`tnd.fast.families`; :func:`run` is the same for all of them (index data,
coupling layout, spec), the family adds what it prepares, its kernel and its autograd Function.
Adding one: its module (the ``FusedFamily``, its ``abi.struct`` and calls through
``_util.call_kernel``), its ``csrc/tnd_<family>.inc.cpp`` (its ``TND_<FAMILY>_FIELDS`` list and
``TND_DEFINE_ABI``), one line in ``families.FAMILIES``, one ``#include`` in ``csrc/tnd_loop.cpp``,
and its tests. Every C entry takes one struct (:mod:`tnd.fast.abi`, checked against the library at
load) and every tensor it hands over is checked first (device, dtype, contiguity, shape).

``BACKEND`` selects the loop: ``"auto"`` (default: the compiled C++ kernel on CPU where the
per-step overhead dominates, torch's BLAS where the dense matmuls do), ``"c"`` or ``"torch"``.
"""

from __future__ import annotations

import torch

from . import cbuild, families
from ._util import LoopSpec, as_range, index_data

__all__ = ["BACKEND", "c_available", "choose_backend", "family", "run", "supports", "use_edge_list"]

BACKEND = "auto"
#: dense CPU shapes with B * M^2 at most this run in the C kernel, larger ones in the torch loop
C_DENSE_MAX_WORK = 1 << 24
#: a dense interaction over more units (N * d) than this runs through the edge list instead
MAX_DENSE_UNITS = 2048
#: with the C kernel, a graph with fewer flat edges than this fraction of M^2 runs through its CSR
#: even where the model's interaction is dense: the kernel's dense product does M^2 multiply-adds
#: per row, the CSR one nnz at several times the cost each (they break even near 1/8; see
#: ``tnd bench``). Same sums, other rounding.
SPARSE_BELOW_DENSITY = 1 / 16
#: worker threads of the C kernel (each runs whole sequences of a part of the batch); 0: by size,
#: at most ``torch.get_num_threads()``
THREADS = 0


def c_available() -> bool:
    return cbuild.load() is not None


def family(model):
    """The fused family of ``model``'s cell (:mod:`tnd.fast.families`), or None."""
    return families.lookup(model.cell)


def supports(model, xs: torch.Tensor, s: torch.Tensor, dts) -> bool:
    fam = family(model)
    if fam is None:
        return False
    if not fam.torch_loop and (xs.device.type != "cpu" or BACKEND == "torch" or not c_available()):
        return False  # the family's loop exists in the C kernel only
    dtype = xs.dtype
    if dtype not in (torch.float32, torch.float64) or s.dtype != dtype or s.device != xs.device:
        return False
    if dts is not None and (dts.requires_grad or dts.dtype != dtype or dts.device != xs.device):
        return False
    cell = model.cell
    dev = xs.device
    for p in (cell.input_proj.weight, *cell.interaction._parameters.values(), *cell.dynamics._parameters.values()):
        if p is not None and (p.dtype != dtype or p.device != dev):
            return False
    return True


def choose_backend(sparse: bool, batch: int, units: int, device: torch.device) -> str:
    if BACKEND != "auto":
        if BACKEND == "c" and (device.type != "cpu" or not c_available()):
            return "torch"
        return BACKEND
    if device.type != "cpu" or not c_available():
        return "torch"
    if sparse:
        return "c"
    return "c" if batch * units * units <= C_DENSE_MAX_WORK else "torch"


def use_edge_list(inter, units: int, nnz: int, device: torch.device) -> bool:
    """Whether the fused loops run the interaction through the edge list (CSR) or a dense matrix."""
    if inter.impl == "sparse" or units > MAX_DENSE_UNITS:
        return True
    return (nnz < SPARSE_BELOW_DENSITY * units * units and device.type == "cpu" and BACKEND != "torch"
            and c_available())


def param_key(inter, dyn) -> tuple:
    """What a family's prepared tensors depend on: every parameter's and buffer's identity and version."""
    ts = (*inter._parameters.values(), *inter._buffers.values(), *dyn._parameters.values())
    return tuple((id(t), t.data_ptr(), t._version, t.dtype) if t is not None else None for t in ts) + (dyn.tau_min, dyn.tau_max)


def prepared(fam, model, idx: dict, sparse: bool, grad: bool):
    """``fam.prepare(...)`` of the model; without grad reused while the parameters are unchanged
    (control loops)."""
    cell = model.cell
    inter, dyn = cell.interaction, cell.dynamics
    if grad:
        return fam.prepare(inter, dyn, idx, cell.num_neurons, cell.state_size, sparse)
    pkey = param_key(inter, dyn) + (sparse, fam.name)
    params = idx.get("nograd_params")
    if params is None or params[0] != pkey:
        params = idx["nograd_params"] = (pkey, fam.prepare(inter, dyn, idx, cell.num_neurons, cell.state_size, sparse))
    return params[1]


def run(model, xs: torch.Tensor, s: torch.Tensor, dts):
    """The fused loop of ``model`` (where :func:`supports`): ``(outs (T', B, n_out, d), s_last (B, N, d))``."""
    fam = family(model)
    cell = model.cell
    T, B, _ = xs.shape
    if T == 0:  # nothing to fuse; the reference says what a sequence without steps gives
        return model.run_reference(xs, s, dts)
    n, d = cell.num_neurons, cell.state_size
    m = n * d
    idx = index_data(model, d, xs.device)
    sparse = use_edge_list(cell.interaction, m, int(idx["src"].numel()), xs.device)

    P = cell.input_proj(xs)  # (T, B, n_in * d): all T input projections at once, by autograd
    grad = torch.is_grad_enabled()
    params = prepared(fam, model, idx, sparse, grad)
    s0 = s.reshape(B, m)
    dt = None if dts is None else dts.reshape(T, B).detach().contiguous()
    rounds = cell.propagation_steps
    if rounds > 1:  # K rounds per input step: K kernel steps of dt / K with the input drive repeated
        P = P.repeat_interleave(rounds, 0)  # (T * K, B, n_in * d); its backward sums the K rounds' gradients
        dt = (P.new_ones(T, B) if dt is None else dt) / rounds  # as the reference's dt / K
        dt = dt.repeat_interleave(rounds, 0).contiguous()
    act = fam.act(cell.dynamics)
    backend = choose_backend(sparse, B, m, xs.device) if fam.torch_loop else "c"
    spec_key = (sparse, act, bool(model.return_sequences), THREADS, backend)
    spec = idx.get("specs", {}).get(spec_key)
    if spec is None:
        spec = LoopSpec(
            backend=backend,
            sparse=sparse,
            act=0 if act == "tanh" else 1,
            seq_out=bool(model.return_sequences),
            in_idx=idx["in_idx"],
            out_idx=idx["out_idx"],
            rowptr=idx["rowptr"],
            src32=idx["src32"],
            src=idx["src"],
            tgt=idx["tgt"],
            nnz=int(idx["src"].numel()),
            threads=THREADS,
            in_range=as_range(idx["in_idx"]),
            out_range=as_range(idx["out_idx"]),
        )
        idx.setdefault("specs", {})[spec_key] = spec
    outs, s_last = fam.sequence(cell, spec, idx, P, s0, params, dt, grad)
    if rounds > 1 and spec.seq_out:
        outs = outs[rounds - 1::rounds]  # the state after each input step's last round
    return outs.view(outs.shape[0], B, spec.out_idx.numel() // d, d), s_last.view(B, n, d)
