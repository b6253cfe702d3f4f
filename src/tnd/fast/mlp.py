"""The fused loop of the per-neuron MLP dynamics (:mod:`tnd.dynamics.mlp`) with the linear
interaction, C kernel only (``csrc/tnd_mlp.inc.cpp``): per neuron n::

    hid = tanh([s_n, u_n, x_n] W1 + b1),   c = tanh(hid W2 + b2),   s' = c + (s - c) * exp(-r dt)

with ``u = s @ W`` and ``x_n`` the input projection at the input neurons (the kernel applies
the first layer's input rows itself). Backward is the analytic backpropagation through time.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..dynamics.mlp import MLPDynamics
from ..interactions.linear import LinearInteraction
from . import abi
from ._util import FusedFamily, LoopSpec, call_kernel, edge_weights, graph_fields, incoming_grads, threads_for

__all__ = ["MLP", "MLPArgs", "MLPLoop", "mlp_forward"]

#: mirrors TND_MLP_FIELDS in csrc/tnd_mlp.inc.cpp
MLPArgs = abi.struct("mlp", """
    i:T_ i:B i:N i:d i:H i:n_in i:n_out i:seq_out i:sparse i:E i:nthreads f:P f:s0 f:W f:WT f:w f:W1 f:B1 f:W2
    f:B2 f:r f:dt f:g_outs f:g_last f:S_in f:U_in f:C_in l:in_pos l:out_idx l:rowptr n:src f:outs f:s_last f:S
    f:U f:C f:g_s0 f:g_P f:Gu f:g_params""")


def _sizes(spec: LoopSpec, T: int, B: int, N: int, d: int, H: int, n_in: int, E: int = 0) -> dict:
    return dict(T_=T, B=B, N=N, d=d, H=H, n_in=n_in, n_out=spec.out_idx.numel(), seq_out=int(spec.seq_out),
                sparse=int(spec.sparse), E=E, nthreads=threads_for(spec, T, B, N * d))


def mlp_forward(spec: LoopSpec, N, d, H, in_pos, P, s0, W, W1, B1, W2, B2, r, dt, save: bool):
    """Per-neuron MLP dynamics, C kernel only. P ``(T, B, n_in * d)``: the input projection at
    the input neurons (``in_pos[n]`` is neuron n's slot, or -1); the kernel applies the first
    layer's input rows itself. Returns ``(outs, s_last, saved)`` with saved = (S, U, C) or None."""
    T, B, _ = P.shape
    M = N * d
    n_in, n_out = spec.in_idx.numel() // d, spec.out_idx.numel()
    outs = P.new_empty(T if spec.seq_out else 1, B, n_out)
    s_last = P.new_empty(B, M)
    saved = (P.new_empty(T + 1, B, M), P.new_empty(T, B, M), P.new_empty(T, B, M)) if save else (None,) * 3
    S, U, C = saved
    call_kernel(MLPArgs, "tnd_mlp_forward", P.dtype, _sizes(spec, T, B, N, d, H, n_in),
                dict(P=(P, (T, B, n_in * d)), in_pos=(in_pos, (N,)), out_idx=(spec.out_idx, (n_out,)),
                     s0=(s0, (B, M)), W1=(W1, (N, 3 * d, H)), B1=(B1, (N, H)), W2=(W2, (N, H, d)), B2=(B2, (M,)),
                     r=(r, (M,)), dt=(dt, (T, B)), outs=(outs, outs.shape), s_last=(s_last, (B, M)),
                     S=(S, (T + 1, B, M)), U=(U, (T, B, M)), C=(C, (T, B, M)), **graph_fields(spec, M, W)))
    return outs, s_last, (saved if save else None)


class MLPLoop(torch.autograd.Function):
    """``(P, s0, W, W1, B1, W2, B2, r) -> (outs, s_last)`` for the per-neuron MLP dynamics."""

    @staticmethod
    def forward(ctx, spec, N, d, H, in_pos, P, s0, W, W1, B1, W2, B2, r, dt):
        outs, s_last, saved = mlp_forward(spec, N, d, H, in_pos, P, s0, W, W1, B1, W2, B2, r, dt, save=True)
        ctx.spec, ctx.N, ctx.d, ctx.H = spec, N, d, H
        ctx.save_for_backward(*saved, P, in_pos, W, W1, B1, W2, r, dt)
        return outs, s_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_outs, g_last):
        S, U, C, P, in_pos, W, W1, B1, W2, r, dt = ctx.saved_tensors
        spec, N, d, H = ctx.spec, ctx.N, ctx.d, ctx.H
        T, B, M, g_outs, g_last = incoming_grads(spec, S, g_outs, g_last)
        n_in, n_out = spec.in_idx.numel() // d, spec.out_idx.numel()
        g_s0, g_P = S.new_empty(B, M), torch.empty_like(P)  # the kernel writes every slot
        Gu = None if spec.sparse else S.new_empty(T, B, M)
        E = W.shape[0] if spec.sparse else 0
        sizes = [N * 3 * d * H, N * H * d, N * H, M, M, E]
        g_params = S.new_empty(sum(sizes))
        WT = None if spec.sparse else W.t().contiguous()
        call_kernel(MLPArgs, "tnd_mlp_backward", S.dtype, _sizes(spec, T, B, N, d, H, n_in, E),
                    dict(P=(P, (T, B, n_in * d)), in_pos=(in_pos, (N,)), out_idx=(spec.out_idx, (n_out,)),
                         W1=(W1, (N, 3 * d, H)), B1=(B1, (N, H)), W2=(W2, (N, H, d)), r=(r, (M,)), dt=(dt, (T, B)),
                         S_in=(S, (T + 1, B, M)), U_in=(U, (T, B, M)), C_in=(C, (T, B, M)),
                         g_outs=(g_outs, (T if spec.seq_out else 1, B, n_out)), g_last=(g_last, (B, M)),
                         g_s0=(g_s0, (B, M)), g_P=(g_P, (T, B, n_in * d)), Gu=(Gu, (T, B, M)),
                         g_params=(g_params, (sum(sizes),)), **graph_fields(spec, M, W, WT)))
        gW1, gW2, gB1, gB2, gr, gw = torch.split(g_params, sizes)
        if not spec.sparse:
            gw = S[:-1].reshape(T * B, M).t().mm(Gu.reshape(T * B, M)) if ctx.needs_input_grad[7] else None
        return (None, None, None, None, None, g_P, g_s0, gw, gW1.view(N, 3 * d, H), gB1.view(N, H),
                gW2.view(N, H, d), gB2, gr, None)


# ------------------------------------------------------------------------- the family
def prepare(inter, dyn, idx: dict, n: int, d: int, sparse: bool):
    """``(W, W1, B1, W2, B2, r)``: the coupling (as the linear family's) and the two layers per
    neuron (expanded where shared), ``1 / tau`` per flat unit."""
    m = n * d
    h = dyn.hidden_size
    W = edge_weights(inter.effective_edge_weight().reshape(-1), idx, m, sparse)
    return (W.contiguous(), dyn.w1.expand(n, 3 * d, h).contiguous(), dyn.b1.expand(n, h).contiguous(),
            dyn.w2.expand(n, h, d).contiguous(), dyn.b2.expand(n, d).reshape(m).contiguous(),
            (1.0 / dyn.tau()).expand(n, d).reshape(m).contiguous())


def sequence(cell, spec: LoopSpec, idx: dict, P, s0, prepared, dt, grad: bool):
    n, d, h = cell.num_neurons, cell.state_size, cell.dynamics.hidden_size
    tensors = [P.contiguous(), s0.contiguous(), *prepared]  # the kernel applies the first layer's x rows
    if grad and any(t.requires_grad for t in tensors):
        return MLPLoop.apply(spec, n, d, h, idx["in_pos"], *tensors, dt)
    outs, s_last, _ = mlp_forward(spec, n, d, h, idx["in_pos"], *tensors, dt, save=False)
    return outs, s_last


MLP = FusedFamily("mlp", LinearInteraction, MLPDynamics, prepare, sequence)
