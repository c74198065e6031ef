"""The demo (``agent-os demo``) on a free 127.0.0.1 port, with a night's worth of runs, and MCP
sessions to it made by the official Python ``mcp`` client over both transports.

``AGENT_OS_BIN`` names the binary (default ``target/debug/agent-os`` of this workspace).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Optional, Tuple

import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

REPO = Path(__file__).resolve().parents[4]
BIN = Path(os.environ.get("AGENT_OS_BIN", str(REPO / "target" / "debug" / "agent-os")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(method: str, url: str, token: Optional[str], body: Any = None, timeout: float = 60) -> Tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        text, status = e.read(), e.code
    return status, (json.loads(text) if text else None)


class Demo:
    """``agent-os demo`` with the runs a night leaves: a failed rebalance (its input's weights do
    not add up) and a market scan that reported OpenAI tokens."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_OS_") and k not in ("DATABASE_URL", "PORT")}
        self.err = home.with_suffix(".err")
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [str(BIN), "demo", "--home", str(home), "--bind", f"127.0.0.1:{self.port}"],
                stdout=subprocess.DEVNULL, stderr=err, env=env,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"agent-os demo exited with {self.proc.returncode}: {self.log()}")
            if (home / "client.json").exists() and self._projects() >= 3:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the demo did not register its projects within 60s: {self.log()}")
            time.sleep(0.1)
        self.admin = json.loads((home / "client.json").read_text())["token"]

    def _projects(self) -> int:
        try:
            token = json.loads((self.home / "client.json").read_text())["token"]
            status, body = api("GET", self.url + "/api/v1/projects", token, timeout=2)
            return len(body) if status == 200 else 0
        except (OSError, ValueError, KeyError):
            return 0

    def log(self) -> str:
        return self.err.read_text(errors="replace")[-4000:]

    def call(self, method: str, path: str, body: Any = None, token: Optional[str] = None) -> Any:
        status, answer = api(method, self.url + path, token or self.admin, body)
        assert 200 <= status < 300, f"{method} {path}: {status} {answer}"
        return answer

    def run(self, project: str, task: str, input: Dict[str, Any]) -> Dict[str, Any]:
        run = self.call("POST", "/api/v1/runs", {"project": project, "task": task, "input": input})
        return self.call("GET", f"/api/v1/runs/{run['id']}/wait?timeout=2m")  # type: ignore[no-any-return]

    def token(self, project: str) -> str:
        return self.call("POST", "/api/v1/tokens", {"project": project, "name": "mcp-test"})["token"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not BIN.exists():
        pytest.fail(f"no agent-os binary at {BIN}: run `cargo build -p agent-os`, or set AGENT_OS_BIN")
    d = Demo(tmp_path_factory.mktemp("mcp") / "home")
    try:
        d.failed = d.run("trading", "rebalance", {"target": {"BTC": 0.7, "ETH": 0.7}})
        assert d.failed["status"] == "failed", d.failed
        d.scan = d.run("trading", "scan_market", {"symbols": ["BTC", "ETH"]})
        assert d.scan["status"] == "succeeded", d.scan
        yield d
    finally:
        d.stop()


@contextlib.asynccontextmanager
async def session(demo: Demo, transport: str, token: Optional[str] = None) -> AsyncIterator[ClientSession]:
    """An initialized MCP session with ``token`` (the admin's by default), as a client
    configured from docs/mcp.md makes it."""
    token = token or demo.admin
    if transport == "stdio":
        env = {"PATH": os.environ.get("PATH", ""), "AGENT_OS_URL": demo.url, "AGENT_OS_TOKEN": token}
        params = StdioServerParameters(command=str(BIN), args=["mcp"], env=env)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                yield s
    else:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=330)) as http:
            async with streamable_http_client(demo.url + "/mcp", http_client=http) as streams:
                read, write = streams[0], streams[1]
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    yield s
