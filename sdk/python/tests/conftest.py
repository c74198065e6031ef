"""The real ``agent-os`` binary, started for the tests on a free 127.0.0.1 port.

``AGENT_OS_BIN`` names the binary (default ``target/debug/agent-os`` of this workspace). Each
server gets its own home (``--home``), with a ``config.yaml`` declaring the ``openai`` resource
and prices for the test models; the admin token is read from ``HOME/client.json``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

SDK = Path(__file__).resolve().parents[1]
REPO = SDK.parents[1]
BIN = Path(os.environ.get("AGENT_OS_BIN", str(REPO / "target" / "debug" / "agent-os")))
sys.path.insert(0, str(SDK))

CONFIG = """\
resources:
  openai: { concurrency: 1 }
prices:
  test-gpt: { input: "1.00", output: "2.00", cached_input: "0.50" }
  test-claude: { input: "3.00", output: "15.00", cached_input: "0.30" }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> Any:
    """Polls ``probe`` until it answers something truthy, or fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last saw {last!r}")


def http(method: str, url: str, body: Any = None, token: Optional[str] = None, headers: Optional[Dict[str, str]] = None,
         raw: Optional[bytes] = None, timeout: float = 30) -> Tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = dict(headers or {})
    if body is not None:
        h.setdefault("Content-Type", "application/json")
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        text, status = e.read(), e.code
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text.decode("utf-8", "replace")


class Server:
    """One ``agent-os serve`` process on a home and a port; it can be killed and started again."""

    def __init__(self, home: Path, port: Optional[int] = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "config.yaml").exists():
            (home / "config.yaml").write_text(CONFIG)

    def start(self) -> "Server":
        if not BIN.exists():
            pytest.fail(f"no agent-os binary at {BIN}: run `cargo build -p agent-os`, or set AGENT_OS_BIN")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_OS_") and k not in ("DATABASE_URL", "PORT")}
        out = open(self.home.with_suffix(".out"), "ab")
        err = open(self.home.with_suffix(".err"), "ab")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--home", str(self.home), "--bind", f"127.0.0.1:{self.port}"],
            stdout=out, stderr=err, env=env,
        )
        out.close()
        err.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"agent-os serve exited with {self.proc.returncode}: {self.log()}")
            try:
                if http("GET", self.url + "/healthz", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail(f"agent-os serve did not answer within 30s: {self.log()}")

    def log(self) -> str:
        return self.home.with_suffix(".err").read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def admin(self) -> str:
        return str(json.loads((self.home / "client.json").read_text())["token"])

    def api(self, method: str, path: str, body: Any = None, token: Optional[str] = None, expect: Optional[int] = None) -> Any:
        status, doc = http(method, self.url + path, body, token or self.admin)
        if expect is not None:
            assert status == expect, f"{method} {path}: {status} {doc}"
        return doc

    def project_token(self, project: str) -> str:
        return str(self.api("POST", "/api/v1/tokens", {"project": project, "name": "sdk-tests"}, expect=201)["token"])

    def db_rows(self, sql: str, *params: Any) -> List[Tuple[Any, ...]]:
        """Reads the server's SQLite database (read-only) for what the API does not show."""
        conn = sqlite3.connect(f"file:{self.home / 'agent-os.db'}?mode=ro", uri=True, timeout=10)
        try:
            return list(conn.execute(sql, params))
        finally:
            conn.close()

    def wait_run(self, run_id: str, token: Optional[str] = None) -> Dict[str, Any]:
        deadline = time.monotonic() + 60
        while True:
            run = self.api("GET", f"/api/v1/runs/{run_id}/wait?timeout=20s", token=token, expect=200)
            if run["status"] not in ("queued", "running") or time.monotonic() > deadline:
                return dict(run)

    def run_task(self, project: str, task: str, input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        run = self.api("POST", "/api/v1/runs", {"project": project, "task": task, "input": input or {}}, expect=201)
        return self.wait_run(run["id"])

    def costs(self, project: str, run: Optional[str] = None) -> List[Dict[str, Any]]:
        q = f"/api/v1/costs?project={project}&limit=1000" + (f"&run={run}" if run else "")
        return list(self.api("GET", q, expect=200))


def register(server: Server, root: Path, manifest: str) -> Dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "agent-os.yaml").write_text(manifest)
    return dict(server.api("POST", "/api/v1/projects", {"path": str(root)}, expect=201))


# A task script's first lines: the package from this checkout, whatever Python runs it.
PRELUDE = f"import sys\nsys.path.insert(0, {str(SDK)!r})\nimport agent_os\n"
PY = sys.executable

PROJECT_MANIFEST = f"""\
name: sdk
env_file: .env
tasks:
  costs: {{ run: [{PY}, costs_task.py] }}
  ok: {{ run: [{PY}, exits.py, ok] }}
  do_not_retry: {{ run: [{PY}, exits.py, do_not_retry], retries: 2, retry_delay: 100ms }}
  crash: {{ run: [{PY}, exits.py, crash] }}
  quick: {{ run: "true" }}
checks:
  - {{ slug: nightly, every: 1h, grace: 10m }}
  - {{ slug: export, every: 1h, grace: 10m }}
  - {{ slug: keyed, every: 1h, grace: 10m }}
  - {{ slug: byurl, every: 1h, grace: 10m }}
  - {{ slug: failing, every: 1h, grace: 10m }}
  - {{ slug: spool, every: 1h, grace: 10m }}
  - {{ slug: cli, every: 1h, grace: 10m }}
  - {{ slug: late, every: 1h, grace: 10m }}
  - {{ slug: resend, every: 1h, grace: 10m }}
"""

COSTS_TASK = PRELUDE + """\
from decimal import Decimal
agent_os.load_env()

@agent_os.task
def main(input):
    first = agent_os.report_cost("openai", Decimal("0.000207"), model="test-gpt", tokens_in=900, tokens_out=120)
    second = agent_os.report_cost("openai", Decimal("0.5"), label="summary")
    return {"keys": [first, second], "run": agent_os.run_id(), "attempt": agent_os.attempt(),
            "secret_loaded": "SDK_TEST_SETTING" in __import__("os").environ}

main.main()
"""

EXITS = PRELUDE + """\
mode = sys.argv[1]

@agent_os.task
def main(input):
    if mode == "do_not_retry":
        raise agent_os.DoNotRetry("the input names no symbols")
    if mode == "crash":
        raise RuntimeError("exchange API returned 503")
    return {"mode": mode, "input": input}

main.main()
"""


class Project:
    def __init__(self, server: Server, name: str, root: Path, token: str) -> None:
        self.server = server
        self.name = name
        self.root = root
        self.token = token

    def client(self, **kw: Any) -> Any:
        import agent_os

        kw.setdefault("project", self.name)
        if "spool_dir" not in kw:
            kw["spool_dir"] = tempfile.mkdtemp(prefix="spool-")
        return agent_os.Client(self.server.url, kw.pop("token", self.token), **kw)

    def check(self, slug: str) -> Dict[str, Any]:
        found = [c for c in self.server.api("GET", f"/api/v1/checks?project={self.name}", expect=200) if c["slug"] == slug]
        assert found, f"no check {slug}"
        return dict(found[0])

    def pings(self, slug: str) -> List[Tuple[str, Optional[str], Optional[str], int]]:
        """(kind, rid, body, at ms) of the check's pings, in the order they were stored."""
        check_id = self.check(slug)["id"]
        return [(r[0], r[1], r[2], r[3]) for r in self.server.db_rows(
            "SELECT kind, rid, body, at FROM pings WHERE check_id = ? ORDER BY id", check_id)]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("server") / "home").start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def project(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("sdk-project")
    (root / "costs_task.py").write_text(COSTS_TASK)
    (root / "exits.py").write_text(EXITS)
    (root / ".env").write_text("SDK_TEST_SETTING=value-not-printed\n")
    register(server, root, PROJECT_MANIFEST)
    return Project(server, "sdk", root, server.project_token("sdk"))


@pytest.fixture(autouse=True)
def _no_agent_os_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests choose their connection themselves: nothing leaks in from the shell, and the
    default spool of a test is its own."""
    for k in list(os.environ):
        if k.startswith("AGENT_OS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AGENT_OS_SPOOL", str(tmp_path / "default-spool"))
