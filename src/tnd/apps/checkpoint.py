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
previous good pair or the new one, never a torn pair. Loading checks everything before it
loads anything: the JSON and the types of its fields, the size and hash of the tensors file,
that it is a safetensors file (a pickle is refused, never unpickled), that the fingerprint
matches the run that resumes, the names, shapes and dtypes of the weights and optimiser state,
the RNG state, and the caller's loop state; each failure raises :class:`CheckpointError` (a
``ValueError``) naming the file and what does not match, and changes nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Callable
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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_manifest(mpath: Path, manifest: dict[str, Any]) -> None:
    """Types and ranges of the manifest's own fields (the optimizer part: :func:`_check_optimizer`)."""
    for key in ("step", "tensors_file", "tensors_bytes", "tensors_sha256", "fingerprint", "state"):
        if key not in manifest:
            raise CheckpointError(f"{mpath} lacks the field {key!r}")

    def bad(key: str, want: str) -> CheckpointError:
        return CheckpointError(f"{mpath}: field {key!r} must be {want}, got {_short(manifest[key])}")

    if not _is_int(manifest["step"]) or manifest["step"] < 0:
        raise bad("step", "a non-negative int")
    if not isinstance(manifest["tensors_file"], str) or not manifest["tensors_file"]:
        raise bad("tensors_file", "a file name")
    tname = manifest["tensors_file"]
    if "/" in tname or "\\" in tname or tname.startswith("."):
        raise CheckpointError(f"{mpath}: tensors_file {tname!r} is not a plain file name")
    if not _is_int(manifest["tensors_bytes"]) or manifest["tensors_bytes"] < 0:
        raise bad("tensors_bytes", "a non-negative int")
    sha = manifest["tensors_sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise bad("tensors_sha256", "64 lowercase hex digits")
    for key in ("fingerprint", "state"):
        if not isinstance(manifest[key], dict):
            raise bad(key, "a JSON object")
    if manifest.get("optimizer") is not None and not isinstance(manifest["optimizer"], dict):
        raise bad("optimizer", "a JSON object or null")


def _same_kind(stored: Any, current: Any) -> bool:
    """Whether a stored optimiser hyper-parameter has the type of this run's value."""
    if isinstance(current, bool):
        return isinstance(stored, bool)
    if _is_num(current):
        return _is_num(stored) and math.isfinite(stored)
    if isinstance(current, (tuple, list)):
        return (isinstance(stored, (tuple, list)) and len(stored) == len(current)
                and all(_same_kind(s, c) for s, c in zip(stored, current)))
    if current is None:
        return stored is None or isinstance(stored, bool)
    if isinstance(current, str):
        return isinstance(stored, str)
    return True  # an exotic value: load_state_dict takes it as it is


def _check_optimizer(mpath: Path, tpath: Path, meta: Any, otensors: dict[str, torch.Tensor],
                     optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Check the stored optimiser state against ``optimizer`` and return the state dict to load."""
    if meta is None:
        raise CheckpointError(f"{mpath} holds no optimizer state")
    for key, kind in (("param_groups", list), ("scalars", dict), ("state_ids", list)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{mpath}: field 'optimizer.{key}' must be a JSON {'array' if kind is list else 'object'}, "
                                  f"got {_short(meta.get(key))}")
    groups = _from_json(meta["param_groups"])
    cur = optimizer.state_dict()["param_groups"]
    if len(groups) != len(cur) or not all(isinstance(g, dict) for g in groups):
        raise CheckpointError(f"{mpath}: optimizer parameter groups do not match this model "
                              f"({len(groups)} stored, {len(cur)} here)")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    ids: list[int] = []
    for gi, (g, c) in enumerate(zip(groups, cur)):
        gp = g.get("params")
        if not isinstance(gp, list) or not all(_is_int(i) for i in gp) or len(gp) != len(c["params"]):
            raise CheckpointError(f"{mpath}: optimizer parameter groups do not match this model "
                                  f"(optimizer.param_groups[{gi}].params {_short(gp)})")
        ids.extend(gp)
        for key, val in c.items():
            if key != "params" and key in g and not _same_kind(g[key], val):
                raise CheckpointError(f"{mpath}: field 'optimizer.param_groups[{gi}].{key}' must be like "
                                      f"{_short(val)}, got {_short(g[key])}")
        if "lr" not in g or not _is_num(g["lr"]) or not g["lr"] >= 0:
            raise CheckpointError(f"{mpath}: field 'optimizer.param_groups[{gi}].lr' must be a number >= 0, "
                                  f"got {_short(g.get('lr'))}")
    if len(set(ids)) != len(ids):
        raise CheckpointError(f"{mpath}: field 'optimizer.param_groups' lists a parameter twice")
    where = {i: params[n] for n, i in enumerate(ids)}
    sids = meta["state_ids"]
    if not all(_is_int(i) and i in where for i in sids):
        raise CheckpointError(f"{mpath}: field 'optimizer.state_ids' {_short(sids)} names parameters not in its groups")
    for idx, sc in meta["scalars"].items():
        if not (isinstance(idx, str) and idx.isdigit() and int(idx) in where and isinstance(sc, dict)):
            raise CheckpointError(f"{mpath}: field 'optimizer.scalars' has a bad entry {_short(idx)}: {_short(sc)}")
    for name, t in otensors.items():
        idx, _, key = name.partition(".")
        if not idx.isdigit() or not key or int(idx) not in where:
            raise CheckpointError(f"{tpath}: optimizer tensor 'optim.{name}' names no parameter of its groups")
        p = where[int(idx)]
        if t.dim() == 0:
            continue  # a counter such as Adam's step
        if t.shape != p.shape or t.dtype != p.dtype:
            raise CheckpointError(f"{tpath}: optimizer tensor 'optim.{name}' has shape {list(t.shape)} {t.dtype}, "
                                  f"its parameter {list(p.shape)} {p.dtype}")
    osd = unflatten_optimizer_state(otensors, meta)
    try:  # a dry run on copies: what load_state_dict would refuse is refused before anything is loaded
        probe = type(optimizer)([{**{k: v for k, v in g.items() if k != "params"},
                                  "params": [torch.nn.Parameter(p.detach().clone()) for p in g["params"]]}
                                 for g in optimizer.param_groups])
    except Exception:  # noqa: BLE001 - an optimiser that cannot be rebuilt this way is checked above only
        probe = None
    if probe is not None:
        try:
            probe.load_state_dict(copy.deepcopy(osd))
        except (ValueError, TypeError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"{mpath}: the optimizer state does not fit this optimizer ({e})") from e
    return osd


def _check_torch_rng(tpath: Path, t: torch.Tensor) -> None:
    ref = torch.get_rng_state()
    if t.dtype != torch.uint8 or t.shape != ref.shape:
        raise CheckpointError(f"{tpath}: tensor 'rng.torch' must be a uint8 tensor of shape {list(ref.shape)} "
                              f"(a torch RNG state), got {t.dtype} {list(t.shape)}")
    try:
        torch.Generator().set_state(t)
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"{tpath}: tensor 'rng.torch' is not a valid torch RNG state ({e})") from e


def load_checkpoint(directory: str | os.PathLike, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    fingerprint: dict[str, Any] | None = None,
                    restore_global_rng: bool = True,
                    check: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """Check and load the checkpoint in ``directory`` into ``model`` (and ``optimizer``).

    Everything is checked first, then loaded: missing files, a manifest that is not JSON or
    whose fields have the wrong type or range, a tensors file that is truncated or whose hash
    differs, a file that is not safetensors (a pickle is refused without being read as one), a
    fingerprint (model class, config, parameter shapes, and the keys of ``fingerprint``, e.g.
    hyper-parameters) different from this run's, weights or optimiser state whose names,
    shapes or dtypes do not fit the model and optimiser, an invalid torch RNG state, and
    finally whatever ``check(result)`` refuses (the caller's own loop state; it gets the dict
    returned below and may raise ``KeyError``/``TypeError``/``ValueError``). Each failure raises
    :class:`CheckpointError` naming the file and the field, and leaves the model, the optimiser
    and the RNG untouched. Returns ``{"step", "state", "tensors", "rng"}``."""
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
    _check_manifest(mpath, manifest)
    tpath = directory / manifest["tensors_file"]
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
    stored = manifest["fingerprint"]
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
    for k, v in groups["model"].items():
        if v.shape != msd[k].shape or v.dtype != msd[k].dtype:
            raise CheckpointError(f"{tpath}: tensor 'model.{k}' has shape {list(v.shape)} {v.dtype}, "
                                  f"the model {list(msd[k].shape)} {msd[k].dtype}")
    osd = None
    if optimizer is not None:
        osd = _check_optimizer(mpath, tpath, manifest.get("optimizer"), groups["optim"], optimizer)
    if restore_global_rng and "torch" in groups["rng"]:
        _check_torch_rng(tpath, groups["rng"]["torch"])
    result = {"step": manifest["step"], "state": _from_json(manifest["state"]), "tensors": groups["extra"],
              "rng": groups["rng"]}
    if check is not None:
        try:
            check(result)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{mpath}: the training-loop state is refused ({type(e).__name__}: {e})") from e

    # every check passed: load; should loading still fail, put everything back as it was
    backup_model = {k: v.detach().clone() for k, v in msd.items()}
    backup_opt = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
    try:
        model.load_state_dict(groups["model"])
        if optimizer is not None:
            optimizer.load_state_dict(osd)
    except Exception as e:
        with torch.no_grad():
            model.load_state_dict(backup_model)
            if optimizer is not None:
                optimizer.load_state_dict(backup_opt)
        raise CheckpointError(f"{tpath} could not be loaded ({e}); the model and optimizer are unchanged") from e
    if restore_global_rng and "torch" in groups["rng"]:
        torch.set_rng_state(groups["rng"]["torch"])
    return result
