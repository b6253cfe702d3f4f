r"""Mamba baseline: the ``mambapy`` package's Mamba (pure PyTorch) behind the baseline interface.

The network is ``mambapy.mamba.Mamba`` (``mambapy >= 1.2``: residual blocks of RMSNorm + Mamba
mixer: input projection to two branches, a short causal depthwise convolution, the selective
state-space scan, the SiLU gate and the output projection), unchanged. Around it, as for the other
baselines: a linear input projection to ``d_model = hidden_size``, a final RMSNorm (mambapy's, as
in its language model) and a linear readout of every step.

Running it: the package's recurrent inference path (``Mamba.step``, one time step at a time,
each layer carrying its SSM state ``h`` and the last ``d_conv - 1`` inputs of its convolution)
runs every call that starts from a given state and every single step (play), so chunks and
single steps continue a sequence exactly. A call from the zero state (``hx=None``) over more than
one step computes the outputs with the package's parallel scan (``Mamba.forward``, the same
outputs up to rounding), which can neither start from a given state nor return its final one.
The final state is then computed without gradients, i.e. detached (what truncated BPTT does
anyway), from what the scan saw (forward hooks on each layer's ``x_proj`` and ``conv1d``), in
closed form:

.. math::

    h_T = \sum_{t=1}^{T} \Big(\prod_{s=t+1}^{T} \bar A_s\Big) \bar B_t x_t,
    \qquad \bar A_s = e^{\Delta_s A},\ \bar B_t = \Delta_t B_t,

one vectorised pass instead of stepping the sequence again (which made a training step
1.6-1.9x and an evaluation 4-5x slower at T = 132-256; ``benchmarks/mamba_paths.py``). ``parallel=False`` steps
always (the state then carries gradients).

State ``(h, conv)``: ``h`` is ``(B, num_layers, d_inner, d_state)``, ``conv`` is
``(B, num_layers, d_inner, d_conv - 1)``, with ``d_inner = expand_factor * hidden_size``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
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

    def _parallel_path(self, u: torch.Tensor):
        """The package's parallel scan over ``u`` ``(B, T, d_model)`` from the zero state:
        ``(outputs, detached final state)`` (the closed form of the module doc)."""
        seen: list[dict[str, torch.Tensor]] = [{} for _ in self.mamba.layers]

        def on_x_proj(got: dict[str, torch.Tensor]):  # the SSM's input x and its (delta, B, C) projection
            return lambda _m, inputs, output: got.update(x=inputs[0].detach(), dbc=output.detach())

        def on_conv(got: dict[str, torch.Tensor]):  # the convolution's input: its cache is the last columns
            return lambda _m, inputs, _output: got.update(conv_in=inputs[0].detach())

        hooks = []
        for layer, got in zip(self.mamba.layers, seen):
            hooks.append(layer.mixer.x_proj.register_forward_hook(on_x_proj(got)))
            hooks.append(layer.mixer.conv1d.register_forward_hook(on_conv(got)))
        try:
            out = self.mamba(u)
        finally:
            for hk in hooks:
                hk.remove()
        hs, convs = [], []
        keep_last = self.d_conv - 1
        with torch.no_grad():
            for layer, got in zip(self.mamba.layers, seen):
                mixer = layer.mixer
                delta, b, _ = torch.split(got["dbc"], [self.config.dt_rank, self.d_state, self.d_state], dim=-1)
                delta = F.softplus(F.linear(delta, mixer.dt_proj.weight, mixer.dt_proj.bias))  # (B, T, ED)
                log_a = delta.unsqueeze(-1) * -torch.exp(mixer.A_log.float())  # (B, T, ED, N)
                # decay from step t to the end: sum over s > t of log A_s (a reverse cumulative sum, shifted)
                after = torch.cat([log_a.flip(1).cumsum(1).flip(1)[:, 1:], torch.zeros_like(log_a[:, :1])], 1)
                bx = (delta * got["x"]).unsqueeze(-1) * b.unsqueeze(2)
                hs.append((torch.exp(after) * bx).sum(1))
                c = got["conv_in"][:, :, -keep_last:]  # (B, ED, <= d_conv - 1) pre-convolution inputs
                convs.append(F.pad(c, (keep_last - c.shape[-1], 0)))  # zeros before the first step
        return out, (torch.stack(hs, dim=1), torch.stack(convs, dim=1))

    def _forward_batched(self, x: torch.Tensor, hx: Optional[tuple]):
        u = self.input_proj(x)
        if hx is None and self.parallel and x.shape[1] > 1:
            out, state = self._parallel_path(u)
        else:
            h, conv = self._zero_state(x) if hx is None else self._check_hx(hx)
            out, state = self._step_path(u, h, conv)
        return self.readout(self.norm_f(out)), state

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", num_layers={self.num_layers}, d_state={self.d_state}, "
                f"expand_factor={self.expand_factor}, d_conv={self.d_conv}, parallel={self.parallel}")
