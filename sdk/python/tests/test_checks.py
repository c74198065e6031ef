"""Heartbeat checks end to end: start and finish pings paired by a fresh rid, the tail of the
block's output (or its traceback) stored with the finish, and the three ways to find the URL."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

import agent_os
from conftest import Project, free_port


def test_a_block_that_succeeds_pings_start_and_success_with_its_output(project: Project) -> None:
    client = project.client()  # no ping key: the URL is looked up with the token
    with client.check("nightly") as c:
        print("exported 3 files")
    pings = project.pings("nightly")
    assert [(k, r) for k, r, _, _ in pings[-2:]] == [("start", c.rid), ("success", c.rid)]
    assert "exported 3 files" in (pings[-1][2] or "")
    check = project.check("nightly")
    assert check["state"] == "up" and check["last_duration_ms"] is not None and check["running_since"] is None


def test_a_block_that_raises_pings_fail_with_the_traceback_and_the_exception_propagates(project: Project) -> None:
    client = project.client()
    with pytest.raises(ZeroDivisionError):
        with client.check("failing") as c:
            print("dividing")
            1 / 0
    kinds = [(k, r) for k, r, _, _ in project.pings("failing")]
    assert kinds[-2:] == [("start", c.rid), ("fail", c.rid)]
    body = project.pings("failing")[-1][2] or ""
    assert "dividing" in body and "ZeroDivisionError: division by zero" in body and "Traceback" in body
    assert project.check("failing")["state"] == "down"


def test_the_decorator_form_and_the_log_tail_bound(project: Project) -> None:
    client = project.client()

    @client.check("export")
    def export() -> str:
        for i in range(2000):
            print(f"line {i:05d} " + "x" * 40)
        return "done"

    assert export() == "done"
    body = project.pings("export")[-1][2] or ""
    assert len(body.encode()) <= 10 * 1024
    assert body.rstrip().endswith("line 01999 " + "x" * 40), "the tail is kept"
    assert "line 00000" not in body


def test_a_ping_key_needs_no_token_and_a_full_url_is_used_as_is(project: Project) -> None:
    keyed = project.check("keyed")
    ping_key = keyed["slug_url"].rstrip("/").split("/")[-2]
    no_token = agent_os.Client(project.server.url, None, ping_key=ping_key, spool_dir=project.root / "keyed-spool")
    with no_token.check("keyed"):
        pass
    assert [k for k, _, _, _ in project.pings("keyed")][-2:] == ["start", "success"]

    by_url = agent_os.Client(project.server.url, None, spool=False)
    by_url.ping(project.check("byurl")["ping_url"], body="from the full URL")
    last = project.pings("byurl")[-1]
    assert last[0] == "success" and last[2] == "from the full URL"


def test_an_unknown_check_is_a_warning_and_the_job_goes_on(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    client = project.client()
    with client.check("no-such-check"):
        result = "the job ran"
    assert result == "the job ran"
    err = capsys.readouterr().err
    assert "no check named 'no-such-check'" in err and "checks:" in err
    assert not client.spool.pending()


def test_a_check_never_fails_the_job_when_agent_os_is_away(project: Project) -> None:
    away = agent_os.Client(f"http://127.0.0.1:{free_port()}", project.token, project="sdk",
                           spool_dir=project.root / "away-spool")
    with away.check("nightly"):
        done = True
    assert done
    assert [e["action"] for e in away.spool.entries()] == ["start", ""]


def test_a_resent_ping_is_recorded_once_and_a_late_one_at_its_time(project: Project, tmp_path: Path) -> None:
    client = project.client(spool_dir=tmp_path)
    an_hour_ago = time.time() - 3600
    late = uuid.uuid4().hex
    client.spool.append({"kind": "ping", "slug": "late", "action": "", "rid": late, "body": "from the spool",
                         "at": an_hour_ago})
    assert client.flush().sent == 1
    stored = [at for _, r, _, at in project.pings("late") if r == late]
    assert len(stored) == 1 and abs(stored[0] - an_hour_ago * 1000) < 5, "recorded when it happened"

    rid = uuid.uuid4().hex
    client.ping("resend", "start", rid=rid)
    client.ping("resend", "success", body="first try", rid=rid)
    client.ping("resend", "success", body="sent again", rid=rid)  # its answer was lost: sent again
    assert [(k, b) for k, r, b, _ in project.pings("resend") if r == rid] == [("start", None), ("success", "first try")]


def test_the_plain_api_calls_answer_json_or_raise(project: Project) -> None:
    client = project.client()
    assert {"nightly", "export", "keyed"} <= {c["slug"] for c in client.checks()}
    assert client.request("GET", "/api/v1/projects/sdk")["name"] == "sdk"
    with pytest.raises(agent_os.ApiError) as e:
        client.request("GET", "/api/v1/runs/01936f2a-4c1e-7b3a-9d2e-5f6a7b8c9d0e")
    assert e.value.status == 404 and e.value.code == "not_found"
    with pytest.raises(agent_os.AgentOSUnavailable, match="is Agent OS running"):
        agent_os.Client(f"http://127.0.0.1:{free_port()}", project.token).request("GET", "/api/v1/checks")
