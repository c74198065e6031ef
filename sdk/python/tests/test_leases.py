"""Leases on the ``openai`` resource (concurrency 1): one holder at a time across threads and
processes, renewal while held, release on the way out, and clear errors when there is none."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Tuple

import pytest

import agent_os
from conftest import PRELUDE, Project, free_port, wait_for

HOLDER = PRELUDE + """\
import json, time
client = agent_os.Client(sys.argv[1], sys.argv[2], project="sdk", spool=False)
spans = []
for _ in range(2):
    with client.lease("openai", ttl=10, wait=60, label="holder process"):
        start = time.time()
        time.sleep(0.1)
        spans.append((start, time.time()))
print(json.dumps(spans))
"""


def holders(project: Project) -> list:
    resources = project.server.api("GET", "/api/v1/resources", expect=200)
    return [h for r in resources if r["name"] == "openai" for h in r["holders"]]


def test_only_one_holder_at_a_time_across_threads_and_processes(project: Project, tmp_path: Path) -> None:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    procs = [subprocess.Popen([sys.executable, str(script), project.server.url, project.token], stdout=subprocess.PIPE)
             for _ in range(2)]
    spans: List[Tuple[float, float]] = []
    lock = threading.Lock()

    def hold() -> None:
        client = project.client(spool=False)
        for _ in range(2):
            with client.lease("openai", ttl=10, wait=60, label="holder thread"):
                start = time.time()
                time.sleep(0.1)
                with lock:
                    spans.append((start, time.time()))

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        spans.extend(tuple(s) for s in json.loads(out))  # type: ignore[misc]
    assert len(spans) == 8
    spans.sort()
    for (_, end), (next_start, _) in zip(spans, spans[1:]):
        assert next_start >= end, f"two holders at once: {spans}"
    assert holders(project) == []


def test_a_lease_is_renewed_while_held_and_released_on_an_exception(project: Project) -> None:
    client = project.client(spool=False)
    with pytest.raises(RuntimeError, match="inside the lease"):
        with client.lease("openai", ttl=1, wait=30, label="renewed") as lease:
            first = lease.expires_at
            assert [h["id"] for h in holders(project)] == [lease.id]
            wait_for("a renewal", lambda: lease.expires_at != first and lease.expires_at, timeout=10)
            assert not lease.lost and [h["expires_at"] for h in holders(project)] != [first]
            raise RuntimeError("inside the lease")
    assert holders(project) == []


def test_no_lease_to_be_had_raises_lease_unavailable_with_the_servers_reason(project: Project) -> None:
    holder = project.client(spool=False)
    other = project.client(spool=False)
    with holder.lease("openai", ttl=30, wait=10, label="long job"):
        with pytest.raises(agent_os.LeaseUnavailable) as e:
            with other.lease("openai", wait=0):
                pytest.fail("two holders of a resource of concurrency 1")
    assert e.value.status == 409 and "waiting for openai" in e.value.reason
    assert "long job" in str(e.value)


def test_an_unknown_resource_and_an_absent_server_are_told_apart(project: Project) -> None:
    with pytest.raises(agent_os.ApiError) as e:
        with project.client(spool=False).lease("no-such-resource", wait=0):
            pass
    assert e.value.status == 404 and "openai" in e.value.message
    away = agent_os.Client(f"http://127.0.0.1:{free_port()}", project.token)
    with pytest.raises(agent_os.AgentOSUnavailable, match="never spooled"):
        with away.lease("openai", wait=0):
            pass
    assert away.spool is None or not away.spool.pending()
