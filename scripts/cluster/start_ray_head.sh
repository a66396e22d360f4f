#!/usr/bin/env bash
# Start the Ray head node (docs/cluster.md, step 3); run it from the repository root's environment.
#
#   scripts/cluster/start_ray_head.sh [ray start options, e.g. --num-gpus=8 or --block]
#
# Listens on RAY_PORT (default 6379); the sweep then runs anywhere with RAY_ADDRESS=<this node>:6379. Token
# authentication is on (RAY_AUTH_MODE=token, unless set otherwise): the token is $RAY_AUTH_TOKEN, else
# ~/.ray/auth_token, generated here on first use; every worker node and every machine that starts a sweep needs the
# same token (copy the file, or export RAY_AUTH_TOKEN). Usage statistics are never sent. Stop with `ray stop`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
ray=${RAY_BIN:-$root/.venv/bin/ray}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
export RAY_USAGE_STATS_ENABLED=0
if [ "$RAY_AUTH_MODE" = token ] && [ -z "${RAY_AUTH_TOKEN:-}" ]; then
  "$ray" get-auth-token --generate >/dev/null
fi
exec "$ray" start --head --port "${RAY_PORT:-6379}" --disable-usage-stats "$@"
