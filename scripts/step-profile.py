#!/usr/bin/env python3
"""Where a workflow step's time goes: runs a 40-step chain of `true` on a real `agent-os serve`
with the engine's `timeline` trace events switched on, and prints the median time between the
hand-off points of a step, from its task run claimed to the next step's claimed (spawned, exited,
recorded, announced, seen by the workflow, the next step decided and queued), in the order they
happen.

    scripts/step-profile.py [--bin target/release/agent-os] [--database-url URL] [--runs 5]

Standard library only. The numbers are wall-clock medians over every step of every run after a
warm-up run; see docs/benchmarks.md for the figures and what they mean.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime

CHAIN = 40
POINTS = ["decided", "queued", "claimed", "spawned", "exited", "recorded", "announced", "seen"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, token, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def stamp(line):
    m = re.match(r"(\S+Z)", line)
    if not m:
        return None
    return datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp() * 1000.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/agent-os")
    ap.add_argument("--database-url")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="aos-profile-")
    project = os.path.join(home, "bench")
    os.makedirs(project)
    with open(os.path.join(project, "agent-os.yaml"), "w") as f:
        f.write('name: bench\ntasks:\n  noop:\n    run: ["true"]\n')
    token = "aos_profile_" + os.urandom(16).hex()
    port = free_port()
    log_path = os.path.join(home, "serve.log")
    cmd = [args.bin, "serve", "--home", home, "--bind", f"127.0.0.1:{port}"]
    if args.database_url:
        cmd += ["--database-url", args.database_url]
    env = dict(os.environ, AGENT_OS_ADMIN_TOKEN=token, AGENT_OS_LOG="warn,timeline=trace", NO_COLOR="1")
    for k in ("AGENT_OS_DATABASE_URL", "DATABASE_URL", "AGENT_OS_PUBLIC_URL"):
        env.pop(k, None)
    log = open(log_path, "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        call(base + "/api/v1/projects", token, "POST", {"path": project})
        steps = "".join(
            f"  - {{ id: s{i}, run: bench.noop }}\n" if i == 0 else f"  - {{ id: s{i}, needs: [s{i-1}], run: bench.noop }}\n"
            for i in range(CHAIN)
        )
        with open(os.path.join(home, "workflows", "chain.yaml"), "w") as f:
            f.write("name: chain\non:\n  manual: {}\nsteps:\n" + steps)
        call(base + "/api/v1/workflows/reload", token, "POST", {})
        totals = []
        for i in range(args.runs + 1):
            run = call(base + "/api/v1/workflows/chain/runs", token, "POST", {"inputs": {}})
            while True:
                r = call(base + f"/api/v1/workflows/runs/{run['id']}", token)
                if r["status"] not in ("queued", "running"):
                    break
                time.sleep(0.02)
            if r["status"] != "succeeded":
                sys.exit(f"the chain ended {r['status']}: {r.get('error')}")
            if i == 0:
                # The warm-up's events are left out.
                log.flush()
                warm = os.path.getsize(log_path)
                continue
            at = lambda k: datetime.fromisoformat(r[k].replace("Z", "+00:00")).timestamp() * 1000.0
            totals.append(at("finished_at") - at("created_at"))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()

    by_run = {}
    with open(log_path) as f:
        f.seek(warm)
        for line in f:
            # e.g. `2026-12-06T14:01:02.123456Z TRACE timeline: exited run=01a2…`
            at = stamp(line)
            run = re.search(r"run=(\S+)", line)
            point = re.search(r"timeline: ([a-z]+)", line)
            if at is not None and run and point and point.group(1) in POINTS:
                by_run.setdefault(run.group(1), {})[point.group(1)] = at
    # One step's cycle: its own points, then the next step's up to its claim, in the order
    # they happened (the order differs between versions of the engine: the hand-off records a
    # step's end after deciding the next one).
    runs = sorted((v for v in by_run.values() if "claimed" in v and "exited" in v), key=lambda v: v["claimed"])
    phases = {}
    order = None
    for cur, nxt in zip(runs, runs[1:]):
        if not 0 <= nxt["claimed"] - cur["exited"] < 1000:
            continue  # the next run of the chain, not the next chain
        points = [(at, name) for name, at in cur.items() if name not in ("queued", "decided")]
        points += [(nxt[n], "next " + n) for n in ("decided", "queued", "claimed") if n in nxt]
        points.sort()
        # What happens after the next step's claim is off this step's path.
        points = points[: [n for _, n in points].index("next claimed") + 1]
        names = [n for _, n in points]
        if order is None:
            order = names
        if names != order:
            continue
        for (a, an), (b, bn) in zip(points, points[1:]):
            phases.setdefault(f"{an} → {bn}", []).append(b - a)
    print(f"{len(runs)} steps in {args.runs} runs; chain p50 {statistics.median(totals):.1f} ms (server-recorded)")
    print("| phase of a step (claimed to the next step claimed) | median ms | p90 ms |")
    print("| --- | ---: | ---: |")
    whole = 0.0
    for k, v in phases.items():
        v.sort()
        med = statistics.median(v)
        whole += med
        print(f"| {k} | {med:.2f} | {v[int(len(v) * 0.9)]:.2f} |")
    print(f"| a step, sum of medians | {whole:.2f} | |")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
