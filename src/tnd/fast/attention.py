"""The fused loop of the attention interaction (leaky dynamics), C kernel only.

Per step (see :mod:`tnd.interactions.attention` for the definition, ``csrc/tnd_attention.inc.cpp``
for the kernel)::

    e   = exp(kappa * tanh(<c_n, s_n>) - max_n')      num = (e * s) @ Wv,   den = e @ Wp
    u   = num / den,   c = act(u + x + bias),          s' = c + (s - c) * exp(-r dt)

``Wv`` and ``Wp`` are built from the edge parameters by autograd (like the linear W: prior
softmax weight times value, and the prior weight alone), so the edge mask, the signs and the
softplus need nothing here. Backward is the analytic backpropagation through time, with the
dense weight gradients as one matmul each over all steps.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..dynamics.leaky import LeakyDynamics
from ..interactions.attention import AttentionInteraction
from . import abi
from ._util import FusedFamily, LoopSpec, call_kernel, edge_weights, incoming_grads, threads_for

__all__ = ["ATTENTION", "AttnArgs", "AttnLoop", "attn_forward", "prepare"]

#: mirrors TND_ATTN_FIELDS in csrc/tnd_attention.inc.cpp
AttnArgs = abi.struct("attn", """
    i:T_ i:B i:N i:d i:n_in i:n_out i:seq_out i:sparse i:act i:E i:nthreads d:kappa f:P f:s0 f:W1 f:W2 f:key f:r
    f:bias f:dt f:g_outs f:g_last f:S_in f:C_in f:U_in f:D_in l:in_idx l:out_idx l:rowptr n:src f:outs f:s_last
    f:S f:C f:U f:D f:g_s0 f:g_P f:Gnum f:Gden f:EF f:ES f:g_params""")


def prepare(inter, dyn, idx: dict, n: int, d: int, sparse: bool):
    """``(Wv, Wp, key, r, bias)`` for the kernel, differentiable w.r.t. the parameters."""
    m = n * d
    p, v = inter.prepare_sparse()  # (E,): mask * exp(b - max b), and the values, as the reference
    wv = (p[:, None] * v).reshape(-1)  # (E * d,) in (edge, dim) order
    wp = p[:, None].expand(-1, d).reshape(-1)
    Ws = [edge_weights(w, idx, m, sparse) for w in (wv, wp)]
    r = (1.0 / dyn.tau()).expand(n, d).reshape(m)
    bias = dyn.bias.expand(n, d).reshape(m)
    return (*(w.contiguous() for w in Ws), inter.key.reshape(m).contiguous(), r.contiguous(), bias.contiguous())


def _sizes(spec: LoopSpec, T: int, B: int, N: int, d: int, kappa: float, E: int = 0) -> dict:
    return dict(T_=T, B=B, N=N, d=d, n_in=spec.in_idx.numel(), n_out=spec.out_idx.numel(), seq_out=int(spec.seq_out),
                sparse=int(spec.sparse), act=spec.act, E=E, nthreads=threads_for(spec, T, B, N * d), kappa=float(kappa))


def _graph(spec: LoopSpec, M: int, W1, W2) -> dict:
    """The two couplings (dense ``(M, M)`` each, or CSR-ordered edges with the CSR)."""
    E = spec.src32.numel() if spec.src32 is not None else 0
    shape = (E,) if spec.sparse else (M, M)
    if spec.sparse and (spec.rowptr is None or spec.src32 is None):
        raise ValueError("a sparse fused call needs the CSR (spec.rowptr, spec.src32)")
    if W1 is None or W2 is None:
        raise ValueError("the attention kernel needs both couplings (value and prior weights)")
    return dict(W1=(W1, shape), W2=(W2, shape), rowptr=(spec.rowptr, (M + 1,)), src=(spec.src32, (E,)))


def attn_forward(spec: LoopSpec, N: int, d: int, kappa: float, P, s0, Wv, Wp, key, r, bias, dt, save: bool):
    """Returns ``(outs, s_last, saved)``, saved = (S, C, U, DEN) ``(T+1 | T, B, M)`` or None."""
    T, B, _ = P.shape
    M = N * d
    n_in, n_out = spec.in_idx.numel(), spec.out_idx.numel()
    outs = P.new_empty(T if spec.seq_out else 1, B, n_out)
    s_last = P.new_empty(B, M)
    saved = tuple(P.new_empty(T + 1 if k == 0 else T, B, M) for k in range(4)) if save else (None,) * 4
    S, C, U, D = saved
    call_kernel(AttnArgs, "tnd_attn_forward", P.dtype, _sizes(spec, T, B, N, d, kappa),
                dict(P=(P, (T, B, n_in)), in_idx=(spec.in_idx, (n_in,)), out_idx=(spec.out_idx, (n_out,)),
                     s0=(s0, (B, M)), key=(key, (M,)), r=(r, (M,)), bias=(bias, (M,)), dt=(dt, (T, B)),
                     outs=(outs, outs.shape), s_last=(s_last, (B, M)), S=(S, (T + 1, B, M)), C=(C, (T, B, M)),
                     U=(U, (T, B, M)), D=(D, (T, B, M)), **_graph(spec, M, Wv, Wp)))
    return outs, s_last, (saved if save else None)


class AttnLoop(torch.autograd.Function):
    """``(P, s0, Wv, Wp, key, r, bias) -> (outs, s_last)``; dt (timespans) gets no gradient."""

    @staticmethod
    def forward(ctx, spec, N, d, kappa, P, s0, Wv, Wp, key, r, bias, dt):
        outs, s_last, saved = attn_forward(spec, N, d, kappa, P, s0, Wv, Wp, key, r, bias, dt, save=True)
        ctx.spec, ctx.N, ctx.d, ctx.kappa = spec, N, d, kappa
        ctx.save_for_backward(*saved, Wv, Wp, key, r, dt)
        return outs, s_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_outs, g_last):
        S, C, U, D, Wv, Wp, key, r, dt = ctx.saved_tensors
        spec, N, d = ctx.spec, ctx.N, ctx.d
        T, B, M, g_outs, g_last = incoming_grads(spec, S, g_outs, g_last)
        n_in, n_out = spec.in_idx.numel(), spec.out_idx.numel()
        g_s0, g_P = S.new_empty(B, M), S.new_empty(T, B, n_in)
        E = Wv.shape[0] if spec.sparse else 0
        dense = (S.new_empty(T, B, M) for _ in range(4)) if not spec.sparse else (None,) * 4
        Gnum, Gden, EF, ES = dense
        sizes = [M, M, M, E, E]
        g_params = S.new_empty(sum(sizes))
        W1, W2 = (Wv, Wp) if spec.sparse else (Wv.t().contiguous(), Wp.t().contiguous())
        TBM = (T, B, M)
        call_kernel(AttnArgs, "tnd_attn_backward", S.dtype, _sizes(spec, T, B, N, d, ctx.kappa, E),
                    dict(in_idx=(spec.in_idx, (n_in,)), out_idx=(spec.out_idx, (n_out,)), key=(key, (M,)),
                         r=(r, (M,)), dt=(dt, (T, B)), S_in=(S, (T + 1, B, M)), C_in=(C, TBM), U_in=(U, TBM),
                         D_in=(D, TBM), g_outs=(g_outs, (T if spec.seq_out else 1, B, n_out)),
                         g_last=(g_last, (B, M)), g_s0=(g_s0, (B, M)), g_P=(g_P, (T, B, n_in)), Gnum=(Gnum, TBM),
                         Gden=(Gden, TBM), EF=(EF, TBM), ES=(ES, TBM), g_params=(g_params, (sum(sizes),)),
                         **_graph(spec, M, W1, W2)))
        g_key, g_r, g_bias, g_wv, g_wp = torch.split(g_params, sizes)
        need = ctx.needs_input_grad
        if not spec.sparse:  # sum over all T * B rows in one matmul each
            g_wv = ES.reshape(T * B, M).t().mm(Gnum.reshape(T * B, M)) if need[6] else None
            g_wp = EF.reshape(T * B, M).t().mm(Gden.reshape(T * B, M)) if need[7] else None
        return (None, None, None, None, g_P if need[4] else None, g_s0 if need[5] else None, g_wv, g_wp,
                g_key if need[8] else None, g_r if need[9] else None, g_bias if need[10] else None, None)


# ------------------------------------------------------------------------- the family
def sequence(cell, spec: LoopSpec, idx: dict, P, s0, prepared, dt, grad: bool):
    n, d = cell.num_neurons, cell.state_size
    tensors = [P.contiguous(), s0.contiguous(), *prepared]
    kappa = cell.interaction.key_scale
    if grad and any(t.requires_grad for t in tensors):
        return AttnLoop.apply(spec, n, d, kappa, *tensors, dt)
    outs, s_last, _ = attn_forward(spec, n, d, kappa, *tensors, dt, save=False)
    return outs, s_last


ATTENTION = FusedFamily("attention", AttentionInteraction, LeakyDynamics, prepare, sequence,
                        act=lambda dyn: dyn.activation,
                        accepts=lambda cell: cell.dynamics.activation in ("tanh", "identity"))
