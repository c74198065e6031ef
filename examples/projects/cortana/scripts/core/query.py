"""query_memories: search cortana's memories by word overlap.

Input:   {"query": "BTC volatility", "limit": 5}   (query is required; limit 1..50, default 5)
         plus the demo controls sleep, fail, fail_attempts
Outputs: {"count": n, "items": [{"id": "m001", "text": "...", "score": 0.667}, ...]}

The score is the share of the query's words found in the memory. The real service re-ranks the
candidates with a model; that call is simulated and its tokens reported for Agent OS to price.
"""

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root: agent_os
import agent_os  # noqa: E402
import common  # noqa: E402

STOP = set("a an and are at be by for from in is it of on or the to was were what when where which who with".split())


def words(text):
    found = set()
    for w in re.findall(r"[a-z0-9]+", text.lower()):
        if w in STOP:
            continue
        found.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return found


def load_memories():
    memories = json.loads((common.ROOT / "data" / "memories.json").read_text(encoding="utf-8"))
    learned = common.VAR / "memories.jsonl"
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


@agent_os.task
def query_memories(data):
    common.demo_controls(data)
    query = data.get("query")
    if not isinstance(query, str) or not words(query):
        raise agent_os.BadInput(
            "`query` must be a string with at least one meaningful word, e.g. {\"query\": \"BTC volatility\"}")
    limit = data.get("limit", 5)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 50:
        raise agent_os.BadInput("`limit` must be a whole number from 1 to 50")
    agent_os.load_env()  # cortana's own .env, if there is one (Agent OS passes no keys)

    print(f"searching memories for {query!r}")
    try:
        items = search(query, limit)
    except (OSError, ValueError, KeyError) as e:
        raise RuntimeError(f"cannot read the memories: {e}") from e  # exit 1: retried
    for item in items:
        print(f"  {item['score']:.3f} {item['id']} {item['text'][:70]}")
    print(f"{len(items)} matches")

    # The simulated re-ranking call.
    ranking = " ".join(item["id"] for item in items)
    common.record_chat(common.chat_completion("gpt-4o-mini", ranking, 250 + 35 * len(items), 15 * len(items) + 10),
                       "query_memories", "rerank")
    return {"count": len(items), "items": items}


if __name__ == "__main__":
    query_memories.main()
