"""Agent OS status probe for cortana (get_status, plugin protocol 1).

down      data/memories.json is missing or unreadable: there is nothing to search
degraded  the nightly update last succeeded more than 26 hours ago
ok        otherwise (also before the first nightly update on this machine)
"""

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STALE_HOURS = 26


def check():
    details = {}
    try:
        memories = json.loads((ROOT / "data" / "memories.json").read_text(encoding="utf-8"))
        if not isinstance(memories, list):
            raise ValueError("not a list")
    except (OSError, ValueError) as e:
        return "down", f"data/memories.json unusable: {e}", details
    learned = ROOT / "var" / "memories.jsonl"
    learned_count = len(learned.read_text(encoding="utf-8").splitlines()) if learned.is_file() else 0
    details["memories"] = len(memories) + learned_count
    details["learned"] = learned_count

    stamp = ROOT / "var" / "last_daily_update"
    if not stamp.is_file():
        details["last_daily_update"] = None
        return "ok", f"{details['memories']} memories; no nightly update recorded yet", details
    try:
        last = datetime.fromisoformat(stamp.read_text(encoding="utf-8").strip().replace("Z", "+00:00"))
    except ValueError:
        return "degraded", "var/last_daily_update is unreadable", details
    hours = (datetime.now(timezone.utc) - last).total_seconds() / 3600
    details["last_daily_update"] = last.strftime("%Y-%m-%dT%H:%M:%SZ")
    details["hours_since_update"] = round(hours, 1)
    if hours > STALE_HOURS:
        return "degraded", f"nightly update last ran {hours:.0f} h ago (launchd job stopped?)", details
    return "ok", f"{details['memories']} memories; updated {hours:.1f} h ago", details


def main():
    raw = sys.stdin.read()
    try:
        request = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as e:
        sys.exit(f"request is not JSON: {e}")
    if request.get("protocol", 1) != 1 or request.get("op", "get_status") != "get_status":
        sys.exit(f"unsupported request: protocol {request.get('protocol')!r}, op {request.get('op')!r}")
    status, message, details = check()
    print(json.dumps({"status": status, "message": message, "details": details}))


if __name__ == "__main__":
    main()
