#!/usr/bin/env bash
# OpenMMLab's linters (settings in setup.cfg), as pre-commit runs them.
#   bash tools/lint.sh          # check
#   bash tools/lint.sh --fix    # rewrite with isort and yapf first
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CDS_VENV:-$REPO/.venv}"
cd "$REPO"
PATHS=(cds_mm tools benchmarks tests configs setup.py)
if [[ "${1:-}" == "--fix" ]]; then
  "$VENV/bin/python" -m isort "${PATHS[@]}"
  "$VENV/bin/python" -m yapf -r -i "${PATHS[@]}"
fi
"$VENV/bin/python" -m flake8 "${PATHS[@]}"
"$VENV/bin/python" -m isort --check-only --diff "${PATHS[@]}"
"$VENV/bin/python" -m yapf -r -d "${PATHS[@]}"
echo "[lint] flake8, isort and yapf: clean"
