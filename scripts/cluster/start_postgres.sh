#!/usr/bin/env bash
# Start PostgreSQL as the backend store of the shared MLflow tracking server (docs/cluster.md, step 1).
#
#   MLFLOW_DB_PASSWORD=$(openssl rand -hex 16) scripts/cluster/start_postgres.sh DATA_DIR
#
# Creates the cluster in DATA_DIR on first use (initdb), starts it listening on PGLISTEN:PGPORT only
# (default 127.0.0.1:5432: only the MLflow server, on the same machine, talks to the database), creates the role
# and database MLFLOW_DB_USER / MLFLOW_DB (default mlflow / mlflow) if missing, and prints the backend store URI as
# the last line of stdout. Rerunning it on a running cluster changes nothing. Stop it with stop_postgres.sh.
#
# PostgreSQL refuses to run as root: as root, the server runs as the system user `postgres` (DATA_DIR is chowned to
# it); otherwise as the calling user. Binaries: pg_ctl on PATH, else Debian's /usr/lib/postgresql/<version>/bin
# (apt-get install postgresql).
set -euo pipefail
data=${1:?usage: start_postgres.sh DATA_DIR}
port=${PGPORT:-5432}
listen=${PGLISTEN:-127.0.0.1}
db=${MLFLOW_DB:-mlflow}
user=${MLFLOW_DB_USER:-mlflow}
password=${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD, e.g. MLFLOW_DB_PASSWORD=\$(openssl rand -hex 16)}
# The password goes into a URI and into SQL: hex or other URL-safe characters only.
[[ $password =~ ^[A-Za-z0-9._~-]+$ ]] || { echo "MLFLOW_DB_PASSWORD: use URL-safe characters only" >&2; exit 2; }
[[ $db =~ ^[a-z_][a-z0-9_]*$ && $user =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "MLFLOW_DB/MLFLOW_DB_USER: use [a-z0-9_]" >&2; exit 2; }

pg_ctl=$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pg_ctl" ] || { echo "PostgreSQL not found: apt-get install postgresql" >&2; exit 3; }
bin=$(dirname "$(readlink -f "$pg_ctl")")  # the real bin dir (Debian links only some tools onto PATH)

mkdir -p "$data"
data=$(cd "$data" && pwd)
as_owner=()
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$data"
  as_owner=(runuser -u postgres --)
fi
run() { "${as_owner[@]}" "$@"; }

if [ ! -s "$data/PG_VERSION" ]; then
  # Local (socket) connections: the OS user that owns the cluster only; TCP: passwords (scram-sha-256).
  run "$bin/initdb" -D "$data" --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions >/dev/null
fi
if ! run "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  # The socket lives in the data directory, which only the owner can enter.
  run "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
    -o "-c listen_addresses=$listen -p $port -k $data" start >/dev/null
fi

psql() { run "$bin/psql" -h "$data" -p "$port" -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ -z "$(psql -c "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" ]; then
  # psql substitutes :'pw' only in input read from stdin, so the password is quoted by psql, not by us.
  echo "CREATE ROLE $user LOGIN PASSWORD :'pw';" | psql -v pw="$password"
fi
if [ -z "$(psql -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
  psql -c "CREATE DATABASE $db OWNER $user"
fi
echo "postgresql://$user:$password@$listen:$port/$db"
