#!/usr/bin/env bash
# Join a worker node to the Ray cluster (docs/cluster.md, step 4); the node needs this repository's Python
# environment (.venv, or RAY_BIN pointing at its `ray`), not the code: sweeps ship the code to the workers.
#
#   RAY_AUTH_TOKEN=... scripts/cluster/start_ray_worker.sh HEAD_HOST:6379 [ray start options, e.g. --num-gpus=8]
#
# The token is the head's (RAY_AUTH_TOKEN, or ~/.ray/auth_token copied from the head). Stop with `ray stop`.
set -euo pipefail
head=${1:?usage: start_ray_worker.sh HEAD_HOST:PORT [ray start options]}
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
ray=${RAY_BIN:-$root/.venv/bin/ray}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
export RAY_USAGE_STATS_ENABLED=0
exec "$ray" start --address "$head" --disable-usage-stats "$@"
