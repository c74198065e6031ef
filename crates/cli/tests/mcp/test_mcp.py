"""Agent OS's MCP server, driven by the official Python ``mcp`` client over stdio
(``agent-os mcp``) and Streamable HTTP (``/mcp``) against the real binary running the demo."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from mcp import types

from conftest import Demo, api, session

pytestmark = pytest.mark.anyio

TRANSPORTS = ["stdio", "http"]

READ_ONLY = {
    "overview", "list_projects", "get_project", "list_schedules", "list_checks", "list_runs", "get_run",
    "run_log", "cost_summary", "list_budgets", "list_incidents", "list_resources", "list_workflows",
    "validate_workflow",
}
ACTING = {"start_run", "cancel_run", "ack_incident", "emit_event", "send_notification", "start_workflow"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def ok(s: Any, name: str, args: Dict[str, Any]) -> Dict[str, Any]:
    result = await s.call_tool(name, args)
    assert not result.is_error, f"{name}({args}) failed: {text(result)}"
    assert isinstance(result.structured_content, dict), f"{name}: no structured content"
    assert text(result).strip(), f"{name}: no text"
    return result.structured_content


async def refused(s: Any, name: str, args: Dict[str, Any]) -> str:
    result = await s.call_tool(name, args)
    assert result.is_error, f"{name}({args}) was not refused: {text(result)}"
    return text(result)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tools_are_listed_with_strict_schemas_and_truthful_annotations(demo: Demo, transport: str) -> None:
    async with session(demo, transport) as s:
        tools = (await s.list_tools()).tools
    by_name = {t.name: t for t in tools}
    assert set(by_name) == READ_ONLY | ACTING
    for t in tools:
        assert t.description and t.title, t.name
        assert t.input_schema["type"] == "object", t.name
        assert t.input_schema.get("additionalProperties") is False, f"{t.name} accepts unknown arguments"
        a = t.annotations
        assert a is not None, t.name
        assert a.read_only_hint is (t.name in READ_ONLY), t.name
        if t.name in ACTING:
            assert a.destructive_hint is (t.name == "cancel_run"), t.name
    assert by_name["cancel_run"].input_schema["properties"]["confirm"]["type"] == "boolean"
    assert by_name["list_runs"].input_schema["properties"]["limit"]["maximum"] == 500
    assert by_name["ack_incident"].annotations.idempotent_hint is True
    assert by_name["start_run"].annotations.idempotent_hint is False


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_what_failed_overnight_and_what_did_it_cost(demo: Demo, transport: str) -> None:
    async with session(demo, transport) as s:
        o = await ok(s, "overview", {"since": "12h"})
        result = await s.call_tool("overview", {"since": "12h"})
    assert o["ok"] is False
    failed = [r["id"] for r in o["failed_runs"]]
    assert demo.failed["id"] in failed and demo.scan["id"] not in failed
    spent = {g["group"]: g for g in o["spent"]["groups"]}
    assert float(spent["trading"]["amount"]) > 0, spent
    assert spent["trading"]["tokens_in"] > 0
    words = text(result)
    assert "Needs attention" in words and "trading/rebalance failed" in words and "Spent:" in words
    assert f"trading {spent['trading']['amount']} USD" in words
    names = {p["project"] for p in o["projects"]}
    assert names == {"trading", "cortana", "image-workflow"}


async def test_every_tool_answers_over_http(demo: Demo) -> None:
    await every_tool(demo, "http")


async def test_every_tool_answers_over_stdio(demo: Demo) -> None:
    await every_tool(demo, "stdio")


async def every_tool(demo: Demo, transport: str) -> None:
    async with session(demo, transport) as s:
        projects = await ok(s, "list_projects", {})
        assert {p["name"] for p in projects["projects"]} == {"trading", "cortana", "image-workflow"}

        p = await ok(s, "get_project", {"name": "trading"})
        assert p["project"]["name"] == "trading" and p["health"]["state"] in ("ok", "degraded", "down", "unknown")
        assert {"scan_market", "rebalance"} <= {t["name"] for t in p["project"]["tasks"]}

        schedules = (await ok(s, "list_schedules", {"project": "trading"}))["schedules"]
        railway = [x for x in schedules if x["managed_by"] == "railway"]
        assert railway and all(len(x["next"]) > 0 for x in railway)

        checks = (await ok(s, "list_checks", {}))["checks"]
        assert "price-feed" in {c["slug"] for c in checks}
        nightly = (await ok(s, "list_checks", {"tag": "nightly"}))["checks"]
        assert nightly and all("nightly" in c["tags"] for c in nightly)
        assert "price-feed" not in {c["slug"] for c in nightly}

        runs = await ok(s, "list_runs", {"project": "trading", "status": "failed", "since": "1h"})
        assert [r["id"] for r in runs["runs"]] == [demo.failed["id"]]
        assert (await ok(s, "list_runs", {"limit": 1}))["more"] is True

        run = (await ok(s, "get_run", {"id": demo.failed["id"]}))["run"]
        assert run["status"] == "failed" and run["exit_code"] == 78

        log = await ok(s, "run_log", {"id": demo.failed["id"], "lines": 5})
        assert log["finished"] is True and 0 < len(log["lines"]) <= 5
        assert any("add up" in line for line in log["lines"]), log["lines"]

        started = (await ok(s, "start_run", {"project": "trading", "task": "scan_market", "input": {"symbols": ["SOL"]}, "wait": "2m"}))["run"]
        assert started["status"] == "succeeded" and started["trigger"] == "mcp"

        costs = await ok(s, "cost_summary", {"by": "model", "since": "1h"})
        assert costs["by"] == "model" and costs["groups"], costs

        budgets = (await ok(s, "list_budgets", {}))["budgets"]
        assert {b["project"] for b in budgets} == {"trading", "cortana"}

        # A run held up by the `openai` resource: list_resources shows who holds it and who waits,
        # cancel_run without `confirm` leaves the run alone, with it cancels.
        lease = demo.call("POST", "/api/v1/resources/openai/leases", {"ttl": "2m", "wait": "60s", "label": "mcp-test-holder"})
        try:
            queued = (await ok(s, "start_run", {"project": "trading", "task": "scan_market", "input": {"symbols": ["BTC"]}}))["run"]
            assert queued["status"] == "queued"
            resources = {r["name"]: r for r in (await ok(s, "list_resources", {}))["resources"]}
            assert [h["label"] for h in resources["openai"]["holders"]] == ["mcp-test-holder"]
            assert resources["openai"]["waiters"], resources["openai"]

            preview = await ok(s, "cancel_run", {"id": queued["id"]})
            assert preview["cancelled"] is False
            still = demo.call("GET", f"/api/v1/runs/{queued['id']}")
            assert still["status"] == "queued" and still["cancel_requested"] is False

            done = await ok(s, "cancel_run", {"id": queued["id"], "confirm": True})
            assert done["cancelled"] is True
            ended = demo.call("GET", f"/api/v1/runs/{queued['id']}/wait?timeout=30s")
            assert ended["status"] == "cancelled"
        finally:
            demo.call("DELETE", f"/api/v1/resources/openai/leases/{lease['id']}")

        incidents = (await ok(s, "list_incidents", {"open": False, "limit": 100}))["incidents"]
        run_incidents = [i for i in incidents if i["source"] == "run" and i["status"] == "open"]
        assert run_incidents, incidents
        target = run_incidents[0]
        acked = (await ok(s, "ack_incident", {"id": target["id"], "by": f"mcp-{transport}"}))["incident"]
        # Acknowledging is idempotent: the first acknowledgement stands.
        assert acked["acked_by"] == (target["acked_by"] or f"mcp-{transport}") and acked["acked_at"]

        key = f"mcp-{transport}-event"
        first = (await ok(s, "emit_event", {"type": "trading.mcp_test", "data": {"n": 1}, "idempotency_key": key}))["event"]
        again = (await ok(s, "emit_event", {"type": "trading.mcp_test", "data": {"n": 1}, "idempotency_key": key}))["event"]
        assert first["id"] == again["id"] and again["duplicate"] is True

        sent = (await ok(s, "send_notification", {"title": f"from MCP over {transport}", "body": "hello", "severity": "warning", "project": "trading"}))["notification"]
        assert sent["severity"] == "warning" and sent["deliveries"], sent
        assert demo.call("GET", "/api/v1/notifications?limit=5")[0]["title"] == f"from MCP over {transport}"

        workflows = (await ok(s, "list_workflows", {}))["workflows"]
        assert {"market-watch", "volatility-to-memories"} <= {w["name"] for w in workflows}

        good = await ok(s, "validate_workflow", {"text": "name: w\non: { manual: {} }\nsteps:\n  - { id: a, run: trading.scan_market }\n"})
        assert good["valid"] is True
        bad = await ok(s, "validate_workflow", {"file": "bad.yaml", "text": "name: bad\non: { manual: {} }\nsteps:\n  - { id: a, run: nowhere.nothing }\n"})
        assert bad["valid"] is False and "bad.yaml:4:" in bad["errors"] and "nowhere" in bad["errors"], bad

        wf = (await ok(s, "start_workflow", {"name": "market-watch", "inputs": {"symbols": ["BTC"]}, "wait": "3m"}))["workflow_run"]
        assert wf["workflow"] == "market-watch" and wf["status"] == "succeeded", wf
        assert [st["step_id"] for st in wf["steps"]][0] == "scan"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_project_token_reaches_its_project_alone(demo: Demo, transport: str) -> None:
    token = demo.token("cortana")
    async with session(demo, transport, token) as s:
        projects = await ok(s, "list_projects", {})
        assert [p["name"] for p in projects["projects"]] == ["cortana"]
        assert "403" in await refused(s, "get_project", {"name": "trading"})
        assert "403" in await refused(s, "list_runs", {"project": "trading"})
        runs = await ok(s, "list_runs", {"limit": 100})
        assert all(r["project"] == "cortana" for r in runs["runs"])
        await refused(s, "get_run", {"id": demo.failed["id"]})
        await refused(s, "run_log", {"id": demo.failed["id"]})
        assert "403" in await refused(s, "start_run", {"project": "trading", "task": "scan_market"})
        await refused(s, "cancel_run", {"id": demo.scan["id"], "confirm": True})
        costs = await ok(s, "cost_summary", {"by": "project"})
        assert {g["group"] for g in costs["groups"]} <= {"cortana"}
        o = await ok(s, "overview", {"since": "12h"})
        assert [p["project"] for p in o["projects"]] == ["cortana"] and o["failed_runs"] == []
        # Admin-only operations stay admin-only through MCP.
        assert "403" in await refused(s, "validate_workflow", {"text": "name: w\n"})
        assert "403" in await refused(s, "start_workflow", {"name": "market-watch"})
    assert demo.call("GET", f"/api/v1/runs/{demo.scan['id']}")["status"] == "succeeded"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_bad_arguments_are_refused_by_name(demo: Demo, transport: str) -> None:
    async with session(demo, transport) as s:
        assert "unknown field `colour`" in await refused(s, "list_runs", {"colour": "red"})
        assert "`since`" in await refused(s, "list_runs", {"since": "last tuesday"})
        assert "`wait`" in await refused(s, "start_run", {"project": "trading", "task": "scan_market", "wait": "10m"})
        assert "`limit` must be between 1 and 500" in await refused(s, "list_runs", {"limit": 0})
        assert "invalid argument `limit`" in await refused(s, "list_runs", {"limit": "many"})
        assert "invalid argument `status`" in await refused(s, "list_runs", {"status": "broken"})
        assert "404" in await refused(s, "get_run", {"id": "no-such-run"})
        assert "missing field `name`" in await refused(s, "get_project", {})
        with pytest.raises(Exception, match="no tool"):
            result = await s.call_tool("drop_database", {})
            if result.is_error:
                raise RuntimeError(text(result))
    assert demo.call("GET", f"/api/v1/runs/{demo.failed['id']}")["status"] == "failed"


def test_mcp_over_http_needs_a_live_token(demo: Demo) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    status, body = api("POST", demo.url + "/mcp", None, init)
    assert status == 401 and "bearer" in body["error"]["message"]
    status, _ = api("POST", demo.url + "/mcp", "aosa_" + "0" * 48, init)
    assert status == 401


async def test_stdio_with_a_wrong_token_says_so_on_every_call(demo: Demo) -> None:
    async with session(demo, "stdio", "aosa_" + "0" * 48) as s:
        message = await refused(s, "list_projects", {})
    assert "401" in message and "unknown, revoked or expired" in message
