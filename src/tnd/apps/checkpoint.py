"""Training checkpoints that survive a killed run: safetensors + JSON, written atomically. Never pickle.

A checkpoint directory holds

* ``ckpt-<step>.safetensors`` -- every tensor: model weights (``model.*``), the flattened
  optimiser state (``optim.<param index>.<key>``), RNG states (``rng.*`` as ``uint8``) and any
  extra tensors of the training loop (``extra.*``: the data permutation, best weights ...);
* ``checkpoint.json`` -- written **last**: the format, the step, the JSON state of the loop
  (metrics, history, data position), the optimiser's ``param_groups`` and scalars, a
  fingerprint of the run (model class, config, parameter shapes, training hyper-parameters) and
  the name, size and SHA-256 of its tensors file.

Each file is written to a temporary file, fsynced and renamed (:func:`tnd.io.atomic_write`).
A new checkpoint writes a *new* tensors file first, then replaces ``checkpoint.json`` (the
commit point), then deletes the previous tensors file: a crash at any moment leaves the
previous good pair or the new one, never a torn pair. Loading checks the JSON, the size and
hash of the tensors file, that it is a safetensors file (a pickle is refused, never
unpickled), and that the fingerprint matches the run that resumes; each failure raises
:class:`CheckpointError` (a ``ValueError``) naming what does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from tnd.io import atomic_write_text, save_tensors

__all__ = [
    "CheckpointError",
    "NonFiniteError",
    "FORMAT",
    "MANIFEST_NAME",
    "save_checkpoint",
    "load_checkpoint",
    "has_checkpoint",
    "model_fingerprint",
    "flatten_optimizer_state",
    "unflatten_optimizer_state",
]

FORMAT = "tnd.checkpoint/1"
MANIFEST_NAME = "checkpoint.json"


class NonFiniteError(ValueError):
    """The loss or the gradients became NaN/Inf; ``step`` is the (1-based) step that produced them.
    Training stops there and the last good checkpoint is kept."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, torn, corrupted, not safetensors, or made for another run."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(v: Any) -> Any:
    """Tuples become ``{"__tuple__": [...]}`` so they round-trip exactly."""
    if isinstance(v, tuple):
        return {"__tuple__": [_jsonable(x) for x in v]}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, torch.Tensor):
        raise TypeError("tensors go into the safetensors file, not the JSON")
    return v


def _from_json(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"__tuple__"}:
            return tuple(_from_json(x) for x in v["__tuple__"])
        return {k: _from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


def flatten_optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``opt.state_dict()`` into tensors ``{"<idx>.<key>": t}`` and a JSON-able rest."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{int(idx)}.{key}"] = val.detach().clone()
            else:
                scalars.setdefault(str(int(idx)), {})[key] = _jsonable(val)
    meta = {"param_groups": _jsonable(sd["param_groups"]), "scalars": scalars,
            "state_ids": [int(i) for i in sd["state"]]}
    return tensors, meta


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`: a state dict for ``opt.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {int(i): {} for i in meta["state_ids"]}
    for name, t in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = t
    for idx, sc in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(_from_json(sc))
    return {"state": state, "param_groups": _from_json(meta["param_groups"])}


def model_fingerprint(model: torch.nn.Module) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into ``model``: class, config, parameter shapes."""
    fp: dict[str, Any] = {"class": type(model).__name__,
                          "shapes": {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()}}
    cfg = getattr(model, "config", None)
    if callable(cfg):
        try:
            fp["config"] = json.loads(json.dumps(cfg(), default=str))
        except (TypeError, ValueError):  # a config that is not JSON-able is just not fingerprinted
            fp["config"] = None
    return fp


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{path}.{k}: missing in the checkpoint, this run has {_short(b[k])}")
            elif k not in b:
                out.append(f"{path}.{k}: the checkpoint has {_short(a[k])}, missing in this run")
            else:
                _diff(a[k], b[k], f"{path}.{k}", out)
    elif a != b:
        out.append(f"{path}: checkpoint {_short(a)} vs this run {_short(b)}")


def has_checkpoint(directory: str | os.PathLike) -> bool:
    return (Path(directory) / MANIFEST_NAME).is_file()


def save_checkpoint(directory: str | os.PathLike, *, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, state: dict[str, Any] | None = None,
                    tensors: dict[str, torch.Tensor] | None = None, fingerprint: dict[str, Any] | None = None,
                    rng: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint of ``model`` (and ``optimizer``) at ``step`` into ``directory``, atomically.

    ``state`` is JSON-able loop state (tuples survive), ``tensors`` extra tensors, ``rng``
    RNG states as tensors (e.g. ``torch.Generator.get_state()``; the global torch RNG state
    is always added), ``fingerprint`` whatever a resuming run must match (hyper-parameters ...;
    the model's class, config and shapes are always added). The previous checkpoint is kept
    until the new one is fully written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    all_t: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_meta = None
    if optimizer is not None:
        ot, optim_meta = flatten_optimizer_state(optimizer)
        all_t.update({f"optim.{k}": v for k, v in ot.items()})
    rngs = {"torch": torch.get_rng_state(), **(rng or {})}
    all_t.update({f"rng.{k}": v for k, v in rngs.items()})
    all_t.update({f"extra.{k}": v for k, v in (tensors or {}).items()})

    old = None
    if has_checkpoint(directory):
        try:
            old = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8")).get("tensors_file")
        except (ValueError, OSError, AttributeError):
            old = None
    name = f"ckpt-{int(step):09d}.safetensors"
    if name == old:  # same step saved again: never write over the file the manifest points to
        name = f"ckpt-{int(step):09d}-b.safetensors"
    path = directory / name
    save_tensors(path, all_t, metadata={"format": FORMAT, "step": str(int(step))})
    manifest = {
        "format": FORMAT,
        "step": int(step),
        "tensors_file": name,
        "tensors_bytes": path.stat().st_size,
        "tensors_sha256": _sha256(path),
        "fingerprint": {"model": model_fingerprint(model), **_jsonable(fingerprint or {})},
        "optimizer": optim_meta,
        "state": _jsonable(state or {}),
    }
    atomic_write_text(directory / MANIFEST_NAME, json.dumps(manifest, indent=1))  # the commit point
    leftovers = [*directory.glob("ckpt-*.safetensors"), *directory.glob(".ckpt-*.tmp")]
    for p in leftovers:  # the previous tensors file, and leftovers of killed writes
        if p.name != name:
            try:
                p.unlink()
            except OSError:
                pass
    return directory


def _safetensors_header_ok(path: Path, size: int) -> bool:
    """Whether ``path`` starts like a safetensors file: an 8-byte little-endian length, then that
    many bytes of a JSON object."""
    if size < 10:
        return False
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n < 2 or 8 + n > size:
            return False
        try:
            return isinstance(json.loads(f.read(n).decode("utf-8")), dict)
        except (UnicodeDecodeError, ValueError):
            return False


def _looks_like_pickle(head: bytes) -> bool:
    return head[:2] == b"PK" or (len(head) >= 2 and head[0] == 0x80 and head[1] <= 5)


def load_checkpoint(directory: str | os.PathLike, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    fingerprint: dict[str, Any] | None = None,
                    restore_global_rng: bool = True) -> dict[str, Any]:
    """Check and load the checkpoint in ``directory`` into ``model`` (and ``optimizer``).

    Raises :class:`CheckpointError` naming the problem: missing files, a manifest that is not
    JSON, a tensors file that is truncated or whose hash differs, a file that is not safetensors
    (a pickle is refused without being read as one), or a fingerprint (model class, config,
    parameter shapes, and the keys of ``fingerprint``, e.g. hyper-parameters) different from
    this run's. Nothing is loaded
    unless every check passes. Returns ``{"step", "state", "tensors", "rng"}``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    mpath = directory / MANIFEST_NAME
    if not mpath.is_file():
        raise CheckpointError(f"no checkpoint in {directory}: {MANIFEST_NAME} not found")
    raw = mpath.read_bytes()
    if _looks_like_pickle(raw[:2]):
        raise CheckpointError(f"{mpath} is a pickle/torch.save file, not a tnd checkpoint manifest; "
                              "tnd never unpickles (safetensors + JSON only)")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{mpath} is not valid JSON (truncated or corrupted?): {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{mpath} is not a tnd checkpoint (expected format {FORMAT!r}, "
                              f"got {manifest.get('format') if isinstance(manifest, dict) else type(manifest).__name__!r})")
    for key in ("step", "tensors_file", "tensors_bytes", "tensors_sha256", "fingerprint", "state"):
        if key not in manifest:
            raise CheckpointError(f"{mpath} lacks the field {key!r}")
    tname = str(manifest["tensors_file"])
    if "/" in tname or "\\" in tname or tname.startswith("."):
        raise CheckpointError(f"{mpath}: tensors_file {tname!r} is not a plain file name")
    tpath = directory / tname
    if not tpath.is_file():
        raise CheckpointError(f"checkpoint tensors file {tpath} is missing")
    size = tpath.stat().st_size
    if not _safetensors_header_ok(tpath, size):
        with open(tpath, "rb") as f:
            head = f.read(8)
        if _looks_like_pickle(head):
            raise CheckpointError(f"{tpath} is a pickle/torch.save file, not safetensors; tnd never unpickles "
                                  "(safetensors + JSON only)")
        raise CheckpointError(f"{tpath} is not a safetensors file (bad header: truncated or corrupted)")
    if size != manifest["tensors_bytes"]:
        raise CheckpointError(f"{tpath} is truncated or corrupted: {size} bytes, the manifest says "
                              f"{manifest['tensors_bytes']}")
    digest = _sha256(tpath)
    if digest != manifest["tensors_sha256"]:
        raise CheckpointError(f"{tpath} is corrupted: SHA-256 {digest[:16]}... does not match the manifest's "
                              f"{str(manifest['tensors_sha256'])[:16]}...")
    want = {"model": model_fingerprint(model), **_jsonable(fingerprint or {})}
    diffs: list[str] = []
    stored = manifest["fingerprint"] if isinstance(manifest["fingerprint"], dict) else {}
    # only what this run states is compared (the model always); the checkpoint may record more
    _diff({k: stored[k] for k in want if k in stored}, want, "fingerprint", diffs)
    if diffs:
        more = f" (and {len(diffs) - 5} more)" if len(diffs) > 5 else ""
        raise CheckpointError(f"checkpoint in {directory} was made for another model or configuration: "
                              + "; ".join(diffs[:5]) + more)
    try:
        tensors = load_file(str(tpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{tpath} is not a valid safetensors file ({e})") from e

    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "optim": {}, "rng": {}, "extra": {}}
    for k, v in tensors.items():
        g, _, rest = k.partition(".")
        if g not in groups:
            raise CheckpointError(f"{tpath}: unexpected tensor {k!r}")
        groups[g][rest] = v
    msd = model.state_dict()
    missing, unexpected = set(msd) - set(groups["model"]), set(groups["model"]) - set(msd)
    if missing or unexpected:
        raise CheckpointError(f"{tpath}: model weights missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    if optimizer is not None:
        if manifest.get("optimizer") is None:
            raise CheckpointError(f"{mpath} holds no optimizer state")
        osd = unflatten_optimizer_state(groups["optim"], manifest["optimizer"])
        cur = optimizer.state_dict()["param_groups"]
        if [len(g["params"]) for g in cur] != [len(g["params"]) for g in osd["param_groups"]]:
            raise CheckpointError(f"{mpath}: optimizer parameter groups do not match this model")
    model.load_state_dict(groups["model"])
    if optimizer is not None:
        optimizer.load_state_dict(osd)
    if restore_global_rng and "torch" in groups["rng"]:
        torch.set_rng_state(groups["rng"]["torch"])
    return {"step": int(manifest["step"]), "state": _from_json(manifest["state"]), "tensors": groups["extra"],
            "rng": groups["rng"]}
