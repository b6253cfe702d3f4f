#!/usr/bin/env bash
# Runs the test suite in the local virtual environment (created on first use).
#   bash scripts/test.sh              the full suite (what CI runs)
#   bash scripts/test.sh --fast       the edit-test tier: skips the tests marked slow, the same as
#                                     pytest -m "not slow" (under 90 s on 2 cores)
# --fast must come first; any further arguments go to pytest (e.g. a file, -x, -k NAME).
# Slow tests carry @pytest.mark.slow or are listed in tests/conftest.py's SLOW.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${1:-}" = "--fast" ]; then
  shift
  set -- -m "not slow" "$@"
fi
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${TND_VENV:-$ROOT/.venv}/bin/python" -m pytest -q -n 2 "$@"
