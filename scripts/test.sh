#!/usr/bin/env bash
# Set up (if needed) and run the test suite. QUICK=1 skips tests marked slow; GPU tests skip themselves without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
args=(-q -p no:cacheprovider)
[ "${QUICK:-0}" = "1" ] && args+=(-m "not slow")
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "${args[@]}" "$@"
