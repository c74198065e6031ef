"""Summarise a handful of memories into one short paragraph.

Input:   {"memories": [{"id": "m001", "text": "..."}, ...], "max_chars": 600}
         (items as query_memories outputs them; plain strings work too)
         plus the demo controls sleep, fail, fail_attempts
Outputs: {"text": "...", "count": n}

The model call is simulated: the "summary" stitches the first clause of each memory together.
Its cost is reported like a real call's.
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


def stop(reason, code):
    print(reason, file=sys.stderr, flush=True)
    sys.exit(code)


def first_clause(text):
    return re.split(r"[;.!?](?:\s|$)", text.strip(), maxsplit=1)[0]


def main():
    raw = "" if sys.stdin.isatty() else sys.stdin.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as e:
        stop(f"bad input: not JSON: {e}", 78)
    if not isinstance(data, dict):
        stop("bad input: must be a JSON object", 78)

    pause = data.get("sleep", 0)
    if isinstance(pause, bool) or not isinstance(pause, (int, float)) or pause < 0:
        stop("bad input: `sleep` must be a non-negative number", 78)
    for second in range(1, int(pause) + 1):
        print(f"sleeping {second}/{int(pause)}s", flush=True)
        time.sleep(1)
    time.sleep(pause - int(pause))
    if data.get("fail") is True:
        stop("failing on purpose: input has \"fail\": true", 1)
    attempt = int(os.environ.get("AGENT_OS_ATTEMPT") or 1)
    if isinstance(data.get("fail_attempts"), int) and attempt <= data["fail_attempts"]:
        stop(f"failing attempt {attempt} on purpose", 1)

    memories = data.get("memories", [])
    if not isinstance(memories, list):
        stop("bad input: `memories` must be a list (e.g. the items query_memories returns)", 78)
    texts = []
    for item in memories:
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            stop("bad input: each memory must be a string or an object with a `text` string", 78)
        if text.strip():
            texts.append(text)
    max_chars = data.get("max_chars", 600)
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 40:
        stop("bad input: `max_chars` must be a whole number of at least 40", 78)

    if not texts:
        print("nothing to summarise", flush=True)
        summary = "No memories to summarise."
    else:
        env = ROOT / ".env"
        if env.is_file():
            for line in env.read_text(encoding="utf-8").splitlines():
                name, sep, value = line.strip().partition("=")
                if sep and not name.startswith("#"):
                    os.environ.setdefault(name.strip(), value.strip().strip("\"'"))
        print(f"summarising {len(texts)} memories", flush=True)
        summary = f"{len(texts)} related memories: " + "; ".join(first_clause(t) for t in texts) + "."
        if len(summary) > max_chars:
            summary = summary[: max_chars - 3].rstrip() + "..."

        tokens_in = 200 + sum(len(t) for t in texts) // 4
        tokens_out = min(len(summary) // 4 + 20, 400)
        amount = (Decimal("0.15") * tokens_in + Decimal("0.60") * tokens_out) / 1_000_000
        run_id = os.environ.get("AGENT_OS_RUN_ID") or "manual-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        record = {"service": "openai", "key_name": "cortana-openai", "amount": f"{amount:.9f}".rstrip("0").rstrip("."),
                  "currency": "USD", "tokens_in": tokens_in, "tokens_out": tokens_out, "model": "gpt-4o-mini",
                  "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "idempotency_key": f"{run_id}-{attempt}-summary", "metadata": {"task": "summarize", "step": "summary"}}
        (ROOT / "var").mkdir(exist_ok=True)
        with open(ROOT / "var" / "usage.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        print(f"openai gpt-4o-mini: {tokens_in} in / {tokens_out} out, ${record['amount']}", flush=True)
        url, token = os.environ.get("AGENT_OS_URL"), os.environ.get("AGENT_OS_TOKEN")
        if url and token:
            request = urllib.request.Request(url.rstrip("/") + "/api/v1/costs", data=json.dumps(record).encode(),
                                             headers={"Authorization": "Bearer " + token,
                                                      "Content-Type": "application/json"}, method="POST")
            try:
                urllib.request.urlopen(request, timeout=5).close()
            except Exception as e:
                print(f"warning: cost not reported to Agent OS: {e}", file=sys.stderr, flush=True)
        else:
            print("warning: AGENT_OS_URL/AGENT_OS_TOKEN unset; cost only in var/usage.jsonl", file=sys.stderr, flush=True)

    print(summary, flush=True)
    if os.environ.get("AGENT_OS_OUTPUT"):
        with open(os.environ["AGENT_OS_OUTPUT"], "w", encoding="utf-8") as out:
            json.dump({"text": summary, "count": len(texts)}, out)


if __name__ == "__main__":
    main()
