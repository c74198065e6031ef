#!/usr/bin/env bash
# Checks that the OpenAPI document at /api/openapi.json tells the truth about the server.
#
# Builds the binary, starts `agent-os demo` (the example projects and workflows) on a fresh
# temporary home bound to 127.0.0.1 on a free port, and runs schemathesis against the document
# with the home's admin token: every operation but the ones listed in EXCLUDED below, with the
# checks that the server never answers 5xx, that every status code, content type and body it
# returns is the one documented, that it accepts what the document says is valid and refuses
# what the document says is not (scripts/schemathesis.toml lists, with reasons, the operations
# whose rules a schema cannot express, where a 400 to schema-valid data is expected). Bounded in time (SCHEMATHESIS_MAX_TIME seconds for the run,
# SCHEMATHESIS_MAX_EXAMPLES cases per operation); exits non-zero on any failure and stops the
# server in every case.
#
# AGENT_OS_BIN names a binary to use instead of building one.
# Needs schemathesis on PATH (`pip install schemathesis==4.32.5`, as .ci/run does).
# Usage: scripts/schemathesis.sh [extra schemathesis arguments, e.g. --seed N]
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_TIME="${SCHEMATHESIS_MAX_TIME:-180}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-40}"

command -v schemathesis >/dev/null || { echo "schemathesis is not installed: pip install schemathesis==4.32.5" >&2; exit 1; }

# AGENT_OS_BIN: a binary already built (e.g. a release build); otherwise the debug build.
bin="${AGENT_OS_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --quiet -p agent-os
  bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/agent-os"
fi

home="$(mktemp -d -t agent-os-schemathesis-XXXXXX)"
log="$home/server.log"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$home"
}
trap cleanup EXIT

# Port 0: the kernel picks a free port; the server writes the URL it bound to client.json.
"$bin" --home "$home" demo --bind 127.0.0.1:0 >"$log" 2>&1 &
server_pid=$!

url="" token=""
for _ in $(seq 1 300); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server exited during start-up:" >&2
    cat "$log" >&2
    exit 1
  fi
  # The demo prints its banner once the projects and workflows are loaded.
  if grep -q '^example projects:' "$log" 2>/dev/null && [ -f "$home/client.json" ]; then
    read -r url token < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["url"], c.get("token",""))' "$home/client.json")
    break
  fi
  sleep 0.2
done
if [ -z "$url" ] || [ -z "$token" ]; then
  echo "the server did not come up within 60 s:" >&2
  cat "$log" >&2
  exit 1
fi
echo "server: $url (home $home)"

# Excluded operations, and why:
# - DELETE /api/v1/tokens/{id}: revoking tokens could revoke the run's own admin credential,
#   after which every later request is a 401 and the run tests nothing.
# - DELETE /api/v1/projects/{name}: deleting the example projects (the document's examples name
#   them) would leave every later project, run and schedule operation with nothing but 404s.
set +e
# Run from the temporary home, so schemathesis's own files (.schemathesis/) go with it.
config="$PWD/scripts/schemathesis.toml"
cd "$home"
timeout --kill-after=10 "$((MAX_TIME + 60))" schemathesis --config-file "$config" run "$url/api/openapi.json" \
  --url "$url" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,positive_data_acceptance,negative_data_rejection \
  --phases examples,coverage,fuzzing \
  --max-examples "$MAX_EXAMPLES" \
  --max-time "$MAX_TIME" \
  --request-timeout 60 \
  --generation-database none \
  --exclude-operation-id revoke_token \
  --exclude-operation-id delete_project \
  --no-color \
  "$@"
status=$?
set -e
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed (exit $status); the server's log follows" >&2
  tail -n 50 "$log" >&2
fi
exit "$status"
