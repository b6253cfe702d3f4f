"""``multiscale``: a synthetic task that needs both fast and slow memory.

Generator
---------
``C`` input channels (default 8).  Channel ``c`` observes a latent Ornstein-Uhlenbeck
(discretised leaky-integrated Gaussian noise) process with time constant ``tau_c``;
the time constants are log-spaced from ``tau_min = 1`` to ``tau_max = 1000`` steps
(three orders of magnitude) in increasing channel order::

    a_c      = exp(-1 / tau_c)
    z_c(0)   ~ N(0, 1)                                 (stationary start)
    z_c(t)   = a_c z_c(t-1) + sqrt(1 - a_c^2) eps_c(t),  eps ~ N(0, 1)
    x_c(t)   = z_c(t) + sigma_obs * eta_c(t),            eta ~ N(0, 1), sigma_obs = 0.3

so every channel has unit latent variance.  With ``k = window`` (default 4):

* **fast feature** ``F = mean(x_0[T-k:])`` -- the mean of the fastest channel
  (tau = 1) over the last ``k`` steps; it decorrelates within a few steps, so a
  model has to track the last steps precisely (a slow/smoothing-only model sees it
  blurred).
* **slow feature** ``S = mean(x_{C-1}[:k]) - beta * mean(x_{C-1}[T-k:])`` -- the drift
  of the slowest channel (tau = 1000) over the whole sequence: its initial level
  minus what its final level predicts of it.  ``beta = Cov(m_first, m_last) /
  Var(m_last)`` is computed in closed form, so ``S`` is uncorrelated with (and, being
  Gaussian, independent of) the final level: information about ``S`` is only
  available to a model that keeps the first ``k`` steps in memory for the whole
  ``T`` steps.

Both are standardised by their closed-form standard deviations (``F_n``, ``S_n``)
and are independent of each other and of the label noise-free: the label is an
exact function of the inputs (Bayes accuracy 100 %).

Targets (``target=``):

* ``"sum"`` (default): ``y = 1[F_n + S_n > 0]``.  Chance 50 %; a model that knows
  only one of the two features exactly reaches 75 % (``P(sign(a+b) = sign(a)) = 3/4``
  for independent standard normals); both are needed for ~100 %.
* ``"xor"``: ``y = 1[F_n * S_n > 0]``.  Chance 50 %, and a model that lacks either
  memory is at exactly 50 %.
* ``"regress"``: ``y = (F_n + S_n) / sqrt(2)`` (float, unit variance), MSE; the
  constant predictor has MSE 1 and a one-feature model MSE >= 0.5.

That both memories are needed is checked with simple readouts in docs/SUITE.md (Protocol).

Channels between the fastest and the slowest act as multiscale distractors.
Default length ``T = 256`` with 4000/500/1000 train/val/test sequences; ``small``
uses ``T = 64`` and 64/32/32.
"""

from __future__ import annotations

import math

import numpy as np

from .base import SequenceTask, register_task, to_long, to_x

__all__ = ["multiscale_task", "make_multiscale"]


def _ar1_window_cov(a: float, k: int, gap: int, sigma_obs: float, same: bool) -> float:
    """Cov of means of two length-k windows of a unit-variance AR(1) ``gap`` steps apart."""
    i = np.arange(k)
    lag = np.abs(i[:, None] - i[None, :] + gap)
    c = float(np.mean(a ** lag.astype(np.float64)))
    if same:
        c += sigma_obs**2 / k
    return c


def make_multiscale(
    n: int,
    length: int,
    rng: np.random.Generator,
    channels: int = 8,
    tau_min: float = 1.0,
    tau_max: float = 1000.0,
    window: int = 4,
    sigma_obs: float = 0.3,
    target: str = "sum",
):
    """Generate ``x (n, length, channels)`` float32 and targets; see module docstring.

    Returns ``(x, y, info)`` where ``info`` holds ``taus``, ``beta``, the feature
    standard deviations and the raw standardised features ``F_n`` and ``S_n``.
    """
    if channels < 2:
        raise ValueError("multiscale needs channels >= 2")
    if length < 2 * window:
        raise ValueError("multiscale needs length >= 2 * window")
    taus = np.logspace(math.log10(tau_min), math.log10(tau_max), channels)
    a = np.exp(-1.0 / taus)
    s = np.sqrt(1.0 - a**2)
    eps = rng.standard_normal((n, length, channels))
    z = np.empty((n, length, channels))
    z[:, 0] = eps[:, 0]
    for t in range(1, length):
        z[:, t] = a * z[:, t - 1] + s * eps[:, t]
    x = z + sigma_obs * rng.standard_normal((n, length, channels))

    k = window
    # fast feature: fastest channel, last k steps
    F = x[:, length - k :, 0].mean(axis=1)
    var_f = _ar1_window_cov(a[0], k, 0, sigma_obs, True)
    # slow feature: slowest channel, first-window level decorrelated from last window
    aS = a[-1]
    m_first = x[:, :k, -1].mean(axis=1)
    m_last = x[:, length - k :, -1].mean(axis=1)
    var_m = _ar1_window_cov(aS, k, 0, sigma_obs, True)
    cov_fl = _ar1_window_cov(aS, k, length - k, sigma_obs, False)
    beta = cov_fl / var_m
    S = m_first - beta * m_last
    var_s = var_m - beta * cov_fl  # Var(m_first) - Cov^2 / Var(m_last)
    Fn = F / math.sqrt(var_f)
    Sn = S / math.sqrt(var_s)
    if target == "sum":
        y = (Fn + Sn > 0).astype(np.int64)
    elif target == "xor":
        y = (Fn * Sn > 0).astype(np.int64)
    elif target == "regress":
        y = ((Fn + Sn) / math.sqrt(2.0)).astype(np.float32)[:, None]
    else:
        raise ValueError(f"target must be 'sum', 'xor' or 'regress', got {target!r}")
    info = dict(taus=taus.tolist(), beta=beta, std_fast=math.sqrt(var_f),
                std_slow=math.sqrt(var_s), F_n=Fn, S_n=Sn)
    return x.astype(np.float32), y, info


def multiscale_task(
    seed: int = 0,
    small: bool = False,
    length: int | None = None,
    channels: int = 8,
    tau_min: float = 1.0,
    tau_max: float = 1000.0,
    window: int = 4,
    sigma_obs: float = 0.3,
    target: str = "sum",
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
) -> SequenceTask:
    """Multiscale fast+slow memory task (see module docstring)."""
    if length is None:
        length = 64 if small else 256
    d = (64, 32, 32) if small else (4000, 500, 1000)
    ntr, nva, nte = n_train or d[0], n_val or d[1], n_test or d[2]
    tcode = {"sum": 0, "xor": 1, "regress": 2}.get(target, 9)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1003, length, channels, tcode]))
    x, y, info = make_multiscale(ntr + nva + nte, length, rng, channels, tau_min, tau_max,
                                 window, sigma_obs, target)
    xs = np.split(x, [ntr, ntr + nva])
    ys = np.split(y, [ntr, ntr + nva])
    cls = target != "regress"
    conv = to_long if cls else to_x
    if target == "sum":
        single = 0.75
    elif target == "xor":
        single = 0.5
    else:
        single = 0.5  # MSE floor of a one-feature model
    meta = dict(
        seed=seed, small=small, length=length, channels=channels, target=target,
        taus=info["taus"], window=window, sigma_obs=sigma_obs, beta=info["beta"],
        fast_channel=0, slow_channel=channels - 1,
        std_fast=info["std_fast"], std_slow=info["std_slow"],
        metric="accuracy" if cls else "mse",
        bayes_accuracy=1.0 if cls else None,
        chance_accuracy=0.5 if cls else None,
        single_memory_ceiling_accuracy=single if cls else None,
        chance_mse=None if cls else 1.0,
        single_memory_floor_mse=None if cls else single,
        class_balance_test=float(np.mean(ys[2])) if cls else None,
    )
    return SequenceTask(
        name="multiscale",
        kind="classification" if cls else "regression",
        x_train=to_x(xs[0]), y_train=conv(ys[0]),
        x_val=to_x(xs[1]), y_val=conv(ys[1]),
        x_test=to_x(xs[2]), y_test=conv(ys[2]),
        num_classes=2 if cls else None,
        output_size=2 if cls else 1,
        per_step=False,
        metadata=meta,
    )


register_task("multiscale", multiscale_task)
