"""``python3 -m agent_os`` for shell projects, against the real server."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Tuple

from conftest import SDK, Project, free_port


def cli(env: Dict[str, str], *args: str, stdin: bytes = b"") -> Tuple[int, str, str]:
    full = {"PATH": os.environ["PATH"], "PYTHONPATH": str(SDK), **env}
    done = subprocess.run([sys.executable, "-m", "agent_os", *args], input=stdin, capture_output=True, env=full, timeout=60)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_shell_reports_reach_agent_os(project: Project, tmp_path: Path) -> None:
    env = {"AGENT_OS_URL": project.server.url, "AGENT_OS_TOKEN": project.token, "AGENT_OS_PROJECT": "sdk",
           "AGENT_OS_SPOOL": str(tmp_path)}
    marker = uuid.uuid4().hex
    code, key, err = cli(env, "cost", "openai", "--amount", "0.0042", "--model", "gpt-4o-mini",
                         "--tokens-in", "10", "--tokens-out", "2", "--key", f"cli-{marker}")
    assert (code, key.strip()) == (0, f"cli-{marker}"), err
    stored = [c for c in project.server.costs("sdk") if c["idempotency_key"] == f"cli-{marker}"]
    assert [(c["amount"], c["tokens_in"]) for c in stored] == [("0.0042", 10)]

    assert cli(env, "emit", "sdk.cli_event", f'{{"marker": "{marker}"}}')[0] == 0
    found = project.server.api("GET", "/api/v1/events?type=sdk.cli_event&project=sdk", expect=200)
    assert [e["data"] for e in found if e["data"].get("marker") == marker] == [{"marker": marker}]

    assert cli(env, "notify", "From the shell", f"body {marker}", "--severity", "warning", "--tag", "cli")[0] == 0
    notes = project.server.api("GET", "/api/v1/notifications?project=sdk", expect=200)
    assert [(n["title"], n["severity"], n["tags"]) for n in notes if marker in (n["body"] or "")] == [
        ("From the shell", "warning", ["cli"])]

    assert cli(env, "ping", "cli", "start", "--rid", marker)[0] == 0
    assert cli(env, "ping", "cli", "0", "--rid", marker, "--body", "-", stdin=b"all done\n")[0] == 0
    assert [(k, r, b) for k, r, b, _ in project.pings("cli")][-2:] == [("start", marker, None), ("exit 0", marker, "all done\n")]
    assert project.check("cli")["state"] == "up"
    code, out, _ = cli(env, "flush")
    assert code == 0 and out.startswith("sent 0, dropped 0, waiting 0")


def test_a_shell_report_never_fails_the_script_and_flush_sends_it_later(project: Project, tmp_path: Path) -> None:
    away = {"AGENT_OS_URL": f"http://127.0.0.1:{free_port()}", "AGENT_OS_TOKEN": project.token,
            "AGENT_OS_PROJECT": "sdk", "AGENT_OS_SPOOL": str(tmp_path)}
    code, _, err = cli(away, "cost", "openai", "--amount", "0.01")
    assert code == 0 and "reports are kept in" in err
    code, out, _ = cli(away, "flush")
    assert code == 1 and "waiting 1" in out
    code, _, err = cli(away, "cost", "openai", "--amount", "0.1.2")
    assert code == 2 and "not a decimal number" in err
