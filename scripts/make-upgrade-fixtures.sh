#!/usr/bin/env bash
# Makes the upgrade fixtures of one release: a database made by that release's binary, holding
# at least one record of every kind, for SQLite (a VACUUMed file) and PostgreSQL (a plain SQL
# dump with INSERTs). The upgrade tests (crates/cli/tests/upgrade.rs) serve each with the
# current binary. Run it at each release with the release's binary and commit the pair:
#
#   scripts/make-upgrade-fixtures.sh path/to/agent-os [OUT_DIR]
#
# Files: OUT_DIR/agent-os-VERSION-schemaN.sqlite.db and …-schemaN.postgres.sql (default
# OUT_DIR crates/cli/tests/fixtures/upgrade). Needs python3 (the example projects' tasks),
# sqlite3, curl, and for PostgreSQL psql and pg_dump with a server at $POSTGRES_URL (default
# postgres://postgres@127.0.0.1:5432/postgres) where it may create and drop a scratch database.
# Everything runs in a temporary directory; the admin token is a fixed fake one.
set -euo pipefail

BIN=$(realpath "${1:?usage: $0 path/to/agent-os [OUT_DIR]}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${2:-$ROOT/crates/cli/tests/fixtures/upgrade}")
POSTGRES_URL=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
VERSION=$("$BIN" --version | awk '{print $2}')
export AGENT_OS_ADMIN_TOKEN=fixture-admin-token-not-a-secret-0123456789
unset AGENT_OS_HOME AGENT_OS_URL AGENT_OS_TOKEN AGENT_OS_DATABASE_URL DATABASE_URL PORT AGENT_OS_PUBLIC_URL
WORK=$(mktemp -d)
SERVER_PID=
WORKER_PID=
cleanup() {
  [ -n "$WORKER_PID" ] && kill "$WORKER_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A project of our own: a task that logs, a schedule that fires every minute (a slot), and one
# served by a worker (a worker and its project).
write_projects() {
  mkdir -p "$WORK/nightly" "$WORK/remote"
  cat >"$WORK/nightly/agent-os.yaml" <<'YAML'
name: nightly
description: An upgrade fixture with a logged task and a schedule firing every minute
tasks:
  hello:
    description: Says hello twice
    run: [sh, -c, "echo hello from the fixture; echo second line"]
    timeout: 1m
schedules:
  - task: hello
    cron: "* * * * *"
    timezone: UTC
    description: every minute, so a slot is fired while the fixture is made
YAML
  cat >"$WORK/remote/agent-os.yaml" <<'YAML'
name: remote
description: An upgrade fixture project that a worker serves
tasks:
  echo:
    run: [sh, -c, "echo run by the worker"]
    timeout: 1m
YAML
}

# Runs the release's demo (the example projects, workflows, budgets, a notification channel)
# on HOME with the database URL $1 (empty: SQLite in the home), and makes one of everything.
make_records() {
  local database_url=$1 home=$WORK/home-$2 port url cli
  port=$(free_port)
  url=http://127.0.0.1:$port
  mkdir -p "$home"
  local args=(demo --home "$home" --bind "127.0.0.1:$port")
  [ -n "$database_url" ] && args+=(--database-url "$database_url")
  "$BIN" "${args[@]}" >"$WORK/serve-$2.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    curl -fsS "$url/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "$url/healthz" >/dev/null || { cat "$WORK/serve-$2.log"; exit 1; }
  cli() { "$BIN" --url "$url" --token "$AGENT_OS_ADMIN_TOKEN" "$@"; }

  cli project add "$WORK/nightly" >/dev/null
  # Runs with attempts and logs, cost records and their rollup (the task reports its tokens).
  cli run trading scan_market --input '{"symbols": ["BTC", "ETH"]}' --wait >/dev/null
  # A failed run: an incident, a notification and its delivery to the demo's inbox.
  cli run trading scan_market --input '{"fail": true}' --wait >/dev/null || true
  # A spike event starts the volatility-to-memories workflow: a workflow run and its steps.
  cli run trading scan_market --input '{"force_spike": "ETH"}' --wait >/dev/null
  cli run nightly hello --wait >/dev/null
  cli cost add --project cortana --service openai --amount 0.0421 --key-name cortana-openai >/dev/null
  cli event emit fixture.made --data '{"release": "'"$VERSION"'"}' >/dev/null
  cli notify --title "fixture" --body "made for the upgrade tests" --severity warning --dedup-key fixture >/dev/null
  cli budget set --project nightly --amount 5.00 --period daily >/dev/null
  cli maintenance start --project cortana --for 2h --reason "upgrade fixture" >/dev/null
  cli token create --project trading --name fixture-project >/dev/null
  cli lease openai --label fixture -- true >/dev/null
  printf 'fixture-dashboard-password\n' | cli dashboard password >/dev/null
  # A ping of a heartbeat check.
  local ping
  ping=$(cli checks --json | python3 -c 'import json,sys; print(next(c["ping_url"] for c in json.load(sys.stdin) if c.get("ping_url")))')
  curl -fsS "$ping" >/dev/null
  # A worker serving a project, and a run it ran.
  local worker_token
  worker_token=$(cli token create --worker --project remote --name fixture-worker --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  "$BIN" worker --home "$WORK/worker-$2" --server "$url" --project "$WORK/remote" --name fixture-worker \
    --token "$worker_token" >"$WORK/worker-$2.log" 2>&1 &
  WORKER_PID=$!
  for _ in $(seq 1 100); do
    cli project list --json 2>/dev/null | grep -q '"remote"' && break
    sleep 0.2
  done
  cli run remote echo --wait >/dev/null
  kill "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true; WORKER_PID=
  # A slot of the every-minute schedule, then a paused schedule.
  for _ in $(seq 1 75); do
    cli runs --json 2>/dev/null | python3 -c 'import json,sys; sys.exit(0 if any(r.get("trigger") == "schedule" for r in json.load(sys.stdin)["runs"]) else 1)' && break
    sleep 1
  done
  cli runs --json | python3 -c 'import json,sys; sys.exit(0 if any(r.get("trigger") == "schedule" for r in json.load(sys.stdin)["runs"]) else 1)' \
    || { echo "no scheduled run within 75 s" >&2; exit 1; }
  cli schedules pause nightly/hello >/dev/null
  sleep 2   # deliveries and probes settle
  kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=
}

write_projects
SCHEMA=

# SQLite ---------------------------------------------------------------------------------------
make_records "" sqlite
SCHEMA=$(sqlite3 "$WORK/home-sqlite/agent-os.db" "SELECT MAX(version) FROM _sqlx_migrations")
SQLITE_OUT=$OUT/agent-os-$VERSION-schema$SCHEMA.sqlite.db
rm -f "$SQLITE_OUT"
sqlite3 "$WORK/home-sqlite/agent-os.db" "VACUUM INTO '$SQLITE_OUT'"
sqlite3 "$SQLITE_OUT" "PRAGMA journal_mode = DELETE" >/dev/null
echo "wrote $SQLITE_OUT ($(stat -c %s "$SQLITE_OUT") bytes)"

# PostgreSQL -----------------------------------------------------------------------------------
SCRATCH=agent_os_fixture_$$
psql -q -v ON_ERROR_STOP=1 "$POSTGRES_URL" -c "CREATE DATABASE $SCRATCH"
PG_DB=${POSTGRES_URL%/*}/$SCRATCH
drop_scratch() { psql -q "$POSTGRES_URL" -c "DROP DATABASE IF EXISTS $SCRATCH WITH (FORCE)" || true; }
trap 'drop_scratch; cleanup' EXIT
make_records "$PG_DB" postgres
PG_SCHEMA=$(psql -tA "$PG_DB" -c "SELECT MAX(version) FROM _sqlx_migrations")
PG_OUT=$OUT/agent-os-$VERSION-schema$PG_SCHEMA.postgres.sql
# Settings a PostgreSQL 15 server refuses (newer pg_dump writes them) and psql's own
# meta-commands are left out, so a test can send the file as plain statements.
pg_dump --no-owner --no-privileges --inserts "$PG_DB" \
  | grep -v -E '^(SET transaction_timeout|\\restrict|\\unrestrict)' >"$PG_OUT"
echo "wrote $PG_OUT ($(stat -c %s "$PG_OUT") bytes)"
