"""A job never fails because Agent OS is down: reports wait in the spool and arrive later, in
order, each once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List

import pytest

import agent_os
from agent_os import env as agent_os_env
from agent_os.spool import Outcome, Spool
from conftest import PRELUDE, Project, Server, free_port, register, wait_for

JOB = PRELUDE + """\
import os, time
from decimal import Decimal
progress = open(sys.argv[1], "a")
stop = sys.argv[2]
i = 0
with agent_os.check("job-run"):
    while not os.path.exists(stop) or i < 3:
        i += 1
        key = agent_os.report_cost("openai", Decimal(i).scaleb(-6), label=f"n{i}")
        rid = agent_os.ping("heartbeat", "success", body=f"report {i}")
        progress.write(json.dumps([key, rid]) + "\\n")
        progress.flush()
        time.sleep(0.02)
"""
JOB = JOB.replace("import os, time", "import json, os, time")


def lines(path: Path) -> List[List[str]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_a_server_killed_while_a_job_reports_gets_everything_once_and_in_order(tmp_path: Path) -> None:
    server = Server(tmp_path / "home", free_port()).start()
    try:
        register(server, tmp_path / "outage", """\
name: outage
checks:
  - { slug: heartbeat, every: 1h, grace: 10m }
  - { slug: job-run, every: 1h, grace: 10m }
""")
        token = server.project_token("outage")
        progress, stop, spool_dir = tmp_path / "progress.jsonl", tmp_path / "stop", tmp_path / "spool"
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AGENT_OS_URL": server.url,
               "AGENT_OS_TOKEN": token, "AGENT_OS_PROJECT": "outage", "AGENT_OS_SPOOL": str(spool_dir)}
        script = tmp_path / "job.py"
        script.write_text(JOB)
        job = subprocess.Popen([sys.executable, str(script), str(progress), str(stop)], env=env,
                               stderr=subprocess.PIPE)
        try:
            wait_for("reports while the server is up", lambda: len(lines(progress)) >= 15)
            server.kill()
            before = len(lines(progress))
            wait_for("reports while the server is down", lambda: len(lines(progress)) >= before + 25)
            assert any(p.stat().st_size > 0 for p in spool_dir.glob("*.jsonl")), "reports wait in the spool"
            server.start()
            wait_for("the job sending its spool while it runs", lambda: len(server.costs("outage")) > before + 25, timeout=30)
            after = len(lines(progress))
            wait_for("reports after the restart", lambda: len(lines(progress)) >= after + 10)
            stop.touch()
            _, err = job.communicate(timeout=60)
        finally:
            if job.poll() is None:
                job.kill()
        assert job.returncode == 0, err.decode()
        assert b"reports are kept in" in err, "the outage is told once on stderr"
        reported = lines(progress)
        keys = [k for k, _ in reported]
        rids = [r for _, r in reported]

        stored = server.costs("outage")
        assert sorted(c["idempotency_key"] for c in stored) == sorted(keys), "every cost arrived, and only once"
        summary = server.api("GET", "/api/v1/costs/summary?project=outage", expect=200)
        assert summary["totals"][0]["records"] == len(keys)
        arrival = [c["idempotency_key"] for c in sorted(stored, key=lambda c: c["id"])]
        assert arrival == keys, "costs arrived in the order they were reported"
        spent = [c["at"] for c in sorted(stored, key=lambda c: keys.index(c["idempotency_key"]))]
        assert spent == sorted(spent), "each cost keeps the time it was spent"
        assert sum(Decimal(c["amount"]) for c in stored) == sum(Decimal(i).scaleb(-6) for i in range(1, len(keys) + 1))

        check_id = next(c["id"] for c in server.api("GET", "/api/v1/checks?project=outage") if c["slug"] == "heartbeat")
        pings = server.db_rows("SELECT rid, body, at FROM pings WHERE check_id = ? ORDER BY id", check_id)
        assert [p[0] for p in pings] == rids, "every ping arrived once, in order"
        assert [p[1] for p in pings] == [f"report {i}" for i in range(1, len(rids) + 1)]
        assert [p[2] for p in pings] == sorted(p[2] for p in pings), "a late ping keeps the time it happened"
        run = next(c for c in server.api("GET", "/api/v1/checks?project=outage") if c["slug"] == "job-run")
        assert run["state"] == "up" and run["running_since"] is None and run["last_duration_ms"] is not None
        assert not any(p.stat().st_size > 0 for p in spool_dir.glob("*.jsonl")), "the spool is empty"
    finally:
        server.stop()


def test_the_spool_bound_drops_the_oldest_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    away = agent_os.Client(f"http://127.0.0.1:{free_port()}", "aosp_fake", project="p",
                           spool_dir=tmp_path, spool_max_entries=3)
    keys = [away.report_cost("openai", Decimal("0.01")) for _ in range(5)]
    err = capsys.readouterr().err
    assert "reports are kept in" in err
    assert err.count("dropped the 1 oldest report(s)") == 2
    assert [e["body"]["idempotency_key"] for e in away.spool.entries()] == keys[2:]

    small = agent_os.Client(f"http://127.0.0.1:{free_port()}", "aosp_fake", project="p",
                            spool_dir=tmp_path / "small", spool_max_bytes=2000)
    small.report_cost("openai", Decimal("0.01"))
    small.emit("p.big", {"blob": "x" * 5000})
    assert "larger than the spool's bound" in capsys.readouterr().err
    assert [e["kind"] for e in small.spool.entries()] == ["cost"]


def test_processes_share_a_spool_without_losing_or_repeating_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    writer = PRELUDE + f"""\
from agent_os.spool import Spool
spool = Spool({str(path)!r})
for i in range(40):
    spool.append({{"kind": "cost", "writer": sys.argv[1], "n": i}})
"""
    script = tmp_path / "writer.py"
    script.write_text(writer)
    procs = [subprocess.Popen([sys.executable, str(script), str(w)]) for w in range(4)]
    delivered: List[Dict[str, Any]] = []
    spool = Spool(path)
    while any(p.poll() is None for p in procs) or spool.pending():
        spool.flush(lambda e: (delivered.append(e), Outcome.SENT)[1])
        time.sleep(0.005)
    assert all(p.wait() == 0 for p in procs)
    assert len(delivered) == 160 and len({e["spool_id"] for e in delivered}) == 160
    for w in range(4):
        assert [e["n"] for e in delivered if e["writer"] == str(w)] == list(range(40)), "each writer's order is kept"


def test_a_spooled_cost_refused_with_its_old_token_is_sent_with_the_current_one(project: Project, tmp_path: Path) -> None:
    s = project.server
    old = s.api("POST", "/api/v1/tokens", {"project": "sdk", "name": "short-lived"}, expect=201)
    run = s.run_task("sdk", "quick")
    before = project.client(token=old["token"], spool_dir=tmp_path)
    ctx = agent_os_env._current.set(agent_os.RunInfo(run["id"], 1, "sdk", "quick"))
    try:
        record = before.prepare_cost("openai", Decimal("0.42"))
    finally:
        agent_os_env._current.reset(ctx)
    # As if Agent OS had been away when the run reported it: the entry waits with its token.
    before.spool.append(before._api_entry("cost", "/api/v1/costs", record))
    s.api("DELETE", f"/api/v1/tokens/{old['id']}", expect=204)

    stale = project.client(token=old["token"], spool_dir=tmp_path)
    assert stale.flush().remaining == 1, "no valid token: the entry stays"
    now = project.client(spool_dir=tmp_path)
    result = now.flush()
    assert (result.sent, result.remaining) == (1, 0)
    costs = s.costs("sdk", run=run["id"])
    assert [(c["idempotency_key"], c["amount"], c["run_id"]) for c in costs] == [(record["idempotency_key"], "0.42", run["id"])]


def test_the_next_report_sends_the_spool_first(project: Project, tmp_path: Path) -> None:
    client = project.client(spool_dir=tmp_path)
    marker = uuid.uuid4().hex
    waiting = client._api_entry("event", "/api/v1/events",
                                {"type": "sdk.order", "data": {"marker": marker, "n": 1}, "idempotency_key": f"{marker}-1"})
    client.spool.append(waiting)
    client.emit("sdk.order", {"marker": marker, "n": 2})
    found = [e for e in s_events(project) if e["data"].get("marker") == marker]
    assert [e["data"]["n"] for e in sorted(found, key=lambda e: e["id"])] == [1, 2]
    assert not client.spool.pending()


def s_events(project: Project) -> List[Dict[str, Any]]:
    return list(project.server.api("GET", "/api/v1/events?type=sdk.order&project=sdk", expect=200))


def test_a_spool_that_cannot_be_written_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    away = agent_os.Client(f"http://127.0.0.1:{free_port()}", "aosp_fake", project="p",
                           spool_dir=tmp_path / "a-file" / "spool")
    assert away.report_cost("openai", Decimal("0.01"))
    assert "cannot be used" in capsys.readouterr().err
