"""Name -> baseline class registry, construction by name and parameter-budget matching."""

from __future__ import annotations

from typing import Any, Callable, Dict, Type

import torch
from torch import nn

from tnd.checks import check_positive_int
from .cfc import LTC, CfC
from .lru import LRU
from .mamba import Mamba
from .recurrent import LSTM, SparseRNN, VanillaRNN
from .transformer import CausalTransformer

__all__ = ["BASELINES", "make_baseline", "count_parameters", "hidden_size_for_budget", "size_for_budget"]

BASELINES: Dict[str, Type[nn.Module]] = {
    "rnn": VanillaRNN,
    "sparse_rnn": SparseRNN,
    "lstm": LSTM,
    "cfc": CfC,
    "ltc": LTC,
    "transformer": CausalTransformer,
    "mamba": Mamba,
    "lru": LRU,
}


def _lookup(name: str) -> Type[nn.Module]:
    try:
        return BASELINES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown baseline name {name!r}; valid names: "
                         f"{', '.join(sorted(BASELINES))}") from None


def make_baseline(name: str, input_size: int, output_size: int, hidden_size: int,
                  **kw: Any) -> nn.Module:
    """Build the baseline registered as ``name`` (see ``BASELINES``)."""
    return _lookup(name)(input_size, output_size, hidden_size, **kw)


def count_parameters(module: nn.Module, *, effective: bool = False) -> int:
    """Number of trainable parameters (``requires_grad``) of ``module``; a complex parameter
    entry counts as two (its real and imaginary parts are trained separately: ``LRU``).

    With ``effective=True`` a module exposing ``num_effective_parameters()`` (``SparseRNN``:
    masked recurrent weights are not counted) reports that number instead.
    """
    if effective and hasattr(module, "num_effective_parameters"):
        return int(module.num_effective_parameters())
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in module.parameters() if p.requires_grad)


def hidden_size_for_budget(name: str, input_size: int, output_size: int, param_budget: int,
                           *, effective: bool = False, max_hidden: int = 1 << 16,
                           **kw: Any) -> int:
    """Hidden size whose trainable-parameter count is closest to ``param_budget``.

    ``kw`` are passed to the model constructor (e.g. ``nhead``/``num_layers`` for the
    Transformer, ``backbone_units`` for CfC). Only valid hidden sizes are searched (multiples of
    ``nhead`` for the Transformer). Ties go to the smaller model. Models are built inside
    ``torch.random.fork_rng`` so the global RNG state is left untouched. If even the smallest
    model exceeds the budget, the smallest valid hidden size is returned.
    """
    cls = _lookup(name)
    check_positive_int("param_budget", param_budget)
    step = int(getattr(cls, "hidden_size_multiple", lambda **_: 1)(**kw))
    def count(k: int) -> int:  # parameters at hidden size k * step
        with torch.random.fork_rng(devices=[]):
            m = cls(input_size, output_size, k * step, **kw)
        return count_parameters(m, effective=effective)

    return size_for_budget(count, param_budget, lo=1, hi=max(1, max_hidden // step)) * step


def size_for_budget(count: Callable[[int], int], target: int, lo: int = 1, hi: int = 1 << 16) -> int:
    """The size ``k`` in ``[lo, hi]`` whose ``count(k)`` (non-decreasing in k, e.g. a parameter
    count) is closest to ``target``; ties go to the smaller size. Exponential then binary
    search, each size counted once. Models should be built inside ``torch.random.fork_rng``
    by ``count`` so the global RNG state is left untouched."""
    cache: Dict[int, int] = {}

    def c(k: int) -> int:
        if k not in cache:
            cache[k] = count(k)
        return cache[k]

    if c(lo) >= target:
        return lo
    a, b = lo, lo
    while c(b) < target and b < hi:
        a, b = b, min(2 * b, hi)
    while b - a > 1:
        m = (a + b) // 2
        if c(m) < target:
            a = m
        else:
            b = m
    return min((a, b), key=lambda k: (abs(c(k) - target), k))
