# Shared by image-workflow's task scripts (sourced, not run).
#
# Agent OS hands a task its input as one JSON object on stdin and names an outputs file in
# AGENT_OS_OUTPUT. The shell keeps the raw input in $INPUT; python3 pulls single fields out of it
# and checks their type, so no input text is ever evaluated by the shell.

# Loads the project's own .env (never another project's) if there is one.
load_env() {
    if [ -f ./.env ]; then
        set -a
        . ./.env
        set +a
    fi
}

# under_check SLUG SCRIPT - when the project's own scheduler (cron), not Agent OS, runs SCRIPT
# and .env says where Agent OS is (AGENT_OS_URL, and AGENT_OS_PING_KEY), runs SCRIPT again with
# the same stdin between a start ping and a finish ping of the heartbeat check SLUG that watches
# its schedule, then exits with SCRIPT's status. The finish ping carries that status and the tail
# of the output. Inside an Agent OS run, or without AGENT_OS_URL, it does nothing. The pings are
# the agent_os package's (python3 -m agent_os ping): one Agent OS cannot take now waits in the
# package's spool and goes later, so the job never fails because Agent OS is away.
under_check() {
    if [ -n "${AGENT_OS_RUN_ID:-}" ] || [ -z "${AGENT_OS_URL:-}" ] || [ -n "${UNDER_CHECK:-}" ]; then
        return 0
    fi
    export AGENT_OS_PROJECT="${AGENT_OS_PROJECT:-image-workflow}"
    rid="$(date -u +%Y%m%dT%H%M%SZ)-$$"
    python3 -m agent_os ping "$1" start --rid "$rid" || true
    log=$(mktemp)
    status=0
    UNDER_CHECK=1 sh "$2" > "$log" 2>&1 || status=$?
    cat "$log"
    python3 -m agent_os ping "$1" "$status" --rid "$rid" --body - < "$log" || true
    rm -f "$log"
    exit "$status"
}

# Reads stdin into $INPUT; exits 78 (bad input, no retry) unless it is a JSON object.
read_input() {
    if [ -t 0 ]; then INPUT='{}'; else INPUT=$(cat); fi
    case $(printf '%s' "$INPUT" | tr -d ' \t\r\n') in
        '') INPUT='{}' ;;
    esac
    printf '%s' "$INPUT" | python3 -c '
import json, sys
try:
    data = json.load(sys.stdin)
except ValueError as e:
    sys.exit(f"bad input: not JSON: {e}")
if not isinstance(data, dict):
    sys.exit("bad input: must be a JSON object")
' || exit 78
}

# field NAME DEFAULT KIND - prints one input field. KIND is count (whole number >= 0), seconds
# (number >= 0, printed as "WHOLE FRACTION") or flag (true/false, printed as 1/0).
# Use as: count=$(field count 10 count) || exit 78
field() {
    printf '%s' "$INPUT" | python3 -c '
import json, sys
name, default, kind = sys.argv[1:]
value = json.load(sys.stdin).get(name)
if value is None:
    value = default == "true" if kind == "flag" else float(default) if kind == "seconds" else int(default)
number = isinstance(value, (int, float)) and not isinstance(value, bool)
if kind == "flag" and isinstance(value, bool):
    print(1 if value else 0)
elif kind == "count" and number and value == int(value) and value >= 0:
    print(int(value))
elif kind == "seconds" and number and value >= 0:
    print(int(value), f"{value - int(value):.3f}")
else:
    sys.exit(f"bad input: `{name}` must be " + {"flag": "true or false", "count": "a whole number",
             "seconds": "a number of seconds"}[kind])
' "$1" "$2" "$3"
}

# The inputs every task accepts for demos and tests, handled before any work:
# sleep (seconds, a line each second), fail (true: exit 1), fail_attempts (attempts 1..N exit 1).
demo_controls() {
    secs=$(field sleep 0 seconds) || exit 78
    whole=${secs% *}
    frac=${secs#* }
    i=0
    while [ "$i" -lt "$whole" ]; do
        i=$((i + 1))
        echo "sleeping $i/${whole}s"
        sleep 1
    done
    [ "$frac" = 0.000 ] || sleep "$frac"
    fail=$(field fail false flag) || exit 78
    if [ "$fail" = 1 ]; then
        echo 'failing on purpose: input has "fail": true' >&2
        exit 1
    fi
    flaky=$(field fail_attempts 0 count) || exit 78
    if [ "${AGENT_OS_ATTEMPT:-1}" -le "$flaky" ]; then
        echo "failing attempt ${AGENT_OS_ATTEMPT:-1} on purpose (fail_attempts=$flaky)" >&2
        exit 1
    fi
}

# write_outputs JSON - hands the outputs object to Agent OS, if it asked for one.
write_outputs() {
    if [ -n "${AGENT_OS_OUTPUT:-}" ]; then
        printf '%s\n' "$1" > "$AGENT_OS_OUTPUT"
    fi
    echo "outputs: $1"
}
