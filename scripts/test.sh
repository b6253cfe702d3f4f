#!/usr/bin/env bash
# Runs the whole test suite in the local virtual environment (created on first use).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${TND_VENV:-$ROOT/.venv}/bin/python" -m pytest -q -n 2 "$@"
