"""Status probe (get_status): is the scanner alive and scanning on time?

ok        the last scan is recent (Railway fires one every 6 hours), or none has run here yet
degraded  the last scan is older than 7 hours
down      var/halt exists: the kill switch is on (its text is the reason)
"""

import json
import os
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import agentos_client as aos  # noqa: E402
from probe import answer, read_request  # noqa: E402

STALE_AFTER_HOURS = 7


def status():
    aos.load_env()
    details = {
        "openai_key_configured": bool(os.environ.get("OPENAI_API_KEY")),
        "discord_configured": bool(os.environ.get("DISCORD_WEBHOOK_URL")),
    }
    halt = aos.VAR / "halt"
    if halt.exists():
        reason = halt.read_text(encoding="utf-8").strip() or "no reason given"
        return {"status": "down", "message": f"trading halted: {reason}", "details": details}

    path = aos.VAR / "last_scan.json"
    if not path.is_file():
        return {"status": "ok", "message": "no scan recorded yet", "details": details}
    try:
        last = json.loads(path.read_text(encoding="utf-8"))
        at = datetime.fromisoformat(last["at"].replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return {"status": "degraded", "message": f"last scan record is unreadable: {e}", "details": details}

    age = aos.now_utc() - at
    hours = age.total_seconds() / 3600
    details.update(
        last_scan_at=last["at"],
        age_seconds=int(age.total_seconds()),
        spikes=last.get("spikes", []),
        symbols=sorted(last.get("volatility", {})),
    )
    spikes = ", ".join(last.get("spikes", [])) or "none"
    if hours > STALE_AFTER_HOURS:
        return {
            "status": "degraded",
            "message": f"last scan {hours:.1f} h ago; Railway cron should scan every 6 h",
            "details": details,
        }
    minutes = int(age.total_seconds() // 60)
    return {"status": "ok", "message": f"last scan {minutes} min ago, spikes: {spikes}", "details": details}


if __name__ == "__main__":
    read_request("get_status")
    answer(status())
