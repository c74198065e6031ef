"""What cortana's tasks share beyond the agent_os package: paths, the demo controls every task
takes, and the (simulated) OpenAI calls with their usage log, which the cost probe in
scripts/plugin.py returns."""

import json
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import agent_os

ROOT = Path(__file__).resolve().parents[2]
VAR = ROOT / "var"
USAGE_LOG = VAR / "usage.jsonl"
OPENAI_KEY_NAME = "cortana-openai"  # as agent-os.yaml's keys: name it

sys.stdout.reconfigure(line_buffering=True)  # each line reaches the run's log as it is printed


def stamp():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def demo_controls(data):
    """sleep (seconds), fail (true: exit 1) and fail_attempts (attempts 1..N exit 1): the inputs
    every task takes for demos and tests, acted on before any work."""
    seconds = data.get("sleep", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise agent_os.BadInput("`sleep` must be a non-negative number of seconds")
    flaky = data.get("fail_attempts", 0)
    if isinstance(flaky, bool) or not isinstance(flaky, int):
        raise agent_os.BadInput("`fail_attempts` must be a whole number")
    for i in range(int(seconds)):
        print(f"sleeping {i + 1}/{int(seconds)}s")
        time.sleep(1)
    time.sleep(seconds - int(seconds))
    attempt = agent_os.attempt() or 1
    if data.get("fail") is True:
        fail_on_purpose('failing on purpose: input has "fail": true')
    if attempt <= flaky:
        fail_on_purpose(f"failing attempt {attempt} on purpose (fail_attempts={flaky})")


def fail_on_purpose(reason):
    print(reason, file=sys.stderr, flush=True)
    raise SystemExit(1)  # failed, retried while retries allow (no traceback: nothing went wrong)


def chat_completion(model, text, prompt_tokens, completion_tokens):
    """The JSON the OpenAI Chat Completions API answers, simulated: nothing leaves the machine."""
    return {
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def record_chat(response, task, step):
    """Reports a chat response's tokens to Agent OS, which prices them, and logs the same record
    under the same idempotency key for the cost probe: whichever arrives first counts, once."""
    fields = {"key_name": OPENAI_KEY_NAME, "metadata": {"task": task, "step": step}, "at": datetime.now(timezone.utc)}
    key = agent_os.record_llm_usage(response, label=step, **fields)
    usage = agent_os.usage_from_response(response)
    _log(agent_os.cost_record(usage.service, model=usage.model, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out,
                              tokens_cached_in=usage.tokens_cached_in, idempotency_key=key, run_id=agent_os.run_id(),
                              **fields))
    print(f"openai {usage.model}: {usage.tokens_in} in / {usage.tokens_out} out, priced by Agent OS")


def report_embedding(model, tokens, usd_per_million, task, step):
    """Reports an embeddings call with its amount, worked out here: Agent OS's price table lists
    chat models, and a model it cannot price would be stored unpriced."""
    amount = (Decimal(usd_per_million) * tokens / 1_000_000).quantize(Decimal("1e-9")).normalize()
    fields = {"model": model, "tokens_in": tokens, "tokens_out": 0, "key_name": OPENAI_KEY_NAME,
              "metadata": {"task": task, "step": step}, "at": datetime.now(timezone.utc)}
    key = agent_os.report_cost("openai", amount, label=step, **fields)
    _log(agent_os.cost_record("openai", amount, idempotency_key=key, run_id=agent_os.run_id(), **fields))
    print(f"openai {model}: {tokens} tokens, ${amount:f}")


def _log(record):
    VAR.mkdir(parents=True, exist_ok=True)
    with open(USAGE_LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
