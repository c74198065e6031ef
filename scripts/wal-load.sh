#!/usr/bin/env bash
# Loads a fresh `agent-os serve` (SQLite) with wrk and watches the write-ahead log: 60 s of
# pings, then 60 s of POST /api/v1/events, then 60 s of POST /api/v1/costs (wrk -t2 -c32 each,
# 127.0.0.1 only). Prints the WAL and database sizes once a second, after the load, after a
# SIGTERM, and the time a restart takes to answer /healthz. docs/benchmarks.md quotes it.
#
#   scripts/wal-load.sh [path/to/agent-os] [seconds per phase]
set -euo pipefail

BIN=${1:-target/release/agent-os}
SECS=${2:-60}
BIN=$(realpath "$BIN")
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }

WORK=$(mktemp -d)
HOME_DIR=$WORK/home
PORT=$((20000 + RANDOM % 20000))
TOKEN="aosa_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

start() {
  local t0 t1
  t0=$(date +%s.%N)
  AGENT_OS_ADMIN_TOKEN=$TOKEN "$BIN" serve --home "$HOME_DIR" --bind "127.0.0.1:$PORT" >>"$WORK/server.log" 2>&1 &
  SERVER=$!
  until curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null; do sleep 0.01; done
  t1=$(date +%s.%N)
  printf 'server up in %.2f s\n' "$(echo "$t1 - $t0" | bc)"
}

size_mib() { if [ -f "$1" ]; then echo "scale=1; $(stat -c %s "$1") / 1048576" | bc; else echo 0; fi; }
sizes() { echo "wal $(size_mib "$HOME_DIR/agent-os.db-wal") MiB, db $(size_mib "$HOME_DIR/agent-os.db") MiB"; }

start
mkdir -p "$WORK/bench"
printf 'name: bench\nchecks:\n  - { slug: beat, every: 1h, grace: 10m }\n' >"$WORK/bench/agent-os.yaml"
AGENT_OS_URL=http://127.0.0.1:$PORT AGENT_OS_TOKEN=$TOKEN "$BIN" project add "$WORK/bench" >/dev/null
CHECK=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/checks?project=bench" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')

cat >"$WORK/events.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"type": "bench.load", "data": {"symbol": "SOL", "move": -3.4}}'
EOF
cat >"$WORK/costs.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"project": "bench", "service": "openai", "key_name": "bench-openai", "amount": "0.000207", "currency": "USD", "tokens_in": 900, "tokens_out": 120, "model": "gpt-4o-mini"}'
EOF

# The WAL's size once a second while the load runs; the largest is reported.
(while kill -0 "$SERVER" 2>/dev/null; do stat -c %s "$HOME_DIR/agent-os.db-wal" 2>/dev/null || echo 0; sleep 1; done) >"$WORK/wal.samples" &
WATCH=$!

phase() {
  echo "== $1: wrk -t2 -c32 -d${SECS}s"
  TOKEN=$TOKEN wrk -t2 -c32 -d"${SECS}s" --latency "${@:2}" | grep -E 'Requests/sec|Non-2xx|50%|99%|requests in'
  echo "after $1: $(sizes)"
}
phase pings "http://127.0.0.1:$PORT/ping/$CHECK"
phase events -s "$WORK/events.lua" "http://127.0.0.1:$PORT/api/v1/events"
phase costs -s "$WORK/costs.lua" "http://127.0.0.1:$PORT/api/v1/costs"
kill "$WATCH" 2>/dev/null || true
echo "largest WAL during the load: $(sort -n "$WORK/wal.samples" | tail -1 | awk '{printf "%.1f", $1 / 1048576}') MiB"
sleep 10
echo "10 s after the load: $(sizes)"
kill -TERM "$SERVER"
wait "$SERVER" || true
SERVER=
echo "after SIGTERM: $(sizes)"
start
echo "after the restart: $(sizes)"
