"""trading as Agent OS sees it between runs: the status and cost probes, as one agent_os.Plugin
served over the command transport. agent-os.yaml's `status:` and `cost:` both run
`python3 plugin.py`; the package reads the probe request on stdin and answers the right one.

Status
  down      var/halt exists: the kill switch is on (its text is the reason)
  degraded  the last scan is older than 7 hours (Railway cron scans every 6), or unreadable
  ok        the last scan is recent, or none has run here yet

Cost
  The OpenAI calls the tasks logged in var/usage.jsonl after the cursor (the number of lines
  already returned), each under the idempotency key the task reported it with, so Agent OS counts
  it once. A line still being written (no newline yet) waits for the next probe.
"""

import json
import os
import sys
from datetime import datetime

import agent_os

from common import USAGE_LOG, VAR, now_utc

STALE_AFTER_HOURS = 7


def warn(message):
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Trading(agent_os.Plugin):
    def get_status(self):
        agent_os.load_env()
        details = {
            "openai_key_configured": bool(os.environ.get("OPENAI_API_KEY")),
            "discord_configured": bool(os.environ.get("DISCORD_WEBHOOK_URL")),
        }
        halt = VAR / "halt"
        if halt.exists():
            reason = halt.read_text(encoding="utf-8").strip() or "no reason given"
            return agent_os.Status("down", f"trading halted: {reason}", details)

        path = VAR / "last_scan.json"
        if not path.is_file():
            return agent_os.Status("ok", "no scan recorded yet", details)
        try:
            last = json.loads(path.read_text(encoding="utf-8"))
            at = datetime.fromisoformat(last["at"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return agent_os.Status("degraded", f"last scan record is unreadable: {e}", details)

        age = now_utc() - at
        hours = age.total_seconds() / 3600
        details.update(
            last_scan_at=last["at"],
            age_seconds=int(age.total_seconds()),
            spikes=last.get("spikes", []),
            symbols=sorted(last.get("volatility", {})),
        )
        if hours > STALE_AFTER_HOURS:
            return agent_os.Status("degraded", f"last scan {hours:.1f} h ago; Railway cron should scan every 6 h", details)
        spikes = ", ".join(last.get("spikes", [])) or "none"
        return agent_os.Status("ok", f"last scan {int(age.total_seconds() // 60)} min ago, spikes: {spikes}", details)

    def report_cost(self, since):
        try:
            start = int(since) if since is not None else 0
        except ValueError:
            warn(f"unknown cursor {since!r}; starting from the beginning")
            start = 0
        text = USAGE_LOG.read_text(encoding="utf-8") if USAGE_LOG.is_file() else ""
        lines = text.split("\n")[:-1]  # complete lines only
        if not 0 <= start <= len(lines):
            warn("usage log is shorter than the cursor (rotated?); starting from the beginning")
            start = 0
        records = []
        for number, line in enumerate(lines[start:], start=start + 1):
            try:
                record = json.loads(line)
            except ValueError:
                warn(f"var/usage.jsonl line {number} is not JSON; skipped")
                continue
            if isinstance(record, dict):
                records.append(record)
        return agent_os.CostReport(records, str(len(lines)))


if __name__ == "__main__":
    Trading().main()
