"""daily_update: ingest today's notes and write a digest of what cortana remembers.

Notes dropped into inbox/ (*.md, *.txt) become memories in var/memories.jsonl and move to
inbox/processed/. The digest, written to var/digests/<date>.json, counts memories per tag and
carries the model's reflection (simulated). var/last_daily_update records when this last
succeeded; the status probe reads it.

Input (optional): {"date": "2026-11-25"} plus the demo controls sleep, fail, fail_attempts.
Outputs: {"date": ..., "ingested": n, "memories": total, "digest": "var/digests/<date>.json",
          "reflection": "..."}

launchd runs it every night through scripts/automation/run_daily_update.sh, and Agent OS runs it
as the daily_update task. Run by launchd, with AGENT_OS_URL in .env, it pings the heartbeat check
that watches the launchd schedule (its slug is the task's name): a start, then success or the
failure with the output's tail.
"""

import json
import os
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root: agent_os
import agent_os  # noqa: E402
import common  # noqa: E402
from common import ROOT, VAR  # noqa: E402


def ingest(day):
    inbox = ROOT / "inbox"
    notes = sorted(p for p in inbox.glob("*") if p.suffix in (".md", ".txt") and p.is_file()) if inbox.is_dir() else []
    if not notes:
        return []
    done = inbox / "processed"
    done.mkdir(exist_ok=True)
    added = []
    with open(VAR / "memories.jsonl", "a", encoding="utf-8") as f:
        for note in notes:
            text = " ".join(note.read_text(encoding="utf-8").split())
            if text:
                memory = {"id": f"n{day.replace('-', '')}-{len(added) + 1:03d}", "created_at": common.stamp(),
                          "tags": ["inbox"], "text": text}
                f.write(json.dumps(memory) + "\n")
                added.append(memory)
                print(f"ingested {note.name}")
            note.replace(done / note.name)
    return added


@agent_os.task
def daily_update(data):
    common.demo_controls(data)
    day = str(data.get("date") or datetime.now(timezone.utc).date().isoformat())
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        raise agent_os.BadInput(f"`date` must look like 2026-11-25, got {day!r}") from None
    VAR.mkdir(parents=True, exist_ok=True)
    print(f"daily update for {day}")

    try:
        seed = json.loads((ROOT / "data" / "memories.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RuntimeError(f"cannot read data/memories.json: {e}") from e  # exit 1: retried
    added = ingest(day)
    if added:
        tokens = sum(len(m["text"]) // 4 + 1 for m in added)
        common.report_embedding("text-embedding-3-small", tokens, "0.02", "daily_update", "embed")
    learned_path = VAR / "memories.jsonl"
    learned = [json.loads(line) for line in learned_path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if learned_path.is_file() else []
    memories = seed + learned
    tags = Counter(tag for m in memories for tag in m.get("tags", []))
    print(f"{len(memories)} memories, {len(added)} new; top tags: " + ", ".join(t for t, _ in tags.most_common(3)))

    # The real job asks the model for a reflection on the day; simulated here.
    if not os.environ.get("OPENAI_API_KEY"):
        print("no OPENAI_API_KEY in .env: using the simulated model")
    reflection = f"{len(memories)} memories; most about {', '.join(t for t, _ in tags.most_common(2))}."
    model = os.environ.get("CORTANA_MODEL", "gpt-4o-mini")
    common.record_chat(common.chat_completion(model, reflection, 1500 + 40 * len(memories), 400), "daily_update", "reflect")

    digest_dir = VAR / "digests"
    digest_dir.mkdir(exist_ok=True)
    digest = digest_dir / f"{day}.json"
    digest.write_text(json.dumps({"date": day, "memories": len(memories), "new": len(added), "tags": dict(tags),
                                  "reflection": reflection}, indent=2) + "\n", encoding="utf-8")
    (VAR / "last_daily_update").write_text(common.stamp() + "\n", encoding="utf-8")
    print(f"digest written to {digest.relative_to(ROOT)}")
    return {"date": day, "ingested": len(added), "memories": len(memories), "digest": str(digest.relative_to(ROOT)),
            "reflection": reflection}


if __name__ == "__main__":
    agent_os.load_env()  # cortana's own .env: the model's key, and where Agent OS is for launchd's runs
    if agent_os.current_run() is None and os.environ.get("AGENT_OS_URL"):
        with agent_os.check("daily_update"):  # launchd's run: ping the schedule's check around it
            daily_update.main()
    else:
        daily_update.main()
