#!/bin/sh
# process_batch: "resize and convert" a batch of images (simulated; nothing is written).
# Input:   {"count": 10, "preset": "web"}   count 0..10000 (default 10); preset from data/presets.json
# Outputs: {"processed": N, "preset": "web", "format": "webp"}
set -eu
cd "$(dirname "$0")/.."
. ./scripts/lib.sh
load_env
read_input
demo_controls

count=$(field count 10 count) || exit 78
if [ "$count" -gt 10000 ]; then
    echo "bad input: count $count is more than 10000 (the old laptop runs out of memory)" >&2
    exit 78
fi
preset=$(printf '%s' "$INPUT" | python3 -c '
import json, sys
preset = json.load(sys.stdin).get("preset", "web")
presets = json.load(open("data/presets.json"))
if preset not in presets:
    sys.exit(f"bad input: unknown preset {preset!r}; known: {sorted(presets)}")
print(preset)
') || exit 78
case ${OUTPUT_FORMAT:-webp} in
    webp | jpg | png | avif) format=${OUTPUT_FORMAT:-webp} ;;
    *) echo "OUTPUT_FORMAT in .env must be webp, jpg, png or avif" >&2; exit 78 ;;
esac

echo "processing $count images with preset $preset -> $format"
step=$(( count > 50 ? count / 10 : 1 ))
i=0
while [ "$i" -lt "$count" ]; do
    i=$((i + 1))
    if [ $((i % step)) -eq 0 ] || [ "$i" -eq "$count" ]; then
        printf 'processed img-%04d.jpg -> img-%04d.%s (%d/%d)\n' "$i" "$i" "$format" "$i" "$count"
    fi
done

mkdir -p var
date -u +%Y-%m-%dT%H:%M:%SZ > var/last_batch
write_outputs "{\"processed\": $count, \"preset\": \"$preset\", \"format\": \"$format\"}"
