"""Small helper the trading tasks and probes share for talking to Agent OS.

Agent OS starts every task in this directory with a scrubbed environment: PATH, HOME, LANG, TZ
and the AGENT_OS_* variables. Everything else the service needs, its API keys included, comes
from the project's own .env, which this module loads on request. Agent OS never sees the values.

Contract (Agent OS plugin protocol, version 1):
  * the task input is a JSON object on stdin (empty stdin counts as {});
  * outputs are a JSON object written to the file named by AGENT_OS_OUTPUT;
  * exit 0 = succeeded, 78 = failed without retry, anything else = failed (retried if allowed).
"""

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VAR = ROOT / "var"
USAGE_LOG = VAR / "usage.jsonl"
PROJECT = "trading"

EXIT_NO_RETRY = 78

# USD per million tokens, (input, output). Simulated calls are priced like the real ones.
PRICES = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
}


class BadInput(Exception):
    """The run's input cannot work however often it is retried."""


def say(message):
    print(message, flush=True)


def warn(message):
    print(f"warning: {message}", file=sys.stderr, flush=True)


def now_utc():
    return datetime.now(timezone.utc).replace(microsecond=0)


def rfc3339(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def load_env():
    """Loads ROOT/.env into os.environ without overriding what is already set.

    Returns the variable names loaded, so callers can say which keys are present without ever
    printing a value.
    """
    path = ROOT / ".env"
    loaded = []
    if not path.is_file():
        return loaded
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if name and name not in os.environ:
            os.environ[name] = value
            loaded.append(name)
    return loaded


def read_input():
    raw = sys.stdin.read() if not sys.stdin.isatty() else ""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise BadInput(f"input is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadInput("input must be a JSON object")
    return data


def number(data, key, default, minimum=None):
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInput(f"`{key}` must be a number")
    if minimum is not None and value < minimum:
        raise BadInput(f"`{key}` must be at least {minimum}")
    return value


def attempt():
    try:
        return max(1, int(os.environ.get("AGENT_OS_ATTEMPT", "1")))
    except ValueError:
        return 1


_manual_run_id = None


def run_id():
    """The Agent OS run id, or a stable made-up one for a run started by hand or by Railway."""
    global _manual_run_id
    rid = os.environ.get("AGENT_OS_RUN_ID")
    if rid:
        return rid
    if _manual_run_id is None:
        _manual_run_id = f"manual-{now_utc():%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
    return _manual_run_id


def demo_controls(data):
    """Honours the inputs every task accepts for demos and tests: sleep, fail, fail_attempts.

    Runs before any real work, so a failing run never reports a cost.
    """
    seconds = number(data, "sleep", 0, minimum=0)
    whole = int(seconds)
    for i in range(whole):
        say(f"sleeping {i + 1}/{whole}s")
        time.sleep(1)
    if seconds > whole:
        time.sleep(seconds - whole)
    if data.get("fail") is True:
        print("failing on purpose: input has \"fail\": true", file=sys.stderr, flush=True)
        sys.exit(1)
    flaky = number(data, "fail_attempts", 0, minimum=0)
    if attempt() <= flaky:
        print(f"failing attempt {attempt()} on purpose (fail_attempts={flaky})", file=sys.stderr, flush=True)
        sys.exit(1)


def write_outputs(outputs):
    path = os.environ.get("AGENT_OS_OUTPUT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(outputs, f)
    say("outputs: " + json.dumps(outputs, sort_keys=True))


def main(task):
    """Runs `task(data)` under the contract: input in, outputs out, exit codes mapped."""
    try:
        data = read_input()
        demo_controls(data)
        outputs = task(data)
    except BadInput as e:
        print(f"bad input: {e}", file=sys.stderr, flush=True)
        sys.exit(EXIT_NO_RETRY)
    write_outputs(outputs)


# --- costs --------------------------------------------------------------------------------


def price(model, tokens_in, tokens_out):
    per_in, per_out = PRICES.get(model, PRICES["gpt-4o-mini"])
    amount = (per_in * tokens_in + per_out * tokens_out) / Decimal(1_000_000)
    amount = amount.quantize(Decimal("0.000000001"))
    text = format(amount, "f").rstrip("0")
    return text + "0" if text.endswith(".") else text


def report_openai(step, model, tokens_in, tokens_out, **metadata):
    """Records one (simulated) OpenAI call: appends it to var/usage.jsonl, which the cost probe
    reads, and pushes it to Agent OS with the run token. Both carry the same idempotency key,
    so Agent OS counts it once whichever arrives first. Never fails the task.
    """
    record = {
        "service": "openai",
        "key_name": f"{PROJECT}-openai",
        "amount": price(model, tokens_in, tokens_out),
        "currency": "USD",
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "model": model,
        "at": rfc3339(now_utc()),
        "idempotency_key": f"{run_id()}-{attempt()}-{step}",
        "metadata": {"step": step, **metadata},
    }
    VAR.mkdir(parents=True, exist_ok=True)
    with open(USAGE_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    say(f"openai {model}: {tokens_in} in / {tokens_out} out, ${record['amount']}")
    push_cost(record)
    return record


def push_cost(record):
    url = os.environ.get("AGENT_OS_URL")
    token = os.environ.get("AGENT_OS_TOKEN")
    if not url or not token:
        warn("AGENT_OS_URL or AGENT_OS_TOKEN not set; cost kept in var/usage.jsonl only")
        return False
    request = urllib.request.Request(
        url.rstrip("/") + "/api/v1/costs",
        data=json.dumps(record).encode("utf-8"),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
        return True
    except (urllib.error.URLError, OSError, ValueError) as e:
        warn(f"could not report cost to Agent OS ({e}); the cost probe will pick it up")
        return False


def emit_event(event_type, data, idempotency_key):
    """Tells Agent OS that something happened (`trading.volatility_spike`), with the run token:
    workflows in Agent OS decide what follows. The key makes a retried attempt's event count
    once. Never fails the task.
    """
    url = os.environ.get("AGENT_OS_URL")
    token = os.environ.get("AGENT_OS_TOKEN")
    if not url or not token:
        warn(f"AGENT_OS_URL or AGENT_OS_TOKEN not set; {event_type} not sent")
        return False
    body = {"type": event_type, "data": data, "idempotency_key": idempotency_key}
    request = urllib.request.Request(
        url.rstrip("/") + "/api/v1/events",
        data=json.dumps(body).encode("utf-8"),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError) as e:
        warn(f"could not send {event_type} to Agent OS ({e})")
        return False


def read_usage(since):
    """Usage-log records after cursor `since` (the number of lines already returned)."""
    try:
        start = int(since) if since is not None else 0
    except (TypeError, ValueError):
        warn(f"unknown cursor {since!r}; starting from the beginning")
        start = 0
    text = USAGE_LOG.read_text(encoding="utf-8") if USAGE_LOG.is_file() else ""
    # A line still being written has no newline yet; it is returned on the next call.
    lines = text.split("\n")[:-1]
    if start < 0 or start > len(lines):
        warn("usage log is shorter than the cursor (rotated?); starting from the beginning")
        start = 0
    records = []
    for number_, line in enumerate(lines[start:], start=start + 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            warn(f"var/usage.jsonl line {number_} is not JSON; skipped")
            continue
        if isinstance(record, dict):
            records.append(record)
    return records, str(len(lines))
