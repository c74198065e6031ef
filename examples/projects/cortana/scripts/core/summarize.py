"""summarize: turn a handful of memories into one short paragraph.

Input:   {"memories": [{"id": "m001", "text": "..."}, ...], "max_chars": 600}
         (items as query_memories outputs them; plain strings work too)
         plus the demo controls sleep, fail, fail_attempts
Outputs: {"text": "...", "count": n}

The model call is simulated: the "summary" stitches the first clause of each memory together.
Its tokens are reported for Agent OS to price, like a real call's.
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root: agent_os
import agent_os  # noqa: E402
import common  # noqa: E402


def first_clause(text):
    return re.split(r"[;.!?](?:\s|$)", text.strip(), maxsplit=1)[0]


@agent_os.task
def summarize(data):
    common.demo_controls(data)
    memories = data.get("memories", [])
    if not isinstance(memories, list):
        raise agent_os.BadInput("`memories` must be a list (e.g. the items query_memories returns)")
    texts = []
    for item in memories:
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise agent_os.BadInput("each memory must be a string or an object with a `text` string")
        if text.strip():
            texts.append(text)
    max_chars = data.get("max_chars", 600)
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 40:
        raise agent_os.BadInput("`max_chars` must be a whole number of at least 40")

    if not texts:
        print("nothing to summarise")
        summary = "No memories to summarise."
    else:
        agent_os.load_env()
        print(f"summarising {len(texts)} memories")
        summary = f"{len(texts)} related memories: " + "; ".join(first_clause(t) for t in texts) + "."
        if len(summary) > max_chars:
            summary = summary[: max_chars - 3].rstrip() + "..."
        tokens_in = 200 + sum(len(t) for t in texts) // 4
        tokens_out = min(len(summary) // 4 + 20, 400)
        common.record_chat(common.chat_completion("gpt-4o-mini", summary, tokens_in, tokens_out), "summarize", "summary")

    print(summary)
    return {"text": summary, "count": len(texts)}


if __name__ == "__main__":
    summarize.main()
