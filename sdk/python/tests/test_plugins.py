"""Plugins registered with the real server: one over the command transport (probes and tasks as
programs), one over HTTP (a signed endpoint served by this package)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import agent_os
from agent_os.http_plugin import sign
from conftest import PRELUDE, PY, SDK, Project, Server, free_port, http, register, wait_for

COMMAND_PLUGIN = PRELUDE + """\
from decimal import Decimal


class Shop(agent_os.Plugin):
    def get_status(self):
        print("this line goes to stderr, not into the answer")
        return agent_os.Status("degraded", "nightly update last ran 31 h ago", {"memories": 15})

    def report_cost(self, since):
        records = [
            agent_os.cost_record("openai", Decimal("0.0123"), model="gpt-4o-mini", tokens_in=1200,
                                 tokens_out=300, idempotency_key="probe-1", at="2026-01-05T10:00:00Z"),
            agent_os.cost_record("openai", model="test-gpt", tokens_in=1000, tokens_out=0,
                                 idempotency_key="probe-2", at="2026-01-05T11:00:00Z"),
        ]
        # Every record every time: their keys make Agent OS count each once.
        return agent_os.CostReport(records, str(len(records)))

    def get_schedule(self):
        return [agent_os.Schedule("scan", "0 */6 * * *", managed_by="railway", description="Railway cron")]

    @agent_os.Plugin.task
    def scan(self, input):
        print("scanning", ",".join(input.get("symbols", [])))
        agent_os.report_cost("openai", Decimal("0.25"), label="scan")
        return {"scanned": len(input.get("symbols", []))}

    @agent_os.Plugin.task("fail-hard")
    def fail_hard(self, input):
        raise agent_os.DoNotRetry("the symbols are not listed")


if __name__ == "__main__":
    Shop().main()
"""


def command_manifest(py: str) -> str:
    return f"""\
name: cmdplugin
tasks:
  scan: {{ run: [{py}, plugin.py, task, scan] }}
  via-module: {{ run: "PYTHONPATH={SDK} {py} -m agent_os plugin plugin:Shop task scan" }}
  fail-hard: {{ run: [{py}, plugin.py, task, fail-hard], retries: 2, retry_delay: 100ms }}
status: {{ run: [{py}, plugin.py], every: 1s }}
cost: {{ run: [{py}, plugin.py], every: 1s }}
schedule: {{ run: [{py}, plugin.py], every: 1s }}
"""


@pytest.fixture(scope="module")
def command_plugin(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Server:
    root = tmp_path_factory.mktemp("cmdplugin")
    (root / "plugin.py").write_text(COMMAND_PLUGIN)
    register(server, root, command_manifest(PY))
    return server


def probe(server: Server, project: str, kind: str) -> Optional[Dict[str, Any]]:
    p = server.api("GET", f"/api/v1/projects/{project}", expect=200)
    return next((x for x in p["probes"] if x["kind"] == kind), None)


def test_a_command_plugin_answers_its_probes(command_plugin: Server) -> None:
    s = command_plugin
    status = wait_for("the status probe", lambda: (p := probe(s, "cmdplugin", "status")) and p["ok"] and p)
    assert (status["status"], status["message"]) == ("degraded", "nightly update last ran 31 h ago")
    first = wait_for("the cost probe", lambda: (p := probe(s, "cmdplugin", "cost")) and p["ok"] and p)
    wait_for("a second cost probe", lambda: (p := probe(s, "cmdplugin", "cost")) and p["at"] != first["at"] and p["ok"])
    costs = [c for c in s.costs("cmdplugin") if c["source"] == "probe"]
    assert sorted(c["idempotency_key"] for c in costs) == ["probe-1", "probe-2"], "each record counted once"
    by_key = {c["idempotency_key"]: c for c in costs}
    assert by_key["probe-1"]["amount"] == "0.0123"
    assert Decimal(by_key["probe-2"]["amount"]) == Decimal("0.001"), "priced by the server: 1000 x $1 per million"
    schedules = wait_for("the schedule probe", lambda: [x for x in s.api("GET", "/api/v1/projects/cmdplugin")["schedules"]
                                                         if x["source"] == "plugin"])
    assert (schedules[0]["task"], schedules[0]["cron"], schedules[0]["managed_by"]) == ("scan", "0 */6 * * *", "railway")


def test_a_command_plugin_runs_its_tasks_through_agent_os(command_plugin: Server) -> None:
    s = command_plugin
    run = s.run_task("cmdplugin", "scan", {"symbols": ["BTC", "ETH"]})
    assert run["status"] == "succeeded", run
    assert run["outputs"] == {"scanned": 2}
    logs = s.api("GET", f"/api/v1/runs/{run['id']}/logs", expect=200)
    assert "scanning BTC,ETH" in json.dumps(logs)
    costs = s.costs("cmdplugin", run=run["id"])
    assert [(c["idempotency_key"], c["amount"]) for c in costs] == [(f"{run['id']}-1-scan", "0.25")]

    via_module = s.run_task("cmdplugin", "via-module", {"symbols": ["SOL"]})
    assert via_module["status"] == "succeeded" and via_module["outputs"] == {"scanned": 1}, via_module

    failed = s.run_task("cmdplugin", "fail-hard")
    assert failed["status"] == "failed" and failed["exit_code"] == 78
    assert len(failed["attempts"]) == 1, "exit 78 is not retried"


def test_the_task_decorator_exit_codes_reach_agent_os(project: Project) -> None:
    s = project.server
    ok = s.run_task("sdk", "ok", {"n": 1})
    assert (ok["status"], ok["exit_code"], ok["outputs"]) == ("succeeded", 0, {"mode": "ok", "input": {"n": 1}})
    no = s.run_task("sdk", "do_not_retry")
    assert (no["status"], no["exit_code"], len(no["attempts"])) == ("failed", 78, 1)
    crash = s.run_task("sdk", "crash")
    assert (crash["status"], crash["exit_code"]) == ("failed", 1)
    log = json.dumps(s.api("GET", f"/api/v1/runs/{crash['id']}/logs", expect=200))
    assert "RuntimeError: exchange API returned 503" in log and "Traceback" in log


def test_a_task_reports_costs_with_its_run_token_and_reads_its_env_file(project: Project) -> None:
    run = project.server.run_task("sdk", "costs")
    assert run["status"] == "succeeded", run
    out = run["outputs"]
    assert out["run"] == run["id"] and out["attempt"] == 1 and out["secret_loaded"] is True
    assert out["keys"] == [f"{run['id']}-1-c1", f"{run['id']}-1-summary"]
    costs = {c["idempotency_key"]: c for c in project.server.costs("sdk", run=run["id"])}
    assert set(costs) == set(out["keys"])
    assert Decimal(costs[out["keys"][0]]["amount"]) == Decimal("0.000207")
    assert Decimal(costs[out["keys"][1]]["amount"]) == Decimal("0.5")
    log = json.dumps(project.server.api("GET", f"/api/v1/runs/{run['id']}/logs", expect=200))
    assert "value-not-printed" not in log


# HTTP ------------------------------------------------------------------------------------


class Hosted(agent_os.Plugin):
    def __init__(self, client: agent_os.Client) -> None:
        super().__init__()
        self.client = client
        self.scans = 0
        self.lock = threading.Lock()

    def get_status(self) -> agent_os.Status:
        return agent_os.Status("ok", "hosted and well")

    @agent_os.Plugin.task
    def scan(self, input: Dict[str, Any]) -> Dict[str, Any]:
        with self.lock:
            self.scans += 1
        print("hosted scan of", input.get("symbols"))
        self.client.report_cost("openai", Decimal("0.01"))
        return {"scanned": len(input.get("symbols", []))}

    @agent_os.Plugin.task
    def broken(self, input: Dict[str, Any]) -> None:
        raise agent_os.DoNotRetry("the symbol list is empty")


class HostedProject:
    def __init__(self, server: Server, plugin: Hosted, url: str, secret: str) -> None:
        self.server, self.plugin, self.url, self.secret = server, plugin, url, secret

    def signed(self, method: str, path: str, body: bytes = b"", msg_id: Optional[str] = None,
               stamp: Optional[int] = None, secret: Optional[str] = None) -> Tuple[int, Any, Dict[str, str]]:
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        stamp = int(time.time()) if stamp is None else stamp
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
                   "webhook-signature": sign(secret or self.secret, msg_id, stamp, body)}
        if body:
            headers["Content-Type"] = "application/json"
        status, doc = http(method, self.url + path, raw=body if method == "POST" else None, headers=headers)
        return status, doc, headers


@pytest.fixture(scope="module")
def hosted(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostedProject]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/agent-os"
    manifest = f"""\
name: hosted
plugin: {{ url: "{url}" }}
tasks:
  scan: {{ timeout: 30s }}
  broken: {{ retries: 2, retry_delay: 100ms }}
status: {{ every: 1s }}
"""
    answer = server.api("POST", "/api/v1/projects", {"manifest": manifest}, expect=201)
    secret = answer["signing_secret"]
    assert secret.startswith("whsec_")
    token = server.project_token("hosted")
    client = agent_os.Client(server.url, token, project="hosted",
                             spool_dir=tmp_path_factory.mktemp("hosted-spool"))
    plugin = Hosted(client)
    httpd = agent_os.make_server(plugin, "127.0.0.1", port, secret, quiet=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield HostedProject(server, plugin, url, secret)
    httpd.shutdown()
    httpd.server_close()


def test_an_http_plugin_answers_agent_os(hosted: HostedProject) -> None:
    s = hosted.server
    status = wait_for("a signed status probe", lambda: (p := probe(s, "hosted", "status")) and p["ok"] and p)
    assert (status["status"], status["message"]) == ("ok", "hosted and well")
    run = s.run_task("hosted", "scan", {"symbols": ["BTC", "ETH", "SOL"]})
    assert run["status"] == "succeeded" and run["outputs"] == {"scanned": 3}, run
    assert "hosted scan of ['BTC', 'ETH', 'SOL']" in json.dumps(s.api("GET", f"/api/v1/runs/{run['id']}/logs"))
    costs = s.costs("hosted", run=run["id"])
    assert [c["idempotency_key"] for c in costs] == [f"{run['id']}-1-c1"]
    broken = s.run_task("hosted", "broken")
    assert broken["status"] == "failed" and len(broken["attempts"]) == 1 and "symbol list is empty" in broken["error"]


def test_unsigned_tampered_stale_and_replayed_requests_get_401(hosted: HostedProject) -> None:
    scans = hosted.plugin.scans
    status, doc, headers = hosted.signed("GET", "/status")
    assert status == 200 and doc["status"] == "ok"
    replay = http("GET", hosted.url + "/status", headers=headers)
    assert replay[0] == 401 and "replay" in replay[1]["error"]["message"]
    assert http("GET", hosted.url + "/status")[0] == 401, "unsigned"
    body = json.dumps({"protocol": 1, "project": "hosted", "task": "scan", "run_id": "r", "attempt": 1,
                       "input": {"symbols": ["BTC"]}}).encode()
    msg_id = f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time())
    sig = sign(hosted.secret, msg_id, stamp, body)
    tampered = body.replace(b"BTC", b"DOGE")
    status, doc = http("POST", hosted.url + "/tasks/scan", raw=tampered, headers={
        "webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": sig, "Content-Type": "application/json"})
    assert status == 401 and "does not match" in doc["error"]["message"]
    assert hosted.signed("GET", "/status", stamp=int(time.time()) - 600)[0] == 401, "older than 5 minutes"
    wrong = "whsec_" + "b3RoZXIta2V5LW5vdC1yZWFsLXNlY3JldC0xMjM0NTY3OA=="
    assert hosted.signed("GET", "/status", secret=wrong)[0] == 401
    assert hosted.plugin.scans == scans, "the tampered task request did not run"


def test_a_resent_attempt_is_answered_from_the_stored_answer(hosted: HostedProject) -> None:
    run_id = str(uuid.uuid4())
    body = json.dumps({"protocol": 1, "project": "hosted", "task": "scan", "run_id": run_id, "attempt": 1,
                       "input": {"symbols": ["ADA"]}}).encode()
    before = hosted.plugin.scans
    first = hosted.signed("POST", "/tasks/scan", body, msg_id=f"{run_id}.1")
    again = hosted.signed("POST", "/tasks/scan", body, msg_id=f"{run_id}.1", stamp=int(time.time()) + 1)
    assert first[0] == again[0] == 200
    assert first[1] == again[1] and first[1]["outputs"] == {"scanned": 1}
    assert hosted.plugin.scans == before + 1, "the task ran once"
    other = hosted.signed("POST", "/tasks/scan", body.replace(b'"attempt": 1', b'"attempt": 2'), msg_id=f"{run_id}.2")
    assert other[0] == 200 and hosted.plugin.scans == before + 2, "another attempt runs"
    wrong_protocol = hosted.signed("POST", "/tasks/scan", body.replace(b'"protocol": 1', b'"protocol": 2'))
    assert wrong_protocol[0] == 400 and "protocol 1" in wrong_protocol[1]["error"]["message"]
