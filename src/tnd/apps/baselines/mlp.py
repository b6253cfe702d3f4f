"""Feed-forward references: an MLP applied at every step to the last ``frames`` observations.

With ``frames = 1`` the model has **no memory**: its output at step t depends on the observation at
t alone, so it shows what a task demands beyond the current input (the suite's and Pong's
memoryless reference). With ``frames = k > 1`` it sees the last k observations stacked: a fixed,
short window without recurrence (Pong's ``mlp_k``).

``forward(x, hx=None) -> (y, h)`` with ``x`` ``(B, T, C)`` and every step's output, as every
baseline (:class:`tnd.apps.baselines.BaselineModel`). The state of a k-frame MLP is its frame
buffer, the previous ``k - 1`` observations ``(B, k - 1, C)`` (oldest first); ``hx=None`` fills
it with copies of the first observation (a still start rather than made-up zeros); passing ``h``
back continues the sequence exactly. The single-frame MLP's state is ``None``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tnd.checks import check_int, check_positive_int
from .recurrent import BaselineModel

__all__ = ["FrameStackMLP", "LAYERS"]

LAYERS = 2  # hidden layers (ReLU), the same width


class FrameStackMLP(BaselineModel):
    """An MLP on the last ``frames`` observations, applied at every step (see the module docstring).

    State: ``None`` for ``frames == 1``, else the frame buffer ``(B, frames - 1, input_size)``."""

    def __init__(self, input_size: int, output_size: int, hidden_size: int, *, frames: int = 1,
                 layers: int = LAYERS) -> None:
        super().__init__(input_size, output_size, hidden_size)
        self.frames = check_int("frames", frames, 1)
        self.layers = check_positive_int("layers", layers)
        dims = [self.input_size * self.frames] + [self.hidden_size] * self.layers
        mods: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            mods += [nn.Linear(a, b), nn.ReLU()]
        mods.append(nn.Linear(dims[-1], self.output_size))
        self.net = nn.Sequential(*mods)

    def _forward_batched(self, x: torch.Tensor, hx: Any):
        B, T, C = x.shape
        k = self.frames
        if k == 1:
            if hx is not None:
                raise ValueError("hx: the single-frame MLP has no state; expected None")
            return self.net(x), None
        if hx is None:
            hx = x[:, :1].expand(B, k - 1, C)  # a reset buffer: the serve's observation repeated
        elif not isinstance(hx, torch.Tensor) or hx.shape != (B, k - 1, C):
            shape = tuple(hx.shape) if isinstance(hx, torch.Tensor) else type(hx).__name__
            raise ValueError(f"hx: expected the frame buffer of shape ({B}, {k - 1}, {C}), got {shape}")
        full = torch.cat([hx.to(x.dtype), x], dim=1)  # (B, k - 1 + T, C)
        stacked = full.unfold(1, k, 1)  # (B, T, C, k): window t holds steps t .. t + k - 1 of full
        stacked = stacked.permute(0, 1, 3, 2).reshape(B, T, k * C)  # oldest frame first
        return self.net(stacked), full[:, -(k - 1):].contiguous()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", frames={self.frames}, layers={self.layers}"
