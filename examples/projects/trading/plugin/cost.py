"""Cost probe (report_cost): the OpenAI usage the tasks logged in var/usage.jsonl.

The cursor is the number of log lines already returned. Each record carries the idempotency key
the task also used when it pushed the cost through the API, so Agent OS counts it once.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import agentos_client as aos  # noqa: E402
from probe import answer, read_request  # noqa: E402

if __name__ == "__main__":
    request = read_request("report_cost")
    records, cursor = aos.read_usage(request.get("since"))
    answer({"records": records, "cursor": cursor})
