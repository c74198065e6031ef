#!/bin/sh
# Nightly memory update. launchd starts it at 22:00 (com.example.cortana.daily.plist); Agent OS
# starts it as the daily_update task. Either way it loads cortana's own .env, nobody else's.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

if [ -f "$root/.env" ]; then
    set -a
    . "$root/.env"
    set +a
fi

# stdin (the task input, if any) goes straight through to the Python step.
exec python3 scripts/core/daily_update.py
