"""Agent OS cost probe for cortana (report_cost, plugin protocol 1).

Returns the records the tasks appended to var/usage.jsonl since the cursor. The cursor is a byte
offset into that file; only complete lines are returned, so a line being written right now waits
for the next probe. If the file shrank (it was rotated), reading starts again from the top:
every record carries the idempotency key its task also pushed with, so nothing counts twice.
"""

import json
import sys
from pathlib import Path

LOG = Path(__file__).resolve().parents[2] / "var" / "usage.jsonl"


def main():
    raw = sys.stdin.read()
    try:
        request = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as e:
        sys.exit(f"request is not JSON: {e}")
    if request.get("protocol", 1) != 1 or request.get("op", "report_cost") != "report_cost":
        sys.exit(f"unsupported request: protocol {request.get('protocol')!r}, op {request.get('op')!r}")

    since = request.get("since")
    offset = int(since) if isinstance(since, str) and since.isdigit() else 0
    content = LOG.read_bytes() if LOG.is_file() else b""
    if offset > len(content):
        print("usage log shrank; reading from the start", file=sys.stderr)
        offset = 0
    end = content.rfind(b"\n") + 1
    records = []
    for line in content[offset:max(end, offset)].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            print("skipping a line that is not JSON", file=sys.stderr)
            continue
        if isinstance(record, dict):
            records.append(record)
    print(json.dumps({"records": records, "cursor": str(max(end, offset))}))


if __name__ == "__main__":
    main()
