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

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from . import cbuild


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


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()  # ctypes converts ints for c_void_p arguments


def _threads(spec: LoopSpec, steps: int, batch: int, units: int) -> int:
    """Worker threads of the C kernel: each runs whole sequences of a part of the batch, so
    threads pay off only where a call has enough work to cover starting them (about 50 us)."""
    if spec.threads > 0:
        return spec.threads
    per_row = spec.nnz if spec.sparse else units * units
    if steps * batch * per_row < (1 << 22):
        return 1
    return max(1, min(torch.get_num_threads(), batch if spec.sparse else max(1, batch // 4)))


def _take(x: torch.Tensor, dim: int, idx: torch.Tensor, rng: tuple | None) -> torch.Tensor:
    """``x.index_select(dim, idx)``, a cheap slice where the indices are a contiguous range."""
    return x.narrow(dim, rng[0], rng[1]) if rng is not None else x.index_select(dim, idx)


def _suffix(dtype: torch.dtype) -> str:
    return "f32" if dtype == torch.float32 else "f64"


# --------------------------------------------------------------------------- forward
def forward_loop(spec: LoopSpec, P, s0, W, r, bias, dt, save: bool):
    """Run the loop. Returns ``(outs, s_last, S, C)``; S and C are None unless ``save``.

    P ``(T, B, n_in)``, s0 ``(B, M)``, W ``(M, M)`` (dense) or ``(E,)`` (sparse, CSR order),
    r and bias ``(M,)``, dt ``(T, B)`` or None."""
    T, B, _ = P.shape
    M = s0.shape[1]
    n_out = spec.out_idx.numel()
    if spec.backend == "c":
        lib = cbuild.load()
        outs = P.new_empty(T if spec.seq_out else 1, B, n_out)
        s_last = P.new_empty(B, M)
        S = P.new_empty(T + 1, B, M) if save else None
        C = P.new_empty(T, B, M) if save else None
        getattr(lib, f"tnd_forward_{_suffix(P.dtype)}")(
            T, B, M, spec.in_idx.numel(), n_out, int(spec.seq_out), _ptr(P), _ptr(spec.in_idx), _ptr(spec.out_idx),
            _ptr(s0), int(spec.sparse), None if spec.sparse else _ptr(W), _ptr(spec.rowptr), _ptr(spec.src32),
            _ptr(W) if spec.sparse else None, _ptr(r), _ptr(bias), _ptr(dt), spec.act, _ptr(outs), _ptr(s_last),
            _ptr(S), _ptr(C), _threads(spec, T, B, M))
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
            keep[t] = _take(nxt, 1, spec.out_idx, spec.out_range)
        cur = nxt
    if save:
        outs = _take(S[1:] if spec.seq_out else S[T:], 2, spec.out_idx, spec.out_range).contiguous()
    else:
        outs = keep if spec.seq_out else _take(cur, 1, spec.out_idx, spec.out_range).unsqueeze(0).contiguous()
    return outs, cur.clone() if save else cur, S, C


def _incoming_grads(spec: LoopSpec, S: torch.Tensor, g_outs, g_last):
    """``(T, B, M, g_outs, g_last)`` of a backward over saved states ``S`` ``(T+1, B, M)``: a
    missing output gradient becomes zeros, both made contiguous for the kernels."""
    T1, B, M = S.shape
    if g_outs is None:
        g_outs = S.new_zeros(T1 - 1 if spec.seq_out else 1, B, spec.out_idx.numel())
    return T1 - 1, B, M, g_outs.contiguous(), None if g_last is None else g_last.contiguous()


# -------------------------------------------------------------------------- backward
def backward_loop(spec: LoopSpec, S, C, W, r, dt, g_outs, g_last, need_w: bool):
    """Returns ``(g_P, g_s0, g_W, g_r, g_bias)``."""
    T, B, M, g_outs, g_last = _incoming_grads(spec, S, g_outs, g_last)
    n_in, n_out = spec.in_idx.numel(), spec.out_idx.numel()
    if spec.backend == "c":
        lib = cbuild.load()
        g_s0, g_P = S.new_empty(B, M), S.new_empty(T, B, n_in)
        g_bias, g_r = S.new_empty(M), S.new_empty(M)
        Gpre = None if spec.sparse else S.new_empty(T, B, M)
        g_w = S.new_empty(W.shape[0]) if spec.sparse else None
        WT = None if spec.sparse else W.t().contiguous()
        getattr(lib, f"tnd_backward_{_suffix(S.dtype)}")(
            T, B, M, n_in, n_out, int(spec.seq_out), _ptr(spec.in_idx), _ptr(spec.out_idx), int(spec.sparse),
            _ptr(WT), _ptr(spec.rowptr), _ptr(spec.src32), _ptr(W) if spec.sparse else None,
            W.shape[0] if spec.sparse else 0, _ptr(r), _ptr(dt), spec.act, _ptr(S), _ptr(C), _ptr(g_outs),
            _ptr(g_last), _ptr(g_s0), _ptr(g_P), _ptr(g_bias), _ptr(g_r), _ptr(Gpre), _ptr(g_w),
            _threads(spec, T, B, M))
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
    g_P = _take(Gp, 2, spec.in_idx, spec.in_range).contiguous()
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


# ------------------------------------------------------------------------------ gated F
def gated_forward(spec: LoopSpec, N: int, d: int, rates, XG, XC, s0, W, Am, Gm, Vm, beta, cb, dt, save: bool):
    """Gated dynamics, C kernel only. ``rates = (rate_min, rate_max)``: the rate is
    ``rate_min + (rate_max - rate_min) * sigmoid(gate)``. XG, XC ``(T, B, n_in)``: the input's contributions to the gate
    and to the candidate at the input units; Am, Gm, Vm ``(N, d, d)``; beta, cb ``(M,)``.
    Returns ``(outs, s_last, saved)`` with saved = (S, U, SIG, CAND) or None."""
    T, B, _ = XG.shape
    M = N * d
    n_out = spec.out_idx.numel()
    lib = cbuild.load()
    outs = XG.new_empty(T if spec.seq_out else 1, B, n_out)
    s_last = XG.new_empty(B, M)
    saved = tuple(XG.new_empty(T + 1 if k == 0 else T, B, M) for k in range(4)) if save else (None,) * 4
    getattr(lib, f"tnd_gated_forward_{_suffix(XG.dtype)}")(
        T, B, N, d, spec.in_idx.numel(), n_out, int(spec.seq_out), _ptr(XG), _ptr(XC), _ptr(spec.in_idx),
        _ptr(spec.out_idx), _ptr(s0), int(spec.sparse), None if spec.sparse else _ptr(W), _ptr(spec.rowptr),
        _ptr(spec.src32), _ptr(W) if spec.sparse else None, _ptr(Am), _ptr(Gm), _ptr(Vm), _ptr(beta), _ptr(cb),
        float(rates[0]), float(rates[1] - rates[0]), _ptr(dt), _ptr(outs), _ptr(s_last), *(_ptr(t) for t in saved), _threads(spec, T, B, M))
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
        T, B, M, g_outs, g_last = _incoming_grads(spec, S, g_outs, g_last)
        n_in, n_out = spec.in_idx.numel(), spec.out_idx.numel()
        g_s0, g_xg, g_xc = S.new_empty(B, M), S.new_empty(T, B, n_in), S.new_empty(T, B, n_in)
        Gu = None if spec.sparse else S.new_empty(T, B, M)
        sizes = [N * d * d] * 3 + [M, M, W.shape[0] if spec.sparse else 0]
        g_params = S.new_empty(sum(sizes))
        WT = None if spec.sparse else W.t().contiguous()
        getattr(cbuild.load(), f"tnd_gated_backward_{_suffix(S.dtype)}")(
            T, B, N, d, n_in, n_out, int(spec.seq_out), _ptr(spec.in_idx), _ptr(spec.out_idx), int(spec.sparse),
            _ptr(WT), _ptr(spec.rowptr), _ptr(spec.src32), _ptr(W) if spec.sparse else None,
            W.shape[0] if spec.sparse else 0, _ptr(Am), _ptr(Gm), _ptr(Vm), float(ctx.rates[0]), float(ctx.rates[1] - ctx.rates[0]), _ptr(dt), _ptr(S),
            _ptr(U), _ptr(SIG), _ptr(CAND), _ptr(g_outs), _ptr(g_last), _ptr(g_s0), _ptr(g_xg), _ptr(g_xc), _ptr(Gu),
            _ptr(g_params), _threads(spec, T, B, M))
        gA, gG, gV, gbeta, gcb, g_w = torch.split(g_params, sizes)
        need = ctx.needs_input_grad
        if not spec.sparse:
            g_w = S[:-1].reshape(T * B, M).t().mm(Gu.reshape(T * B, M)) if need[7] else None
        return (None, None, None, None, g_xg, g_xc, g_s0, g_w, gA.view(N, d, d), gG.view(N, d, d),
                gV.view(N, d, d), gbeta, gcb, None)


# -------------------------------------------------------------------------------- MLP F
def mlp_forward(spec: LoopSpec, N, d, H, in_pos, P, s0, W, W1, B1, W2, B2, r, dt, save: bool):
    """Per-neuron MLP dynamics, C kernel only. P ``(T, B, n_in * d)``: the input projection at
    the input neurons (``in_pos[n]`` is neuron n's slot, or -1); the kernel applies the first
    layer's input rows itself. Returns ``(outs, s_last, saved)`` with saved = (S, U, C) or None."""
    T, B, _ = P.shape
    M = N * d
    n_out = spec.out_idx.numel()
    outs = P.new_empty(T if spec.seq_out else 1, B, n_out)
    s_last = P.new_empty(B, M)
    saved = (P.new_empty(T + 1, B, M), P.new_empty(T, B, M), P.new_empty(T, B, M)) if save else (None,) * 3
    getattr(cbuild.load(), f"tnd_mlp_forward_{_suffix(P.dtype)}")(
        T, B, N, d, H, P.shape[2] // d, n_out, int(spec.seq_out), _ptr(P), _ptr(in_pos), _ptr(spec.out_idx),
        _ptr(s0), int(spec.sparse), None if spec.sparse else _ptr(W), _ptr(spec.rowptr), _ptr(spec.src32),
        _ptr(W) if spec.sparse else None, _ptr(W1), _ptr(B1), _ptr(W2), _ptr(B2), _ptr(r), _ptr(dt), _ptr(outs),
        _ptr(s_last), *(_ptr(t) for t in saved), _threads(spec, T, B, M))
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
        T, B, M, g_outs, g_last = _incoming_grads(spec, S, g_outs, g_last)
        n_out = spec.out_idx.numel()
        g_s0, g_P = S.new_empty(B, M), torch.empty_like(P)  # the kernel writes every slot
        Gu = None if spec.sparse else S.new_empty(T, B, M)
        sizes = [N * 3 * d * H, N * H * d, N * H, M, M, W.shape[0] if spec.sparse else 0]
        g_params = S.new_empty(sum(sizes))
        WT = None if spec.sparse else W.t().contiguous()
        getattr(cbuild.load(), f"tnd_mlp_backward_{_suffix(S.dtype)}")(
            T, B, N, d, H, P.shape[2] // d, n_out, int(spec.seq_out), _ptr(P), _ptr(in_pos), _ptr(spec.out_idx),
            int(spec.sparse), _ptr(WT), _ptr(spec.rowptr), _ptr(spec.src32), _ptr(W) if spec.sparse else None,
            W.shape[0] if spec.sparse else 0, _ptr(W1), _ptr(B1), _ptr(W2), _ptr(r), _ptr(dt), _ptr(S), _ptr(U),
            _ptr(C), _ptr(g_outs), _ptr(g_last), _ptr(g_s0), _ptr(g_P), _ptr(Gu), _ptr(g_params),
            _threads(spec, T, B, M))
        gW1, gW2, gB1, gB2, gr, gw = torch.split(g_params, sizes)
        if not spec.sparse:
            gw = S[:-1].reshape(T * B, M).t().mm(Gu.reshape(T * B, M)) if ctx.needs_input_grad[7] else None
        return (None, None, None, None, None, g_P, g_s0, gw, gW1.view(N, 3 * d, H), gB1.view(N, H),
                gW2.view(N, H, d), gB2, gr, None)
