#!/usr/bin/env bash
# Stop the PostgreSQL cluster started by start_postgres.sh (fast shutdown: open sessions are rolled back).
#
#   scripts/cluster/stop_postgres.sh DATA_DIR
set -euo pipefail
data=${1:?usage: stop_postgres.sh DATA_DIR}
pg_ctl=$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pg_ctl" ] || { echo "PostgreSQL not found" >&2; exit 3; }
as_owner=()
[ "$(id -u)" = 0 ] && as_owner=(runuser -u postgres --)
"${as_owner[@]}" "$pg_ctl" -D "$data" -m fast -w stop
