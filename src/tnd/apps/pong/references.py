"""Non-recurrent references for the Pong comparison: an MLP on the last ``k`` observations.

``mlp`` sees the current observation alone (``k = 1``): it cannot know the ball's velocity, so it
shows what memory buys. ``mlp_k`` sees the last ``k`` observations stacked (``--mlp-frames``),
enough to difference positions: it shows how far a fixed, short window goes without recurrence.

Both are :class:`tnd.apps.baselines.FrameStackMLP` and follow the baselines' interface:
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

from tnd.checks import check_int, check_positive_int
from ..baselines import LAYERS, FrameStackMLP, count_parameters, size_for_budget

__all__ = ["REFERENCE_NAMES", "FrameStackMLP", "reference_kwargs", "make_reference", "reference_hidden_for_budget"]

REFERENCE_NAMES = ("mlp", "mlp_k")


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
