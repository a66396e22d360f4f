#!/usr/bin/env bash
# Set up (if needed) and open the dashboard on the shipped mlruns/ store (or $MLFLOW_TRACKING_URI / --tracking-uri).
# Binds to 127.0.0.1; set HOST=0.0.0.0 to expose it. PORT defaults to 8501. The first pages' analysis is computed
# while the browser loads (app/warmup.py); --no-warm-up starts cold. Other arguments go to `streamlit run`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/python -m app.launch --server.address "${HOST:-127.0.0.1}" --server.port "${PORT:-8501}" \
  --server.headless true --browser.gatherUsageStats false "$@"
