#!/usr/bin/env bash
# Installs PostgreSQL (Debian package) and starts a private cluster "freenet" on 127.0.0.1 for the
# aggregator's storage tests and ingest benchmark. Idempotent: when the cluster already runs it only
# prints the URL. The last line of stdout is the SQLAlchemy URL, e.g.
#   postgresql+psycopg://freenet:freenet@127.0.0.1:55432/freenet
# Tests read it from FREENET_TEST_PG_URL or run this script. The role may create databases, so
# each test gets a fresh database. Port: FREENET_PG_PORT (default 55432).
set -euo pipefail

PORT="${FREENET_PG_PORT:-55432}"
CLUSTER=freenet
ROLE=freenet
PASSWORD=freenet
DB=freenet
URL="postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"

log() { printf '[setup_postgres] %s\n' "$*" >&2; }

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing postgresql with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  # Another CI step may hold the dpkg lock: retry rather than fail.
  for i in $(seq 1 30); do
    if $SUDO apt-get install -y --no-install-recommends postgresql >&2; then break; fi
    if [[ $i -eq 1 ]]; then $SUDO apt-get update >&2 || true; fi
    log "apt busy or failed (try $i/30), retrying in 5 s"; sleep 5
  done
fi
VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n1)"
[[ -n "$VERSION" ]] || { log "no PostgreSQL server found under /usr/lib/postgresql after install"; exit 1; }

if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$VERSION $CLUSTER"; then
  log "creating cluster $VERSION/$CLUSTER on port $PORT"
  $SUDO pg_createcluster "$VERSION" "$CLUSTER" --port "$PORT" -- --auth-local=peer --auth-host=scram-sha-256 >&2
fi

status="$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $4}')"
if [[ "$status" != "online" ]]; then
  # Loopback only: tests must never listen on other interfaces. More connections than the default
  # 100: the 50-client ingest test plus pooled test engines. (Re)applied before every start.
  # (Written as a conf.d file: pg_conftool's quoting of 127.0.0.1 is not stable across versions.)
  printf "listen_addresses = '127.0.0.1'\nmax_connections = 200\n" \
    | $SUDO tee "/etc/postgresql/$VERSION/$CLUSTER/conf.d/freenet.conf" >/dev/null
  log "starting cluster $VERSION/$CLUSTER"
  # pg_ctlcluster works without systemd (containers, CI).
  $SUDO pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi

for i in $(seq 1 50); do
  if pg_isready -q -h 127.0.0.1 -p "$PORT"; then break; fi
  sleep 0.2
done
pg_isready -h 127.0.0.1 -p "$PORT" >&2 || { log "PostgreSQL did not become ready on 127.0.0.1:$PORT"; exit 1; }

psql_su() { $SUDO -u postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" "$@"; }
if [[ -z "$SUDO" ]]; then psql_su() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" "$@"; }; fi

if [[ "$(psql_su -tAc "SELECT 1 FROM pg_roles WHERE rolname='$ROLE'")" != "1" ]]; then
  log "creating role $ROLE"
  psql_su -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
fi
if [[ "$(psql_su -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'")" != "1" ]]; then
  log "creating database $DB"
  psql_su -c "CREATE DATABASE $DB OWNER $ROLE"
fi

log "ready"
echo "$URL"
