#!/usr/bin/env python3
"""Checks Agent OS's JSON Schemas against the example projects and the documentation.

1. every schema under schemas/ is a valid draft 2020-12 schema;
2. every examples/projects/*/agent-os.yaml validates against the manifest schema, and passes the
   checks Agent OS makes beyond the schema (schedules name declared tasks, programs exist inside
   the project);
3. each example project, copied to a scratch directory, has its tasks run once and its probes
   asked with proper requests, in the scrubbed environment Agent OS gives them; every answer is
   validated against its response schema;
4. every examples/workflows/*.yaml validates against the workflow schema, and passes the checks
   Agent OS makes beyond the schema (the file is named after the workflow, steps run tasks the
   example projects declare, `needs` names steps of the same workflow);
5. the JSON and YAML examples in docs/ validate, and the signature check in
   docs/plugin-protocol.md accepts good signatures and refuses bad ones;
6. deliberately bad documents are rejected.

Needs the `jsonschema` and `PyYAML` packages (pip install jsonschema pyyaml). Exits non-zero
when anything fails; the last line is "N passed, M failed".
"""

import base64
import hashlib
import hmac
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import yaml
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource
except ImportError as e:
    sys.exit(f"missing Python package ({e.name}): pip install jsonschema pyyaml")

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
EXAMPLES = ROOT / "examples" / "projects"
WORKFLOWS = ROOT / "examples" / "workflows"
DOCS = ROOT / "docs"

# Inputs for tasks that cannot run on {}.
SAMPLE_INPUTS = {
    ("cortana", "query_memories"): {"query": "BTC volatility", "limit": 3},
    ("cortana", "summarize"): {"memories": [{"id": "m001", "text": "BTC volatility jumps around CPI releases."}]},
    ("trading", "scan_market"): {"symbols": ["BTC", "ETH"], "force_spike": "ETH"},
    ("image-workflow", "process_batch"): {"count": 3},
}
PROBE_OPS = {"status": "get_status", "cost": "report_cost", "schedule": "get_schedule"}
ANSWER_SCHEMAS = {
    "get_status": "plugin/status-response.schema.json",
    "report_cost": "plugin/cost-response.schema.json",
    "get_schedule": "plugin/schedule-response.schema.json",
}

passed = 0
failed = 0


def check(ok, label, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok    {label}")
    else:
        failed += 1
        print(f"FAIL  {label}")
        for line in str(detail).splitlines()[:12]:
            print(f"      {line}")
    return ok


# --- schemas ------------------------------------------------------------------------------

def load_schemas():
    schemas, resources = {}, []
    for path in sorted(SCHEMAS.rglob("*.schema.json")):
        name = path.relative_to(SCHEMAS).as_posix()
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            check(False, f"schema {name} is valid", e)
            continue
        check("$id" in schema, f"schema {name} is valid draft 2020-12 with an $id")
        schemas[name] = schema
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return schemas, Registry().with_resources(resources)


SCHEMA_DOCS, REGISTRY = load_schemas()


def problems(schema_name, document):
    """Validation errors of `document`, as text lines (empty when valid)."""
    validator = Draft202012Validator(SCHEMA_DOCS[schema_name], registry=REGISTRY, format_checker=FormatChecker())
    lines = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(document)"
        lines.append(f"{where}: {error.message}")
    return lines


def expect_valid(schema_name, document, label):
    errs = problems(schema_name, document)
    return check(not errs, label, "\n".join(errs))


def expect_invalid(schema_name, document, label):
    return check(bool(problems(schema_name, document)), f"rejects {label}", "schema accepted it")


# --- manifests ----------------------------------------------------------------------------

def program_paths(command):
    """Relative paths a command names (items with a '/'), the way Agent OS checks them."""
    words = command if isinstance(command, list) else shlex.split(command)[:1]
    return [w for w in words if "/" in w and not w.startswith("/")]


def check_manifest(project_dir):
    name = project_dir.name
    path = project_dir / "agent-os.yaml"
    try:
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        check(False, f"{name}: agent-os.yaml parses", e)
        return None
    expect_valid("manifest.schema.json", manifest, f"{name}: agent-os.yaml matches the manifest schema")
    check(manifest.get("name") == name, f"{name}: manifest name matches its directory")

    tasks = manifest.get("tasks", {})
    unknown = [s["task"] for s in manifest.get("schedules", []) if s.get("task") not in tasks]
    check(not unknown, f"{name}: schedules name declared tasks", f"unknown: {unknown}")

    root = project_dir.resolve()
    commands = [t.get("run") for t in tasks.values()]
    commands += [manifest[p].get("run") for p in PROBE_OPS if p in manifest]
    bad = []
    for command in filter(None, commands):
        for rel in program_paths(command):
            target = (project_dir / rel).resolve()
            if root not in target.parents or not target.is_file():
                bad.append(f"{rel}: missing or outside the project")
            elif isinstance(command, str) and command.split()[0] == rel and not os.access(target, os.X_OK):
                bad.append(f"{rel}: run directly by the shell but not executable")
    check(not bad, f"{name}: programs exist inside the project", "\n".join(bad))

    ignored = (project_dir / ".gitignore").read_text(encoding="utf-8").split() if (project_dir / ".gitignore").exists() else []
    check(".env" in ignored, f"{name}: .gitignore keeps .env out of git")
    check((project_dir / ".env.example").is_file(), f"{name}: has a .env.example")
    return manifest


# --- workflows ----------------------------------------------------------------------------

class Yaml12Loader(yaml.SafeLoader):
    """Reads YAML as Agent OS reads workflows: only true/false are booleans, so `on:` is a key."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))


def load_workflow(text):
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def check_workflow(path, tasks):
    """`tasks` maps each example project to its declared task names."""
    label = f"workflows/{path.name}"
    try:
        workflow = load_workflow(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        check(False, f"{label} parses", e)
        return
    if not expect_valid("workflow.schema.json", workflow, f"{label} matches the workflow schema"):
        return
    check(workflow["name"] == path.stem, f"{label}: the workflow is named after its file")
    runs = [s["run"].strip() for s in workflow["steps"] if "run" in s]
    unknown = [r for r in runs if r.partition(".")[2] not in tasks.get(r.partition(".")[0], ())]
    check(runs and not unknown, f"{label}: steps run tasks the example projects declare", f"unknown: {unknown}")
    ids = [s["id"] for s in workflow["steps"]]
    needs = [n for s in workflow["steps"] for n in ([s["needs"]] if isinstance(s.get("needs"), str) else s.get("needs", []))]
    check(len(set(ids)) == len(ids) and set(needs) <= set(ids), f"{label}: step ids are unique and needs name them",
          f"ids {ids}, needs {needs}")


# --- running tasks and probes -------------------------------------------------------------

def base_env():
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def argv_of(command):
    return command if isinstance(command, list) else ["/bin/sh", "-c", command]


def run_task(workdir, project, task, spec, attempt_dir):
    output = attempt_dir / f"{task}.outputs.json"
    env = base_env() | {
        "AGENT_OS_PROJECT": project,
        "AGENT_OS_TASK": task,
        "AGENT_OS_RUN_ID": f"check-{task}",
        "AGENT_OS_ATTEMPT": "1",
        "AGENT_OS_OUTPUT": str(output),
        "AGENT_OS_PROTOCOL": "1",
    }  # no AGENT_OS_URL/TOKEN: cost reporting must degrade to a warning
    stdin = json.dumps(SAMPLE_INPUTS.get((project, task), {}))
    try:
        proc = subprocess.run(argv_of(spec["run"]), cwd=workdir, env=env, input=stdin, capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        check(False, f"{project}: task {task} finishes within 60s")
        return
    if not check(proc.returncode == 0, f"{project}: task {task} succeeds on its sample input",
                 f"exit {proc.returncode}\n{proc.stderr[-800:]}"):
        return
    if output.exists() and output.stat().st_size:
        try:
            outputs = json.loads(output.read_text(encoding="utf-8"))
            check(isinstance(outputs, dict), f"{project}: task {task} writes a JSON object as outputs")
        except ValueError as e:
            check(False, f"{project}: task {task} writes a JSON object as outputs", e)


def ask_probe(workdir, project, field, probe, since=None):
    op = PROBE_OPS[field]
    request = {"protocol": 1, "op": op, "project": project, "since": since}
    expect_valid("plugin/probe-request.schema.json", request, f"{project}: {op} request matches its schema")
    env = base_env() | {"AGENT_OS_URL": "http://127.0.0.1:9", "AGENT_OS_PROJECT": project, "AGENT_OS_PROTOCOL": "1"}
    try:
        proc = subprocess.run(argv_of(probe["run"]), cwd=workdir, env=env, input=json.dumps(request),
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        check(False, f"{project}: {op} probe answers within 30s")
        return None
    if not check(proc.returncode == 0, f"{project}: {op} probe exits 0", f"exit {proc.returncode}\n{proc.stderr[-800:]}"):
        return None
    try:
        answer = json.loads(proc.stdout)
    except ValueError as e:
        check(False, f"{project}: {op} probe prints one JSON document", f"{e}\n{proc.stdout[:400]}")
        return None
    expect_valid(ANSWER_SCHEMAS[op], answer, f"{project}: {op} answer (since={since!r}) matches its schema")
    return answer


def exercise(project_dir, manifest):
    project = manifest["name"]
    with tempfile.TemporaryDirectory(prefix=f"agent-os-check-{project}-") as scratch:
        workdir = Path(scratch) / project
        # Links are followed, as the demo's copy does: each project links the agent_os package.
        shutil.copytree(project_dir, workdir, symlinks=False,
                        ignore=shutil.ignore_patterns("var", "backups", "inbox", "__pycache__", ".env"))
        attempt_dir = Path(scratch) / "attempts"
        attempt_dir.mkdir()

        if "status" in manifest:
            ask_probe(workdir, project, "status", manifest["status"])
        for task, spec in manifest.get("tasks", {}).items():
            run_task(workdir, project, task, spec, attempt_dir)
        if "status" in manifest:
            answer = ask_probe(workdir, project, "status", manifest["status"])
            if answer:
                check(answer.get("status") == "ok", f"{project}: status is ok after a fresh run of every task",
                      json.dumps(answer))
        if "schedule" in manifest:
            ask_probe(workdir, project, "schedule", manifest["schedule"])
        if "cost" in manifest:
            first = ask_probe(workdir, project, "cost", manifest["cost"])
            if first:
                records = first.get("records", [])
                check(records, f"{project}: cost probe returns the costs the tasks logged")
                keys = [r.get("idempotency_key") for r in records]
                check(all(keys) and len(set(keys)) == len(keys), f"{project}: cost records have distinct idempotency keys",
                      keys)
                # The tasks push the very same records through POST /api/v1/costs.
                for i, record in enumerate(records):
                    expect_valid("plugin/cost-record.schema.json", record,
                                 f"{project}: cost record {i} is also a valid API push")
                again = ask_probe(workdir, project, "cost", manifest["cost"], since=first.get("cursor"))
                if again is not None:
                    check(again.get("records") == [], f"{project}: cost probe returns nothing new after its cursor",
                          json.dumps(again)[:400])


# --- documentation ------------------------------------------------------------------------

def fenced_blocks(path, language):
    text = path.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def plugin_schema_for(document):
    """Which schema a JSON example in the protocol document is an instance of."""
    if "op" in document:
        return "plugin/probe-request.schema.json"
    if "run_id" in document:
        return "plugin/task-request.schema.json"
    if "schedules" in document:
        return "plugin/schedule-response.schema.json"
    if "cursor" in document:
        return "plugin/cost-response.schema.json"
    if document.get("status") in ("ok", "degraded", "down"):
        return "plugin/status-response.schema.json"
    if document.get("status") in ("succeeded", "failed"):
        return "plugin/task-response.schema.json"
    if "service" in document or "records" in document:
        return "plugin/cost-record.schema.json"
    return None


def check_docs():
    for i, block in enumerate(fenced_blocks(DOCS / "workflows.md", "yaml")):
        if block.startswith("# workflows/"):
            name = block.splitlines()[0].removeprefix("# ")
            expect_valid("workflow.schema.json", load_workflow(block), f"docs/workflows.md: {name} is valid")

    for i, block in enumerate(fenced_blocks(DOCS / "manifest.md", "yaml")):
        if block.startswith("# agent-os.yaml"):
            expect_valid("manifest.schema.json", yaml.safe_load(block), f"docs/manifest.md: full example {i} is valid")

    protocol = DOCS / "plugin-protocol.md"
    for i, block in enumerate(fenced_blocks(protocol, "json")):
        try:
            documents = [json.loads(block)]
        except ValueError:
            documents = [json.loads(line) for line in block.splitlines() if line.strip()]
        for j, document in enumerate(documents):
            label = f"docs/plugin-protocol.md: JSON example {i}.{j}"
            schema = plugin_schema_for(document)
            if check(schema is not None, f"{label} is a protocol document", document):
                expect_valid(schema, document, f"{label} matches {schema}")
    for block in fenced_blocks(protocol, "http"):
        body = block.split("\n\n", 1)[1]
        expect_valid("plugin/cost-record.schema.json", json.loads(body), "docs/plugin-protocol.md: cost push example")

    code = fenced_blocks(protocol, "python")
    if not check(len(code) == 1, "docs/plugin-protocol.md: has one Python verification example"):
        return
    namespace = {}
    exec(compile(code[0], "plugin-protocol.md", "exec"), namespace)  # noqa: S102 - our own doc
    verify = namespace["verify_agent_os_request"]
    secret = "whsec_" + base64.b64encode(b"fake signing key for the check!!").decode()
    key = base64.b64decode(secret.removeprefix("whsec_"))

    def headers(msg_id, stamp, body, sign_key=key):
        mac = hmac.new(sign_key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        return {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
                "webhook-signature": "v1," + base64.b64encode(mac).decode()}

    body = b'{"protocol":1,"project":"trading","task":"scan_market","run_id":"r1","attempt":1,"input":{}}'
    now = int(time.time())
    check(verify(secret, headers("r1.1", now, body), body), "signature example accepts a good POST signature")
    check(verify(secret, headers("01JD", now, b""), b""), "signature example accepts a signed GET (empty body)")
    check(not verify(secret, headers("r1.1", now, body), body + b" "), "signature example refuses a changed body")
    check(not verify(secret, headers("r1.1", now - 600, body), body), "signature example refuses an old timestamp")
    check(not verify(secret, headers("r1.1", now, body, b"another key"), body), "signature example refuses a wrong key")
    rotated = headers("r1.1", now, body)
    rotated["webhook-signature"] = "v1,bm90IGl0 " + rotated["webhook-signature"]
    check(verify(secret, rotated, body), "signature example accepts any of several signatures")


# --- documents that must be refused -------------------------------------------------------

def with_task(task, **extra):
    return {"name": "demo", "tasks": {"job": task}, **extra}


BAD_MANIFESTS = [
    ("a misspelt field", with_task({"run": "x.sh", "timout": "5m"})),
    ("an unknown top-level field", {"name": "demo", "secrets": {}}),
    ("a missing name", {"tasks": {}}),
    ("an upper-case name", {"name": "Cortana"}),
    ("a name starting with '-'", {"name": "-demo"}),
    ("a 64-character name", {"name": "a" * 64}),
    ("a task name starting with '_'", {"name": "demo", "tasks": {"_job": {"run": "x.sh"}}}),
    ("a bare-number timeout", with_task({"run": "x.sh", "timeout": 30})),
    ("a unitless timeout string", with_task({"run": "x.sh", "timeout": "30"})),
    ("a zero duration", with_task({"run": "x.sh", "retry_delay": "0s"})),
    ("a duration with spaces", with_task({"run": "x.sh", "timeout": "1h 30m"})),
    ("21 retries", with_task({"run": "x.sh", "retries": 21})),
    ("negative retries", with_task({"run": "x.sh", "retries": -1})),
    ("a task without run (command transport)", with_task({"timeout": "5m"})),
    ("an empty run list", with_task({"run": []})),
    ("a blank run string", with_task({"run": "  "})),
    ("an absolute env_file", {"name": "demo", "env_file": "/etc/agent-os/.env"}),
    ("an env_file with ..", {"name": "demo", "env_file": "../shared/.env"}),
    ("a lower-case key variable", {"name": "demo", "keys": {"openai_key": {"service": "openai"}}}),
    ("a key with a value", {"name": "demo", "keys": {"OPENAI_API_KEY": {"service": "openai", "value": "sk-fake"}}}),
    ("a key without service", {"name": "demo", "keys": {"OPENAI_API_KEY": {"key_name": "demo-openai"}}}),
    ("a probe without run (command transport)", {"name": "demo", "status": {"every": "1m"}}),
    ("a bare-number probe interval", {"name": "demo", "status": {"run": "s.sh", "every": 60}}),
    ("a fixed-offset time zone", with_task({"run": "x.sh"}, schedules=[{"task": "job", "cron": "0 1 * * *", "timezone": "UTC+2"}])),
    ("a numeric offset time zone", with_task({"run": "x.sh"}, schedules=[{"task": "job", "cron": "0 1 * * *", "timezone": "+02:00"}])),
    ("an unknown scheduler", with_task({"run": "x.sh"}, schedules=[{"task": "job", "cron": "0 1 * * *", "managed_by": "kubernetes"}])),
    ("a four-field cron", with_task({"run": "x.sh"}, schedules=[{"task": "job", "cron": "0 1 * *"}])),
    ("an unknown cron alias", with_task({"run": "x.sh"}, schedules=[{"task": "job", "cron": "@fortnightly"}])),
    ("a schedule without cron", with_task({"run": "x.sh"}, schedules=[{"task": "job"}])),
    ("a task run under an HTTP plugin", with_task({"run": "x.sh"}, plugin={"url": "https://demo.example.com/aos"})),
    ("a probe run under an HTTP plugin", {"name": "demo", "plugin": {"url": "https://demo.example.com/aos"}, "status": {"run": "s.sh"}}),
    ("a plugin URL that is not http(s)", {"name": "demo", "plugin": {"url": "ftp://demo.example.com"}}),
    ("a plugin with extra fields", {"name": "demo", "plugin": {"url": "https://demo.example.com", "secret": "x"}}),
]

GOOD_MANIFESTS = [
    ("the smallest manifest", {"name": "x"}),
    ("an @daily schedule in a zone", with_task({"run": ["python3", "job.py"]}, schedules=[{"task": "job", "cron": "@daily", "timezone": "Europe/Berlin"}])),
    ("a hosted task without run", with_task({"timeout": "2m"}, plugin={"url": "https://demo.example.com/aos/"})),
    ("Etc/GMT+5 (a zone name)", with_task({"run": "x.sh"}, schedules=[{"task": "job", "cron": "0 1 * * *", "timezone": "Etc/GMT+5"}])),
    ("compound durations", with_task({"run": "x.sh", "timeout": "1h30m", "kill_grace": "500ms", "retry_delay": "0m30s"})),
]

RECORD = {"service": "openai", "amount": "0.0123"}
BAD_PLUGIN_DOCUMENTS = [
    ("plugin/probe-request.schema.json", "a probe request for protocol 2", {"protocol": 2, "op": "get_status", "project": "demo"}),
    ("plugin/probe-request.schema.json", "an unknown probe op", {"protocol": 1, "op": "get_secrets", "project": "demo"}),
    ("plugin/probe-request.schema.json", "report_cost without since", {"protocol": 1, "op": "report_cost", "project": "demo"}),
    ("plugin/status-response.schema.json", "an unknown status", {"status": "fine"}),
    ("plugin/status-response.schema.json", "a status answer without status", {"message": "all good"}),
    ("plugin/status-response.schema.json", "details that are not an object", {"status": "ok", "details": "none"}),
    ("plugin/cost-response.schema.json", "a cost answer without records", {"cursor": "1"}),
    ("plugin/cost-response.schema.json", "a numeric cursor", {"records": [], "cursor": 7}),
    ("plugin/cost-response.schema.json", "a cost answer with a bad record", {"records": [{"service": "openai", "amount": -1}]}),
    ("plugin/schedule-response.schema.json", "a schedule in a fixed offset", {"schedules": [{"task": "a", "cron": "0 1 * * *", "timezone": "GMT+1"}]}),
    ("plugin/task-request.schema.json", "attempt 0", {"protocol": 1, "project": "d", "task": "t", "run_id": "r", "attempt": 0, "input": {}}),
    ("plugin/task-request.schema.json", "an input that is a list", {"protocol": 1, "project": "d", "task": "t", "run_id": "r", "attempt": 1, "input": []}),
    ("plugin/task-response.schema.json", "a task status 'ok'", {"status": "ok"}),
    ("plugin/task-response.schema.json", "outputs that are a list", {"status": "succeeded", "outputs": [1]}),
    ("plugin/task-response.schema.json", "retryable as a string", {"status": "failed", "retryable": "no"}),
    ("plugin/cost-record.schema.json", "an amount as a JSON number", {"service": "openai", "amount": 0.0123}),
    ("plugin/cost-record.schema.json", "a negative amount", {"service": "openai", "amount": "-1"}),
    ("plugin/cost-record.schema.json", "an amount with 10 decimals", {"service": "openai", "amount": "0.0000000001"}),
    ("plugin/cost-record.schema.json", "an amount in exponent form", {"service": "openai", "amount": "1e3"}),
    ("plugin/cost-record.schema.json", "an amount with a separator", {"service": "openai", "amount": "1,000"}),
    ("plugin/cost-record.schema.json", "a lower-case currency", RECORD | {"currency": "usd"}),
    ("plugin/cost-record.schema.json", "a record without service", {"amount": "1"}),
    ("plugin/cost-record.schema.json", "an unknown record field", RECORD | {"cost": "1"}),
    ("plugin/cost-record.schema.json", "negative tokens", RECORD | {"tokens_in": -5}),
    ("plugin/cost-record.schema.json", "a time that is not RFC 3339", RECORD | {"at": "yesterday"}),
    ("plugin/cost-record.schema.json", "metadata that is a list", RECORD | {"metadata": [1]}),
    ("plugin/cost-record.schema.json", "an empty batch", {"records": []}),
    ("plugin/cost-record.schema.json", "a batch with one bad record", {"records": [RECORD, {"service": "openai", "amount": "x"}]}),
    ("plugin/cost-record.schema.json", "a batch with an extra field", {"records": [RECORD], "project": "demo"}),
    ("plugin/cost-record.schema.json", "tokens without a model or an amount", {"service": "openai", "tokens_in": 5}),
    ("plugin/cost-record.schema.json", "a model without tokens or an amount", {"service": "openai", "model": "gpt-4o"}),
    ("plugin/cost-record.schema.json", "negative cached tokens", {"service": "openai", "model": "gpt-4o", "tokens_in": 5, "tokens_cached_in": -1}),
]
GOOD_PLUGIN_DOCUMENTS = [
    ("plugin/cost-record.schema.json", "a minimal cost record", RECORD),
    ("plugin/cost-record.schema.json", "tokens for Agent OS to price", {"service": "anthropic", "model": "claude-sonnet-4-20250514", "tokens_in": 1200, "tokens_cached_in": 1000, "tokens_out": 300, "run_id": "01936f2a-4c1e-7b3a-9d2e-5f6a7b8c9d0e"}),
    ("plugin/cost-record.schema.json", "amounts like '12', '.5', '0.000000001'", {"records": [
        {"service": "s", "amount": "12"}, {"service": "s", "amount": ".5"}, {"service": "s", "amount": "0.000000001"}]}),
    ("plugin/cost-response.schema.json", "a record with a field added later in v1", {"records": [RECORD | {"region": "eu"}], "cursor": "1"}),
    ("plugin/status-response.schema.json", "a status answer with a field added later in v1", {"status": "ok", "since": "2026-01-01"}),
    ("plugin/task-response.schema.json", "a failed task that must not be retried", {"status": "failed", "error": "bad input", "retryable": False}),
]


def workflow(*steps, **extra):
    return {"name": "demo", "on": {"manual": None}, "steps": list(steps) or [{"id": "a", "wait": "1m"}], **extra}


BAD_WORKFLOWS = [
    ("a misspelt field", workflow({"id": "a", "run": "trading.scan_market", "timout": "5m"})),
    ("a missing name", {"on": {"manual": None}, "steps": [{"id": "a", "wait": "1m"}]}),
    ("an upper-case name", workflow(name="Demo")),
    ("no trigger", workflow(on={})),
    ("an unknown trigger", workflow(on={"cron": "0 * * * *"})),
    ("no steps", {"name": "demo", "on": {"manual": None}, "steps": []}),
    ("a step without an action", workflow({"id": "a", "timeout": "5m"})),
    ("a step with two actions", workflow({"id": "a", "run": "trading.scan_market", "wait": "1m"})),
    ("`with` on an emit step", workflow({"id": "a", "emit": {"type": "demo.done"}, "with": {"x": 1}})),
    ("run without a task", workflow({"id": "a", "run": "trading"})),
    ("an upper-case step id", workflow({"id": "Scan", "wait": "1m"})),
    ("an `if` written as a template", workflow({"id": "a", "if": "{{ inputs.go }}", "wait": "1m"})),
    ("an emitted type with a star", workflow({"id": "a", "emit": {"type": "demo.*"}})),
    ("an emitted type of one part", workflow({"id": "a", "emit": {"type": "done"}})),
    ("a pattern with a star inside", workflow(on={"event": {"type": "trading*"}})),
    ("a webhook secret instead of its variable", workflow(on={"webhook": {"secret_env": "whsec_abc123"}})),
    ("an input default of the wrong type", workflow(on={"manual": {"inputs": {"n": {"type": "integer", "default": 2.5}}}})),
    ("an input without a type", workflow(on={"manual": {"inputs": {"n": {"default": 2}}}})),
    ("a dashed input name", workflow(on={"manual": {"inputs": {"max-items": {"type": "integer"}}}})),
    ("an unknown status", workflow(on={"workflow": {"name": "nightly", "status": ["crashed"]}})),
    ("a bare-number timeout", workflow(timeout=30)),
    ("a zero wait", workflow({"id": "a", "wait": "0s"})),
    ("21 attempts", workflow({"id": "a", "wait": "1m", "retry": {"attempts": 21}})),
    ("a retry without attempts", workflow({"id": "a", "wait": "1m", "retry": {"delay": "5s"}})),
    ("max_parallel 0", workflow({"id": "a", "for_each": {"items": "inputs.list", "max_parallel": 0}, "wait": "1m"})),
    ("concurrency limit 0", workflow(concurrency={"limit": 0})),
    ("an unknown on_limit", workflow(concurrency={"on_limit": "cancel"})),
    ("an unknown severity", workflow({"id": "a", "notify": {"title": "x", "severity": "urgent"}})),
    ("a notification without a title", workflow({"id": "a", "notify": {"body": "x"}})),
    ("a templated tag", workflow({"id": "a", "notify": {"title": "x", "tags": ["{{ item }}"]}})),
    ("a wait for nothing", workflow({"id": "a", "wait": {"timeout": "1h"}})),
]

GOOD_WORKFLOWS = [
    ("the smallest workflow", workflow()),
    ("several schedules", workflow(on={"schedule": [{"cron": "0 9 * * 1-5"}, {"cron": "@daily", "timezone": "Europe/Berlin"}]})),
    ("every event", workflow(on={"event": {"type": "*"}, "webhook": {"secret_env": "HOOK_SECRET"}})),
    ("a boolean if and a prefix wait", workflow({"id": "a", "if": False, "wait": {"event": {"type": "approval.*"}}})),
    ("needs as one string", workflow({"id": "a", "wait": "1m"}, {"id": "b", "needs": "a", "workflow": "other"})),
]


def check_refusals():
    for label, document in BAD_WORKFLOWS:
        expect_invalid("workflow.schema.json", document, f"workflow with {label}")
    for label, document in GOOD_WORKFLOWS:
        expect_valid("workflow.schema.json", document, f"accepts workflow: {label}")
    for label, document in BAD_MANIFESTS:
        expect_invalid("manifest.schema.json", document, f"manifest with {label}")
    for label, document in GOOD_MANIFESTS:
        expect_valid("manifest.schema.json", document, f"accepts manifest: {label}")
    for schema, label, document in BAD_PLUGIN_DOCUMENTS:
        expect_invalid(schema, document, label)
    for schema, label, document in GOOD_PLUGIN_DOCUMENTS:
        expect_valid(schema, document, f"accepts {label}")


def main():
    projects = sorted(p for p in EXAMPLES.iterdir() if (p / "agent-os.yaml").is_file()) if EXAMPLES.is_dir() else []
    check(len(projects) >= 3, "found the example projects", [p.name for p in projects])
    tasks = {}
    for project_dir in projects:
        manifest = check_manifest(project_dir)
        if manifest:
            tasks[manifest["name"]] = set(manifest.get("tasks", {}))
            exercise(project_dir, manifest)
    workflows = sorted(WORKFLOWS.glob("*.yaml")) if WORKFLOWS.is_dir() else []
    check(workflows, "found the example workflows")
    for path in workflows:
        check_workflow(path, tasks)
    check_docs()
    check_refusals()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
