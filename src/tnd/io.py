"""Saving and loading: safetensors for the weights, JSON for the configuration. Never pickle.

A saved model is a directory holding ``config.json`` and ``model.safetensors``. Both are
written atomically (temporary file in the same directory, fsync, rename), so a crash leaves
either the old files or the new ones, never a torn file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
FORMAT = "tnd.model/1"


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


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a valid safetensors file ({e}); tnd never loads pickles") from e


def save_model(model: torch.nn.Module, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.config()`` as JSON and its state dict as safetensors into ``directory``."""
    directory = Path(directory)
    cfg = {"format": FORMAT, "class": type(model).__name__, "config": model.config(), "extra": extra or {}}
    save_tensors(directory / WEIGHTS_NAME, model.state_dict())
    atomic_write_text(directory / CONFIG_NAME, json.dumps(cfg, indent=1))
    return directory


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or "config" not in cfg:
        raise ValueError(f"{path} is not a tnd model config (expected format {FORMAT!r})")
    return cfg


def load_model(directory: str | os.PathLike):
    """Rebuild a saved :class:`~tnd.TND` from its JSON config and load its safetensors weights."""
    from .model import TND

    cfg = read_config(directory)
    if cfg.get("class") != "TND":
        raise ValueError(f"{directory} holds a {cfg.get('class')!r}, not a TND")
    if not isinstance(cfg["config"], dict):
        raise ValueError(f"{directory}: config.json's 'config' must be an object, got {type(cfg['config']).__name__}")
    try:
        model = TND.from_config(cfg["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{directory}: config.json does not describe a valid TND ({type(e).__name__}: {e})") from e
    state = load_tensors(Path(directory) / WEIGHTS_NAME)
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise ValueError(f"weights in {directory} do not match its config: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    for k, v in model.state_dict().items():
        if v.shape != state[k].shape:
            raise ValueError(f"weights in {directory}: {k} has shape {tuple(state[k].shape)}, the config needs {tuple(v.shape)}")
    model.load_state_dict(state)
    return model
