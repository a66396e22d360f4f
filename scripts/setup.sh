#!/usr/bin/env bash
# Create .venv and install everything the project needs; a no-op when requirements.txt has not changed.
# torch is installed first and pinned, because an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi
echo "setting up .venv (first run takes a few minutes)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$(grep -E '^torch==' requirements.txt)"
.venv/bin/python -m pip install -q -r requirements.txt
echo "$want" > "$stamp"
