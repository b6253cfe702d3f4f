"""The fused time loop of the discrete leaky/linear TND as one ``torch.autograd.Function``.

Units are "flat": a graph of N neurons with d-dimensional states is M = N * d scalar units,
unit ``n * d + k`` being dimension k of neuron n (d > 1 is d copies of the edge list, one per
dimension; the dense path then uses an ``(M, M)`` block matrix). Per step, for each sequence b
and unit m (``x`` is the input projection at input units, zero elsewhere)::

    c  = act(s @ W + bias + x_t)        (W[j, i]: weight of edge j -> i; act tanh or identity)
    a  = exp(-r * dt_t)                 (r = 1 / tau)
    s' = c + (s - c) * a

Forward runs the loop without recording autograd and saves only the states ``S`` ``(T+1, B, M)``
and the targets ``C`` ``(T, B, M)``. Backward is the analytic backpropagation through time; the
weight gradient is one matmul ``S[:-1]^T @ G_pre`` over all T * B rows (dense) or accumulated
over the transposed edge list inside the loop (sparse). Two interchangeable backends run the
loops: a compiled C++ kernel (``csrc/tnd_loop.cpp``, best where per-step overhead dominates:
small batches, sparse graphs) and a torch loop (BLAS matmuls, best for large dense B * M^2).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..dynamics.leaky import LeakyDynamics
from ..interactions.linear import LinearInteraction
from . import abi
from ._util import FusedFamily, LoopSpec, call_kernel, edge_weights, graph_fields, incoming_grads, take, threads_for

__all__ = ["FusedLoop", "LEAKY", "LeakyArgs", "LoopSpec", "backward_loop", "forward_loop"]

#: mirrors TND_LEAKY_FIELDS in csrc/tnd_loop.cpp (forward and backward share it)
LeakyArgs = abi.struct("leaky", """
    i:T_ i:B i:M i:n_in i:n_out i:seq_out i:sparse i:act i:E i:nthreads f:P f:s0 f:W f:WT f:w f:r f:bias f:dt
    f:S_in f:C_in f:g_outs f:g_last l:in_idx l:out_idx l:rowptr n:src f:outs f:s_last f:S f:C f:g_s0 f:g_P
    f:Gpre f:g_bias f:g_r f:g_w""")


# --------------------------------------------------------------------------- forward
def forward_loop(spec: LoopSpec, P, s0, W, r, bias, dt, save: bool):
    """Run the loop. Returns ``(outs, s_last, S, C)``; S and C are None unless ``save``.

    P ``(T, B, n_in)``, s0 ``(B, M)``, W ``(M, M)`` (dense) or ``(E,)`` (sparse, CSR order),
    r and bias ``(M,)``, dt ``(T, B)`` or None."""
    T, B, _ = P.shape
    M = s0.shape[1]
    n_out = spec.out_idx.numel()
    if spec.backend == "c":
        outs = P.new_empty(T if spec.seq_out else 1, B, n_out)
        s_last = P.new_empty(B, M)
        S = P.new_empty(T + 1, B, M) if save else None
        C = P.new_empty(T, B, M) if save else None
        n_in = spec.in_idx.numel()
        call_kernel(LeakyArgs, "tnd_leaky_forward", P.dtype,
                    dict(T_=T, B=B, M=M, n_in=n_in, n_out=n_out, seq_out=int(spec.seq_out), sparse=int(spec.sparse),
                         act=spec.act, nthreads=threads_for(spec, T, B, M)),
                    dict(P=(P, (T, B, n_in)), in_idx=(spec.in_idx, (n_in,)), out_idx=(spec.out_idx, (n_out,)),
                         s0=(s0, (B, M)), r=(r, (M,)), bias=(bias, (M,)), dt=(dt, (T, B)), outs=(outs, outs.shape),
                         s_last=(s_last, (B, M)), S=(S, (T + 1, B, M)), C=(C, (T, B, M)),
                         **graph_fields(spec, M, W)))
        return outs, s_last, S, C
    # torch backend
    D = bias.expand(T, B, M).clone()
    if spec.in_range is not None:
        D.narrow(2, spec.in_range[0], spec.in_range[1]).add_(P)
    else:
        D.index_add_(2, spec.in_idx, P)
    A = torch.exp(-r) if dt is None else torch.exp(-r * dt.unsqueeze(-1))
    if save:
        S = P.new_empty(T + 1, B, M)
        S[0] = s0
        C = P.new_empty(T, B, M)
    else:
        S = C = None
        keep = P.new_empty(T, B, n_out) if spec.seq_out else None
    cur = s0
    for t in range(T):
        c = C[t] if save else D[t]
        if spec.sparse:
            u = s0.new_zeros(B, M).index_add_(1, spec.tgt, cur[:, spec.src] * W)
            torch.add(D[t], u, out=c)
        else:
            torch.addmm(D[t], cur, W, out=c)
        if spec.act == 0:
            c.tanh_()
        a = A if dt is None else A[t]
        nxt = S[t + 1] if save else torch.lerp(c, cur, a)
        if save:
            torch.lerp(c, cur, a, out=nxt)
        elif spec.seq_out:
            keep[t] = take(nxt, 1, spec.out_idx, spec.out_range)
        cur = nxt
    if save:
        outs = take(S[1:] if spec.seq_out else S[T:], 2, spec.out_idx, spec.out_range).contiguous()
    else:
        outs = keep if spec.seq_out else take(cur, 1, spec.out_idx, spec.out_range).unsqueeze(0).contiguous()
    return outs, cur.clone() if save else cur, S, C


# -------------------------------------------------------------------------- backward
def backward_loop(spec: LoopSpec, S, C, W, r, dt, g_outs, g_last, need_w: bool):
    """Returns ``(g_P, g_s0, g_W, g_r, g_bias)``."""
    T, B, M, g_outs, g_last = incoming_grads(spec, S, g_outs, g_last)
    n_in, n_out = spec.in_idx.numel(), spec.out_idx.numel()
    if spec.backend == "c":
        g_s0, g_P = S.new_empty(B, M), S.new_empty(T, B, n_in)
        g_bias, g_r = S.new_empty(M), S.new_empty(M)
        Gpre = None if spec.sparse else S.new_empty(T, B, M)
        g_w = S.new_empty(W.shape[0]) if spec.sparse else None
        WT = None if spec.sparse else W.t().contiguous()
        call_kernel(LeakyArgs, "tnd_leaky_backward", S.dtype,
                    dict(T_=T, B=B, M=M, n_in=n_in, n_out=n_out, seq_out=int(spec.seq_out), sparse=int(spec.sparse),
                         act=spec.act, E=W.shape[0] if spec.sparse else 0, nthreads=threads_for(spec, T, B, M)),
                    dict(in_idx=(spec.in_idx, (n_in,)), out_idx=(spec.out_idx, (n_out,)), r=(r, (M,)),
                         dt=(dt, (T, B)), S_in=(S, (T + 1, B, M)), C_in=(C, (T, B, M)),
                         g_outs=(g_outs, (T if spec.seq_out else 1, B, n_out)), g_last=(g_last, (B, M)),
                         g_s0=(g_s0, (B, M)), g_P=(g_P, (T, B, n_in)), g_bias=(g_bias, (M,)), g_r=(g_r, (M,)),
                         Gpre=(Gpre, (T, B, M)), g_w=(g_w, (W.shape[0],)), **graph_fields(spec, M, W, WT)))
        if not spec.sparse:
            g_w = S[:-1].reshape(T * B, M).t().mm(Gpre.reshape(T * B, M)) if need_w else None
        return g_P, g_s0, g_w, g_r, g_bias
    # torch backend
    h = 1.0 if dt is None else dt.unsqueeze(-1)  # (T, B, 1)
    A = torch.exp(-r) if dt is None else torch.exp(-r * h)
    Z = (S[:-1] - C) * A * h  # d s' / d r = -(s - c) * a * dt  (sign applied below)
    K = (1.0 - A).expand_as(C)
    if spec.act == 0:
        K = K * (1.0 - C * C)
    G = torch.empty_like(C)
    Gp = torch.empty_like(C)
    g = g_last.clone() if g_last is not None else S.new_zeros(B, M)
    g.index_add_(1, spec.out_idx, g_outs[-1])
    WT = None if spec.sparse else W.t()
    for t in range(T - 1, -1, -1):
        G[t] = g
        gp = torch.mul(g, K[t], out=Gp[t])
        a = A if dt is None else A[t]
        if spec.sparse:
            gn = (g * a).index_add_(1, spec.src, gp[:, spec.tgt] * W)
        else:
            gn = torch.addmm(g * a, gp, WT)
        if spec.seq_out and t >= 1:
            gn.index_add_(1, spec.out_idx, g_outs[t - 1])
        g = gn
    g_r = -(G * Z).sum((0, 1))
    g_bias = Gp.sum((0, 1))
    g_P = take(Gp, 2, spec.in_idx, spec.in_range).contiguous()
    g_w = None
    if need_w:
        if spec.sparse:
            g_w = W.new_zeros(W.shape[0])
            for t in range(T):
                g_w += (Gp[t][:, spec.tgt] * S[t][:, spec.src]).sum(0)
        else:
            g_w = S[:-1].reshape(T * B, M).t().mm(Gp.reshape(T * B, M))
    return g_P, g, g_w, g_r, g_bias


class FusedLoop(torch.autograd.Function):
    """``(P, s0, W, r, bias, dt) -> (outs, s_last)``; dt (timespans) gets no gradient."""

    @staticmethod
    def forward(ctx, spec: LoopSpec, P, s0, W, r, bias, dt):
        outs, s_last, S, C = forward_loop(spec, P, s0, W, r, bias, dt, save=True)
        ctx.spec = spec
        ctx.save_for_backward(S, C, W, r, dt)
        return outs, s_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_outs, g_last):
        S, C, W, r, dt = ctx.saved_tensors
        need = ctx.needs_input_grad
        g_P, g_s0, g_w, g_r, g_bias = backward_loop(ctx.spec, S, C, W, r, dt, g_outs, g_last, need_w=need[3])
        return (None, g_P if need[1] else None, g_s0 if need[2] else None, g_w, g_r if need[4] else None,
                g_bias if need[5] else None, None)




# ------------------------------------------------------------------------- the family
def prepare(inter, dyn, idx: dict, n: int, d: int, sparse: bool):
    """``(W, r, bias)``: the weights (dense ``(M, M)`` or CSR-ordered edges) and the dynamics'
    ``1 / tau`` and bias per flat unit, differentiable (sign/softplus/mask by autograd)."""
    m = n * d
    W = edge_weights(inter.effective_edge_weight().reshape(-1), idx, m, sparse)  # (E * d,) in (edge, dim) order
    r = (1.0 / dyn.tau()).expand(n, d).reshape(m)
    bias = dyn.bias.expand(n, d).reshape(m)
    return W.contiguous(), r.contiguous(), bias.contiguous()


def sequence(cell, spec: LoopSpec, idx: dict, P, s0, prepared, dt, grad: bool):
    tensors = [P.contiguous(), s0.contiguous(), *prepared]
    if grad and any(t.requires_grad for t in tensors):
        return FusedLoop.apply(spec, *tensors, dt)
    outs, s_last, _, _ = forward_loop(spec, *tensors, dt, save=False)
    return outs, s_last


LEAKY = FusedFamily("leaky", LinearInteraction, LeakyDynamics, prepare, sequence, act=lambda dyn: dyn.activation,
                    accepts=lambda cell: cell.dynamics.activation in ("tanh", "identity"), torch_loop=True)
