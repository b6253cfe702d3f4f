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

from . import cbuild
from .loop import LoopSpec, _incoming_grads, _ptr, _suffix, _threads


def prepare(inter, dyn, idx: dict, n: int, d: int, sparse: bool):
    """``(Wv, Wp, key, r, bias)`` for the kernel, differentiable w.r.t. the parameters."""
    m = n * d
    p = inter._prior_exp()  # (E,): mask * exp(b - max b), as the reference
    wv = (p[:, None] * inter.effective_edge_weight()).reshape(-1)  # (E * d,) in (edge, dim) order
    wp = p[:, None].expand(-1, d).reshape(-1)
    if sparse:
        Ws = [w if idx["identity_order"] else w[idx["order"]] for w in (wv, wp)]
    else:
        Ws = [w.new_zeros(m * m).index_put((idx["dense_index"],), w).view(m, m) for w in (wv, wp)]
    r = (1.0 / dyn.tau()).expand(n, d).reshape(m)
    bias = dyn.bias.expand(n, d).reshape(m)
    return (*(w.contiguous() for w in Ws), inter.key.reshape(m).contiguous(), r.contiguous(), bias.contiguous())


def attn_forward(spec: LoopSpec, N: int, d: int, kappa: float, P, s0, Wv, Wp, key, r, bias, dt, save: bool):
    """Returns ``(outs, s_last, saved)``, saved = (S, C, U, DEN) ``(T+1 | T, B, M)`` or None."""
    T, B, n_in = P.shape
    M = N * d
    n_out = spec.out_idx.numel()
    outs = P.new_empty(T if spec.seq_out else 1, B, n_out)
    s_last = P.new_empty(B, M)
    saved = tuple(P.new_empty(T + 1 if k == 0 else T, B, M) for k in range(4)) if save else (None,) * 4
    getattr(cbuild.load(), f"tnd_attn_forward_{_suffix(P.dtype)}")(
        T, B, N, d, n_in, n_out, int(spec.seq_out), spec.act, float(kappa), _ptr(P), _ptr(spec.in_idx),
        _ptr(spec.out_idx), _ptr(s0), int(spec.sparse), _ptr(Wv), _ptr(Wp), _ptr(spec.rowptr), _ptr(spec.src32),
        _ptr(key), _ptr(r), _ptr(bias), _ptr(dt), _ptr(outs), _ptr(s_last), *(_ptr(t) for t in saved),
        _threads(spec, T, B, M))
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
        T, B, M, g_outs, g_last = _incoming_grads(spec, S, g_outs, g_last)
        n_in, n_out = spec.in_idx.numel(), spec.out_idx.numel()
        g_s0, g_P = S.new_empty(B, M), S.new_empty(T, B, n_in)
        E = Wv.shape[0] if spec.sparse else 0
        dense = (S.new_empty(T, B, M) for _ in range(4)) if not spec.sparse else (None,) * 4
        Gnum, Gden, EF, ES = dense
        sizes = [M, M, M, E, E]
        g_params = S.new_empty(sum(sizes))
        W1, W2 = (Wv, Wp) if spec.sparse else (Wv.t().contiguous(), Wp.t().contiguous())
        getattr(cbuild.load(), f"tnd_attn_backward_{_suffix(S.dtype)}")(
            T, B, N, d, n_in, n_out, int(spec.seq_out), spec.act, float(ctx.kappa), _ptr(spec.in_idx),
            _ptr(spec.out_idx), int(spec.sparse), _ptr(W1), _ptr(W2), _ptr(spec.rowptr), _ptr(spec.src32), E,
            _ptr(key), _ptr(r), _ptr(dt), _ptr(S), _ptr(C), _ptr(U), _ptr(D), _ptr(g_outs), _ptr(g_last), _ptr(g_s0),
            _ptr(g_P), _ptr(Gnum), _ptr(Gden), _ptr(EF), _ptr(ES), _ptr(g_params), _threads(spec, T, B, M))
        g_key, g_r, g_bias, g_wv, g_wp = torch.split(g_params, sizes)
        need = ctx.needs_input_grad
        if not spec.sparse:  # sum over all T * B rows in one matmul each
            g_wv = ES.reshape(T * B, M).t().mm(Gnum.reshape(T * B, M)) if need[6] else None
            g_wp = EF.reshape(T * B, M).t().mm(Gden.reshape(T * B, M)) if need[7] else None
        return (None, None, None, None, g_P if need[4] else None, g_s0 if need[5] else None, g_wv, g_wp,
                g_key if need[8] else None, g_r if need[9] else None, g_bias if need[10] else None, None)
