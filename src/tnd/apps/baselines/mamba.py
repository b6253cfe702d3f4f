"""Mamba baseline: the ``mambapy`` package's Mamba (pure PyTorch) behind the baseline interface.

The network is ``mambapy.mamba.Mamba`` (``mambapy >= 1.2``: residual blocks of RMSNorm + Mamba
mixer: input projection to two branches, a short causal depthwise convolution, the selective
state-space scan, the SiLU gate and the output projection), unchanged. Around it, as for the other
baselines: a linear input projection to ``d_model = hidden_size``, a final RMSNorm (mambapy's, as
in its language model) and a linear readout of every step.

Running it: the package's recurrent inference path (``Mamba.step``, one time step at a time,
each layer carrying its SSM state ``h`` and the last ``d_conv - 1`` inputs of its convolution)
runs every call that starts from a given state and every call without gradients (play), so
chunks and single steps continue a sequence exactly. A training call (``hx=None``, gradients on,
more than one step) computes the outputs with the package's parallel scan (``Mamba.forward``,
the same outputs up to rounding; about 1.5x faster to train than stepping here), which can
neither start from a given state nor return its final one: the returned state then comes from a
second pass of the step path without gradients, i.e. it is detached (what truncated BPTT does
anyway). ``parallel=False`` steps always (the state then carries gradients).

State ``(h, conv)``: ``h`` is ``(B, num_layers, d_inner, d_state)``, ``conv`` is
``(B, num_layers, d_inner, d_conv - 1)``, with ``d_inner = expand_factor * hidden_size``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from tnd.checks import check_positive_int

from .recurrent import BaselineModel

try:  # mambapy is an optional dependency (extras "pong" and "suite")
    from mambapy.mamba import Mamba as _MambaNet
    from mambapy.mamba import MambaConfig, RMSNorm
except ImportError:  # pragma: no cover - exercised only without mambapy
    _MambaNet = MambaConfig = RMSNorm = None

__all__ = ["Mamba"]


class Mamba(BaselineModel):
    """``mambapy`` Mamba (``num_layers`` residual Mamba blocks of width ``hidden_size``) with an
    input projection, a final RMSNorm and a linear readout.

    ``d_state`` (SSM state per channel), ``expand_factor`` (``d_inner / d_model``), ``d_conv``
    (convolution width) and ``dt_rank`` are mambapy's ``MambaConfig`` fields, with its defaults.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, *,
                 num_layers: int = 1, d_state: int = 16, expand_factor: int = 2, d_conv: int = 4,
                 dt_rank: Any = "auto", parallel: bool = True) -> None:
        super().__init__(input_size, output_size, hidden_size)
        if _MambaNet is None:
            raise ImportError("Mamba needs the 'mambapy' package (pip install 'mambapy>=1.2' or "
                              "install tnd with the 'pong' or 'suite' extra)")
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.d_state = check_positive_int("d_state", d_state)
        self.expand_factor = check_positive_int("expand_factor", expand_factor)
        self.d_conv = check_positive_int("d_conv", d_conv)
        if self.d_conv < 2:
            raise ValueError(f"d_conv: expected an integer >= 2 (the convolution carries "
                             f"d_conv - 1 past inputs), got {d_conv}")
        if not isinstance(parallel, bool):
            raise TypeError(f"parallel: expected a bool, got {type(parallel).__name__}")
        self.parallel = parallel
        if dt_rank != "auto":
            dt_rank = check_positive_int("dt_rank", dt_rank)
        self.config = MambaConfig(d_model=hidden_size, n_layers=num_layers, d_state=d_state,
                                  expand_factor=expand_factor, d_conv=d_conv, dt_rank=dt_rank)
        self.input_proj = nn.Linear(input_size, hidden_size)
        self.mamba = _MambaNet(self.config)
        self.norm_f = RMSNorm(hidden_size, self.config.rms_norm_eps)
        self.readout = nn.Linear(hidden_size, output_size)

    @property
    def d_inner(self) -> int:
        return int(self.config.d_inner)

    def _zero_state(self, x: torch.Tensor):
        B, L = x.shape[0], self.num_layers
        return (x.new_zeros(B, L, self.d_inner, self.d_state),
                x.new_zeros(B, L, self.d_inner, self.d_conv - 1))

    def _check_hx(self, hx: Any) -> tuple:
        if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError("hx: expected a tuple (h, conv) for Mamba")
        h, conv = hx
        want_h = (self.num_layers, self.d_inner, self.d_state)
        want_c = (self.num_layers, self.d_inner, self.d_conv - 1)
        if h.dim() != 4 or tuple(h.shape[1:]) != want_h:
            raise ValueError(f"hx: expected h of shape (B, {', '.join(map(str, want_h))}), "
                             f"got {tuple(h.shape)}")
        if conv.dim() != 4 or tuple(conv.shape[1:]) != want_c:
            raise ValueError(f"hx: expected conv of shape (B, {', '.join(map(str, want_c))}), "
                             f"got {tuple(conv.shape)}")
        return h, conv

    def _step_path(self, u: torch.Tensor, h: torch.Tensor, conv: torch.Tensor):
        """The package's ``Mamba.step`` over ``u`` ``(B, T, d_model)``: ``(outputs, state)``."""
        caches = [(h[:, i], conv[:, i]) for i in range(self.num_layers)]
        outs = []
        for ut in u.unbind(1):
            yt, caches = self.mamba.step(ut, caches)
            outs.append(yt)
        state = (torch.stack([c[0] for c in caches], dim=1), torch.stack([c[1] for c in caches], dim=1))
        return torch.stack(outs, dim=1), state

    def _forward_batched(self, x: torch.Tensor, hx: Optional[tuple]):
        h, conv = self._zero_state(x) if hx is None else self._check_hx(hx)
        u = self.input_proj(x)
        if hx is None and self.parallel and torch.is_grad_enabled() and x.shape[1] > 1:
            out = self.mamba(u)  # the package's parallel scan, from a zero state
            with torch.no_grad():
                _, state = self._step_path(u, h, conv)
        else:
            out, state = self._step_path(u, h, conv)
        return self.readout(self.norm_f(out)), state

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", num_layers={self.num_layers}, d_state={self.d_state}, "
                f"expand_factor={self.expand_factor}, d_conv={self.d_conv}, parallel={self.parallel}")
