#!/usr/bin/env bash
# Set up (if needed) and open the dashboard on the shipped mlruns/ store (or $MLFLOW_TRACKING_URI / --tracking-uri).
# Binds to 127.0.0.1; set HOST=0.0.0.0 to expose it. PORT defaults to 8501.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/streamlit run app/Home.py --server.address "${HOST:-127.0.0.1}" --server.port "${PORT:-8501}" \
  --server.headless true --browser.gatherUsageStats false -- "$@"
