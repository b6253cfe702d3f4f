"""Common container and registry for the benchmark tasks.

Every task builder returns a :class:`SequenceTask` holding float32 input tensors
of shape ``(N, T, C)`` for the train / validation / test splits plus targets.

Target conventions
------------------
* ``kind == "classification"``: targets are ``int64``.  If ``per_step`` is False
  they have shape ``(N,)`` (one label per sequence, read out after the last
  *valid* step, see ``lengths_*``).  If ``per_step`` is True they have shape
  ``(N, K)`` and are aligned with the **last K steps** of the input sequence
  (``K = y.shape[1] <= T``); earlier steps carry no target.
* ``kind in ("regression", "forecast")``: targets are ``float32`` of shape
  ``(N, output_size)`` (per sequence) or ``(N, K, output_size)`` (per step,
  aligned with the last K steps as above).

Optional per-split extras
-------------------------
* ``timespans_*``: ``(N, T)`` float32, elapsed time of each step (> 0).  ``None``
  means regularly sampled with unit steps (see :meth:`SequenceTask.timespans`).
* ``base_forecast_*``: for ``forecast`` tasks, a reference forecast shaped like the targets
  (e.g. the seasonal-naive one). A model then forecasts the *residual*: its prediction is
  ``base_forecast + model output``, as forecasting practice does, so a model that outputs zero
  scores exactly the reference (see :meth:`SequenceTask.base_forecast`). ``None``: no base.
* ``lengths_*``: ``(N,)`` int64 number of valid steps of each sequence for
  variable-length data.  Sequences are right-padded by repeating the last valid
  frame (and timespan 1.0); the label must be read at step ``length - 1``.
  ``None`` means every sequence uses all ``T`` steps.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch

__all__ = [
    "SequenceTask",
    "TASKS",
    "register_task",
    "load_task",
    "list_tasks",
    "SPLITS",
    "forecast_windows",
    "pmdarima_series",
]

SPLITS = ("train", "val", "test")
KINDS = ("classification", "regression", "forecast")


@dataclass
class SequenceTask:
    """A sequence benchmark: three splits of ``(N, T, C)`` float32 inputs plus targets."""

    name: str
    kind: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: Optional[int] = None
    output_size: Optional[int] = None
    per_step: bool = False
    timespans_train: Optional[torch.Tensor] = None
    timespans_val: Optional[torch.Tensor] = None
    timespans_test: Optional[torch.Tensor] = None
    lengths_train: Optional[torch.Tensor] = None
    lengths_val: Optional[torch.Tensor] = None
    lengths_test: Optional[torch.Tensor] = None
    base_forecast_train: Optional[torch.Tensor] = None
    base_forecast_val: Optional[torch.Tensor] = None
    base_forecast_test: Optional[torch.Tensor] = None
    metadata: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "classification":
            if self.num_classes is None:
                raise ValueError("classification tasks need num_classes")
            if self.output_size is None:
                self.output_size = self.num_classes
        elif self.output_size is None:
            raise ValueError(f"{self.kind} tasks need output_size")
        bases = [getattr(self, f"base_forecast_{s}") for s in SPLITS]
        if any(b is not None for b in bases):
            if self.kind != "forecast":
                raise ValueError(f"base_forecast_* is for forecast tasks, got kind {self.kind!r}")
            for s, b in zip(SPLITS, bases):
                y = getattr(self, f"y_{s}")
                if b is None or tuple(b.shape) != tuple(y.shape) or b.dtype != y.dtype:
                    got = None if b is None else f"{tuple(b.shape)} {b.dtype}"
                    raise ValueError(f"base_forecast_{s} must be given for every split and shaped like "
                                     f"y_{s} {tuple(y.shape)} {y.dtype}, got {got}")

    # ------------------------------------------------------------------ helpers
    @property
    def input_size(self) -> int:
        """Number of input channels C."""
        return int(self.x_train.shape[-1])

    @property
    def seq_len(self) -> int:
        """Padded sequence length T."""
        return int(self.x_train.shape[1])

    @property
    def is_irregular(self) -> bool:
        return self.timespans_train is not None

    def split(
        self, which: str
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x, y)`` of split ``which`` in ``("train", "val", "test")``."""
        _check_split(which)
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def timespans(self, which: str) -> torch.Tensor:
        """``(N, T)`` elapsed times of split ``which``; all ones for regular tasks."""
        _check_split(which)
        ts = getattr(self, f"timespans_{which}")
        if ts is None:
            x = getattr(self, f"x_{which}")
            ts = torch.ones(x.shape[0], x.shape[1], dtype=torch.float32)
        return ts

    def base_forecast(self, which: str) -> Optional[torch.Tensor]:
        """The reference forecast of split ``which`` that predictions are residuals on (or None)."""
        _check_split(which)
        return getattr(self, f"base_forecast_{which}")

    def lengths(self, which: str) -> torch.Tensor:
        """``(N,)`` int64 valid lengths of split ``which`` (``T`` when unpadded)."""
        _check_split(which)
        ln = getattr(self, f"lengths_{which}")
        if ln is None:
            x = getattr(self, f"x_{which}")
            ln = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64)
        return ln

    def sizes(self) -> Dict[str, int]:
        return {s: int(getattr(self, f"x_{s}").shape[0]) for s in SPLITS}

    def summary(self) -> str:
        n = self.sizes()
        extra = f"classes={self.num_classes}" if self.kind == "classification" else f"out={self.output_size}"
        return (
            f"{self.name}: {self.kind}, T={self.seq_len}, C={self.input_size}, {extra}, "
            f"per_step={self.per_step}, irregular={self.is_irregular}, "
            f"N(train/val/test)={n['train']}/{n['val']}/{n['test']}"
        )


def _check_split(which: str) -> None:
    if which not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {which!r}")


# ---------------------------------------------------------------------- registry
TaskBuilder = Callable[..., SequenceTask]
TASKS: Dict[str, TaskBuilder] = {}


def register_task(name: str, builder: TaskBuilder) -> TaskBuilder:
    """Register ``builder(seed=..., small=..., **kw) -> SequenceTask`` under ``name``."""
    TASKS[name] = builder
    return builder


def list_tasks() -> list:
    return sorted(TASKS)


def load_task(name: str, seed: int = 0, small: bool = False, **kw: Any) -> SequenceTask:
    """Build task ``name`` (see :data:`TASKS`).

    ``seed`` fixes every random choice (generation, validation carving, dropped
    steps); ``small=True`` gives a tiny version for tests.  Extra keyword
    arguments are forwarded to the builder (e.g. ``length=500`` for ``adding``).
    """
    try:
        builder = TASKS[name]
    except KeyError:
        close = difflib.get_close_matches(name, TASKS, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise KeyError(
            f"unknown task {name!r}.{hint} Valid tasks: {', '.join(sorted(TASKS))}"
        ) from None
    return builder(seed=seed, small=small, **kw)


# ------------------------------------------------------------- shared utilities
def pmdarima_series(loader: str, task: str) -> np.ndarray:
    """A series bundled in the ``pmdarima`` wheel (``pmdarima.datasets.<loader>()``) as float64,
    offline; ImportError naming ``task`` when pmdarima is missing."""
    try:
        from pmdarima import datasets
    except ImportError as e:  # pragma: no cover - depends on environment
        raise ImportError(f"the {task} task needs 'pmdarima' (pip install 'tnd[suite]' or pip install pmdarima), "
                          f"whose wheel bundles its series") from e
    return np.asarray(getattr(datasets, loader)(), dtype=np.float64)


def forecast_windows(v: np.ndarray, starts: np.ndarray, input_len: int, horizon: int):
    """``(x, y, yi)`` of the windows of series ``v`` whose first target step is each of ``starts``:
    ``x = v[start - input_len : start]``, ``y = v[start : start + horizon]`` (rows), ``yi`` the
    absolute indices of the targets."""
    xi = starts[:, None] + np.arange(-input_len, 0)[None, :]
    yi = starts[:, None] + np.arange(horizon)[None, :]
    return v[xi], v[yi], yi


def to_x(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def to_long(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))


def stratified_split(
    labels: np.ndarray, frac: float, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """Split indices ``0..len(labels)-1`` into (keep, held_out), stratified by label.

    Each class contributes ``round(frac * count)`` samples to held_out (at least one
    when the class has two or more members).  Both index arrays are sorted.
    """
    labels = np.asarray(labels)
    keep, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(frac * len(idx)))
        if frac > 0 and k == 0 and len(idx) >= 2:
            k = 1
        held.append(idx[:k])
        keep.append(idx[k:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def stratified_subsample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of about ``n`` samples, spread over the classes (for ``small``)."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    classes = np.unique(labels)
    per = max(1, n // len(classes))
    out = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        out.append(idx[rng.permutation(len(idx))[:per]])
    return np.sort(np.concatenate(out))
