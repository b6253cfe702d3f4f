#!/usr/bin/env bash
# Idempotent set-up of a local virtual environment for tnd.
# Usage: source scripts/setup.sh   (or run it; it prints the venv's python)
# On a machine without an NVIDIA GPU it installs the CPU build of torch, never a CUDA one:
# first from a local wheel if pip's configured find-links has one, else from PyTorch's CPU index.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TND_VENV:-$ROOT/.venv}"
TORCH_VERSION="${TND_TORCH_VERSION:-2.13.0}"
PY="${PYTHON:-python3}"

stamp_of() { cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -d' ' -f1; }
STAMP="$VENV/.tnd-setup-stamp"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_of)" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if has_gpu; then
    "${PIP[@]}" install "torch==$TORCH_VERSION"
  elif "${PIP[@]}" install --no-index --no-deps "torch==$TORCH_VERSION" >/dev/null 2>&1; then
    "${PIP[@]}" install "torch==$TORCH_VERSION"     # resolves torch's own dependencies
  else
    # PyTorch's CPU index also serves torch's own dependencies.
    "${PIP[@]}" install "torch==$TORCH_VERSION" --index-url "${TND_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi
# Pin whatever torch is now installed so that no extra can pull another build.
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
"$VENV/bin/python" -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" > "$CONSTRAINTS"
"${PIP[@]}" install -c "$CONSTRAINTS" -e "$ROOT[all,test]"
stamp_of > "$STAMP"
