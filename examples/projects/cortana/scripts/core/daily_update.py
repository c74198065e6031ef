"""Nightly consolidation: ingest today's notes and write a digest of what cortana remembers.

Notes dropped into inbox/ (*.md, *.txt) become memories in var/memories.jsonl and move to
inbox/processed/. The digest, written to var/digests/<date>.json, counts memories per tag and
carries the model's reflection (simulated). var/last_daily_update records when this last
succeeded; the status probe reads it.

Input (optional): {"date": "2026-11-25"} plus the demo controls sleep, fail, fail_attempts.
Outputs: {"date": ..., "ingested": n, "memories": total, "digest": "var/digests/<date>.json"}
"""

import json
import os
import secrets
import sys
import time
import urllib.request
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VAR = ROOT / "var"


def log(line):
    print(line, flush=True)


def fail(reason, code=1):
    print(reason, file=sys.stderr, flush=True)
    sys.exit(code)


def stamp():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_cost(step, model, tokens_in, tokens_out, per_million_in, per_million_out):
    """Logs the (simulated) OpenAI call to var/usage.jsonl and pushes it to Agent OS."""
    amount = (Decimal(per_million_in) * tokens_in + Decimal(per_million_out) * tokens_out) / 1_000_000
    run = os.environ.get("AGENT_OS_RUN_ID") or "launchd-" + stamp() + "-" + secrets.token_hex(3)
    record = {"service": "openai", "key_name": "cortana-openai", "amount": f"{amount:.9f}".rstrip("0").rstrip("."),
              "currency": "USD", "tokens_in": tokens_in, "tokens_out": tokens_out, "model": model, "at": stamp(),
              "idempotency_key": f"{run}-{os.environ.get('AGENT_OS_ATTEMPT', '1')}-{step}",
              "metadata": {"task": "daily_update", "step": step}}
    VAR.mkdir(parents=True, exist_ok=True)
    with open(VAR / "usage.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    url, token = os.environ.get("AGENT_OS_URL"), os.environ.get("AGENT_OS_TOKEN")
    if not (url and token):
        print("warning: not run by Agent OS; cost only logged locally", file=sys.stderr, flush=True)
        return
    req = urllib.request.Request(url.rstrip("/") + "/api/v1/costs", data=json.dumps(record).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=5).close()
    except Exception as e:  # reporting must never fail the update
        print(f"warning: cost not reported to Agent OS: {e}", file=sys.stderr, flush=True)


def read_input():
    raw = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as e:
        fail(f"input is not JSON: {e}", 78)
    if not isinstance(data, dict):
        fail("input must be a JSON object", 78)
    seconds = data.get("sleep", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        fail("`sleep` must be a non-negative number of seconds", 78)
    for i in range(int(seconds)):
        log(f"sleeping {i + 1}/{int(seconds)}s")
        time.sleep(1)
    time.sleep(seconds - int(seconds))
    if data.get("fail") is True:
        fail("failing on purpose: input has \"fail\": true")
    attempt = int(os.environ.get("AGENT_OS_ATTEMPT", "1") or "1")
    flaky = data.get("fail_attempts", 0)
    if isinstance(flaky, bool) or not isinstance(flaky, int):
        fail("`fail_attempts` must be a whole number", 78)
    if attempt <= flaky:
        fail(f"failing attempt {attempt} on purpose (fail_attempts={flaky})")
    return data


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
                memory = {"id": f"n{day.replace('-', '')}-{len(added) + 1:03d}", "created_at": stamp(),
                          "tags": ["inbox"], "text": text}
                f.write(json.dumps(memory) + "\n")
                added.append(memory)
                log(f"ingested {note.name}")
            note.replace(done / note.name)
    return added


def main():
    data = read_input()
    day = str(data.get("date") or datetime.now(timezone.utc).date().isoformat())
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        fail(f"`date` must look like 2026-11-25, got {day!r}", 78)
    VAR.mkdir(parents=True, exist_ok=True)
    log(f"daily update for {day}")

    try:
        seed = json.loads((ROOT / "data" / "memories.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        fail(f"cannot read data/memories.json: {e}")
    added = ingest(day)
    if added:
        report_cost("embed", "text-embedding-3-small", sum(len(m["text"]) // 4 + 1 for m in added), 0, "0.02", "0")
    learned_path = VAR / "memories.jsonl"
    learned = [json.loads(line) for line in learned_path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if learned_path.is_file() else []
    memories = seed + learned
    tags = Counter(tag for m in memories for tag in m.get("tags", []))
    log(f"{len(memories)} memories, {len(added)} new; top tags: " + ", ".join(t for t, _ in tags.most_common(3)))

    # The real job asks the model for a reflection on the day; simulated here.
    if not os.environ.get("OPENAI_API_KEY"):
        log("no OPENAI_API_KEY in .env: using the simulated model")
    report_cost("reflect", os.environ.get("CORTANA_MODEL", "gpt-4o-mini"), 1500 + 40 * len(memories), 400, "0.15", "0.60")
    reflection = f"{len(memories)} memories; most about {', '.join(t for t, _ in tags.most_common(2))}."

    digest_dir = VAR / "digests"
    digest_dir.mkdir(exist_ok=True)
    digest = digest_dir / f"{day}.json"
    digest.write_text(json.dumps({"date": day, "memories": len(memories), "new": len(added), "tags": dict(tags),
                                  "reflection": reflection}, indent=2) + "\n", encoding="utf-8")
    (VAR / "last_daily_update").write_text(stamp() + "\n", encoding="utf-8")
    log(f"digest written to {digest.relative_to(ROOT)}")

    outputs = {"date": day, "ingested": len(added), "memories": len(memories), "digest": str(digest.relative_to(ROOT)),
               "reflection": reflection}
    if os.environ.get("AGENT_OS_OUTPUT"):
        with open(os.environ["AGENT_OS_OUTPUT"], "w", encoding="utf-8") as f:
            json.dump(outputs, f)


if __name__ == "__main__":
    main()
