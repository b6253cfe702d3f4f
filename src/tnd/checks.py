"""Input validation shared by the core and the apps (public, so that an app validates its
arguments the same way): errors name the argument, what was expected and what came."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch


def check_float_tensor(name: str, value: Any, ranks: tuple[int, ...], last_dim: int | None = None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.dtype.is_floating_point:
        raise TypeError(f"{name} must have a floating-point dtype, got {value.dtype}")
    if value.dim() not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ValueError(f"{name} must be {want}, got shape {tuple(value.shape)}")
    if last_dim is not None and value.shape[-1] != last_dim:
        raise ValueError(f"{name} must have last dimension {last_dim}, got shape {tuple(value.shape)}")
    check_finite(name, value)
    return value


def check_finite(name: str, value: torch.Tensor) -> None:
    if value.is_meta:  # no values to check (shape inference on the meta device)
        return
    if not bool(torch.isfinite(value).all()):
        bad = "NaN" if bool(torch.isnan(value).any()) else "Inf"
        raise ValueError(f"{name} contains {bad} values")


def check_shape(name: str, value: torch.Tensor, shape: tuple[int, ...], hint: str = "") -> None:
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}{hint}, got {tuple(value.shape)}")


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


MAX_SIZE = 2**24
"""Upper bound of a size argument (channels, outputs, state dimensions): far above any real
model, low enough that an absurd value is refused before torch tries to allocate it."""


def check_size(name: str, value: Any) -> int:
    """A positive int no larger than :data:`MAX_SIZE`."""
    check_positive_int(name, value)
    if value > MAX_SIZE:
        raise ValueError(f"{name} must be at most {MAX_SIZE} (2**24), got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """A real ``bool`` (not ``"no"``, not ``0``: a string or a number is never taken for a truth value)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {type(value).__name__} {value!r}")
    return value


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: a TypeError, and a ValueError for callers that catch bad
    values as one kind."""


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (a Python or numpy integer, not a bool) in ``[minimum, maximum]`` (either bound
    optional), returned as an ``int``. A wrong type raises :class:`ArgumentTypeError`, a value out
    of range a ValueError; both name the argument, what was expected and what came."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    lo, hi = minimum, maximum
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is not None:
            want = f"an int in [{lo}, {hi}]" if lo is not None else f"an int <= {hi}"
        else:
            want = {0: "a non-negative int", 1: "a positive int"}.get(lo, f"an int >= {lo}")
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return int(value)


def check_real(name: str, value: Any, minimum: float | None = None, maximum: float | None = None,
               exclusive_min: bool = False) -> float:
    """A finite real number (int or float, not a bool) within the range; returned as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    low_bad = minimum is not None and (v <= minimum if exclusive_min else v < minimum)
    if low_bad or (maximum is not None and v > maximum):
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        raise ValueError(f"{name} must be in {'(' if exclusive_min else '['}{lo}, {hi}], got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    """One of ``choices`` (strings, or None where allowed); a list or a dict is a TypeError."""
    if not isinstance(value, str) and not (value is None and None in choices):
        raise TypeError(f"{name} must be one of {list(choices)}, got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_kwargs(name: str, value: Any) -> dict:
    """None or a dict with string keys (the ``*_kw`` options)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError(f"{name} must be a dict of keyword arguments (or None), got {type(value).__name__} {value!r}")
    return dict(value)


def check_param_dtype(name: str, value: torch.Tensor, module: torch.nn.Module) -> None:
    """``value`` must have the dtype of ``module``'s parameters (no silent mixed precision) and be on
    their device."""
    p = next(module.parameters(), None)
    if p is not None and value.dtype != p.dtype:
        raise TypeError(f"{name} has dtype {value.dtype} but the model's parameters are {p.dtype}; "
                        f"convert {name} (e.g. {name}.to({p.dtype})) or the model (e.g. model.to({value.dtype}))")
    if p is not None and value.device != p.device:
        raise ValueError(f"{name} is on device {value.device} but the model's parameters are on {p.device}; "
                         f"move {name} (e.g. {name}.to({str(p.device)!r})) or the model")


#: relative slack of the state bound, for rounding (:func:`check_state_bound` and the C step kernel)
STATE_BOUND_RTOL = 1e-4


def check_state_bound(name: str, value: torch.Tensor, bound: float | None, what: str) -> None:
    """``|value| <= bound * (1 + STATE_BOUND_RTOL)``, ``bound`` None: no bound."""
    if bound is None or value.is_meta or value.numel() == 0:
        return
    worst = float(value.detach().abs().max())
    if worst > bound * (1 + STATE_BOUND_RTOL):
        raise ValueError(f"{name} holds values up to {worst:.4g} in magnitude, outside the bound |state| <= {bound:.6g} "
                         f"that {what} keeps every state within (docs/STABILITY.md); pass a state inside it "
                         f"(e.g. {name}.clamp(-{bound:.6g}, {bound:.6g}), or clamp_hx=True)")


def as_tensor(name: str, value: Any, expected: str, error: type[Exception] = TypeError, **kw: Any) -> torch.Tensor:
    """``torch.as_tensor(value, **kw)`` whose failures (None, strings, ragged lists) raise
    ``error`` naming the argument and what was ``expected``."""
    if isinstance(value, (str, bytes)):
        raise error(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    try:
        return torch.as_tensor(value, **kw)
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise error(f"{name} must be {expected}, got {type(value).__name__} ({e})") from None


def as_times(name: str, value: Any, dtype: torch.dtype, device: Any = None) -> torch.Tensor:
    """Elapsed times (a number or a tensor) as a ``dtype`` tensor, checked finite and > 0."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{name} must be a number or a float tensor of elapsed times, got a bool {value!r}")
    t = as_tensor(name, value, "a number or a tensor", dtype=dtype, device=device)
    check_finite(name, t)
    if not t.is_meta and bool((t <= 0).any()):
        raise ValueError(f"{name} must be > 0 (elapsed time of each step)")
    return t
