#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install the gateway into it: scripts/setup.sh [EXTRAS], e.g. "test".
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  for cand in python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      py=$cand; break
    fi
  done
fi
[[ -n "$py" ]] || { echo "need Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
[[ "${SETUP_PROBE_ONLY:-}" == 1 ]] && { echo "$py"; exit 0; }  # which interpreter it would use (tests/unit/test_packaging.py)
[[ -x .venv/bin/python ]] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
spec="."
[[ -n "$extras" ]] && spec=".[$extras]"
# -qq: the build backend's notices about editable installs are not ours to act on; errors still show
.venv/bin/python -m pip install -qq -e "$spec"
