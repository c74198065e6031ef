"""What trading's tasks and plugin share beyond the agent_os package: paths, the demo controls
every task takes, a number check for inputs, and the (simulated) OpenAI calls with their usage
log, which the cost probe in plugin.py returns."""

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import agent_os

ROOT = Path(__file__).resolve().parent
VAR = ROOT / "var"
USAGE_LOG = VAR / "usage.jsonl"
OPENAI_KEY_NAME = "trading-openai"  # as agent-os.yaml's keys: name it

sys.stdout.reconfigure(line_buffering=True)  # each line reaches the run's log as it is printed


def now_utc():
    return datetime.now(timezone.utc).replace(microsecond=0)


def rfc3339(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def number(data, key, default, minimum=None):
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise agent_os.BadInput(f"`{key}` must be a number")
    if minimum is not None and value < minimum:
        raise agent_os.BadInput(f"`{key}` must be at least {minimum}")
    return value


def demo_controls(data):
    """The inputs every task takes for demos and tests: sleep (seconds, a line each second),
    fail (true: exit 1) and fail_attempts (attempts 1..N exit 1, to show retries). Called before
    any work, so a run that fails on purpose reports no cost."""
    seconds = number(data, "sleep", 0, minimum=0)
    for i in range(int(seconds)):
        print(f"sleeping {i + 1}/{int(seconds)}s")
        time.sleep(1)
    time.sleep(seconds - int(seconds))
    if data.get("fail") is True:
        fail_on_purpose('failing on purpose: input has "fail": true')
    flaky = number(data, "fail_attempts", 0, minimum=0)
    attempt = agent_os.attempt() or 1
    if attempt <= flaky:
        fail_on_purpose(f"failing attempt {attempt} on purpose (fail_attempts={flaky})")


def fail_on_purpose(reason):
    print(reason, file=sys.stderr, flush=True)
    raise SystemExit(1)  # failed, retried while retries allow (no traceback: nothing went wrong)


def chat_completion(text, prompt_tokens, completion_tokens):
    """The JSON the OpenAI Chat Completions API answers, simulated: nothing leaves the machine."""
    return {
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def record_openai(response, step, **metadata):
    """Reports an OpenAI response's tokens to Agent OS, which prices them, and logs the same record
    under the same idempotency key in var/usage.jsonl for the cost probe: whichever reaches Agent
    OS first counts, once. Never fails the task."""
    metadata = {"step": step, **metadata}
    at = datetime.now(timezone.utc)
    key = agent_os.record_llm_usage(response, label=step, key_name=OPENAI_KEY_NAME, metadata=metadata, at=at)
    usage = agent_os.usage_from_response(response)
    record = agent_os.cost_record(
        usage.service, model=usage.model, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out,
        tokens_cached_in=usage.tokens_cached_in, key_name=OPENAI_KEY_NAME, idempotency_key=key, at=at,
        metadata=metadata, run_id=agent_os.run_id(),
    )
    VAR.mkdir(parents=True, exist_ok=True)
    with open(USAGE_LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps(record, sort_keys=True) + "\n")
    print(f"openai {usage.model}: {usage.tokens_in} in / {usage.tokens_out} out, priced by Agent OS")
    return key
