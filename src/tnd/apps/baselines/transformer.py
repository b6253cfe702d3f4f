"""A small causal, sliding-window Transformer baseline.

Design (and why it deviates slightly from "re-encode a buffer of the last inputs"):

Every query at step ``t`` attends to the keys of steps ``t-context+1 .. t`` only (a *banded*
causal mask of width ``context``), in every layer. With more than one layer, re-encoding a
window of raw inputs at each step is **not** the same computation as a banded-mask pass over the
whole sequence (in the full pass, layer-2 keys have themselves seen ``context`` earlier steps, so
the receptive field is ``num_layers * (context - 1) + 1``). To make training on whole sequences
and step-by-step play agree exactly for *any* length, the recurrent state caches, for each layer,
that layer's input (the residual stream) for the last ``context - 1`` steps -- a key/value cache.
``forward`` runs one code path for every case (whole sequence with ``hx=None``, chunks, single
steps), so ``forward(x)`` equals stepping through ``x`` one step at a time with the carried
state, for sequences shorter or longer than ``context``.

Positions: ``positional="relative"`` (default) uses a learned bias per head and per distance
``0 .. context-1`` added to the attention scores (a learned relative positional embedding); it is
translation invariant, so play can run for arbitrarily many steps. ``positional="absolute"``
adds a learned embedding of the absolute step index (``max_len`` entries) to the input, like
GPT; the state then also carries the step counter, and sequences longer than ``max_len`` raise.
``positional="both"`` uses both.

The layers are ``nn.TransformerEncoderLayer(norm_first=True)`` (pre-norm) held by an
``nn.TransformerEncoder`` with a final ``LayerNorm``; because keys may come from the cache, the
layers are applied through their sub-modules (``norm1``, ``self_attn``, ``norm2``, feed-forward)
exactly as ``TransformerEncoderLayer.forward`` does for ``norm_first=True``.

State ``hx = (cache, step)``: ``cache`` is ``(B, num_layers, n, d_model)`` with
``n = min(steps seen, context - 1)``, ``step`` is a ``(B,)`` int64 tensor of steps seen so far.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from tnd.checks import check_positive_int

from .recurrent import BaselineModel

__all__ = ["CausalTransformer"]


class CausalTransformer(BaselineModel):
    """Pre-norm causal Transformer encoder over a sliding window of ``context`` steps.

    ``hidden_size`` is ``d_model`` (must be divisible by ``nhead``); the feed-forward width is
    ``ff_mult * hidden_size``.
    """

    #: hidden sizes must be multiples of this attribute's value for the given kwargs
    @staticmethod
    def hidden_size_multiple(nhead: int = 2, **_: object) -> int:
        return int(nhead)

    def __init__(self, input_size: int, output_size: int, hidden_size: int, *,
                 num_layers: int = 2, nhead: int = 2, context: int = 32, max_len: int = 1024,
                 ff_mult: int = 4, dropout: float = 0.0, activation: str = "gelu",
                 positional: str = "relative") -> None:
        super().__init__(input_size, output_size, hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.nhead = check_positive_int("nhead", nhead)
        self.context = check_positive_int("context", context)
        self.max_len = check_positive_int("max_len", max_len)
        self.ff_mult = check_positive_int("ff_mult", ff_mult)
        if hidden_size % nhead != 0:
            raise ValueError(f"hidden_size must be divisible by nhead={nhead}, got {hidden_size}")
        if positional not in ("relative", "absolute", "both"):
            raise ValueError(f"positional must be 'relative', 'absolute' or 'both', "
                             f"got {positional!r}")
        self.positional = positional
        d = hidden_size
        self.input_proj = nn.Linear(input_size, d)
        if positional in ("absolute", "both"):
            self.pos_emb = nn.Embedding(max_len, d)
            nn.init.normal_(self.pos_emb.weight, std=0.02)
        else:
            self.pos_emb = None
        if positional in ("relative", "both"):
            # rel_bias[h, k]: additive attention bias of head h for a key k steps in the past
            self.rel_bias = nn.Parameter(torch.zeros(nhead, context))
        else:
            self.rel_bias = None
        layer = nn.TransformerEncoderLayer(d, nhead, dim_feedforward=ff_mult * d,
                                           dropout=dropout, activation=activation,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d),
                                             enable_nested_tensor=False)
        # nn.TransformerEncoder deep-copies one layer, so all layers would start identical;
        # re-initialise the copies so each layer gets its own draw (still seed-deterministic).
        for lyr in list(self.encoder.layers)[1:]:
            lyr.self_attn.out_proj.reset_parameters()
            lyr.self_attn._reset_parameters()  # (zeroes the out_proj bias, as at construction)
            lyr.linear1.reset_parameters()
            lyr.linear2.reset_parameters()
        self.readout = nn.Linear(d, output_size)

    # ---------------------------------------------------------------------------------------
    def _attn_mask(self, T: int, n: int, B: int, dtype, device) -> torch.Tensor:
        """Float mask (B*nhead, T, n+T): query i (absolute n+i) sees keys j with 0 <= n+i-j < context."""
        q = torch.arange(T, device=device).unsqueeze(1) + n
        k = torch.arange(n + T, device=device).unsqueeze(0)
        dist = q - k  # (T, n+T)
        allowed = (dist >= 0) & (dist < self.context)
        neg_inf = torch.tensor(float("-inf"), dtype=dtype, device=device)
        if self.rel_bias is None:
            m = torch.where(allowed, torch.zeros((), dtype=dtype, device=device), neg_inf)
            return m.unsqueeze(0).expand(B * self.nhead, T, n + T)
        idx = dist.clamp(0, self.context - 1)
        bias = self.rel_bias[:, idx]  # (nhead, T, n+T)
        m = torch.where(allowed.unsqueeze(0), bias, neg_inf)
        # MultiheadAttention expects (B*nhead, T, S) ordered batch-major
        return m.unsqueeze(0).expand(B, self.nhead, T, n + T).reshape(B * self.nhead, T, n + T)

    def _forward_batched(self, x: torch.Tensor, hx: Optional[tuple]):
        B, T, _ = x.shape
        d, L = self.hidden_size, self.num_layers
        if hx is None:
            cache = x.new_zeros(B, L, 0, d)
            step = torch.zeros(B, dtype=torch.long, device=x.device)
        else:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError("hx: expected a tuple (cache, step) for CausalTransformer")
            cache, step = hx
            if cache.dim() != 4 or cache.shape[1] != L or cache.shape[3] != d \
                    or cache.shape[2] > self.context - 1:
                raise ValueError(f"hx: expected cache of shape (B, {L}, n<={self.context - 1}, "
                                 f"{d}), got {tuple(cache.shape)}")
            if step.dim() != 1:
                raise ValueError(f"hx: expected step of shape (B,), got {tuple(step.shape)}")
        n = cache.shape[2]
        h = self.input_proj(x)
        if self.pos_emb is not None:
            pos = step.unsqueeze(1) + torch.arange(T, device=x.device).unsqueeze(0)  # (B, T)
            if int(pos.max()) >= self.max_len:
                raise ValueError(f"x: sequence position {int(pos.max())} exceeds max_len="
                                 f"{self.max_len} (positional='{self.positional}'); raise "
                                 f"max_len or use positional='relative'")
            h = h + self.pos_emb(pos)
        mask = self._attn_mask(T, n, B, h.dtype, x.device)
        keep = self.context - 1
        new_cache = []
        for li, layer in enumerate(self.encoder.layers):
            past = cache[:, li]  # (B, n, d)
            full = torch.cat([past, h], dim=1) if n else h  # (B, n+T, d)
            new_cache.append(full[:, full.shape[1] - min(keep, full.shape[1]):])
            # pre-norm block, as nn.TransformerEncoderLayer.forward with norm_first=True
            q = layer.norm1(h)
            kv = layer.norm1(full)
            a = layer.self_attn(q, kv, kv, attn_mask=mask, need_weights=False)[0]
            h = h + layer.dropout1(a)
            h = h + layer._ff_block(layer.norm2(h))
        h = self.encoder.norm(h)
        y = self.readout(h)
        new_cache_t = torch.stack(new_cache, dim=1)  # (B, L, min(keep, n+T), d)
        return y, (new_cache_t, step + T)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", num_layers={self.num_layers}, nhead={self.nhead}, "
                f"context={self.context}, positional={self.positional!r}")
