"""weekly_report / monthly_report: summarise recent scans and post them to Discord.

Usage:   python3 tasks/report.py weekly|monthly      (input on stdin, may be {})
Input:   {"post": true}   set post to false to skip the Discord step
Outputs: {"period": "weekly", "days": 7, "scans": 12, "spikes": {"ETH": 2}, "text": "...",
          "posted": false}

The model call and the Discord post are simulated: with DISCORD_WEBHOOK_URL in .env the report
says it would have been posted; nothing leaves the machine.
"""

import json
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project root: common, agent_os
import agent_os  # noqa: E402
import common  # noqa: E402

PERIODS = {"weekly": 7, "monthly": 30}


def recent_scans(days):
    path = common.VAR / "scans.jsonl"
    if not path.is_file():
        return []
    since = common.now_utc() - timedelta(days=days)
    scans = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            scan = json.loads(line)
            at = datetime.fromisoformat(scan["at"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if at >= since:
            scans.append(scan)
    return scans


def report(period, data):
    agent_os.load_env()
    days = PERIODS[period]
    scans = recent_scans(days)
    spikes = {}
    for scan in scans:
        for symbol in scan.get("spikes", []):
            spikes[symbol] = spikes.get(symbol, 0) + 1
    print(f"{period} report: {len(scans)} scans in the last {days} days")
    if spikes:
        busiest = ", ".join(f"{s} x{n}" for s, n in sorted(spikes.items(), key=lambda kv: -kv[1]))
        text = f"{period.capitalize()} report: {len(scans)} scans, spikes: {busiest}."
    else:
        text = f"{period.capitalize()} report: {len(scans)} scans, no volatility spikes."

    # The real service has the model write the prose; the call is simulated.
    common.record_openai(common.chat_completion(text, 900 + 60 * len(scans), 350), "summary", task=f"{period}_report")

    posted = False
    if data.get("post", True) is not False:
        if os.environ.get("DISCORD_WEBHOOK_URL"):
            print("would post the report to Discord (simulated)")
            posted = True
        else:
            print("no DISCORD_WEBHOOK_URL in .env: report not posted")
    return {"period": period, "days": days, "scans": len(scans), "spikes": spikes, "text": text, "posted": posted}


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in PERIODS:
        print("usage: report.py weekly|monthly", file=sys.stderr)
        sys.exit(agent_os.EXIT_DO_NOT_RETRY)
    with agent_os.task_context() as t:
        common.demo_controls(t.input)
        t.outputs = report(sys.argv[1], t.input)
