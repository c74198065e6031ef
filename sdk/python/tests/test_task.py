"""The task contract, run as Agent OS runs a command task: input on stdin, outputs in the file
AGENT_OS_OUTPUT names, and the exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest

from conftest import PRELUDE

DECORATED = PRELUDE + """\
mode = sys.argv[1]

@agent_os.task
def main(input):
    print("progress: started", flush=True)
    if mode == "bad":
        raise agent_os.BadInput("symbols must be a list")
    if mode == "crash":
        raise RuntimeError("exchange API returned 503")
    if mode == "not-json":
        return {"when": object()}
    return {"echo": input, "run": agent_os.run_id(), "attempt": agent_os.attempt()}

main.main()
"""

CONTEXT = PRELUDE + """\
with agent_os.task_context() as t:
    if t.input.get("fail"):
        raise agent_os.DoNotRetry("told to fail")
    t.outputs["n"] = len(t.input)
"""


def run(tmp_path: Path, script: str, args: Tuple[str, ...], stdin: bytes, env: Optional[Dict[str, str]] = None) -> Tuple[int, Optional[dict], str]:
    path = tmp_path / "task.py"
    path.write_text(script)
    out = tmp_path / "outputs.json"
    if out.exists():
        out.unlink()
    full = {"PATH": os.environ["PATH"], "AGENT_OS_OUTPUT": str(out), **(env or {})}
    done = subprocess.run([sys.executable, str(path), *args], input=stdin, capture_output=True, env=full, timeout=30)
    outputs = json.loads(out.read_text()) if out.exists() and out.read_text() else None
    return done.returncode, outputs, done.stderr.decode()


def test_a_decorated_task_succeeds_with_its_outputs_in_the_file(tmp_path: Path) -> None:
    code, outputs, _ = run(tmp_path, DECORATED, ("ok",), b'{"symbols": ["BTC"]}',
                           {"AGENT_OS_RUN_ID": "run-1", "AGENT_OS_ATTEMPT": "3"})
    assert code == 0
    assert outputs == {"echo": {"symbols": ["BTC"]}, "run": "run-1", "attempt": 3}


def test_empty_stdin_is_an_empty_input(tmp_path: Path) -> None:
    code, outputs, _ = run(tmp_path, DECORATED, ("ok",), b"")
    assert code == 0 and outputs is not None and outputs["echo"] == {}


@pytest.mark.parametrize("stdin", [b"[1, 2]", b"not json", b'"text"'])
def test_input_that_is_not_a_json_object_exits_78(tmp_path: Path, stdin: bytes) -> None:
    code, outputs, err = run(tmp_path, DECORATED, ("ok",), stdin)
    assert code == 78 and outputs is None
    assert "JSON object" in err or "not JSON" in err


def test_do_not_retry_exits_78_with_the_reason(tmp_path: Path) -> None:
    code, outputs, err = run(tmp_path, DECORATED, ("bad",), b"{}")
    assert code == 78 and outputs is None
    assert "BadInput: symbols must be a list (not retried)" in err


def test_any_other_exception_exits_1_with_the_traceback(tmp_path: Path) -> None:
    code, outputs, err = run(tmp_path, DECORATED, ("crash",), b"{}")
    assert code == 1 and outputs is None
    assert "Traceback (most recent call last)" in err and "RuntimeError: exchange API returned 503" in err


def test_outputs_that_are_not_json_exit_78(tmp_path: Path) -> None:
    code, outputs, err = run(tmp_path, DECORATED, ("not-json",), b"{}")
    assert code == 78 and outputs is None and "not JSON" in err


def test_the_context_manager_keeps_the_same_contract(tmp_path: Path) -> None:
    assert run(tmp_path, CONTEXT, (), b'{"a": 1, "b": 2}')[:2] == (0, {"n": 2})
    code, outputs, err = run(tmp_path, CONTEXT, (), b'{"fail": true}')
    assert (code, outputs) == (78, None) and "told to fail" in err
    assert run(tmp_path, CONTEXT, (), b"42")[0] == 78
