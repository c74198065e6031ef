#!/bin/sh
# backup: archive data/ into backups/backup-<UTC timestamp>.tar.gz and keep the newest ones
# (BACKUP_KEEP in .env, default 5). Runs from the user's crontab at 03:30 and as an Agent OS task.
# Input:   {} (only the demo controls)
# Outputs: {"archive": "backups/backup-20261125T033000Z.tar.gz", "bytes": 1234, "kept": 5}
# Run by cron with AGENT_OS_URL in .env, it pings the check `backup` that watches the crontab
# schedule in Agent OS (see under_check in lib.sh).
set -eu
cd "$(dirname "$0")/.."
. ./scripts/lib.sh
load_env
under_check backup scripts/backup.sh
read_input
demo_controls

keep=${BACKUP_KEEP:-5}
case $keep in
    '' | *[!0-9]* | 0) echo "BACKUP_KEEP in .env must be a whole number of at least 1" >&2; exit 78 ;;
esac
if [ ! -d data ]; then
    echo "data/ is missing: nothing to back up" >&2
    exit 78
fi

mkdir -p backups var
archive="backups/backup-$(date -u +%Y%m%dT%H%M%SZ).tar.gz"
while [ -e "$archive" ]; do  # one archive per second, so names keep sorting by time
    sleep 1
    archive="backups/backup-$(date -u +%Y%m%dT%H%M%SZ).tar.gz"
done
# Write under a temporary name so a killed run never leaves a half archive that looks complete.
trap 'rm -f "$archive.part"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
echo "archiving data/ into $archive"
tar -czf "$archive.part" data
mv "$archive.part" "$archive"
bytes=$(wc -c < "$archive" | tr -d ' ')
echo "wrote $bytes bytes"

# Names sort by time, newest first; drop everything after the newest $keep.
ls backups | grep '^backup-[0-9TZ]*\.tar\.gz$' | sort -r | tail -n +"$((keep + 1))" | while read -r old; do
    echo "removing old backups/$old"
    rm -f "backups/$old"
done
kept=$(ls backups | grep -c '^backup-[0-9TZ]*\.tar\.gz$' || true)

date -u +%Y-%m-%dT%H:%M:%SZ > var/last_backup
write_outputs "{\"archive\": \"$archive\", \"bytes\": $bytes, \"kept\": $kept}"
