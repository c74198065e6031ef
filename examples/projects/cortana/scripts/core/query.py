"""Search cortana's memories by word overlap.

Input:   {"query": "BTC volatility", "limit": 5}   (query is required; limit 1..50, default 5)
         plus the demo controls sleep, fail, fail_attempts
Outputs: {"count": n, "items": [{"id": "m001", "text": "...", "score": 0.667}, ...]}

The score is the share of the query's words found in the memory. The real service re-ranks the
candidates with a model; that call is simulated and its cost reported.
"""

import json
import os
import re
import sys
import time
import urllib.request
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STOP = set("a an and are at be by for from in is it of on or the to was were what when where which who with".split())


def words(text):
    found = set()
    for w in re.findall(r"[a-z0-9]+", text.lower()):
        if w in STOP:
            continue
        found.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return found


def load_memories():
    memories = json.loads((ROOT / "data" / "memories.json").read_text(encoding="utf-8"))
    learned = ROOT / "var" / "memories.jsonl"
    if learned.is_file():
        memories += [json.loads(line) for line in learned.read_text(encoding="utf-8").splitlines() if line.strip()]
    return memories


def search(query, limit):
    wanted = words(query)
    scored = []
    for memory in load_memories():
        overlap = len(wanted & words(memory["text"] + " " + " ".join(memory.get("tags", []))))
        if overlap:
            scored.append({"id": memory["id"], "text": memory["text"], "score": round(overlap / len(wanted), 3)})
    scored.sort(key=lambda item: (-item["score"], item["id"]))
    return scored[:limit]


def bad_input(reason):
    print(f"bad input: {reason}", file=sys.stderr, flush=True)
    sys.exit(78)


def main():
    raw = "" if sys.stdin.isatty() else sys.stdin.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as e:
        bad_input(f"not JSON: {e}")
    if not isinstance(data, dict):
        bad_input("input must be a JSON object")

    # Demo controls, before any work.
    pause = data.get("sleep", 0)
    if isinstance(pause, bool) or not isinstance(pause, (int, float)) or pause < 0:
        bad_input("`sleep` must be a non-negative number")
    for second in range(1, int(pause) + 1):
        print(f"sleeping {second}/{int(pause)}s", flush=True)
        time.sleep(1)
    time.sleep(pause - int(pause))
    if data.get("fail") is True:
        print("failing on purpose: input has \"fail\": true", file=sys.stderr, flush=True)
        sys.exit(1)
    attempt = int(os.environ.get("AGENT_OS_ATTEMPT") or 1)
    if isinstance(data.get("fail_attempts"), int) and attempt <= data["fail_attempts"]:
        print(f"failing attempt {attempt} on purpose", file=sys.stderr, flush=True)
        sys.exit(1)

    query = data.get("query")
    if not isinstance(query, str) or not words(query):
        bad_input("`query` must be a string with at least one meaningful word, e.g. {\"query\": \"BTC volatility\"}")
    limit = data.get("limit", 5)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 50:
        bad_input("`limit` must be a whole number from 1 to 50")

    # cortana's own .env, if there is one (Agent OS passes no keys).
    env = ROOT / ".env"
    if env.is_file():
        for line in env.read_text(encoding="utf-8").splitlines():
            name, sep, value = line.strip().partition("=")
            if sep and not name.startswith("#"):
                os.environ.setdefault(name.strip(), value.strip().strip("\"'"))

    print(f"searching memories for {query!r}", flush=True)
    try:
        items = search(query, limit)
    except (OSError, ValueError, KeyError) as e:
        print(f"cannot read the memories: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    for item in items:
        print(f"  {item['score']:.3f} {item['id']} {item['text'][:70]}", flush=True)
    print(f"{len(items)} matches", flush=True)

    # Simulated re-ranking call; report its cost (never fails the task).
    tokens_in, tokens_out = 250 + 35 * len(items), 15 * len(items) + 10
    amount = (Decimal("0.15") * tokens_in + Decimal("0.60") * tokens_out) / 1_000_000
    run_id = os.environ.get("AGENT_OS_RUN_ID") or "manual-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    record = {"service": "openai", "key_name": "cortana-openai", "amount": f"{amount:.9f}".rstrip("0").rstrip("."),
              "currency": "USD", "tokens_in": tokens_in, "tokens_out": tokens_out, "model": "gpt-4o-mini",
              "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "idempotency_key": f"{run_id}-{attempt}-rerank", "metadata": {"task": "query_memories", "step": "rerank"}}
    (ROOT / "var").mkdir(exist_ok=True)
    with open(ROOT / "var" / "usage.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
    if os.environ.get("AGENT_OS_URL") and os.environ.get("AGENT_OS_TOKEN"):
        try:
            urllib.request.urlopen(urllib.request.Request(
                os.environ["AGENT_OS_URL"].rstrip("/") + "/api/v1/costs", data=json.dumps(record).encode(),
                headers={"Authorization": "Bearer " + os.environ["AGENT_OS_TOKEN"], "Content-Type": "application/json"},
                method="POST"), timeout=5).close()
        except Exception as e:
            print(f"warning: cost not reported to Agent OS: {e}", file=sys.stderr, flush=True)
    else:
        print("warning: AGENT_OS_URL/AGENT_OS_TOKEN unset; cost only in var/usage.jsonl", file=sys.stderr, flush=True)

    if os.environ.get("AGENT_OS_OUTPUT"):
        with open(os.environ["AGENT_OS_OUTPUT"], "w", encoding="utf-8") as out:
            json.dump({"count": len(items), "items": items}, out)


if __name__ == "__main__":
    main()
