"""``irregular_japanese_vowels``: JapaneseVowels with randomly dropped time steps.

Built on :func:`tnd.apps.tasks.uea.japanese_vowels_task` (same splits, same
train-only standardisation, same seed), then, independently for every sequence of
valid length ``L``:

* keep ``m = max(1, round((1 - drop) * L))`` of its steps, chosen uniformly at
  random without replacement (seeded), **in their original order**;
* ``timespans`` hold the real elapsed time between kept steps in original frame
  units: for kept original indices ``i_0 < i_1 < ...`` the timespans are
  ``i_0 + 1, i_1 - i_0, i_2 - i_1, ...`` -- i.e. the first step's timespan is
  the time elapsed since a virtual observation at index -1 (so a sequence that
  keeps its first frame starts with timespan 1).  All timespans are >= 1.
* sequences are right-padded to the maximum kept length over all splits by
  repeating the last kept frame, with padding timespans of 1.0; ``lengths_*``
  give the number of kept steps (the label belongs to step ``length - 1``).

``drop`` is usually one of 0.3, 0.5, 0.7 (registered as
``irregular_japanese_vowels_30`` / ``_50`` / ``_70``; plain
``irregular_japanese_vowels`` defaults to 0.5).  ``metadata["kept_fraction_*"]``
reports the realised fraction of kept valid steps per split, and
``metadata["kept_indices_<split>"]`` the kept original indices of every sequence.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from .base import SequenceTask, register_task, to_long, to_x
from .uea import japanese_vowels_task

__all__ = ["irregular_japanese_vowels_task", "subsample_irregular"]


def subsample_irregular(x: np.ndarray, lengths: np.ndarray, drop: float, rng: np.random.Generator):
    """Drop a fraction ``drop`` of the valid steps of each sequence.

    ``x``: ``(N, T, C)``; ``lengths``: ``(N,)``.  Returns ``(kept_seqs, timespans,
    kept_indices)`` as lists of ``(m_i, C)`` / ``(m_i,)`` / ``(m_i,)`` arrays.
    """
    if not 0.0 <= drop < 1.0:
        raise ValueError(f"drop must be in [0, 1), got {drop}")
    seqs, spans, kept = [], [], []
    for i in range(x.shape[0]):
        L = int(lengths[i])
        m = max(1, int(round((1.0 - drop) * L)))
        idx = np.sort(rng.choice(L, size=m, replace=False))
        ts = np.diff(np.concatenate([[-1], idx])).astype(np.float64)
        seqs.append(x[i, idx])
        spans.append(ts)
        kept.append(idx)
    return seqs, spans, kept


def irregular_japanese_vowels_task(
    seed: int = 0, small: bool = False, drop: float = 0.5, val_fraction: float = 0.2
) -> SequenceTask:
    """JapaneseVowels with a fraction ``drop`` of steps removed; real timespans."""
    base = japanese_vowels_task(seed=seed, small=small, val_fraction=val_fraction)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3001, int(round(drop * 1000))]))
    pieces = {}
    for s in ("train", "val", "test"):
        x, _ = base.split(s)
        pieces[s] = subsample_irregular(x.numpy(), base.lengths(s).numpy(), drop, rng)
    T = max(len(q) for p in pieces.values() for q in p[0])
    out = {}
    meta = dict(base.metadata)
    meta.update(drop=drop, padded_len=T,
                timespan_convention="first = kept index + 1; then gaps between kept indices; padding 1.0")
    for s, (seqs, spans, kept) in pieces.items():
        N, C = len(seqs), seqs[0].shape[1]
        xx = np.empty((N, T, C), dtype=np.float32)
        tt = np.ones((N, T), dtype=np.float32)
        for i, (q, ts) in enumerate(zip(seqs, spans)):
            m = len(q)
            xx[i, :m] = q
            xx[i, m:] = q[-1]
            tt[i, :m] = ts
        lens = np.array([len(q) for q in seqs])
        out[s] = (to_x(xx), to_x(tt), to_long(lens))
        orig = base.lengths(s).numpy()
        meta[f"kept_fraction_{s}"] = float(lens.sum() / orig.sum())
        meta[f"kept_indices_{s}"] = [k.tolist() for k in kept]
    return SequenceTask(
        name=f"irregular_japanese_vowels_{int(round(drop * 100))}",
        kind="classification",
        x_train=out["train"][0], y_train=base.y_train,
        x_val=out["val"][0], y_val=base.y_val,
        x_test=out["test"][0], y_test=base.y_test,
        timespans_train=out["train"][1], timespans_val=out["val"][1], timespans_test=out["test"][1],
        lengths_train=out["train"][2], lengths_val=out["val"][2], lengths_test=out["test"][2],
        num_classes=base.num_classes,
        per_step=False,
        metadata=meta,
    )


register_task("irregular_japanese_vowels", irregular_japanese_vowels_task)
for _d in (30, 50, 70):
    register_task(f"irregular_japanese_vowels_{_d}", partial(irregular_japanese_vowels_task, drop=_d / 100))
