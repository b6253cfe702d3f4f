#!/usr/bin/env bash
# Runs the project's main job (the paper's Pong experiment; extra options go to `tnd pong`) in the local virtual environment (created on first use).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${TND_VENV:-$ROOT/.venv}/bin/tnd" pong "$@"
