"""Fast paths for the TND time loop (issue: make neuron-wise dynamics fast).

:class:`~tnd.TND` calls :func:`supports` and, where it returns True, :func:`run`, which returns
exactly what ``TND.run_reference`` returns (up to rounding): the output neurons' states per step
``(T', B, n_out, d)`` and the last full state ``(B, N, d)``.

Fast today: leaky dynamics (``per_neuron`` True or False, ``tanh`` or ``identity``) with the
linear interaction (dense or sparse, signed or unsigned, any ``edge_mask``), one-sub-step
exponential Euler (``mode="discrete"``, or ``mode="continuous"`` with ``solver="exp_euler"``
and ``substeps=1``), with or without timespans, float32 / float64, any state size d (a dense
interaction with N * d > 2048 units runs through the edge list, same maths). Gated dynamics
(``tnd.dynamics.gated``) and per-neuron MLP dynamics (``tnd.dynamics.mlp``) with the same
interactions, modes and options also run fused, in the C kernel only (CPU with a compiler), and
so does the attention interaction with leaky dynamics (:mod:`tnd.fast.attention`). Everything
else (attention with gated/MLP F, other solvers, sub-steps > 1) runs the reference loop.
One-step calls for control loops have their own lean path, :mod:`tnd.fast.step` (``TND.step``).
With the C kernel, graphs of low density run through the edge list even where the interaction is
dense (:func:`use_edge_list`).

``BACKEND`` selects the loop: ``"auto"`` (default: the compiled C++ kernel on CPU where the
per-step overhead dominates, torch's BLAS where the dense matmuls do), ``"c"`` or ``"torch"``.
"""

from __future__ import annotations

import weakref

import torch

from . import cbuild
from .loop import (
    FusedLoop,
    GatedLoop,
    LoopSpec,
    MLPLoop,
    forward_loop,
    gated_forward,
    mlp_forward,
)

__all__ = ["BACKEND", "c_available", "choose_backend", "run", "supports"]

BACKEND = "auto"
#: dense CPU shapes with B * M^2 at most this run in the C kernel, larger ones in the torch loop
C_DENSE_MAX_WORK = 1 << 24
#: a dense interaction over more units (N * d) than this runs through the edge list instead
MAX_DENSE_UNITS = 2048
#: with the C kernel, a graph with fewer flat edges than this fraction of M^2 runs through its CSR
#: even where the model's interaction is dense: the kernel's dense product does M^2 multiply-adds
#: per row, the CSR one nnz at several times the cost each (they break even near 1/8; Pong's
#: small-world graph, flat density 0.016: 2.6x faster training steps). Same sums, other rounding.
SPARSE_BELOW_DENSITY = 1 / 16
#: worker threads of the C kernel (each runs whole sequences of a part of the batch); 0: by size,
#: at most ``torch.get_num_threads()``
THREADS = 0

_cache: weakref.WeakKeyDictionary[torch.nn.Module, dict] = weakref.WeakKeyDictionary()


def c_available() -> bool:
    return cbuild.load() is not None


_KINDS: dict = {}


def _kind(model) -> str | None:
    """"leaky", "gated", "mlp", "attention" where the cell's configuration has a fused loop, else None."""
    if not _KINDS:
        from ..dynamics.gated import GatedDynamics
        from ..dynamics.leaky import LeakyDynamics
        from ..dynamics.mlp import MLPDynamics
        from ..interactions.attention import AttentionInteraction
        from ..interactions.linear import LinearInteraction

        _KINDS.update(leaky=LeakyDynamics, gated=GatedDynamics, mlp=MLPDynamics, linear=LinearInteraction,
                      attention=AttentionInteraction)
    cell = model.cell
    dyn = cell.dynamics
    if cell.solver != "exp_euler" or cell.substeps != 1:
        return None
    if type(cell.interaction) is _KINDS["attention"]:
        ok = type(dyn) is _KINDS["leaky"] and dyn.activation in ("tanh", "identity")
        return "attention" if ok else None
    if type(cell.interaction) is not _KINDS["linear"]:
        return None
    if type(dyn) is _KINDS["leaky"]:
        return "leaky" if dyn.activation in ("tanh", "identity") else None
    if type(dyn) is _KINDS["gated"]:
        return "gated"
    if type(dyn) is _KINDS["mlp"]:
        return "mlp"
    return None


def supports(model, xs: torch.Tensor, s: torch.Tensor, dts) -> bool:
    kind = _kind(model)
    if kind is None:
        return False
    if kind != "leaky" and (xs.device.type != "cpu" or BACKEND == "torch" or not c_available()):
        return False  # the gated, MLP and attention loops exist in the C kernel only
    dtype = xs.dtype
    if dtype not in (torch.float32, torch.float64) or s.dtype != dtype or s.device != xs.device:
        return False
    if dts is not None and (dts.requires_grad or dts.dtype != dtype):
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


def _index_data(model, d: int, device: torch.device) -> dict:
    """Flat unit indices and the CSR of the flat edge list, cached per model and device."""
    inter = model.cell.interaction
    key = (d, str(device), inter.src.data_ptr(), inter.src._version, inter.tgt._version)
    per_model = _cache.setdefault(model, {})
    if per_model.get("key") == key:
        return per_model
    n = model.num_neurons
    m = n * d
    ar = torch.arange(d, device=device)
    src = (inter.src[:, None] * d + ar).reshape(-1)
    tgt = (inter.tgt[:, None] * d + ar).reshape(-1)
    order = torch.argsort(tgt * m + src)
    src_o, tgt_o = src[order], tgt[order]
    rowptr = torch.zeros(m + 1, dtype=torch.long, device=device)
    rowptr[1:] = torch.cumsum(torch.bincount(tgt_o, minlength=m), 0)
    per_model.clear()
    per_model.update(
        key=key,
        in_idx=(model.cell.input_neurons[:, None] * d + ar).reshape(-1).contiguous(),
        out_idx=(model.output_neurons[:, None] * d + ar).reshape(-1).contiguous(),
        dense_index=(src * m + tgt).contiguous(),  # position of (edge, dim) in the flat (M, M) matrix
        order=order,
        identity_order=bool(torch.equal(order, torch.arange(order.numel(), device=device))),
        rowptr=rowptr,
        src=src_o.contiguous(),
        tgt=tgt_o.contiguous(),
        src32=src_o.to(torch.int32).contiguous(),
    )
    return per_model


def _as_range(idx: torch.Tensor) -> tuple | None:
    if idx.numel() == 0:
        return None
    start = int(idx[0])
    return (start, idx.numel()) if torch.equal(idx, torch.arange(start, start + idx.numel(), device=idx.device)) else None


def _param_key(inter, dyn) -> tuple:
    ts = (*inter._parameters.values(), *inter._buffers.values(), *dyn._parameters.values())
    return tuple((id(t), t.data_ptr(), t._version, t.dtype) if t is not None else None for t in ts) + (dyn.tau_min, dyn.tau_max)


def _prepare(inter, dyn, idx: dict, n: int, d: int, sparse: bool):
    """The differentiable per-sequence tensors: weights (dense (M, M) or CSR-ordered edges) and
    the dynamics' parameters laid out for the kernels."""
    m = n * d
    w = inter.effective_edge_weight().reshape(-1)  # (E * d,) in (edge, dim) order; sign/softplus/mask by autograd
    if sparse:
        W = w if idx["identity_order"] else w[idx["order"]]
    else:
        W = w.new_zeros(m * m).index_put((idx["dense_index"],), w).view(m, m)
    if type(inter).__name__ == "AttentionInteraction":
        from .attention import prepare

        return prepare(inter, dyn, idx, n, d, sparse)
    if dyn.name == "gated":
        mats = tuple(p.expand(n, d, d).contiguous() for p in (dyn.gate_s, dyn.gate_u, dyn.cand_u))
        vecs = tuple(p.expand(n, d).reshape(m).contiguous() for p in (dyn.gate_bias, dyn.cand_bias))
        return (W.contiguous(), *mats, *vecs)
    if dyn.name == "mlp":
        h = dyn.hidden_size
        return (W.contiguous(), dyn.w1.expand(n, 3 * d, h).contiguous(), dyn.b1.expand(n, h).contiguous(),
                dyn.w2.expand(n, h, d).contiguous(), dyn.b2.expand(n, d).reshape(m).contiguous(),
                (1.0 / dyn.tau()).expand(n, d).reshape(m).contiguous())
    r = (1.0 / dyn.tau()).expand(n, d).reshape(m)
    bias = dyn.bias.expand(n, d).reshape(m)
    return W.contiguous(), r.contiguous(), bias.contiguous()


def run(model, xs: torch.Tensor, s: torch.Tensor, dts):
    cell = model.cell
    inter, dyn = cell.interaction, cell.dynamics
    T, B, _ = xs.shape
    n, d = cell.num_neurons, cell.state_size
    m = n * d
    idx = _index_data(model, d, xs.device)
    sparse = use_edge_list(inter, m, int(idx["src"].numel()), xs.device)

    P = cell.input_proj(xs)  # (T, B, n_in * d): all T input projections at once, by autograd
    grad = torch.is_grad_enabled()
    params = None
    if not grad:  # inference: reuse W, r, bias while the parameters are unchanged (control loops)
        params = idx.get("nograd_params")
        pkey = _param_key(inter, dyn) + (sparse,)
        if params is None or params[0] != pkey:
            params = None
    if params is None:
        prepared = _prepare(inter, dyn, idx, n, d, sparse)
        if not grad:
            idx["nograd_params"] = (pkey, prepared)
    else:
        prepared = params[1]
    s0 = s.reshape(B, m)
    dt = None if dts is None else dts.reshape(T, B).detach()
    dt = None if dt is None else dt.contiguous()
    gated, mlp = dyn.name == "gated", dyn.name == "mlp"
    attn = inter.name == "attention"
    act = "tanh" if gated or mlp else dyn.activation
    spec_key = (sparse, act, bool(model.return_sequences), THREADS,
                "c" if gated or mlp or attn else choose_backend(sparse, B, m, xs.device))
    spec = idx.get("specs", {}).get(spec_key)
    if spec is None:
        spec = LoopSpec(
            backend=spec_key[-1],
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
            in_range=_as_range(idx["in_idx"]),
            out_range=_as_range(idx["out_idx"]),
        )
        idx.setdefault("specs", {})[spec_key] = spec
    dt = None if dt is None else dt.contiguous()
    n_out = spec.out_idx.numel() // d
    if gated:
        # the input's share of the gate and of the candidate, for all T at once (autograd)
        P4 = P.unflatten(-1, (-1, d))
        sel = (lambda p: p[cell.input_neurons]) if dyn.per_neuron else (lambda p: p.expand(P4.shape[2], d, d))
        XG = torch.einsum("tbnl,nlk->tbnk", P4, sel(dyn.gate_x)).flatten(2).contiguous()
        XC = torch.einsum("tbnl,nlk->tbnk", P4, sel(dyn.cand_x)).flatten(2).contiguous()
        tensors = [XG, XC, s0.contiguous(), *prepared]
        if grad and any(t.requires_grad for t in tensors):
            outs, s_last = GatedLoop.apply(spec, n, d, (dyn.rate_min, dyn.rate_max), *tensors, dt)
        else:
            outs, s_last, _ = gated_forward(spec, n, d, (dyn.rate_min, dyn.rate_max), *tensors, dt, save=False)
        return outs.view(outs.shape[0], B, n_out, d), s_last.view(B, n, d)
    if mlp:
        h = dyn.hidden_size
        if "in_pos" not in idx:
            in_pos = torch.full((n,), -1, dtype=torch.long, device=xs.device)
            in_pos[cell.input_neurons] = torch.arange(cell.input_neurons.numel(), device=xs.device)
            idx["in_pos"] = in_pos
        tensors = [P.contiguous(), s0.contiguous(), *prepared]  # the kernel applies the first layer's x rows
        if grad and any(t.requires_grad for t in tensors):
            outs, s_last = MLPLoop.apply(spec, n, d, h, idx["in_pos"], *tensors, dt)
        else:
            outs, s_last, _ = mlp_forward(spec, n, d, h, idx["in_pos"], *tensors, dt, save=False)
        return outs.view(outs.shape[0], B, n_out, d), s_last.view(B, n, d)
    if attn:
        from .attention import AttnLoop, attn_forward

        tensors = [P.contiguous(), s0.contiguous(), *prepared]
        if grad and any(t.requires_grad for t in tensors):
            outs, s_last = AttnLoop.apply(spec, n, d, inter.key_scale, *tensors, dt)
        else:
            outs, s_last, _ = attn_forward(spec, n, d, inter.key_scale, *tensors, dt, save=False)
        return outs.view(outs.shape[0], B, n_out, d), s_last.view(B, n, d)
    tensors = [P.contiguous(), s0.contiguous(), *prepared]
    if grad and any(t.requires_grad for t in tensors):
        outs, s_last = FusedLoop.apply(spec, *tensors, dt)
    else:
        outs, s_last, _, _ = forward_loop(spec, *tensors, dt, save=False)
    return outs.view(outs.shape[0], B, n_out, d), s_last.view(B, n, d)
