"""Synthetic long-memory tasks: ``adding`` and ``copy``.

Adding problem (Hochreiter & Schmidhuber, 1997)
-----------------------------------------------
Input ``(N, T, 2)`` with ``T = length``: channel 0 holds values ``U(0, 1)``,
channel 1 is a marker that is 1 at exactly two steps (one drawn uniformly in the
first half, one in the second half) and 0 elsewhere.  The target ``(N, 1)`` is the
sum of the two marked values; loss MSE.  Predicting the constant 1.0 gives MSE
``Var(U1 + U2) = 2/12 ~= 0.1667`` (``metadata["baseline_mse"]``; the empirical
test value is ``metadata["baseline_mse_test"]``).  A common success criterion is
test MSE < 0.01.

Copy memory (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016 variant)
-------------------------------------------------------------------------
``K`` symbols drawn uniformly from an alphabet of ``n_symbols`` are shown one per
step, followed by ``length`` blank steps whose last one is a delimiter ("go")
token, followed by ``K`` blank steps during which the model must reproduce the
symbols in order.  Total length ``T = K + length + K``.  Inputs are one-hot with
``C = n_symbols + 2`` channels (symbols ``0..n_symbols-1``, blank = ``n_symbols``,
delimiter = ``n_symbols + 1``).  The target is per step: ``y`` has shape ``(N, K)``
(int64 in ``[0, n_symbols)``) aligned with the last ``K`` input steps
(``per_step=True``).  Chance accuracy is ``1 / n_symbols`` (0.125 for the default
8 symbols); chance cross-entropy ``log(n_symbols)`` per output step.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from .base import SequenceTask, register_task, to_long, to_x

__all__ = ["adding_task", "copy_task", "make_adding", "make_copy"]


def make_adding(n: int, length: int, rng: np.random.Generator):
    """Return ``x (n, length, 2) float32, y (n, 1) float32`` for the adding problem."""
    if length < 2:
        raise ValueError("adding needs length >= 2")
    x = np.zeros((n, length, 2), dtype=np.float32)
    x[:, :, 0] = rng.random((n, length), dtype=np.float32)
    half = length // 2
    i1 = rng.integers(0, half, size=n)
    i2 = rng.integers(half, length, size=n)
    rows = np.arange(n)
    x[rows, i1, 1] = 1.0
    x[rows, i2, 1] = 1.0
    y = (x[rows, i1, 0] + x[rows, i2, 0]).astype(np.float32)[:, None]
    return x, y


def make_copy(n: int, length: int, k: int, n_symbols: int, rng: np.random.Generator):
    """Return ``x (n, k+length+k, n_symbols+2) float32, y (n, k) int64`` for copy memory."""
    if length < 1 or k < 1 or n_symbols < 2:
        raise ValueError("copy needs length >= 1, k >= 1, n_symbols >= 2")
    T = k + length + k
    blank, delim = n_symbols, n_symbols + 1
    sym = rng.integers(0, n_symbols, size=(n, k))
    tokens = np.full((n, T), blank, dtype=np.int64)
    tokens[:, :k] = sym
    tokens[:, k + length - 1] = delim
    x = np.zeros((n, T, n_symbols + 2), dtype=np.float32)
    np.put_along_axis(x, tokens[:, :, None], 1.0, axis=2)
    return x, sym.astype(np.int64)


def _sizes(small: bool, n_train, n_val, n_test):
    if small:
        d = (64, 16, 16)
    else:
        d = (10000, 1000, 1000)
    return (n_train or d[0], n_val or d[1], n_test or d[2])


def adding_task(
    seed: int = 0,
    small: bool = False,
    length: int = 100,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
) -> SequenceTask:
    """Adding problem with sequences of ``length`` steps (``small``: length <= 50, N=64/16/16)."""
    if small:
        length = min(length, 50)
    ntr, nva, nte = _sizes(small, n_train, n_val, n_test)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1001, length]))
    x, y = make_adding(ntr + nva + nte, length, rng)
    xs = np.split(x, [ntr, ntr + nva])
    ys = np.split(y, [ntr, ntr + nva])
    base_test = float(np.mean((ys[2] - 1.0) ** 2))
    return SequenceTask(
        name=f"adding_{length}",
        kind="regression",
        x_train=to_x(xs[0]), y_train=to_x(ys[0]),
        x_val=to_x(xs[1]), y_val=to_x(ys[1]),
        x_test=to_x(xs[2]), y_test=to_x(ys[2]),
        output_size=1,
        per_step=False,
        metadata=dict(
            length=length, seed=seed, small=small, metric="mse",
            baseline_mse=2.0 / 12.0, baseline_mse_test=base_test,
            baseline="predict 1.0 (expected MSE 1/6 ~= 0.167)",
            success_mse=0.01,
            channels=["value U(0,1)", "marker {0,1}"],
        ),
    )


def copy_task(
    seed: int = 0,
    small: bool = False,
    length: int = 100,
    k: int = 10,
    n_symbols: int = 8,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
) -> SequenceTask:
    """Copy memory: memorise ``k`` symbols over a ``length``-step delay (T = 2k + length)."""
    if small:
        length = min(length, 20)
        k = min(k, 4)
    ntr, nva, nte = _sizes(small, n_train, n_val, n_test)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1002, length, k, n_symbols]))
    x, y = make_copy(ntr + nva + nte, length, k, n_symbols, rng)
    xs = np.split(x, [ntr, ntr + nva])
    ys = np.split(y, [ntr, ntr + nva])
    return SequenceTask(
        name=f"copy_{length}",
        kind="classification",
        x_train=to_x(xs[0]), y_train=to_long(ys[0]),
        x_val=to_x(xs[1]), y_val=to_long(ys[1]),
        x_test=to_x(xs[2]), y_test=to_long(ys[2]),
        num_classes=n_symbols,
        per_step=True,
        metadata=dict(
            length=length, k=k, n_symbols=n_symbols, seed=seed, small=small,
            metric="accuracy over the last k steps",
            chance_accuracy=1.0 / n_symbols,
            chance_cross_entropy=float(np.log(n_symbols)),
            blank_channel=n_symbols, delimiter_channel=n_symbols + 1,
            target_steps=k,
        ),
    )


register_task("adding", adding_task)
register_task("copy", copy_task)
for _L in (100, 500, 1000):
    register_task(f"adding_{_L}", partial(adding_task, length=_L))
    register_task(f"copy_{_L}", partial(copy_task, length=_L))
