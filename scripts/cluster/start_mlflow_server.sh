#!/usr/bin/env bash
# Run the shared MLflow tracking server in the foreground (docs/cluster.md, step 2).
#
#   MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:PASSWORD@127.0.0.1:5432/mlflow \
#     scripts/cluster/start_mlflow_server.sh ARTIFACT_DIR
#
# Runs and metrics go to the PostgreSQL backend store; artifacts are uploaded through the server (proxied artifact
# serving) into ARTIFACT_DIR (a local directory, or an s3://, gs://, … URI), so training nodes need no shared file
# system, only HTTP access to HOST:PORT. The backend URI is read from the environment rather than the command line
# so that its password does not show in `ps`. HOST (default 127.0.0.1; 0.0.0.0 or the node's address for a
# cluster), PORT (5000), WORKERS (4) and further `mlflow server` options after ARTIFACT_DIR are passed through.
set -euo pipefail
artifacts=${1:?usage: start_mlflow_server.sh ARTIFACT_DIR [mlflow server options]}
shift
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (the URI start_postgres.sh printed)}"
export MLFLOW_BACKEND_STORE_URI
# The server's job runner (GenAI evaluation, prompt optimisation) is not used by sweeps: it would only add processes.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
root=$(cd "$(dirname "$0")/../.." && pwd)
mlflow=${MLFLOW_BIN:-$root/.venv/bin/mlflow}
case $artifacts in
  *://*) ;;
  *) mkdir -p "$artifacts" && artifacts=$(cd "$artifacts" && pwd) ;;
esac
exec "$mlflow" server --artifacts-destination "$artifacts" --serve-artifacts \
  --host "${HOST:-127.0.0.1}" --port "${PORT:-5000}" --workers "${WORKERS:-4}" "$@"
