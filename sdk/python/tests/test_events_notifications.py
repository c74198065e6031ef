"""Events and notifications end to end, each stored once however often it is sent."""

from __future__ import annotations

import uuid
from typing import Any, Dict, List

import agent_os
from agent_os import env as agent_os_env
from conftest import Project


def events(project: Project, marker: str) -> List[Dict[str, Any]]:
    found = project.server.api("GET", "/api/v1/events?type=sdk.&project=sdk&limit=1000", expect=200)
    return [e for e in found if e["data"].get("marker") == marker]


def notifications(project: Project, marker: str) -> List[Dict[str, Any]]:
    found = project.server.api("GET", "/api/v1/notifications?project=sdk&limit=200", expect=200)
    return [n for n in found if marker in (n.get("body") or "")]


def test_an_event_is_stored_once_per_key(project: Project) -> None:
    client = project.client()
    marker = uuid.uuid4().hex
    key = client.emit("sdk.export_done", {"marker": marker, "files": 3})
    assert client.emit("sdk.export_done", {"marker": marker, "files": 3}, idempotency_key=key) == key
    stored = events(project, marker)
    assert len(stored) == 1
    assert stored[0]["type"] == "sdk.export_done" and stored[0]["project"] == "sdk" and stored[0]["data"]["files"] == 3


def test_a_retried_attempt_does_not_emit_or_notify_twice(project: Project) -> None:
    marker = uuid.uuid4().hex
    run_id = str(uuid.uuid4())
    for attempt in (1, 2):
        client = project.client()  # a new process for each attempt: its counters start afresh
        token = agent_os_env._current.set(agent_os.RunInfo(run_id, attempt, "sdk", "export"))
        try:
            client.emit("sdk.spike", {"marker": marker, "symbol": "SOL"})
            client.emit("sdk.spike", {"marker": marker, "symbol": "SOL"})  # the same twice in one attempt: two events
            client.emit("sdk.spike", {"marker": marker, "symbol": "ETH"})
            client.notify("Spike", f"SOL moved {marker}", "warning", tags=["spike"])
        finally:
            agent_os_env._current.reset(token)
    assert sorted(e["data"]["symbol"] for e in events(project, marker)) == ["ETH", "SOL", "SOL"]
    assert len(notifications(project, marker)) == 1


def test_a_notification_is_stored_and_sent_once_per_key(project: Project) -> None:
    client = project.client()
    marker = uuid.uuid4().hex
    key = client.notify("Export finished", f"3 files {marker}", tags=["export"])
    client.notify("Export finished", f"3 files {marker}", tags=["export"], idempotency_key=key)
    stored = notifications(project, marker)
    assert len(stored) == 1
    n = stored[0]
    assert (n["title"], n["severity"], n["tags"], n["project"]) == ("Export finished", "info", ["export"], "sdk")
    direct = project.server.api("POST", "/api/v1/notifications",
                                {"title": "Export finished", "body": f"3 files {marker}", "idempotency_key": key},
                                token=project.token, expect=200)
    assert direct["deduplicated"] is True and direct["id"] == n["id"]
