"""Saving and loading: safetensors for the weights, JSON for the configuration. Never pickle.

A saved model is a directory holding ``config.json`` and ``model.safetensors``. ``config.json``
records the weights' dtype and the SHA-256 of ``model.safetensors``; :func:`load_model` checks the
config against the weights file's header (sizes, names, dtypes) before it builds or allocates
anything, then the hash, then that every weight is finite. JSON files are bounded in size and
nesting depth, and NaN/Infinity constants are refused.

:func:`save_model` serialises both files in memory first (an ``extra`` that JSON cannot hold fails
before anything is written), writes them as temporary files beside the old ones and renames them
into place, the config last. Until the new config is in place the previous weights stay in the
directory as a hard link named by their hash (``.model.safetensors.<sha256>.prev``): a failed
rename puts them back, and after a crash between the two renames (new weights, old config)
:func:`load_model` finds them by the old config's hash and loads the previous save, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
FORMAT = "tnd.model/1"
#: deepest nesting of arrays/objects accepted in a JSON file (config.json, the safetensors header)
MAX_JSON_DEPTH = 64
#: largest safetensors header read (a TND's has a dozen entries of ~100 bytes)
MAX_HEADER_BYTES = 16 << 20
#: config.json may be at most this many bytes plus CONFIG_BYTES_PER_WEIGHT_BYTE x the weights file
CONFIG_BYTES_BASE, CONFIG_BYTES_PER_WEIGHT_BYTE = 1 << 20, 16
#: neurons that appear in no tensor shape (shared F, linear I) may exceed 2 E + inputs + outputs
#: by at most this many (isolated neurons); more is an absurd config, refused before building
MAX_EXTRA_NEURONS = 1 << 16
#: dtypes a saved model may have: config name -> (torch dtype, safetensors name)
DTYPES = {"float32": (torch.float32, "F32"), "float64": (torch.float64, "F64"),
          "float16": (torch.float16, "F16"), "bfloat16": (torch.bfloat16, "BF16")}
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
             "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, fsync the file, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; saved results are ordinary files
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    # clone: safetensors refuses tensors that share storage (tied weights, views of one buffer)
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a finite JSON number")


def parse_json(text: str, where: str) -> Any:
    """``json.loads`` with the nesting depth bounded by :data:`MAX_JSON_DEPTH` (checked by a scan
    before parsing, so deep nesting never reaches the recursive parser) and NaN/Infinity refused;
    every failure is a ValueError naming ``where``."""
    depth = 0
    for m in _JSON_TOKEN.finditer(text):
        ch = m.group()
        if ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"{where} nests arrays/objects deeper than {MAX_JSON_DEPTH} levels")
        elif ch in "]}":
            depth -= 1
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"{where} is not valid JSON: {e}") from None


def read_safetensors_header(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` from a safetensors file's header alone (the 8-byte length and the
    JSON header; the data is not read), after checking that the entries tile the data region
    exactly (so no entry claims more bytes than the file holds). Errors are ValueErrors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    size = path.stat().st_size
    bad = f"{path} is not a valid safetensors file"
    with open(path, "rb") as f:
        if size < 8:
            raise ValueError(f"{bad} ({size} bytes, shorter than the 8-byte header length); tnd never loads pickles")
        n = int.from_bytes(f.read(8), "little")
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise ValueError(f"{bad} (header length {n} for a file of {size} bytes, at most {MAX_HEADER_BYTES}); "
                             "tnd never loads pickles")
        raw = f.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{bad} (header is not UTF-8: {e}); tnd never loads pickles") from None
    header = parse_json(text, f"{path}'s header")
    if not isinstance(header, dict):
        raise ValueError(f"{bad} (header is not a JSON object)")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ValueError(f"{bad} (__metadata__ must map strings to strings)")
            continue
        if not (isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"}
                and entry["dtype"] in _ITEMSIZE and isinstance(entry["shape"], list)
                and isinstance(entry["data_offsets"], list) and len(entry["data_offsets"]) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                        for v in entry["shape"] + entry["data_offsets"])):
            raise ValueError(f"{bad} (tensor {name!r} has a malformed header entry {entry!r})"[:500])
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        if end - begin != math.prod(shape) * _ITEMSIZE[entry["dtype"]]:
            raise ValueError(f"{bad} (tensor {name!r}: shape {shape} of {entry['dtype']} does not fit its "
                             f"{end - begin} bytes)")
        out[name] = (entry["dtype"], shape)
        spans.append((begin, end))
    pos = 0
    for begin, end in sorted(spans):
        if begin != pos:
            raise ValueError(f"{bad} (the tensors' data regions overlap or leave gaps)")
        pos = end
    if pos != size - 8 - n:
        raise ValueError(f"{bad} (the tensors cover {pos} bytes of a {size - 8 - n}-byte data region)")
    return out


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (never a pickle); a malformed file is a ValueError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a valid safetensors file ({e}); tnd never loads pickles") from e


def _config_limit(weights_bytes: int) -> int:
    return CONFIG_BYTES_BASE + CONFIG_BYTES_PER_WEIGHT_BYTE * weights_bytes


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_tmp(directory: Path, name: str, data: bytes) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def save_model(model: torch.nn.Module, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (a :class:`~tnd.TND`) into ``directory``: ``config.json`` (its
    :meth:`~tnd.TND.config`, dtype, the weights' SHA-256 and ``extra``, a JSON-serialisable dict)
    and ``model.safetensors`` (its state dict). Nothing is written unless both serialise; a save
    that fails leaves the previous save in ``directory`` loadable. Returns ``directory``."""
    from safetensors.torch import save as save_bytes

    directory = Path(directory)
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict (or None), got {type(extra).__name__}")
    state = {k: v.detach() for k, v in model.state_dict().items()}
    floats = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(floats) > 1:
        raise TypeError(f"model holds tensors of several dtypes {sorted(map(str, floats))}; convert it to one (model.to(...))")
    dtype = floats.pop() if floats else torch.float32
    names = [k for k, (t, _) in DTYPES.items() if t == dtype]
    if not names:
        raise TypeError(f"model dtype {dtype} cannot be saved; use one of {list(DTYPES)}")
    for k, v in state.items():
        if v.is_meta:
            raise ValueError(f"tensor {k} is on the meta device (no values to save)")
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"tensor {k} holds non-finite values (NaN/Inf); such a model cannot be saved")
    # clone: safetensors refuses tensors that share storage (tied weights, views of one buffer)
    weights = save_bytes({k: v.contiguous().cpu().clone() for k, v in state.items()})
    cfg = {"format": FORMAT, "class": type(model).__name__, "dtype": names[0],
           "sha256": hashlib.sha256(weights).hexdigest(), "config": model.config(), "extra": extra or {}}
    try:
        text = json.dumps(cfg, indent=1, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise type(e)(f"cannot save the model's config and extra as JSON (extra must hold only finite numbers, "
                      f"strings, bools, None, lists and dicts): {e}") from None
    parse_json(text, "the config to save")  # refuse now what load_model would refuse (depth)
    if len(text.encode("utf-8")) > _config_limit(len(weights)):
        raise ValueError(f"the config to save has {len(text)} characters, more than load_model accepts "
                         f"beside {len(weights)} bytes of weights (extra too large?)")
    directory.mkdir(parents=True, exist_ok=True)
    w_path, c_path = directory / WEIGHTS_NAME, directory / CONFIG_NAME
    tmps = [_write_tmp(directory, WEIGHTS_NAME, weights), _write_tmp(directory, CONFIG_NAME, text.encode("utf-8"))]
    backup = None
    try:
        if w_path.is_file():
            # the previous weights stay (a hard link, no copy) under their hash until the new config is
            # in place: put back if the config's rename fails, found by load_model after a crash
            backup = str(directory / f".{WEIGHTS_NAME}.{file_sha256(w_path)}.prev")
            if not os.path.exists(backup):
                os.link(w_path, backup)
        os.replace(tmps[0], w_path)
        try:
            os.replace(tmps[1], c_path)
        except BaseException:
            if backup is not None:
                os.replace(backup, w_path)
                backup = None
            raise
        _fsync_dir(directory)
        # the new config needs no kept weights; temporary files left by a crashed save go too
        for pattern in (f".{WEIGHTS_NAME}.*.prev", f".{WEIGHTS_NAME}.*.tmp", f".{CONFIG_NAME}.*.tmp"):
            for stale in directory.glob(pattern):
                if str(stale) not in tmps:
                    stale.unlink(missing_ok=True)
    finally:
        for t in tmps:
            if os.path.exists(t):
                os.unlink(t)
    return directory


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a saved model, size- and depth-bounded; ValueError naming the file if it
    is not a tnd model config."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    weights = Path(directory) / WEIGHTS_NAME
    limit = _config_limit(weights.stat().st_size if weights.is_file() else 0)
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{path} has {size} bytes, more than the {limit} accepted beside its weights file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    cfg = parse_json(text, str(path))
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or "config" not in cfg:
        raise ValueError(f"{path} is not a tnd model config (expected format {FORMAT!r})")
    return cfg


def _check_against_header(cfg: dict[str, Any], header: dict, dtype_name: str, cpath: Path, wpath: Path) -> None:
    """The config's sizes against the weights file's header, before anything is built."""
    from .model import TND

    try:
        shapes = TND.state_shapes(cfg)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{cpath} does not describe a valid TND ({type(e).__name__}: {e})") from None
    missing, unexpected = sorted(set(shapes) - set(header)), sorted(set(header) - set(shapes))
    if missing or unexpected:
        raise ValueError(f"weights in {wpath} do not match its config {cpath}: missing {missing}, unexpected {unexpected}")
    want = DTYPES[dtype_name][1]
    for k, shape in shapes.items():
        if header[k][1] != shape:
            raise ValueError(f"weights in {wpath}: {k} has shape {header[k][1]}, the config {cpath} needs {shape}")
        if header[k][0] != want:
            raise ValueError(f"weights in {wpath}: {k} has dtype {header[k][0]}, the config {cpath} says {dtype_name}")
    g = cfg["graph"]
    n, e = g["num_neurons"], len(g["edge_index"][0])
    most = 2 * e + len(g["input_neurons"]) + len(g["output_neurons"]) + MAX_EXTRA_NEURONS
    if n > most:
        raise ValueError(f"{cpath}: graph.num_neurons = {n} is absurd for a graph of {e} edges "
                         f"(at most {most}: more neurons than edges, inputs and outputs can touch)")


def load_model(directory: str | os.PathLike):
    """Rebuild a saved :class:`~tnd.TND` from ``directory`` (as :func:`save_model` wrote it), in its
    saved dtype. Refused with a ValueError naming the file (and field or tensor): a config
    that does not match the weights file's header (checked before anything is built; every problem in
    a file is a ValueError, the original TypeError's text included), weights whose
    SHA-256 differs from the one recorded, non-finite weights. Saves without a hash (older ones)
    load with a warning; saves without a dtype are float32."""
    from .model import TND

    directory = Path(directory)
    cpath, wpath = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    top = read_config(directory)
    if top.get("class") != "TND":
        raise ValueError(f"{cpath} holds a {top.get('class')!r}, not a TND")
    cfg = top["config"]
    if not isinstance(cfg, dict):
        raise ValueError(f"{cpath}: 'config' must be an object, got {type(cfg).__name__}")
    dtype_name = top.get("dtype", "float32")
    if not isinstance(dtype_name, str) or dtype_name not in DTYPES:
        raise ValueError(f"{cpath}: dtype must be one of {list(DTYPES)}, got {dtype_name!r}")
    digest = top.get("sha256")
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise ValueError(f"{cpath}: sha256 must be 64 lowercase hex digits, got {digest!r}"[:300])
    header = read_safetensors_header(wpath)  # a malformed file (a pickle, junk) fails here, unread
    try:
        _check_against_header(cfg, header, dtype_name, cpath, wpath)
        if digest is not None and file_sha256(wpath) != digest:
            raise ValueError(f"{wpath} does not match the SHA-256 recorded in {cpath}: the file is corrupted "
                             "(or was replaced)")
    except ValueError:
        prev = directory / f".{WEIGHTS_NAME}.{digest}.prev"
        if digest is None or not (prev.is_file() and file_sha256(prev) == digest):
            raise
        warnings.warn(f"{wpath} does not match {cpath}: a save was interrupted; loading the previous save "
                      f"(its weights, kept as {prev.name})", stacklevel=2)
        wpath = prev
        _check_against_header(cfg, read_safetensors_header(wpath), dtype_name, cpath, wpath)
    if digest is None:
        warnings.warn(f"{cpath} records no SHA-256 of {wpath.name} (saved by an older tnd): the weights cannot be "
                      "checked for corruption; save the model again to add one", stacklevel=2)
    try:
        model = TND.from_config(cfg)
    except (KeyError, TypeError, ValueError) as e:  # a file's content is a value: ValueError, naming it
        raise ValueError(f"{cpath} does not describe a valid TND ({type(e).__name__}: {e})") from e
    state = load_tensors(wpath)
    for k, v in state.items():
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"weights in {wpath}: tensor {k} holds non-finite values (NaN/Inf)")
    model.to(DTYPES[dtype_name][0])
    model.load_state_dict(state)
    return model
