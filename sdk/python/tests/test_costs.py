"""Costs end to end against the real server: exact amounts, idempotency, batches, tokens priced
by the server, and refusals that warn without raising."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, Dict, List

import pytest

import agent_os
from agent_os import env as agent_os_env
from conftest import Project


def by_key(records: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    out: Dict[str, List[Dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r["idempotency_key"], []).append(r)
    return out


def test_a_cost_is_stored_with_its_exact_amount_and_counted_once(project: Project) -> None:
    client = project.client()
    key = f"exact-{uuid.uuid4().hex}"
    amount = Decimal("0.123456789")
    assert client.report_cost("openai", amount, model="gpt-4o-mini", tokens_in=900, tokens_out=120,
                              key_name="sdk-openai", idempotency_key=key, metadata={"step": "comment"}) == key
    client.report_cost("openai", amount, model="gpt-4o-mini", tokens_in=900, tokens_out=120,
                       key_name="sdk-openai", idempotency_key=key, metadata={"step": "comment"})
    stored = by_key(project.server.costs("sdk"))[key]
    assert len(stored) == 1, "sent twice, counted once"
    r = stored[0]
    assert r["amount"] == "0.123456789" and Decimal(r["amount"]) == amount
    assert (r["service"], r["model"], r["tokens_in"], r["tokens_out"], r["key_name"], r["source"]) == (
        "openai", "gpt-4o-mini", 900, 120, "sdk-openai", "api")
    assert not client.spool.pending()


def test_inside_a_run_the_key_is_run_attempt_label_and_the_run_id_is_sent(project: Project) -> None:
    run = project.server.run_task("sdk", "quick")
    client = project.client()
    token = agent_os_env._current.set(agent_os.RunInfo(run["id"], 1, "sdk", "quick"))
    try:
        first = client.report_cost("openai", Decimal("0.01"))
        named = client.report_cost("openai", Decimal("0.02"), label="summary")
        second = client.report_cost("openai", Decimal("0.03"))
    finally:
        agent_os_env._current.reset(token)
    assert (first, named, second) == (f"{run['id']}-1-c1", f"{run['id']}-1-summary", f"{run['id']}-1-c2")
    on_run = by_key(project.server.costs("sdk", run=run["id"]))
    assert set(on_run) == {first, named, second}
    assert all(r[0]["run_id"] == run["id"] for r in on_run.values())


def test_a_batch_is_sent_in_requests_of_at_most_1000_records(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    client = project.client()
    requests: List[int] = []
    real = client._deliver

    def counting(entry: Dict[str, Any], spooled: bool) -> Any:
        requests.append(len(entry["body"]["records"]))
        return real(entry, spooled)

    monkeypatch.setattr(client, "_deliver", counting)
    service = f"batch-{uuid.uuid4().hex[:8]}"
    with client.cost_batch() as batch:
        for i in range(1001):
            batch.add(service, Decimal(i).scaleb(-9))
    assert requests == [1000, 1]
    summary = project.server.api("GET", f"/api/v1/costs/summary?by=service&project=sdk&service={service}", expect=200)
    assert summary["totals"][0]["records"] == 1001
    assert Decimal(summary["totals"][0]["amount"]) == Decimal(sum(range(1001))).scaleb(-9), "exact to the nano-dollar"


def test_llm_usage_is_priced_by_the_server(project: Project) -> None:
    client = project.client()
    openai_key = client.record_llm_usage(
        {"model": "test-gpt", "object": "chat.completion",
         "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "prompt_tokens_details": {"cached_tokens": 200}}},
        label="ignored-outside-a-run", metadata={"step": "draft"},
    )
    anthropic_key = client.record_llm_usage(
        {"type": "message", "model": "test-claude",
         "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 1000,
                   "cache_creation_input_tokens": 50}},
    )
    stored = by_key(project.server.costs("sdk"))
    o, a = stored[openai_key][0], stored[anthropic_key][0]
    # test-gpt: 800 fresh x $1 + 200 cached x $0.50 + 500 out x $2, per million tokens.
    assert (o["service"], o["model"], o["tokens_in"], o["tokens_out"], o["tokens_cached_in"]) == ("openai", "test-gpt", 1000, 500, 200)
    assert Decimal(o["amount"]) == Decimal("0.0019")
    assert o["price"] is not None
    # test-claude: 150 fresh x $3 + 1000 cached x $0.30 + 20 out x $15, per million tokens.
    assert (a["service"], a["tokens_in"], a["tokens_out"], a["tokens_cached_in"]) == ("anthropic", 1150, 20, 1000)
    assert Decimal(a["amount"]) == Decimal("0.00105")


def test_a_model_without_a_price_is_stored_with_its_tokens_and_no_amount(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    client = project.client()
    assert client.prices("no-price-model") == []
    assert [(Decimal(p["input"]), Decimal(p["cached_input"]), Decimal(p["output"]), p["source"])
            for p in client.prices("test-gpt")] == [(Decimal(1), Decimal("0.5"), Decimal(2), "config")]
    key = client.record_llm_usage(
        {"model": "no-price-model-x1", "object": "response",
         "usage": {"input_tokens": 42, "output_tokens": 7, "input_tokens_details": {"cached_tokens": 0}}}
    )
    r = by_key(project.server.costs("sdk"))[key][0]
    assert (r["model"], r["tokens_in"], r["tokens_out"], r["amount"], r["price"], r["unpriced"]) == (
        "no-price-model-x1", 42, 7, None, None, True)
    assert "no price for no-price-model-x1" in capsys.readouterr().err


def test_a_refused_cost_is_a_warning_not_an_exception_and_not_spooled(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    admin = project.client(token=project.server.admin, project=None)
    admin.report_cost("openai", Decimal("1"))  # the admin token must name the project: 400
    err = capsys.readouterr().err
    assert "agent_os: warning: Agent OS refused a cost: 400" in err and "not sent again" in err
    assert not admin.spool.pending()


def test_the_module_functions_use_the_environment(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_OS_URL", project.server.url)
    monkeypatch.setenv("AGENT_OS_TOKEN", project.token)
    monkeypatch.setenv("AGENT_OS_PROJECT", "sdk")
    agent_os.configure()
    key = agent_os.report_cost("openai", "0.000001", idempotency_key=f"module-{uuid.uuid4().hex}")
    with agent_os.cost_batch() as b:
        k2 = b.add("openai", Decimal("0.000002"))
    stored = by_key(project.server.costs("sdk"))
    assert stored[key][0]["amount"] == "0.000001" and stored[k2][0]["amount"] == "0.000002"
