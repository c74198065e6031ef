"""cortana as Agent OS sees it between runs: the status and cost probes, as one agent_os.Plugin
served over the command transport. agent-os.yaml's `status:` and `cost:` both run
`python3 scripts/plugin.py`; the package reads the probe request on stdin and answers it.

Status
  down      data/memories.json is missing or unreadable: there is nothing to search
  degraded  the nightly update last succeeded more than 26 hours ago
  ok        otherwise (also before the first nightly update on this machine)

Cost
  The records the tasks appended to var/usage.jsonl after the cursor, a byte offset into that
  file. Only complete lines are returned, so a line being written right now waits for the next
  probe. If the file shrank (it was rotated), reading starts again from the top: every record
  carries the idempotency key its task also reported it with, so nothing counts twice.
"""

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project root: agent_os
import agent_os  # noqa: E402

USAGE_LOG = ROOT / "var" / "usage.jsonl"
STALE_HOURS = 26


class Cortana(agent_os.Plugin):
    def get_status(self):
        details = {}
        try:
            memories = json.loads((ROOT / "data" / "memories.json").read_text(encoding="utf-8"))
            if not isinstance(memories, list):
                raise ValueError("not a list")
        except (OSError, ValueError) as e:
            return agent_os.Status("down", f"data/memories.json unusable: {e}", details)
        learned = ROOT / "var" / "memories.jsonl"
        learned_count = len(learned.read_text(encoding="utf-8").splitlines()) if learned.is_file() else 0
        details["memories"] = len(memories) + learned_count
        details["learned"] = learned_count

        stamp = ROOT / "var" / "last_daily_update"
        if not stamp.is_file():
            details["last_daily_update"] = None
            return agent_os.Status("ok", f"{details['memories']} memories; no nightly update recorded yet", details)
        try:
            last = datetime.fromisoformat(stamp.read_text(encoding="utf-8").strip().replace("Z", "+00:00"))
        except ValueError:
            return agent_os.Status("degraded", "var/last_daily_update is unreadable", details)
        hours = (datetime.now(timezone.utc) - last).total_seconds() / 3600
        details["last_daily_update"] = last.strftime("%Y-%m-%dT%H:%M:%SZ")
        details["hours_since_update"] = round(hours, 1)
        if hours > STALE_HOURS:
            return agent_os.Status("degraded", f"nightly update last ran {hours:.0f} h ago (launchd job stopped?)", details)
        return agent_os.Status("ok", f"{details['memories']} memories; updated {hours:.1f} h ago", details)

    def report_cost(self, since):
        offset = int(since) if since is not None and since.isdigit() else 0
        content = USAGE_LOG.read_bytes() if USAGE_LOG.is_file() else b""
        if offset > len(content):
            print("usage log shrank; reading from the start", file=sys.stderr)
            offset = 0
        end = max(content.rfind(b"\n") + 1, offset)
        records = []
        for line in content[offset:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                print("skipping a line that is not JSON", file=sys.stderr)
                continue
            if isinstance(record, dict):
                records.append(record)
        return agent_os.CostReport(records, str(end))


if __name__ == "__main__":
    Cortana().main()
