"""Real classification data bundled in the ``aeon`` wheel (offline).

* ``japanese_vowels`` -- UEA JapaneseVowels: 12 LPC cepstrum coefficients per frame,
  9 speakers (classes), variable length 7..29 frames; archive split 270 train /
  370 test.  Loaded with ``aeon.datasets.load_japanese_vowels(split=...)``, which
  reads ``aeon/datasets/data/JapaneseVowels/JapaneseVowels_{TRAIN,TEST}.ts`` from
  the installed package (no network).
* ``italy_power_demand`` -- UCR ItalyPowerDemand: 24 hourly values of one day,
  2 classes (Oct-Mar vs Apr-Sep); archive split 67 train / 1029 test.  Loaded
  with ``aeon.datasets.load_italy_power_demand(split=...)``.

Processing
----------
* The archive test split is kept as the test set.  A validation set is carved out
  of the archive training split (``val_fraction``, default 0.2), stratified by
  class and seeded.
* Labels are mapped to ``0..K-1`` in sorted order of the archive label strings.
* Standardisation: per channel, with mean/std over the valid (unpadded) frames of
  the training split only (after the validation carve).
* Variable length (JapaneseVowels): sequences are right-padded to ``T = 29`` (the
  maximum over the whole archive, so all splits share ``T``) by **repeating the
  last valid frame**; ``lengths_*`` give the valid lengths and the label should be
  read at step ``length - 1``.  The repeated frame carries no information beyond
  the last valid frame, so padding cannot leak the label.
* ``small=True`` keeps a seeded, class-balanced subset (about 36/18/36 sequences).

``metadata["indices_<split>"]`` holds each sequence's index into the archive split
it came from (``archive_split_<split>``) so disjointness can be checked.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from .base import (
    SequenceTask,
    register_task,
    stratified_split,
    stratified_subsample,
    to_long,
    to_x,
)

__all__ = [
    "japanese_vowels_task",
    "italy_power_demand_task",
    "load_japanese_vowels_raw",
    "load_italy_power_demand_raw",
    "pad_repeat_last",
    "JV_MAX_LEN",
]

JV_MAX_LEN = 29


def _require_aeon():
    try:
        import aeon.datasets as ad  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on environment
        raise ImportError(
            "this task needs the 'aeon' package (pip install 'tnd[suite]' or "
            "pip install aeon); its wheel bundles the JapaneseVowels and "
            "ItalyPowerDemand .ts files"
        ) from e
    return ad


def load_japanese_vowels_raw() -> Tuple[List[np.ndarray], np.ndarray, List[np.ndarray], np.ndarray]:
    """Archive train/test as lists of ``(T_i, 12)`` float arrays and string labels."""
    ad = _require_aeon()
    xtr, ytr = ad.load_japanese_vowels(split="TRAIN")
    xte, yte = ad.load_japanese_vowels(split="TEST")
    # aeon returns (channels, time) per series
    xtr = [np.asarray(s, dtype=np.float64).T for s in xtr]
    xte = [np.asarray(s, dtype=np.float64).T for s in xte]
    return xtr, np.asarray(ytr), xte, np.asarray(yte)


def load_italy_power_demand_raw() -> Tuple[List[np.ndarray], np.ndarray, List[np.ndarray], np.ndarray]:
    """Archive train/test as lists of ``(24, 1)`` float arrays and string labels."""
    ad = _require_aeon()
    xtr, ytr = ad.load_italy_power_demand(split="TRAIN")
    xte, yte = ad.load_italy_power_demand(split="TEST")
    xtr = [np.asarray(s, dtype=np.float64).T for s in np.asarray(xtr)]
    xte = [np.asarray(s, dtype=np.float64).T for s in np.asarray(xte)]
    return xtr, np.asarray(ytr), xte, np.asarray(yte)


def pad_repeat_last(seqs: Sequence[np.ndarray], T: int) -> np.ndarray:
    """Stack ``(T_i, C)`` arrays into ``(N, T, C)``, right-padding by repeating the last row."""
    C = seqs[0].shape[1]
    out = np.empty((len(seqs), T, C), dtype=np.float64)
    for i, s in enumerate(seqs):
        L = s.shape[0]
        if L > T:
            raise ValueError(f"sequence of length {L} longer than T={T}")
        out[i, :L] = s
        out[i, L:] = s[L - 1]
    return out


def prepare_archive(
    xtr: List[np.ndarray],
    ytr_str: np.ndarray,
    xte: List[np.ndarray],
    yte_str: np.ndarray,
    seed: int,
    small: bool,
    val_fraction: float,
    stream: int,
):
    """Split/subsample/standardise an archive.  Returns a dict of numpy pieces."""
    classes = np.unique(np.concatenate([ytr_str, yte_str]))
    lut = {c: i for i, c in enumerate(classes)}
    ytr = np.array([lut[c] for c in ytr_str], dtype=np.int64)
    yte = np.array([lut[c] for c in yte_str], dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
    idx_tr, idx_va = stratified_split(ytr, val_fraction, rng)
    idx_te = np.arange(len(xte))
    if small:
        idx_tr = idx_tr[stratified_subsample(ytr[idx_tr], 36, rng)]
        idx_va = idx_va[stratified_subsample(ytr[idx_va], 18, rng)]
        idx_te = idx_te[stratified_subsample(yte, 36, rng)]
    train_frames = np.concatenate([xtr[i] for i in idx_tr], axis=0)
    mean = train_frames.mean(axis=0)
    std = train_frames.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    norm = lambda s: (s - mean) / std  # noqa: E731
    parts = {}
    for name, src, ys, idx, arch in (
        ("train", xtr, ytr, idx_tr, "TRAIN"),
        ("val", xtr, ytr, idx_va, "TRAIN"),
        ("test", xte, yte, idx_te, "TEST"),
    ):
        parts[name] = dict(
            seqs=[norm(src[i]) for i in idx],
            y=ys[idx],
            idx=idx,
            archive=arch,
        )
    return parts, classes, mean, std


def _common_meta(parts, classes, mean, std, seed, small, val_fraction, source):
    meta = dict(
        seed=seed, small=small, val_fraction=val_fraction, source=source,
        classes=[str(c) for c in classes], metric="accuracy",
        train_mean=mean.tolist(), train_std=std.tolist(),
        chance_accuracy_test=float(np.bincount(parts["test"]["y"]).max() / len(parts["test"]["y"])),
    )
    for s, p in parts.items():
        meta[f"indices_{s}"] = p["idx"].tolist()
        meta[f"archive_split_{s}"] = p["archive"]
    return meta


def japanese_vowels_task(seed: int = 0, small: bool = False, val_fraction: float = 0.2) -> SequenceTask:
    """UEA JapaneseVowels: ``(N, 29, 12)`` padded by repeating the last frame, 9 classes."""
    xtr, ytr, xte, yte = load_japanese_vowels_raw()
    parts, classes, mean, std = prepare_archive(xtr, ytr, xte, yte, seed, small, val_fraction, 2001)
    T = JV_MAX_LEN
    arrays = {}
    for s, p in parts.items():
        arrays[s] = (
            to_x(pad_repeat_last(p["seqs"], T)),
            to_long(p["y"]),
            to_long(np.array([q.shape[0] for q in p["seqs"]])),
        )
    meta = _common_meta(parts, classes, mean, std, seed, small, val_fraction,
                        "aeon.datasets.load_japanese_vowels")
    meta.update(padding="repeat last valid frame; use lengths_* (label at step length-1)",
                max_len=T, min_len=7)
    return SequenceTask(
        name="japanese_vowels",
        kind="classification",
        x_train=arrays["train"][0], y_train=arrays["train"][1],
        x_val=arrays["val"][0], y_val=arrays["val"][1],
        x_test=arrays["test"][0], y_test=arrays["test"][1],
        lengths_train=arrays["train"][2], lengths_val=arrays["val"][2], lengths_test=arrays["test"][2],
        num_classes=len(classes),
        per_step=False,
        metadata=meta,
    )


def italy_power_demand_task(seed: int = 0, small: bool = False, val_fraction: float = 0.2) -> SequenceTask:
    """UCR ItalyPowerDemand: ``(N, 24, 1)``, 2 classes, fixed length."""
    xtr, ytr, xte, yte = load_italy_power_demand_raw()
    parts, classes, mean, std = prepare_archive(xtr, ytr, xte, yte, seed, small, val_fraction, 2002)
    arrays = {s: (to_x(np.stack(p["seqs"])), to_long(p["y"])) for s, p in parts.items()}
    meta = _common_meta(parts, classes, mean, std, seed, small, val_fraction,
                        "aeon.datasets.load_italy_power_demand")
    return SequenceTask(
        name="italy_power_demand",
        kind="classification",
        x_train=arrays["train"][0], y_train=arrays["train"][1],
        x_val=arrays["val"][0], y_val=arrays["val"][1],
        x_test=arrays["test"][0], y_test=arrays["test"][1],
        num_classes=len(classes),
        per_step=False,
        metadata=meta,
    )


register_task("japanese_vowels", japanese_vowels_task)
register_task("italy_power_demand", italy_power_demand_task)
