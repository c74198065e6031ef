"""The parts that need no server: amounts, LLM responses, the .env reader, signatures, durations."""

from __future__ import annotations

import datetime as dt
import io
import re
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import agent_os
from agent_os.client import duration_seconds, duration_text
from agent_os.http_plugin import decode_secret, sign, verify

SDK = Path(__file__).resolve().parents[1]
REPO = SDK.parents[1]


def test_version_is_the_workspace_version_and_protocol_is_1() -> None:
    cargo = (REPO / "Cargo.toml").read_text()
    section = cargo.split("[workspace.package]", 1)[1]
    version = re.search(r'^version\s*=\s*"([^"]+)"', section, re.M)
    assert version, "Cargo.toml has a workspace version"
    assert agent_os.__version__ == version.group(1)
    assert agent_os.PROTOCOL == 1
    assert (SDK / "agent_os" / "py.typed").exists()
    pyproject = (SDK / "pyproject.toml").read_text()
    assert f'version = "{version.group(1)}"' in pyproject


@pytest.mark.parametrize(
    "given, sent",
    [
        (Decimal("0.0123"), "0.0123"),
        (Decimal("1"), "1"),
        (Decimal("1.50"), "1.50"),
        (Decimal("0.000000001"), "0.000000001"),
        (Decimal("2.500000000000"), "2.500000000"),
        (Decimal("1E+2"), "100"),
        (Decimal("0"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("1000000000"), "1000000000"),
        (7, "7"),
        ("0.10", "0.10"),
    ],
)
def test_amounts_are_sent_as_exact_decimal_strings(given: Any, sent: str) -> None:
    assert agent_os.format_amount(given) == sent


def test_a_float_amount_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"Decimal\('0.1'\)"):
        agent_os.format_amount(0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        agent_os.Client("http://127.0.0.1:9", "aosp_fake", spool=False).report_cost("openai", 0.25)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "given, problem",
    [
        (Decimal("0.0000000001"), "more than 9 decimal places"),
        (Decimal("-1"), "negative"),
        (Decimal("1000000000.5"), "over 1000000000"),
        (Decimal("NaN"), "not a finite number"),
        ("1,5", "not a decimal number"),
        (True, "bool"),
    ],
)
def test_amounts_agent_os_cannot_keep_are_refused(given: Any, problem: str) -> None:
    with pytest.raises((TypeError, ValueError), match=problem):
        agent_os.format_amount(given)


def test_a_cost_without_amount_needs_a_model_and_tokens() -> None:
    with pytest.raises(ValueError, match="needs an amount, or a model and its tokens"):
        agent_os.cost_record("openai", model="gpt-4o-mini")
    with pytest.raises(ValueError, match="cached input tokens are a part of tokens_in"):
        agent_os.cost_record("openai", model="gpt-4o-mini", tokens_in=10, tokens_out=1, tokens_cached_in=11)
    record = agent_os.cost_record("openai", model="gpt-4o-mini", tokens_in=10, tokens_out=1,
                                  at=dt.datetime(2026, 11, 25, 10, 0, 0, 412000, tzinfo=dt.timezone.utc))
    assert record == {"service": "openai", "model": "gpt-4o-mini", "tokens_in": 10, "tokens_out": 1,
                      "at": "2026-11-25T10:00:00.412Z"}
    with pytest.raises(ValueError, match="naive"):
        agent_os.cost_record("openai", Decimal("1"), at=dt.datetime(2026, 1, 1))


OPENAI_CHAT = {
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
    "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
              "prompt_tokens_details": {"cached_tokens": 1024}},
}
OPENAI_RESPONSES = {
    "id": "resp_1", "object": "response", "model": "gpt-4.1",
    "usage": {"input_tokens": 500, "output_tokens": 80, "input_tokens_details": {"cached_tokens": 0},
              "output_tokens_details": {"reasoning_tokens": 0}},
}
ANTHROPIC = {
    "id": "msg_1", "type": "message", "model": "claude-sonnet-4-5",
    "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 1000,
              "cache_creation_input_tokens": 50},
}
GEMINI = {
    "modelVersion": "gemini-2.5-flash",
    "usageMetadata": {"promptTokenCount": 700, "candidatesTokenCount": 40, "thoughtsTokenCount": 10,
                      "cachedContentTokenCount": 512},
}


def _as_object(value: Any) -> Any:
    """The response as an SDK would hand it over: attributes instead of keys."""
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _as_object(v) for k, v in value.items()})
    return value


@pytest.mark.parametrize(
    "response, expected",
    [
        (OPENAI_CHAT, agent_os.LlmUsage("openai", "gpt-4o-mini-2024-07-18", 1200, 300, 1024)),
        (OPENAI_RESPONSES, agent_os.LlmUsage("openai", "gpt-4.1", 500, 80, 0)),
        (ANTHROPIC, agent_os.LlmUsage("anthropic", "claude-sonnet-4-5", 1150, 20, 1000)),
        (GEMINI, agent_os.LlmUsage("google", "gemini-2.5-flash", 700, 50, 512)),
    ],
    ids=["openai-chat", "openai-responses", "anthropic", "gemini"],
)
def test_llm_responses_are_read_as_dicts_and_as_objects(response: Any, expected: agent_os.LlmUsage) -> None:
    assert agent_os.usage_from_response(response) == expected
    assert agent_os.usage_from_response(_as_object(response)) == expected


def test_gemini_sdk_objects_use_snake_case() -> None:
    response = SimpleNamespace(
        model_version="gemini-2.5-pro",
        usage_metadata=SimpleNamespace(prompt_token_count=10, candidates_token_count=5, cached_content_token_count=None),
    )
    assert agent_os.usage_from_response(response) == agent_os.LlmUsage("google", "gemini-2.5-pro", 10, 5, 0)


def test_an_unknown_shape_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="not an LLM response this package knows.*report_cost"):
        agent_os.usage_from_response({"choices": []})
    with pytest.raises(ValueError, match="pass service="):
        agent_os.usage_from_response({"model": "mystery", "usage": {"input_tokens": 1, "output_tokens": 1}})
    assert agent_os.usage_from_response(
        {"model": "mystery", "usage": {"input_tokens": 1, "output_tokens": 1}}, service="anthropic"
    ).service == "anthropic"


def test_env_files_are_read_like_a_shell_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        "# a comment\n"
        "export PLAIN=one two  # trailing comment\n"
        "SINGLE='literal $HOME # not a comment'\n"
        'DOUBLE="line\\nnext ${PLAIN} \\$kept"\n'
        'MULTI="first\nsecond"\n'
        "EMPTY=\n"
        "KEPT=from-file\n"
    )
    values = agent_os.parse_env(text, environ={})
    assert values == {
        "PLAIN": "one two",
        "SINGLE": "literal $HOME # not a comment",
        "DOUBLE": "line\nnext one two $kept",
        "MULTI": "first\nsecond",
        "EMPTY": "",
        "KEPT": "from-file",
    }
    (tmp_path / ".env").write_text(text)
    (tmp_path / "agent-os.yaml").write_text("name: x\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    monkeypatch.setenv("KEPT", "from-environment")
    for name in values:
        if name != "KEPT":
            monkeypatch.delenv(name, raising=False)
    loaded = agent_os.load_env()
    assert "KEPT" not in loaded and "PLAIN" in loaded
    import os

    assert os.environ["KEPT"] == "from-environment" and os.environ["MULTI"] == "first\nsecond"


def test_a_bad_env_line_names_the_place_and_never_the_value() -> None:
    with pytest.raises(agent_os.env.EnvFileError) as e:
        agent_os.parse_env("OK=1\nnot a line with sk-secretvalue\n", ".env")
    assert ".env:2" in str(e.value) and "sk-secretvalue" not in str(e.value)


SECRET = "whsec_" + "dGVzdC1zaWduaW5nLWtleS1ub3QtYS1yZWFsLXNlY3JldA=="  # made up for the tests


def test_signatures_follow_standard_webhooks() -> None:
    body = b'{"protocol":1}'
    now = 1_770_000_000
    sig = sign(SECRET, "msg_1", now, body)
    assert verify(SECRET, "msg_1", str(now), sig, body, now=now) is None
    assert verify(SECRET, "msg_1", str(now), f"v1,AAAA {sig}", body, now=now) is None, "any of several signatures"
    assert "does not match" in str(verify(SECRET, "msg_1", str(now), sig, body + b" ", now=now))
    assert "does not match" in str(verify(SECRET, "msg_2", str(now), sig, body, now=now))
    assert "5 minutes" in str(verify(SECRET, "msg_1", str(now), sig, body, now=now + 301))
    assert "unsigned" in str(verify(SECRET, "", "", "", body, now=now))
    other = "whsec_" + "b3RoZXIta2V5LW5vdC1yZWFs"
    assert "does not match" in str(verify(other, "msg_1", str(now), sig, body, now=now))
    assert verify([other, SECRET], "msg_1", str(now), sig, body, now=now) is None, "either secret"
    with pytest.raises(ValueError, match="whsec_"):
        decode_secret("not-a-secret")


@pytest.mark.parametrize("given, text, seconds", [(90, "90000ms", 90.0), (0.5, "500ms", 0.5),
                                                  (dt.timedelta(minutes=2), "120000ms", 120.0), ("1h30m", "1h30m", 5400.0)])
def test_durations(given: Any, text: str, seconds: float) -> None:
    assert duration_text(given, "ttl") == text
    assert duration_seconds(text) == seconds


def test_run_info_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert agent_os.current_run() is None
    monkeypatch.setenv("AGENT_OS_RUN_ID", "0193-run")
    monkeypatch.setenv("AGENT_OS_ATTEMPT", "2")
    monkeypatch.setenv("AGENT_OS_PROJECT", "trading")
    monkeypatch.setenv("AGENT_OS_TASK", "scan")
    assert agent_os.current_run() == agent_os.RunInfo("0193-run", 2, "trading", "scan")
    client = agent_os.Client("http://127.0.0.1:9", "aosr_fake", spool=False)
    assert client.cost_key() == "0193-run-2-c1"
    assert client.cost_key() == "0193-run-2-c2"
    assert client.cost_key("comment") == "0193-run-2-comment"


def test_the_check_decorator_keeps_the_function_and_its_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    client = agent_os.Client("http://127.0.0.1:9", ping_key="k", spool=False)
    sent: list = []
    monkeypatch.setattr(client, "_submit", lambda entry: sent.append(entry))

    @client.check("job")
    def job(x: int) -> int:
        print("working on", x)
        if x < 0:
            raise ValueError("negative")
        return x * 2

    assert job(21) == 42 and job.__name__ == "job"
    with pytest.raises(ValueError, match="negative"):
        job(-1)
    kinds = [(e["action"], e["rid"]) for e in sent]
    assert [k for k, _ in kinds] == ["start", "", "start", "fail"]
    assert kinds[0][1] == kinds[1][1] != kinds[2][1] == kinds[3][1], "a start and its finish share a fresh rid"
    assert "working on 21" in sent[1]["body"]
    assert "working on -1" in sent[3]["body"] and "ValueError: negative" in sent[3]["body"]


def test_probe_answers_refuse_a_protocol_they_do_not_speak() -> None:
    out = io.StringIO()
    code = agent_os.serve_command(agent_os.Plugin(), [], io.BytesIO(b'{"protocol": 2, "op": "get_status"}'), out)
    assert code != 0 and out.getvalue() == ""
    code = agent_os.serve_command(agent_os.Plugin(), [], io.BytesIO(b'{"protocol": 1, "op": "get_status"}'), out)
    assert code == 0 and out.getvalue().strip() == '{"status": "ok"}'


def test_the_protocol_refusal_is_a_clear_message_and_a_non_zero_exit() -> None:
    script = "import sys; sys.path.insert(0, %r); import agent_os; agent_os.serve(agent_os.Plugin())" % str(SDK)
    done = subprocess.run([sys.executable, "-c", script], input=b'{"protocol": 2, "op": "get_status", "project": "x"}',
                          capture_output=True, timeout=30)
    assert done.returncode != 0
    assert b"speaks protocol 1" in done.stderr and b"sent protocol 2" in done.stderr
    assert done.stdout == b""


def _call(app: agent_os.PluginApp, method: str, path: str, body: bytes, signed: bool = True) -> "tuple[str, dict]":
    import json
    import time as _time

    stamp = int(_time.time())
    msg_id = f"msg_{uuid.uuid4().hex}"
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}
    if signed:
        environ.update({"HTTP_WEBHOOK_ID": msg_id, "HTTP_WEBHOOK_TIMESTAMP": str(stamp),
                        "HTTP_WEBHOOK_SIGNATURE": sign(SECRET, msg_id, stamp, body)})
    status: list = []
    chunks = app(environ, lambda s, h: status.append(s))
    return status[0], json.loads(b"".join(chunks))


def test_the_wsgi_app_limits_the_body_and_names_its_routes() -> None:
    app = agent_os.Plugin().wsgi_app(SECRET, max_body_bytes=64)
    assert _call(app, "POST", "/agent-os/tasks/scan", b"x" * 65)[0].startswith("413")
    assert _call(app, "GET", "/agent-os/status", b"", signed=False)[0].startswith("401")
    assert _call(app, "GET", "/agent-os/status", b"") == ("200 OK", {"status": "ok"})
    assert _call(app, "GET", "/agent-os/cost", b"") == ("200 OK", {"records": [], "cursor": None})
    assert _call(app, "GET", "/agent-os/schedule", b"") == ("200 OK", {"schedules": []})
    assert _call(app, "GET", "/agent-os/nothing", b"")[0].startswith("404")
    assert _call(app, "POST", "/agent-os/status", b"{}")[0].startswith("405")
    status, doc = _call(app, "POST", "/agent-os/tasks/missing", b'{"protocol": 1, "input": {}}')
    assert status == "200 OK" and doc["status"] == "failed" and doc["retryable"] is False
    assert "no task 'missing'" in doc["error"]


def test_tasks_register_on_a_class_or_on_an_instance() -> None:
    class Trading(agent_os.Plugin):
        @agent_os.Plugin.task
        def scan(self, input: dict) -> dict:
            return {"n": len(input)}

        @agent_os.Plugin.task("weekly-report")
        def weekly(self, input: dict) -> None:
            return None

    plugin = Trading()

    @plugin.task
    def rebalance(input: dict) -> dict:
        return {"done": True}

    @plugin.task("monthly")
    def monthly_report(input: dict) -> dict:
        return {}

    assert plugin.tasks() == ["monthly", "rebalance", "scan", "weekly-report"]
    assert plugin.run_task("scan", {"a": 1}) == {"n": 1}
    assert plugin.run_task("rebalance", {}) == {"done": True}
    assert Trading().tasks() == ["scan", "weekly-report"], "instance tasks stay on their instance"
    with pytest.raises(agent_os.BadInput, match="no task 'nope'"):
        plugin.run_task("nope", {})


def test_an_http_task_that_exits_is_read_like_a_command() -> None:
    plugin = agent_os.Plugin()
    plugin.add_task("stop", lambda input: sys.exit(input["code"]))
    app = plugin.wsgi_app(SECRET)
    for code, status, retryable in [(0, "succeeded", None), (78, "failed", False), (3, "failed", True)]:
        body = ("{\"protocol\": 1, \"run_id\": \"r%d\", \"attempt\": 1, \"input\": {\"code\": %d}}" % (code, code)).encode()
        answer = _call(app, "POST", "/tasks/stop", body)[1]
        assert answer["status"] == status and answer.get("retryable") == retryable, answer
