#!/bin/sh
# Nightly memory update. launchd starts it at 22:00 (com.example.cortana.daily.plist); Agent OS
# starts it as the daily_update task. Either way the Python step loads cortana's own .env
# (agent_os.load_env: a variable already set, such as Agent OS's own, is kept), nobody else's.
set -eu

cd "$(dirname "$0")/../.."

# stdin (the task input, if any) goes straight through to the Python step.
exec python3 scripts/core/daily_update.py
