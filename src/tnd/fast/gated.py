"""The fused loop of the gated dynamics (:mod:`tnd.dynamics.gated`) with the linear interaction,
C kernel only (``csrc/tnd_gated.inc.cpp``): per neuron n with d x d matrices A, G, V::

    gate = s_n A_n + u_n G_n + beta + xg,   c = tanh(u_n V_n + cb + xc),   u = s @ W
    rate = rate_min + (rate_max - rate_min) * sigmoid(gate),   s' = c + (s - c) * exp(-rate dt)

``xg`` and ``xc`` (the input's share of the gate and of the candidate) are formed for all T at
once by autograd outside the loop. Backward is the analytic backpropagation through time.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..dynamics.gated import GatedDynamics
from ..interactions.linear import LinearInteraction
from . import abi
from ._util import FusedFamily, LoopSpec, call_kernel, edge_weights, graph_fields, incoming_grads, threads_for

__all__ = ["GATED", "GatedArgs", "GatedLoop", "gated_forward"]

#: mirrors TND_GATED_FIELDS in csrc/tnd_gated.inc.cpp
GatedArgs = abi.struct("gated", """
    i:T_ i:B i:N i:d i:n_in i:n_out i:seq_out i:sparse i:E i:nthreads d:rmin d:rspan f:XG f:XC f:s0 f:W f:WT f:w
    f:A f:G f:V f:beta f:cb f:dt f:g_outs f:g_last f:S_in f:U_in f:SIG_in f:CAND_in l:in_idx l:out_idx l:rowptr
    n:src f:outs f:s_last f:S f:U f:SIG f:CAND f:g_s0 f:g_XG f:g_XC f:Gu f:g_params""")


def _sizes(spec: LoopSpec, T: int, B: int, N: int, d: int, rates, E: int = 0) -> dict:
    return dict(T_=T, B=B, N=N, d=d, n_in=spec.in_idx.numel(), n_out=spec.out_idx.numel(), seq_out=int(spec.seq_out),
                sparse=int(spec.sparse), E=E, nthreads=threads_for(spec, T, B, N * d), rmin=float(rates[0]),
                rspan=float(rates[1] - rates[0]))


def _params(N: int, d: int, Am, Gm, Vm) -> dict:
    return dict(A=(Am, (N, d, d)), G=(Gm, (N, d, d)), V=(Vm, (N, d, d)))


def gated_forward(spec: LoopSpec, N: int, d: int, rates, XG, XC, s0, W, Am, Gm, Vm, beta, cb, dt, save: bool):
    """Gated dynamics, C kernel only. ``rates = (rate_min, rate_max)``: the rate is
    ``rate_min + (rate_max - rate_min) * sigmoid(gate)``. XG, XC ``(T, B, n_in)``: the input's contributions to the gate
    and to the candidate at the input units; Am, Gm, Vm ``(N, d, d)``; beta, cb ``(M,)``.
    Returns ``(outs, s_last, saved)`` with saved = (S, U, SIG, CAND) or None."""
    T, B, _ = XG.shape
    M = N * d
    n_in, n_out = spec.in_idx.numel(), spec.out_idx.numel()
    outs = XG.new_empty(T if spec.seq_out else 1, B, n_out)
    s_last = XG.new_empty(B, M)
    saved = tuple(XG.new_empty(T + 1 if k == 0 else T, B, M) for k in range(4)) if save else (None,) * 4
    S, U, SIG, CAND = saved
    call_kernel(GatedArgs, "tnd_gated_forward", XG.dtype, _sizes(spec, T, B, N, d, rates),
                dict(XG=(XG, (T, B, n_in)), XC=(XC, (T, B, n_in)), in_idx=(spec.in_idx, (n_in,)),
                     out_idx=(spec.out_idx, (n_out,)), s0=(s0, (B, M)), **_params(N, d, Am, Gm, Vm),
                     beta=(beta, (M,)), cb=(cb, (M,)), dt=(dt, (T, B)), outs=(outs, outs.shape),
                     s_last=(s_last, (B, M)), S=(S, (T + 1, B, M)), U=(U, (T, B, M)), SIG=(SIG, (T, B, M)),
                     CAND=(CAND, (T, B, M)), **graph_fields(spec, M, W)))
    return outs, s_last, (saved if save else None)


class GatedLoop(torch.autograd.Function):
    """``(XG, XC, s0, W, A, G, V, beta, cb) -> (outs, s_last)`` for the gated dynamics; ``rates`` is
    ``(rate_min, rate_max)``."""

    @staticmethod
    def forward(ctx, spec, N, d, rates, XG, XC, s0, W, Am, Gm, Vm, beta, cb, dt):
        outs, s_last, saved = gated_forward(spec, N, d, rates, XG, XC, s0, W, Am, Gm, Vm, beta, cb, dt, save=True)
        ctx.spec, ctx.N, ctx.d, ctx.rates = spec, N, d, rates
        ctx.save_for_backward(*saved, W, Am, Gm, Vm, dt)
        return outs, s_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_outs, g_last):
        S, U, SIG, CAND, W, Am, Gm, Vm, dt = ctx.saved_tensors
        spec, N, d = ctx.spec, ctx.N, ctx.d
        T, B, M, g_outs, g_last = incoming_grads(spec, S, g_outs, g_last)
        n_in, n_out = spec.in_idx.numel(), spec.out_idx.numel()
        g_s0, g_xg, g_xc = S.new_empty(B, M), S.new_empty(T, B, n_in), S.new_empty(T, B, n_in)
        Gu = None if spec.sparse else S.new_empty(T, B, M)
        E = W.shape[0] if spec.sparse else 0
        sizes = [N * d * d] * 3 + [M, M, E]
        g_params = S.new_empty(sum(sizes))
        WT = None if spec.sparse else W.t().contiguous()
        call_kernel(GatedArgs, "tnd_gated_backward", S.dtype, _sizes(spec, T, B, N, d, ctx.rates, E),
                    dict(in_idx=(spec.in_idx, (n_in,)), out_idx=(spec.out_idx, (n_out,)), **_params(N, d, Am, Gm, Vm),
                         dt=(dt, (T, B)), S_in=(S, (T + 1, B, M)), U_in=(U, (T, B, M)), SIG_in=(SIG, (T, B, M)),
                         CAND_in=(CAND, (T, B, M)), g_outs=(g_outs, (T if spec.seq_out else 1, B, n_out)),
                         g_last=(g_last, (B, M)), g_s0=(g_s0, (B, M)), g_XG=(g_xg, (T, B, n_in)),
                         g_XC=(g_xc, (T, B, n_in)), Gu=(Gu, (T, B, M)), g_params=(g_params, (sum(sizes),)),
                         **graph_fields(spec, M, W, WT)))
        gA, gG, gV, gbeta, gcb, g_w = torch.split(g_params, sizes)
        need = ctx.needs_input_grad
        if not spec.sparse:
            g_w = S[:-1].reshape(T * B, M).t().mm(Gu.reshape(T * B, M)) if need[7] else None
        return (None, None, None, None, g_xg, g_xc, g_s0, g_w, gA.view(N, d, d), gG.view(N, d, d),
                gV.view(N, d, d), gbeta, gcb, None)


# ------------------------------------------------------------------------- the family
def prepare(inter, dyn, idx: dict, n: int, d: int, sparse: bool):
    """``(W, A, G, V, beta, cb)``: the coupling (as the linear family's) and the gate's and
    candidate's matrices ``(N, d, d)`` and biases ``(M,)``, per neuron (expanded where shared)."""
    m = n * d
    W = edge_weights(inter.effective_edge_weight().reshape(-1), idx, m, sparse)
    mats = tuple(p.expand(n, d, d).contiguous() for p in (dyn.gate_s, dyn.gate_u, dyn.cand_u))
    vecs = tuple(p.expand(n, d).reshape(m).contiguous() for p in (dyn.gate_bias, dyn.cand_bias))
    return (W.contiguous(), *mats, *vecs)


def sequence(cell, spec: LoopSpec, idx: dict, P, s0, prepared, dt, grad: bool):
    dyn = cell.dynamics
    n, d = cell.num_neurons, cell.state_size
    # the input's share of the gate and of the candidate, for all T at once (autograd)
    P4 = P.unflatten(-1, (-1, d))
    sel = (lambda p: p[cell.input_neurons]) if dyn.per_neuron else (lambda p: p.expand(P4.shape[2], d, d))
    XG = torch.einsum("tbnl,nlk->tbnk", P4, sel(dyn.gate_x)).flatten(2).contiguous()
    XC = torch.einsum("tbnl,nlk->tbnk", P4, sel(dyn.cand_x)).flatten(2).contiguous()
    tensors = [XG, XC, s0.contiguous(), *prepared]
    rates = (dyn.rate_min, dyn.rate_max)
    if grad and any(t.requires_grad for t in tensors):
        return GatedLoop.apply(spec, n, d, rates, *tensors, dt)
    outs, s_last, _ = gated_forward(spec, n, d, rates, *tensors, dt, save=False)
    return outs, s_last


GATED = FusedFamily("gated", LinearInteraction, GatedDynamics, prepare, sequence)
