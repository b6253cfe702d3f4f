"""Non-recurrent references for the Pong comparison: an MLP on the last ``k`` observations.

``mlp`` sees the current observation alone (``k = 1``): it cannot know the ball's velocity, so it
shows what memory buys. ``mlp_k`` sees the last ``k`` observations stacked (``--mlp-frames``),
enough to difference positions: it shows how far a fixed, short window goes without recurrence.

Both follow the baselines' interface (:class:`tnd.apps.baselines.BaselineModel`):
``forward(x, hx=None) -> (logits, h)`` with ``x`` ``(B, T, C)`` and the logits of every step.
The state of ``mlp_k`` is its frame buffer, the previous ``k - 1`` observations ``(B, k - 1, C)``
(oldest first); ``hx=None`` (a serve: the buffer is reset) fills it with copies of the first
observation, so at a serve the model sees a still ball rather than made-up zeros. Passing ``h`` back
continues the sequence exactly, so playing step by step (as :mod:`tnd.apps.pong.evaluate` does)
gives the outputs of the whole window. ``mlp``'s state is ``None``. A training window starts from
a reset buffer, as every recurrent model starts it from a zero state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tnd.checks import check_int, check_positive_int
from ..baselines import BaselineModel, count_parameters, size_for_budget

__all__ = ["REFERENCE_NAMES", "FrameStackMLP", "reference_kwargs", "make_reference", "reference_hidden_for_budget"]

REFERENCE_NAMES = ("mlp", "mlp_k")
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


def reference_kwargs(name: str, mlp_frames: int) -> dict[str, Any]:
    """The constructor options of reference ``name`` (``mlp_frames``: ``mlp_k``'s ``k``)."""
    if name == "mlp":
        return {"frames": 1, "layers": LAYERS}
    if name == "mlp_k":
        return {"frames": check_int("mlp_frames", mlp_frames, 1), "layers": LAYERS}
    raise ValueError(f"unknown reference model {name!r}; expected one of {', '.join(REFERENCE_NAMES)}")


def make_reference(input_size: int, output_size: int, hidden_size: int, **kw: Any) -> FrameStackMLP:
    return FrameStackMLP(input_size, output_size, hidden_size, **kw)


def reference_hidden_for_budget(input_size: int, output_size: int, param_budget: int, **kw: Any) -> int:
    """The hidden width whose parameter count is closest to ``param_budget`` (ties: the smaller)."""
    check_positive_int("param_budget", param_budget)

    def count(h: int) -> int:
        with torch.random.fork_rng(devices=[]):
            return count_parameters(FrameStackMLP(input_size, output_size, h, **kw))

    return size_for_budget(count, param_budget, lo=1, hi=1 << 14)
