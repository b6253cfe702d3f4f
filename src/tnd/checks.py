"""Input validation shared by the core and the apps (public, so that an app validates its
arguments the same way): errors name the argument, what was expected and what came."""

from __future__ import annotations

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


def check_param_dtype(name: str, value: torch.Tensor, module: torch.nn.Module) -> None:
    """``value`` must have the dtype of ``module``'s parameters (no silent mixed precision)."""
    p = next(module.parameters(), None)
    if p is not None and value.dtype != p.dtype:
        raise TypeError(f"{name} has dtype {value.dtype} but the model's parameters are {p.dtype}; "
                        f"convert {name} (e.g. {name}.to({p.dtype})) or the model (e.g. model.to({value.dtype}))")


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
    t = as_tensor(name, value, "a number or a tensor", dtype=dtype, device=device)
    check_finite(name, t)
    if bool((t <= 0).any()):
        raise ValueError(f"{name} must be > 0 (elapsed time of each step)")
    return t


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """An integer argument (a Python or numpy integer, not a bool) in ``[lo, hi]`` (either bound
    optional), returned as an ``int``; a ValueError names the argument, the range and what came."""
    import numbers  # numpy integers register as Integral; numpy bools don't

    if not isinstance(value, numbers.Integral) or isinstance(value, bool) \
            or (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is not None:
            want = f"an int in [{lo}, {hi}]" if lo is not None else f"an int <= {hi}"
        else:
            want = {None: "an int", 0: "a non-negative int", 1: "a positive int"}.get(lo, f"an int >= {lo}")
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return int(value)
