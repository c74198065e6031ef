#!/bin/sh
# Agent OS status probe (get_status, plugin protocol 1) for image-workflow.
#   down      data/ or its catalogue is missing
#   degraded  the newest backup is more than 26 hours old (the crontab entry stopped?)
#   ok        otherwise, also before the first backup
set -eu
cd "$(dirname "$0")/.."

request=$(cat)
printf '%s' "$request" | python3 -c '
import json, sys
raw = sys.stdin.read().strip()
request = json.loads(raw) if raw else {}
if request.get("protocol", 1) != 1 or request.get("op", "get_status") != "get_status":
    sys.exit(f"unsupported request: {raw}")
'

answer() {  # answer STATUS MESSAGE DETAILS-JSON; messages here never contain quotes
    printf '{"status": "%s", "message": "%s", "details": %s}\n' "$1" "$2" "$3"
}

if [ ! -f data/catalog.csv ]; then
    answer down "data/catalog.csv is missing" '{}'
    exit 0
fi
images=$(( $(wc -l < data/catalog.csv) - 1 ))
backups=0
newest=""
if [ -d backups ]; then
    backups=$(ls backups | grep -c '^backup-[0-9TZ]*\.tar\.gz$' || true)
    newest=$(ls backups | grep '^backup-[0-9TZ]*\.tar\.gz$' | sort -r | head -n 1 || true)
fi
last_batch=null
[ ! -f var/last_batch ] || last_batch="\"$(cat var/last_batch)\""
newest_json=null
[ -z "$newest" ] || newest_json="\"backups/$newest\""
details="{\"images\": $images, \"backups\": $backups, \"newest_backup\": $newest_json, \"last_batch\": $last_batch}"

if [ -z "$newest" ]; then
    answer ok "$images images catalogued; no backup yet" "$details"
elif [ -n "$(find "backups/$newest" -mmin +1560)" ]; then
    answer degraded "newest backup $newest is more than 26 h old" "$details"
else
    answer ok "$images images catalogued; newest backup $newest" "$details"
fi
