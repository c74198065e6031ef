//! The HTTP API against a real in-process server: real SQLite file, real HTTP on 127.0.0.1,
//! real task processes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use agent_os_engine::testing::{eventually, nap};

mod common;
use common::*;

use agent_os_core::manifest::ProbeKind;
use agent_os_core::run::RunStatus;

fn alive(pid: i64) -> bool {
    // A zombie is not alive: it has been killed and waits only to be reaped.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()), Some("Z") | Some("X")),
        Err(_) => false,
    }
}

async fn read_pid(path: &Path) -> i64 {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} was never written", path.display());
}

#[tokio::test]
async fn every_api_call_needs_a_valid_token() {
    let s = start().await;
    let (st, v) = s.req(reqwest::Method::GET, "/api/v1/projects", None, None).await;
    assert_eq!(st, 401);
    assert_eq!(v["error"]["code"], "unauthorized");
    let (st, _) =
        s.req(reqwest::Method::GET, "/api/v1/projects", Some("aosa_not-a-real-token-000000000000"), None).await;
    assert_eq!(st, 401);
    let (st, _) = s.req(reqwest::Method::GET, "/metrics", None, None).await;
    assert_eq!(st, 401, "metrics need a token too");
    let (st, v) = s.req(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(st, 200);
    assert_eq!(v["database"], "sqlite");
    let (st, v) = s.req(reqwest::Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(st, 200);
    for path in ["/api/v1/projects", "/api/v1/runs", "/api/v1/runs/{id}/logs", "/api/v1/costs", "/api/v1/tokens"] {
        assert!(v["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    let (st, v) = s.get("/api/v1/nothing-here").await;
    assert_eq!(st, 404);
    assert_eq!(v["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_task_runs_with_its_input_and_reports_outputs_and_logs() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path());
    let reg = s.add(&root).await;
    assert_eq!(reg["project"]["name"], "fixture");
    assert_eq!(reg["signing_secret"], Value::Null);
    assert_eq!(reg["project"]["keys"][0]["key_name"], "fixture-openai");
    let run = s.run("fixture", "echo", json!({"symbol": "BTC", "n": 2})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["exit_code"], 0);
    assert_eq!(run["attempt"], 1);
    assert_eq!(run["outputs"]["echo"], json!({"symbol": "BTC", "n": 2}));
    assert_eq!(run["outputs"]["cwd"], root.canonicalize().unwrap().display().to_string());
    // `env` is a plain program (no shell, no interpreter wrapper): it shows exactly what the
    // task was given.
    let envdump = s.run("fixture", "envdump", json!({})).await;
    let log = s.log(envdump["id"].as_str().unwrap()).await;
    let mut names: Vec<&str> = log.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    names.sort();
    let allowed = [
        "AGENT_OS_ATTEMPT",
        "AGENT_OS_OUTPUT",
        "AGENT_OS_PROJECT",
        "AGENT_OS_PROTOCOL",
        "AGENT_OS_RUN_ID",
        "AGENT_OS_TASK",
        "AGENT_OS_TOKEN",
        "AGENT_OS_URL",
        "HOME",
        "LANG",
        "PATH",
        "TZ",
    ];
    for k in &names {
        assert!(allowed.contains(k), "unexpected variable {k} reached the task");
    }
    for k in ["AGENT_OS_TOKEN", "AGENT_OS_RUN_ID", "AGENT_OS_OUTPUT", "AGENT_OS_URL", "PATH"] {
        assert!(names.contains(&k), "{k} is missing: {names:?}");
    }
    assert!(run["duration_ms"].as_i64().unwrap() >= 0);
    assert_eq!(run["attempts"].as_array().unwrap().len(), 1);
    let log = s.log(run["id"].as_str().unwrap()).await;
    assert!(log.contains("got {\"n\": 2, \"symbol\": \"BTC\"}"), "{log}");
    assert!(log.contains("to stderr"), "{log}");
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path());
    s.add(&root).await;

    let (st, v) = s.post("/api/v1/runs", json!({"project": "nope", "task": "echo"})).await;
    assert_eq!(st, 404);
    assert!(v["error"]["message"].as_str().unwrap().contains("\"nope\""), "{v}");
    let (st, v) = s.post("/api/v1/runs", json!({"project": "fixture", "task": "ecko"})).await;
    assert_eq!(st, 404);
    assert!(v["error"]["message"].as_str().unwrap().contains("did you mean \"echo\"?"), "{v}");
    let (st, v) = s.post("/api/v1/runs", json!({"project": "fixture", "task": "echo", "input": [1]})).await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("input")), "{v}");
    let (st, v) = s.post("/api/v1/runs", json!({"project": "fixture", "task": "echo", "inptu": {}})).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("inptu"), "{v}");

    let resp = s
        .http
        .post(format!("{}/api/v1/runs", s.url))
        .bearer_auth(&s.admin)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let resp = s
        .http
        .post(format!("{}/api/v1/runs", s.url))
        .bearer_auth(&s.admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let big = json!({"project": "fixture", "task": "echo", "input": {"x": "y".repeat(70 * 1024)}});
    let (st, v) = s.post("/api/v1/runs", big).await;
    assert_eq!(st, 413, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large");

    // Registering: duplicates, invalid manifests, escaping paths, relative paths.
    let (st, _) = s.post("/api/v1/projects", json!({"path": root.display().to_string()})).await;
    assert_eq!(st, 409);
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("agent-os.yaml"), "name: bad\ntasks:\n  a:\n    run: a.sh\n    timeout: 30\n").unwrap();
    let (st, v) = s.post("/api/v1/projects", json!({"path": bad.display().to_string()})).await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["code"], "invalid_manifest");
    assert_eq!(v["error"]["errors"][0]["line"], 5);
    assert_eq!(v["error"]["errors"][0]["path"], "tasks.a.timeout");
    std::fs::write(bad.join("agent-os.yaml"), "name: bad\ntasks:\n  a: { run: ../elsewhere/x.sh }\n").unwrap();
    let (st, v) = s.post("/api/v1/projects", json!({"path": bad.display().to_string()})).await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("outside the project"), "{v}");
    let (st, v) = s.post("/api/v1/projects", json!({"path": "relative/dir"})).await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("path")));
    let (st, v) =
        s.post("/api/v1/projects", json!({"manifest": "name: sneaky\ntasks:\n  x: { run: \"rm -rf /\" }\n"})).await;
    assert_eq!(st, 400, "the API must not register command tasks: {v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("HTTP endpoint"), "{v}");

    let (_, list) = s.get("/api/v1/projects").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "nothing was registered half-way");
    let (_, runs) = s.get("/api/v1/runs").await;
    assert!(runs["runs"].as_array().unwrap().is_empty(), "no run was queued by a bad request");
}

#[tokio::test]
async fn failures_retry_per_policy_and_exit_78_stops_retrying() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;

    let run = s.run("fixture", "fail", json!({})).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["exit_code"], 3);
    assert_eq!(run["attempt"], 3, "one try plus two retries");
    assert!(run["attempts"].as_array().unwrap().iter().all(|a| a["status"] == "failed"));
    let log = s.log(run["id"].as_str().unwrap()).await;
    assert_eq!(log.matches("failing").count(), 3, "{log}");

    let run = s.run("fixture", "no_retry", json!({})).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["attempt"], 1, "exit 78 means do not retry");
    assert!(run["error"].as_str().unwrap().contains("78"));

    let run = s.run("fixture", "flaky", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempt"], 3);

    let run = s.run("fixture", "missing", json!({})).await;
    assert_eq!(run["status"], "failed");
    assert!(run["error"].as_str().unwrap().contains("program not found"), "{run}");

    let run = s.run("fixture", "bad_outputs", json!({})).await;
    assert_eq!(run["status"], "failed");
    assert!(run["error"].as_str().unwrap().contains("JSON object"), "{run}");
}

#[tokio::test]
async fn a_timeout_kills_the_task_and_its_grandchildren() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path());
    s.add(&root).await;
    let run = s.run("fixture", "slow", json!({})).await;
    assert_eq!(run["status"], "timed_out", "{run}");
    let grandchild = read_pid(&root.join("grandchild.pid")).await;
    assert!(!alive(grandchild), "the grandchild {grandchild} outlived the timeout");
    let log = s.log(run["id"].as_str().unwrap()).await;
    assert!(log.contains("timed out after 1s"), "{log}");
}

#[tokio::test]
async fn cancel_stops_a_running_task_and_a_queued_one() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path());
    s.add(&root).await;
    let (_, run) = s.post("/api/v1/runs", json!({"project": "fixture", "task": "sleeper"})).await;
    let id = run["id"].as_str().unwrap().to_string();
    let sleeper = read_pid(&root.join("sleeper.pid")).await;
    assert!(alive(sleeper));
    let (st, v) = s.post(&format!("/api/v1/runs/{id}/cancel"), json!({})).await;
    assert_eq!(st, 200, "{v}");
    let run = s.wait(&id).await;
    assert_eq!(run["status"], "cancelled");
    assert!(!alive(sleeper), "the task's background process survived the cancel");

    // A queued run (due later, as a retry would be) is cancelled before it starts.
    let (_, run) = s.post("/api/v1/runs", json!({"project": "fixture", "task": "echo"})).await;
    let id = run["id"].as_str().unwrap();
    let (_, v) = s.post(&format!("/api/v1/runs/{id}/cancel"), json!({})).await;
    assert!(v["status"] == "cancelled" || v["status"] == "running" || v["status"] == "succeeded", "{v}");
    let (st, _) = s.post("/api/v1/runs/01234567-0000-7000-8000-000000000000/cancel", json!({})).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn secrets_in_output_are_redacted_before_storage() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let run = s.run("fixture", "secrets", json!({})).await;
    assert_eq!(run["status"], "succeeded");
    let log = s.log(run["id"].as_str().unwrap()).await;
    assert!(!log.contains("sk-proj-abcdef"), "{log}");
    assert!(!log.contains("aosr_"), "the run's own token leaked: {log}");
    assert!(!log.contains("abcdef0123456789"), "{log}");
    assert_eq!(log.matches("[REDACTED]").count(), 3, "{log}");
    // Nor anywhere in the database file.
    let db = std::fs::read(s.home.path().join("agent-os.db")).unwrap_or_default();
    let wal = std::fs::read(s.home.path().join("agent-os.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!String::from_utf8_lossy(&bytes).contains("sk-proj-abcdefghijklmnopqrstuvwxyz0123"));
    }
}

/// Secrets of every shape redaction knows, as a leaky project would print or write them.
const LEAKS: [&str; 7] = [
    "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123",
    "sk_live_51HxLeakyStripeKey0123456789",
    "WebhookT0ken_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefghijklmnopqrstuv",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsZWFreSJ9.c2lnbmF0dXJlLW9mLXRoZS1sZWFreS1qd3Q",
    "HunterTwoDbPass",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYLEAKYKEY01",
    "Aosr0nly",
];

/// A project whose task writes each of [`LEAKS`] to its log and to its outputs, and one of
/// whose tasks carries a password on its command line.
fn leaky_project(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("leaky");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        "name: leaky\ntasks:\n  leak: { run: [python3, leak.py] }\n  dump: { run: \"pg_dump postgres://app:CmdLinePass1@db/prod\" }\n",
    )
    .unwrap();
    let [openai, stripe, discord, jwt, db, aws, _] = LEAKS;
    std::fs::write(
        root.join("leak.py"),
        format!(
            r#"import json, os
lines = {{
    "openai": "{openai}",
    "stripe": "key {stripe}",
    "discord": "https://discord.com/api/webhooks/123456789012345678/{discord}",
    "jwt": "Cookie: session={jwt}",
    "db": "postgres://app:{db}@db.internal:5432/prod",
    "aws": "aws_secret_access_key = {aws}",
    "token": os.environ["AGENT_OS_TOKEN"],
}}
for line in lines.values():
    print(line)
with open(os.environ["AGENT_OS_OUTPUT"], "w") as f:
    json.dump({{"leaked": lines, "list": list(lines.values())}}, f)
"#
        ),
    )
    .unwrap();
    root
}

fn assert_no_leak(what: &str, text: &str) {
    for secret in &LEAKS[..6] {
        assert!(!text.contains(secret), "{secret} is in {what}: {text}");
    }
    assert!(!text.contains("aosr_"), "the run's token is in {what}: {text}");
}

#[tokio::test]
async fn task_outputs_are_redacted_before_they_are_stored() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&leaky_project(dir.path())).await;
    let run = s.run("leaky", "leak", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let id = run["id"].as_str().unwrap();

    let (_, shown) = s.get(&format!("/api/v1/runs/{id}")).await;
    let outputs = &shown["outputs"];
    assert_eq!(outputs["leaked"]["openai"], "[REDACTED]", "{outputs}");
    assert_eq!(outputs["leaked"]["stripe"], "key [REDACTED]");
    assert_eq!(outputs["leaked"]["discord"], "https://discord.com/api/webhooks/[REDACTED]");
    assert_eq!(outputs["leaked"]["jwt"], "Cookie: session=[REDACTED]");
    assert_eq!(outputs["leaked"]["db"], "postgres://app:[REDACTED]@db.internal:5432/prod");
    assert_eq!(outputs["leaked"]["aws"], "aws_secret_access_key = [REDACTED]");
    assert_eq!(outputs["leaked"]["token"], "[REDACTED]");
    assert_eq!(outputs["list"].as_array().map(Vec::len), Some(7), "the structure is kept: {outputs}");
    assert_no_leak("the run", &shown.to_string());
    let (_, list) = s.get("/api/v1/runs?project=leaky").await;
    assert_no_leak("the run list", &list.to_string());
    let log = s.log(id).await;
    assert_eq!(log.matches("[REDACTED]").count(), 7, "{log}");
    assert_no_leak("the log", &log);

    // Nor anywhere in the database files.
    for file in ["agent-os.db", "agent-os.db-wal"] {
        let bytes = std::fs::read(s.home.path().join(file)).unwrap_or_default();
        assert_no_leak(file, &String::from_utf8_lossy(&bytes));
    }
}

#[tokio::test]
async fn project_views_show_task_command_lines_redacted() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&leaky_project(dir.path())).await;
    for path in ["/api/v1/projects", "/api/v1/projects/leaky"] {
        let (st, v) = s.get(path).await;
        assert_eq!(st, 200, "{v}");
        let text = v.to_string();
        assert!(!text.contains("CmdLinePass1"), "{path}: {text}");
        assert!(text.contains("pg_dump postgres://app:[REDACTED]@db/prod"), "{path}: {text}");
    }
}

#[tokio::test]
async fn an_http_plugins_outputs_log_and_error_are_redacted() {
    use axum::extract::Path as UrlPath;
    use axum::routing::post;
    async fn task(UrlPath(name): UrlPath<String>) -> axum::Json<Value> {
        let [openai, stripe, _, jwt, db, ..] = LEAKS;
        axum::Json(if name == "fail" {
            json!({"status": "failed", "error": format!("cannot reach postgres://app:{db}@db/prod"), "retryable": false})
        } else {
            json!({"status": "succeeded", "outputs": {"key": stripe, "nested": [{"jwt": jwt}]}, "log": format!("using {openai}\n")})
        })
    }
    let app = axum::Router::new().route("/agent-os/tasks/{name}", post(task));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let s = start().await;
    let manifest =
        format!("name: hosted\nplugin: {{ url: http://{addr}/agent-os }}\ntasks:\n  ok: {{}}\n  fail: {{}}\n");
    let (st, reg) = s.post("/api/v1/projects", json!({"manifest": manifest})).await;
    assert_eq!(st, 201, "{reg}");
    let run = s.run("hosted", "ok", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["outputs"], json!({"key": "[REDACTED]", "nested": [{"jwt": "[REDACTED]"}]}));
    assert_eq!(s.log(run["id"].as_str().unwrap()).await, "using [REDACTED]\n");
    let failed = s.run("hosted", "fail", json!({})).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"], "cannot reach postgres://app:[REDACTED]@db/prod");
    for file in ["agent-os.db", "agent-os.db-wal"] {
        let bytes = std::fs::read(s.home.path().join(file)).unwrap_or_default();
        assert_no_leak(file, &String::from_utf8_lossy(&bytes));
    }
}

#[tokio::test]
async fn notifications_and_events_a_project_sends_are_redacted() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&leaky_project(dir.path())).await;
    let [openai, stripe, discord, ..] = LEAKS;
    let (st, n) = s
        .post(
            "/api/v1/notifications",
            json!({"project": "leaky", "title": format!("key {openai}"), "body": format!("hook https://discord.com/api/webhooks/123456789012345678/{discord}"), "severity": "warning", "dedup_key": "leak"}),
        )
        .await;
    assert_eq!(st, 201, "{n}");
    assert_eq!(n["title"], "key [REDACTED]", "{n}");
    assert_eq!(n["body"], "hook https://discord.com/api/webhooks/[REDACTED]");
    let (st, e) = s.post("/api/v1/events", json!({"type": "leaky.leaked", "data": {"stripe": stripe}})).await;
    assert_eq!(st, 201, "{e}");
    let (_, events) = s.get("/api/v1/events?type=leaky.").await;
    assert_eq!(events[0]["data"]["stripe"], "[REDACTED]", "{events}");
    let (_, incidents) = s.get("/api/v1/incidents").await;
    assert_no_leak("the incidents", &incidents.to_string());
    for file in ["agent-os.db", "agent-os.db-wal"] {
        let bytes = std::fs::read(s.home.path().join(file)).unwrap_or_default();
        assert_no_leak(file, &String::from_utf8_lossy(&bytes));
    }
}

#[tokio::test]
async fn a_long_log_keeps_its_tail_and_says_what_was_dropped() {
    let s = start_with(|c| c.log_max_bytes = 16 * 1024).await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let run = s.run("fixture", "chatty", json!({})).await;
    assert_eq!(run["status"], "succeeded");
    assert!(run["log_dropped_bytes"].as_i64().unwrap() > 100_000, "{run}");
    assert!(run["log_bytes"].as_i64().unwrap() <= 16 * 1024);
    let log = s.log(run["id"].as_str().unwrap()).await;
    assert!(log.contains("line-2999-"), "the tail is kept");
    assert!(!log.contains("line-0-"), "the head is dropped");
}

#[tokio::test]
async fn project_tokens_act_only_for_their_project() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("agent-os.yaml"), "name: other\ntasks:\n  t: { run: \"true\" }\n").unwrap();
    s.add(&other).await;
    let theirs = s.run("other", "t", json!({})).await;

    let (st, tok) = s.post("/api/v1/tokens", json!({"project": "fixture", "name": "ci"})).await;
    assert_eq!(st, 201, "{tok}");
    let token = tok["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("aosp_"));
    let t = Some(token.as_str());
    let g = reqwest::Method::GET;
    let p = reqwest::Method::POST;
    let (st, list) = s.req(g.clone(), "/api/v1/projects", t, None).await;
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "sees only its own project");
    assert_eq!(s.req(g.clone(), "/api/v1/projects/other", t, None).await.0, 403);
    assert_eq!(s.req(g.clone(), &format!("/api/v1/runs/{}", theirs["id"].as_str().unwrap()), t, None).await.0, 404);
    assert_eq!(s.req(g.clone(), "/api/v1/runs?project=other", t, None).await.0, 403);
    assert_eq!(s.req(p.clone(), "/api/v1/runs", t, Some(json!({"project": "other", "task": "t"}))).await.0, 403);
    assert_eq!(s.req(p.clone(), "/api/v1/tokens", t, Some(json!({"project": "fixture"}))).await.0, 403);
    assert_eq!(s.req(p.clone(), "/api/v1/projects", t, Some(json!({"path": "/tmp"}))).await.0, 403);
    let (st, run) = s.req(p.clone(), "/api/v1/runs", t, Some(json!({"project": "fixture", "task": "echo"}))).await;
    assert_eq!(st, 201, "{run}");
    let (_, runs) = s.req(g.clone(), "/api/v1/runs", t, None).await;
    assert!(runs["runs"].as_array().unwrap().iter().all(|r| r["project"] == "fixture"));
    let (st, v) = s
        .req(p.clone(), "/api/v1/costs", t, Some(json!({"project": "other", "service": "openai", "amount": "1"})))
        .await;
    assert_eq!(st, 403, "{v}");

    // Revoked tokens stop working.
    let (st, _) = s
        .req(reqwest::Method::DELETE, &format!("/api/v1/tokens/{}", tok["id"].as_str().unwrap()), Some(&s.admin), None)
        .await;
    assert_eq!(st, 204);
    assert_eq!(s.req(g, "/api/v1/projects", t, None).await.0, 401);
    let (_, tokens) = s.get("/api/v1/tokens").await;
    assert!(tokens.to_string().find("aosp_").is_none(), "token values are never listed");
}

#[tokio::test]
async fn a_run_token_reports_cost_for_its_run_and_expires_with_it() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let run = s.run("fixture", "cost", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let id = run["id"].as_str().unwrap();
    let (_, costs) = s.get(&format!("/api/v1/costs?run={id}")).await;
    let costs = costs.as_array().unwrap();
    assert_eq!(costs.len(), 1);
    assert_eq!(costs[0]["amount"], "0.0123");
    assert_eq!(costs[0]["project"], "fixture");
    assert_eq!(costs[0]["run_id"], id);
    assert!(s.log(id).await.contains("\"accepted\":1"), "the task saw its cost accepted");

    // Batches are all or nothing and name the bad field; duplicates count once.
    let batch = json!({"records": [
        {"project": "fixture", "service": "openai", "amount": "1.5", "idempotency_key": "a"},
        {"project": "fixture", "service": "openai", "amount": "-2", "idempotency_key": "b"}
    ]});
    let (st, v) = s.post("/api/v1/costs", batch).await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["field"], "records[1].amount");
    let (_, costs) = s.get("/api/v1/costs?project=fixture").await;
    assert_eq!(costs.as_array().unwrap().len(), 1, "nothing of the bad batch was stored");
    let one = json!({"project": "fixture", "service": "openai", "amount": "1.5", "idempotency_key": "a"});
    assert_eq!(s.post("/api/v1/costs", one.clone()).await.1["accepted"], 1);
    assert_eq!(s.post("/api/v1/costs", one).await.1["duplicates"], 1);
}

#[tokio::test]
async fn logs_stream_live_as_server_sent_events() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let (_, run) = s.post("/api/v1/runs", json!({"project": "fixture", "task": "flaky"})).await;
    let id = run["id"].as_str().unwrap();
    let mut resp = s
        .http
        .get(format!("{}/api/v1/runs/{id}/logs", s.url))
        .bearer_auth(&s.admin)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !text.contains("event: end") {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk()).await.expect("stream stalled").unwrap();
        match chunk {
            Some(b) => text.push_str(&String::from_utf8_lossy(&b)),
            None => break,
        }
    }
    assert!(text.matches("event: log").count() >= 3, "{text}");
    assert!(text.contains("attempt 3"), "{text}");
    assert!(text.contains("event: end") && text.contains("\"status\":\"succeeded\""), "{text}");
}

#[tokio::test]
async fn runs_list_filters_and_pages() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.run("fixture", "echo", json!({"i": i})).await["id"].as_str().unwrap().to_string());
    }
    s.run("fixture", "no_retry", json!({})).await;
    let (_, page) = s.get("/api/v1/runs?project=fixture&task=echo&limit=2").await;
    let got: Vec<&str> = page["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
    let next = page["next"].as_str().unwrap();
    let (_, page2) = s.get(&format!("/api/v1/runs?project=fixture&task=echo&limit=10&before={next}")).await;
    assert_eq!(page2["runs"].as_array().unwrap().len(), 3);
    assert_eq!(page2["next"], Value::Null);
    let (_, failed) = s.get("/api/v1/runs?status=failed").await;
    assert_eq!(failed["runs"].as_array().unwrap().len(), 1);
    let (st, v) = s.get("/api/v1/runs?status=done").await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("status")));
    let (st, _) = s.get("/api/v1/runs?limit=0").await;
    assert_eq!(st, 400);

    let (st, metrics) = s.get("/metrics").await;
    assert_eq!(st, 200);
    let m = metrics.as_str().unwrap();
    assert!(m.contains("agent_os_runs{status=\"succeeded\"} 5"), "{m}");
    assert!(m.contains("agent_os_runs{status=\"failed\"} 1"), "{m}");
    assert!(m.contains("agent_os_run_duration_seconds_count 6"), "{m}");
    assert!(m.contains("agent_os_http_requests_total{method=\"POST\",route=\"/api/v1/runs\",status=\"201\"} 6"), "{m}");
    assert!(m.contains("agent_os_queue_depth 0"), "{m}");
}

// On held time: the dead loop's backoff passes when the test moves the clock.
#[tokio::test(start_paused = true)]
async fn healthz_and_metrics_show_an_engine_loop_that_died_until_it_runs_again() {
    let s = start_held(|_| {}).await;
    let (st, m) = s.get("/metrics").await;
    assert_eq!(st, 200);
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains("agent_os_engine_loop_up{loop=\"dispatch\"} 1"), "{m}");
    assert!(m.contains("agent_os_engine_loop_restarts_total{loop=\"dispatch\"} 0"), "{m}");

    s.engine.inject_panic(agent_os_engine::Loop::Dispatch);
    let health = eventually("healthz should say the loop is down", Duration::from_secs(10), async || {
        let (st, v) = s.req(reqwest::Method::GET, "/healthz", None, None).await;
        (st == 503).then_some(v)
    })
    .await;
    assert_eq!(health["status"], "engine loop down, to be started again: dispatch", "{health}");
    let (_, m) = s.get("/metrics").await;
    assert!(m.as_str().unwrap().contains("agent_os_engine_loop_up{loop=\"dispatch\"} 0"), "{m}");

    tokio::time::advance(Duration::from_secs(1)).await;
    eventually("healthz should be ok again", Duration::from_secs(10), async || {
        let (st, _) = s.req(reqwest::Method::GET, "/healthz", None, None).await;
        (st == 200).then_some(())
    })
    .await;
    let (_, m) = s.get("/metrics").await;
    let m = m.as_str().unwrap();
    assert!(m.contains("agent_os_engine_loop_up{loop=\"dispatch\"} 1"), "{m}");
    assert!(m.contains("agent_os_engine_loop_restarts_total{loop=\"dispatch\"} 1"), "{m}");
}

#[tokio::test]
async fn probes_store_status_and_costs_without_counting_twice() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let p = s.engine.project("fixture").await.unwrap();
    s.engine.run_probe(&p, ProbeKind::Status).await;
    s.engine.run_probe(&p, ProbeKind::Cost).await;
    s.engine.run_probe(&p, ProbeKind::Cost).await;
    let (_, view) = s.get("/api/v1/projects/fixture").await;
    let probes = view["probes"].as_array().unwrap();
    let status = probes.iter().find(|x| x["kind"] == "status").unwrap();
    assert_eq!(status["status"], "degraded");
    assert_eq!(status["message"], "disk 91% full");
    let cost = probes.iter().find(|x| x["kind"] == "cost").unwrap();
    assert_eq!(cost["ok"], true, "{cost}");
    // get_schedule was asked at registration: its valid schedules join the manifest's.
    let (_, schedules) = s.get("/api/v1/schedules?project=fixture").await;
    let schedules = schedules.as_array().unwrap();
    assert_eq!(schedules.len(), 2, "{schedules:?} {view}");
    assert_eq!(
        (schedules[0]["source"].as_str(), schedules[0]["timezone"].as_str()),
        (Some("manifest"), Some("Europe/Berlin"))
    );
    assert_eq!(
        (schedules[1]["source"].as_str(), schedules[1]["managed_by"].as_str()),
        (Some("plugin"), Some("github"))
    );
    // A schedule the plugin keeps elsewhere is watched by a check named after its task.
    assert_eq!((schedules[1]["state"].as_str(), schedules[1]["check"]["slug"].as_str()), (Some("new"), Some("echo")));
    assert!(schedules[1]["check"]["ping_url"].as_str().unwrap().contains("/ping/"), "{schedules:?}");
    let next: Vec<&str> = schedules[0]["next"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(next.len(), 3, "{schedules:?}");
    assert!(
        next.iter().all(|t| t.ends_with("+01:00") || t.ends_with("+02:00")),
        "Berlin times carry Berlin's offset: {next:?}"
    );
    for t in &next {
        let minute = &t[14..16];
        assert!(["00", "15", "30", "45"].contains(&minute), "*/15 fires on the quarter hour: {t}");
    }
    let sched = probes.iter().find(|x| x["kind"] == "schedule").unwrap();
    assert_eq!(sched["ok"], false);
    assert!(sched["error"].as_str().unwrap().contains("schedules[1]: unknown task \"nope\""), "{sched}");
    let (_, costs) = s.get("/api/v1/costs?project=fixture").await;
    let costs = costs.as_array().unwrap();
    assert_eq!(costs.len(), 3, "the cursor and idempotency keys keep the second poll from counting again");
    assert!(costs.iter().all(|c| c["source"] == "probe" && c["amount"] == "0.50"));
}

/// A hosted project's plugin, played by a local HTTP server that checks every signature.
#[tokio::test]
async fn http_plugins_get_signed_requests_and_run_tasks() {
    use axum::extract::{Path as AxPath, State};
    use axum::http::HeaderMap;
    use axum::routing::{get, post};

    #[derive(Clone, Default)]
    struct Plugin {
        secret: Arc<Mutex<Option<String>>>,
        seen: Arc<Mutex<Vec<(String, String, Value)>>>,
    }
    fn verify(p: &Plugin, h: &HeaderMap, body: &[u8]) -> bool {
        let secret = p.secret.lock().unwrap().clone().unwrap_or_default();
        let id = h["webhook-id"].to_str().unwrap();
        let ts: i64 = h["webhook-timestamp"].to_str().unwrap().parse().unwrap();
        let want = agent_os_engine::secrets::sign_webhook(&secret, id, ts, body).unwrap();
        h["webhook-signature"].to_str().unwrap() == want
    }
    async fn task(
        State(p): State<Plugin>,
        AxPath(name): AxPath<String>,
        h: HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::Json<Value> {
        assert!(verify(&p, &h, &body), "bad signature");
        let v: Value = serde_json::from_slice(&body).unwrap();
        let key = h["idempotency-key"].to_str().unwrap().to_string();
        p.seen.lock().unwrap().push((name.clone(), key, v.clone()));
        if v["input"]["fail"] == true {
            return axum::Json(json!({"status": "failed", "error": "exchange closed", "retryable": false}));
        }
        axum::Json(
            json!({"status": "succeeded", "outputs": {"rebalanced": v["input"]["symbols"]}, "log": "placing 2 orders\ndone\n"}),
        )
    }
    async fn status(State(p): State<Plugin>, h: HeaderMap) -> axum::Json<Value> {
        assert!(verify(&p, &h, b""), "bad signature");
        axum::Json(json!({"status": "ok", "message": "railway deploy healthy"}))
    }

    let plugin = Plugin::default();
    let app = axum::Router::new()
        .route("/agent-os/tasks/{name}", post(task))
        .route("/agent-os/status", get(status))
        .with_state(plugin.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let s = start().await;
    let manifest = format!(
        "name: trading\nplugin: {{ url: http://{addr}/agent-os }}\ntasks:\n  rebalance: {{ timeout: 10s, retries: 2 }}\nstatus: {{ every: 1m }}\n"
    );
    let (st, reg) = s.post("/api/v1/projects", json!({"manifest": manifest})).await;
    assert_eq!(st, 201, "{reg}");
    let secret = reg["signing_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    *plugin.secret.lock().unwrap() = Some(secret);

    let run = s.run("trading", "rebalance", json!({"symbols": ["BTC", "ETH"]})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["outputs"]["rebalanced"], json!(["BTC", "ETH"]));
    assert!(s.log(run["id"].as_str().unwrap()).await.contains("placing 2 orders"));
    let failed = s.run("trading", "rebalance", json!({"fail": true})).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempt"], 1, "the plugin said retrying will not help");
    assert_eq!(failed["error"], "exchange closed");
    {
        let seen = plugin.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, "rebalance");
        assert_eq!(seen[0].1, format!("{}.1", run["id"].as_str().unwrap()));
        assert_eq!(seen[0].2["protocol"], 1);
    }
    let p = s.engine.project("trading").await.unwrap();
    s.engine.run_probe(&p, ProbeKind::Status).await;
    let (_, view) = s.get("/api/v1/projects/trading").await;
    assert_eq!(view["probes"][0]["status"], "ok", "{view}");

    // A hosted project is reloaded by sending its manifest again.
    let (st, v) = s
        .post("/api/v1/projects/trading/reload", json!({"manifest": manifest.replace("retries: 2", "retries: 1")}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["tasks"][0]["retries"], 1);
}

/// A hosted project's status endpoint that answers 401 unless one of the request's signatures
/// verifies under the secret it holds (none at first, as a project just registered).
async fn verifying_plugin() -> (Arc<Mutex<Option<String>>>, std::net::SocketAddr) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    async fn status(State(secret): State<Arc<Mutex<Option<String>>>>, h: HeaderMap) -> (StatusCode, axum::Json<Value>) {
        let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let ts = header("webhook-timestamp").parse().unwrap_or(0);
        let ok = secret.lock().unwrap().as_deref().is_some_and(|secret| {
            agent_os_engine::secrets::verify_webhook(
                secret,
                &header("webhook-id"),
                ts,
                b"",
                &header("webhook-signature"),
                now,
            )
            .is_ok()
        });
        if ok {
            (StatusCode::OK, axum::Json(json!({"status": "ok"})))
        } else {
            (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "bad signature"})))
        }
    }
    let secret = Arc::new(Mutex::new(None));
    let app = axum::Router::new().route("/agent-os/status", axum::routing::get(status)).with_state(secret.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (secret, addr)
}

/// The status probe's latest result for `project`: ok, and the error if any.
async fn status_probe(s: &TestServer, project: &str) -> (bool, String) {
    let p = s.engine.project(project).await.unwrap();
    s.engine.run_probe(&p, ProbeKind::Status).await;
    let (_, view) = s.get(&format!("/api/v1/projects/{project}")).await;
    let probe = view["probes"].as_array().unwrap().iter().find(|x| x["kind"] == "status").unwrap().clone();
    (probe["ok"] == true, probe["error"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn a_hosted_project_refusing_our_signature_is_told_how_to_get_the_secret() {
    let (plugin, addr) = verifying_plugin().await;
    let s = start().await;
    let manifest = format!("name: trading\nplugin: {{ url: http://{addr}/agent-os }}\nstatus: {{ every: 1h }}\n");
    let (st, reg) = s.post("/api/v1/projects", json!({"manifest": manifest})).await;
    assert_eq!(st, 201, "{reg}");
    let (ok, error) = status_probe(&s, "trading").await;
    assert!(!ok);
    assert!(error.contains("HTTP 401") && error.contains("agent-os project secret show"), "{error}");
    let (_, health) = s.get("/api/v1/projects/trading/health").await;
    assert!(health["reasons"][0]["message"].as_str().unwrap().contains("configure the signing secret"), "{health}");

    let (st, shown) = s.get("/api/v1/projects/trading/signing-secret").await;
    assert_eq!(st, 200, "{shown}");
    assert_eq!(shown["signing_secret"], reg["signing_secret"], "the secret of the registration, shown again");
    assert_eq!(shown["previous_valid_until"], Value::Null);
    *plugin.lock().unwrap() = shown["signing_secret"].as_str().map(str::to_string);
    assert_eq!(status_probe(&s, "trading").await, (true, String::new()));
}

#[tokio::test]
async fn project_secret_rotate_keeps_the_old_secret_valid_for_its_grace_only() {
    let (plugin, addr) = verifying_plugin().await;
    let s = start().await;
    let manifest = format!("name: trading\nplugin: {{ url: http://{addr}/agent-os }}\nstatus: {{ every: 1h }}\n");
    let (_, reg) = s.post("/api/v1/projects", json!({"manifest": manifest})).await;
    let first = reg["signing_secret"].as_str().unwrap().to_string();
    *plugin.lock().unwrap() = Some(first.clone());

    let (st, rotated) = s.post("/api/v1/projects/trading/signing-secret/rotate", json!({"grace": "1h"})).await;
    assert_eq!(st, 200, "{rotated}");
    let second = rotated["signing_secret"].as_str().unwrap().to_string();
    assert!(second.starts_with("whsec_") && second != first);
    assert!(rotated["previous_valid_until"].is_string(), "{rotated}");
    assert!(status_probe(&s, "trading").await.0, "the project still holding the old secret is served");
    *plugin.lock().unwrap() = Some(second.clone());
    assert!(status_probe(&s, "trading").await.0, "and so is the project that took the new one");

    // After a leak: no grace, the old secret signs nothing more.
    let (st, third) = s.post("/api/v1/projects/trading/signing-secret/rotate", json!({"grace": "0s"})).await;
    assert_eq!((st, third["previous_valid_until"].clone()), (200, Value::Null), "{third}");
    assert!(!status_probe(&s, "trading").await.0, "the second secret no longer verifies");
    let (_, shown) = s.get("/api/v1/projects/trading/signing-secret").await;
    assert_eq!(shown["signing_secret"], third["signing_secret"]);

    // Admin only; a bad grace names its field; a command project has no secret.
    let (_, tok) = s.post("/api/v1/tokens", json!({"project": "trading", "name": "ci"})).await;
    let token = tok["token"].as_str().unwrap().to_string();
    let (st, v) = s.req(reqwest::Method::GET, "/api/v1/projects/trading/signing-secret", Some(&token), None).await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = s
        .req(reqwest::Method::POST, "/api/v1/projects/trading/signing-secret/rotate", Some(&token), Some(json!({})))
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = s.post("/api/v1/projects/trading/signing-secret/rotate", json!({"grace": "8d"})).await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("grace")), "{v}");
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let (st, v) = s.get("/api/v1/projects/fixture/signing-secret").await;
    assert_eq!(st, 409, "{v}");
}

#[tokio::test]
async fn malformed_queries_and_methods_get_the_error_shape() {
    let s = start().await;
    for (path, field) in [
        ("/api/v1/runs?limit=abc", None),
        ("/api/v1/runs?colour=red", None),
        ("/api/v1/costs?limit=5000", Some("limit")),
    ] {
        let (st, v) = s.get(path).await;
        assert_eq!(st, 400, "{path}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{path}: {v}");
        if let Some(f) = field {
            assert_eq!(v["error"]["field"], f);
        }
    }
    let (st, v) = s.req(reqwest::Method::PUT, "/api/v1/runs", Some(&s.admin), Some(json!({}))).await;
    assert_eq!(st, 405, "{v}");
    assert_eq!(v["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn a_shutdown_interrupts_runs_without_using_up_their_retries() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path());
    s.add(&root).await;
    let (_, run) = s.post("/api/v1/runs", json!({"project": "fixture", "task": "sleeper"})).await;
    let id = run["id"].as_str().unwrap().to_string();
    let pid = read_pid(&root.join("sleeper.pid")).await;
    s.engine.shutdown(Duration::from_millis(200)).await;
    assert!(!alive(pid), "the interrupted task's processes are stopped");
    let run = s.engine.store().get_run(&id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Queued, "an interrupted run goes back to the queue");
    assert_eq!((run.attempt, run.max_attempts), (1, 2), "and keeps its retries");
    let attempts = s.engine.store().list_attempts(&id).await.unwrap();
    assert!(attempts[0].error.as_deref().unwrap_or("").starts_with("interrupted"), "{attempts:?}");
    let (st, v) = s.post("/api/v1/runs", json!({"project": "fixture", "task": "echo"})).await;
    assert_eq!(st, 503, "a stopping node takes no new runs: {v}");
}

#[tokio::test]
async fn the_timeline_shows_every_fire_and_flags_collisions() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(
        other.join("agent-os.yaml"),
        "name: other\nkeys:\n  OPENAI_API_KEY: { service: openai, key_name: other-openai }\ntasks:\n  t: { run: \"true\" }\nschedules:\n  - { task: t, cron: \"*/30 * * * *\", managed_by: railway }\n",
    )
    .unwrap();
    s.add(&other).await;
    let (st, tl) =
        s.get("/api/v1/schedules/timeline?from=2026-11-25T00:00:00Z&to=2026-11-25T01:00:00Z&window=1m").await;
    assert_eq!(st, 200, "{tl}");
    let fires = tl["fires"].as_array().unwrap();
    let at: Vec<(&str, &str)> =
        fires.iter().map(|f| (f["at"].as_str().unwrap(), f["project"].as_str().unwrap())).collect();
    assert_eq!(
        at,
        [
            ("2026-11-25T01:00:00+01:00", "fixture"),
            ("2026-11-25T00:00:00+00:00", "other"),
            ("2026-11-25T01:15:00+01:00", "fixture"),
            ("2026-11-25T01:30:00+01:00", "fixture"),
            ("2026-11-25T00:30:00+00:00", "other"),
            ("2026-11-25T01:45:00+01:00", "fixture"),
        ],
        "time order across zones (ties by project), each in its own zone's offset"
    );
    let collisions = tl["collisions"].as_array().unwrap();
    assert_eq!(collisions.len(), 2, "{tl}");
    assert_eq!(collisions[0]["service"], "openai");
    assert_eq!(collisions[0]["fires"], json!([0, 1]));
    assert_eq!(collisions[1]["fires"], json!([3, 4]));
    let (st, v) = s.get("/api/v1/schedules/timeline?from=2026-11-25T00:00:00Z&to=2026-12-31T00:00:00Z").await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("to")));
}

// On held time: the check's period and grace pass when the test moves the clock.
#[tokio::test(start_paused = true)]
async fn external_schedules_are_watched_through_healthchecks_style_pings() {
    let s = start_held(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nightly");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        "name: nightly\ntasks:\n  backup: { run: \"true\" }\nschedules:\n  - { task: backup, cron: \"30 3 * * *\", timezone: America/Los_Angeles, managed_by: cron, grace: 5m }\nchecks:\n  - { slug: heartbeat, every: 2s, grace: 1s }\n",
    )
    .unwrap();
    s.add(&root).await;
    let (_, checks) = s.get("/api/v1/checks?project=nightly").await;
    let checks = checks.as_array().unwrap().clone();
    assert_eq!(checks.iter().map(|c| c["slug"].as_str().unwrap()).collect::<Vec<_>>(), ["backup", "heartbeat"]);
    assert!(checks.iter().all(|c| c["state"] == "new"));
    let backup_url = checks[0]["ping_url"].as_str().unwrap().to_string();
    let heartbeat_slug_url = checks[1]["slug_url"].as_str().unwrap().to_string();
    assert!(backup_url.starts_with(&format!("{}/ping/", s.url)));

    // The one-line integration users already have: curl the URL, no token.
    let http = reqwest::Client::new();
    let hit = |url: String, body: &'static str| {
        let http = http.clone();
        async move {
            let r = http.post(url).body(body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(hit(format!("{backup_url}/start?rid=r1"), "").await, (200, "OK".to_string()));
    assert_eq!(hit(backup_url.clone(), "backed up 3 files").await, (200, "OK".to_string()));
    let (_, after) = s.get("/api/v1/checks?project=nightly").await;
    assert_eq!(after[0]["state"], "up");
    assert!(after[0]["last_duration_ms"].as_i64().is_some(), "start and finish give a duration");
    assert_eq!(hit(format!("{backup_url}/2"), "disk full").await.0, 200);
    let (_, after) = s.get("/api/v1/checks?project=nightly").await;
    assert_eq!(after[0]["state"], "down", "a non-zero exit status is down at once");
    assert_eq!(hit(format!("{backup_url}/0"), "").await.0, 200);
    assert_eq!(hit(format!("{backup_url}/log"), "just a note").await.0, 200);
    assert_eq!(hit(format!("{backup_url}/restart"), "").await.0, 404);
    assert_eq!(hit(format!("{}/ping/01234567-0000-7000-8000-000000000000", s.url), "").await.0, 404);
    let head = http.head(&backup_url).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 200);

    // A period check pinged once, then silent: late after 2 s, down after 3 s.
    assert_eq!(http.get(&heartbeat_slug_url).send().await.unwrap().status().as_u16(), 200);
    let state = async |want: &str| {
        eventually(&format!("the heartbeat check should be {want}"), Duration::from_secs(10), async || {
            let (_, after) = s.get("/api/v1/checks?project=nightly").await;
            (after[1]["state"] == want).then_some(after)
        })
        .await
    };
    tokio::time::advance(Duration::from_millis(1_999)).await;
    nap(Duration::from_millis(200)).await;
    let (_, after) = s.get("/api/v1/checks?project=nightly").await;
    assert_eq!(after[1]["state"], "up", "not late yet: {after}");
    tokio::time::advance(Duration::from_millis(101)).await;
    state("late").await;
    tokio::time::advance(Duration::from_millis(1_500)).await;
    let after = state("down").await;
    assert_eq!(after[1]["state"], "down", "{after}");

    let (_, events) = s.get("/api/v1/events?type=check.").await;
    let kinds: Vec<(&str, &str)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["subject"].as_str().unwrap()))
        .collect();
    for want in [
        ("check.up", "backup"),
        ("check.down", "backup"),
        ("check.up", "heartbeat"),
        ("check.late", "heartbeat"),
        ("check.down", "heartbeat"),
    ] {
        assert!(kinds.contains(&want), "missing {want:?} in {kinds:?}");
    }

    // Ping URLs survive a reload of the manifest.
    let (st, _) = s.post("/api/v1/projects/nightly/reload", json!({})).await;
    assert_eq!(st, 200);
    let (_, reloaded) = s.get("/api/v1/checks?project=nightly").await;
    assert_eq!(reloaded[0]["ping_url"], backup_url.as_str());
}

// On held time: the runs' durations are exactly the time the test lets pass.
#[tokio::test(start_paused = true)]
async fn concurrent_runs_of_a_job_pair_start_and_finish_by_run_id() {
    let s = start_held(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pairs");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), "name: pairs\nchecks:\n  - { slug: job, every: 1h }\n").unwrap();
    s.add(&root).await;
    let (_, checks) = s.get("/api/v1/checks?project=pairs").await;
    let url = checks[0]["ping_url"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let ping = |u: String| {
        let http = http.clone();
        async move { http.get(u).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(ping(format!("{url}/start?rid=aaaa")).await, 200);
    tokio::time::advance(Duration::from_millis(600)).await;
    assert_eq!(ping(format!("{url}/start?rid=bbbb")).await, 200);
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(ping(format!("{url}?rid=aaaa")).await, 200);
    let (_, checks) = s.get("/api/v1/checks?project=pairs").await;
    let duration = checks[0]["last_duration_ms"].as_i64().unwrap();
    assert!(duration >= 650, "the finish of run aaaa pairs with its own start, not bbbb's: {duration} ms");
    assert!(checks[0]["running_since"].is_string(), "run bbbb still goes: {checks}");
    assert_eq!(ping(format!("{url}?rid=bbbb")).await, 200);
    let (_, checks) = s.get("/api/v1/checks?project=pairs").await;
    assert!(checks[0]["last_duration_ms"].as_i64().unwrap() < duration);
    assert!(checks[0]["running_since"].is_null(), "{checks}");
}

#[tokio::test]
async fn schedules_can_be_paused_resumed_and_run_now_over_the_api() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sched");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        "name: sched\ntasks:\n  sync: { run: \"true\" }\n  report: { run: \"true\" }\nschedules:\n  - { task: sync, cron: \"0 3 * * *\", overlap: queue }\n  - { task: report, cron: \"0 4 * * *\" }\n  - { task: report, cron: \"0 5 * * *\" }\n  - { task: report, cron: \"0 6 * * *\", managed_by: railway }\n",
    )
    .unwrap();
    s.add(&root).await;
    let (_, list) = s.get("/api/v1/schedules?project=sched").await;
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 4);
    assert!(list.iter().all(|x| x["id"].as_str().unwrap().len() == 16 && !x["paused"].as_bool().unwrap()));
    assert_eq!(list[0]["state"], "new");
    assert_eq!(list[3]["state"], "new", "the railway schedule's check has had no ping");
    assert!(list[3]["check"]["ping_url"].as_str().unwrap().starts_with(&format!("{}/ping/", s.url)));
    assert!(list[0]["check"].is_null(), "Agent OS watches its own runs without a check");

    let (st, v) = s.post("/api/v1/schedules/sched%2Fsync/pause", json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["paused"].as_bool(), v["state"].as_str()), (Some(true), Some("paused")));
    let (_, again) = s.get("/api/v1/schedules?project=sched").await;
    assert_eq!(again[0]["paused"], true, "the pause is stored");
    let id = v["id"].as_str().unwrap().to_string();
    let (st, v) = s.post(&format!("/api/v1/schedules/{id}/resume"), json!({})).await;
    assert_eq!((st, v["paused"].as_bool()), (200, Some(false)));

    // Run now: a run of the schedule's task, marked as started by hand.
    let (st, run) = s.post(&format!("/api/v1/schedules/{id}/run"), json!({})).await;
    assert_eq!(st, 201, "{run}");
    assert_eq!((run["task"].as_str(), run["trigger"].as_str()), (Some("sync"), Some("manual")));
    assert!(run["scheduled_for"].is_null());
    assert_eq!(s.wait(run["id"].as_str().unwrap()).await["status"], "succeeded");

    // Bad references get clear errors and change nothing.
    let (st, v) = s.post("/api/v1/schedules/sched%2Freport/pause", json!({})).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("names 3 schedules"), "{v}");
    let railway = list[3]["id"].as_str().unwrap();
    let (st, v) = s.post(&format!("/api/v1/schedules/{railway}/pause"), json!({})).await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("kept by railway"), "{v}");
    let (st, _) = s.post("/api/v1/schedules/0123456789abcdef/pause", json!({})).await;
    assert_eq!(st, 404);
    let (_, after) = s.get("/api/v1/schedules?project=sched").await;
    assert!(after.as_array().unwrap().iter().all(|x| x["paused"] == false));
}

#[tokio::test]
async fn discovered_schedules_register_all_or_nothing_and_survive_reloads() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ops");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), "name: ops\nchecks:\n  - { slug: heartbeat, every: 1h }\n").unwrap();
    s.add(&root).await;
    let good = json!({"name": "backup", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "managed_by": "cron", "description": "backup.sh (crontab:3)"});

    // One bad entry: nothing is registered, and the error names it.
    for (bad, field) in [
        (json!({"name": "x", "cron": "61 * * * *", "managed_by": "cron"}), "schedules[1].cron"),
        (
            json!({"name": "x", "cron": "* * * * *", "timezone": "+02:00", "managed_by": "cron"}),
            "schedules[1].timezone",
        ),
        (json!({"name": "x", "cron": "* * * * *", "managed_by": "agent-os"}), "schedules[1].managed_by"),
        (json!({"name": "Bad Name", "cron": "* * * * *", "managed_by": "cron"}), "schedules[1].name"),
        (json!({"name": "heartbeat", "cron": "* * * * *", "managed_by": "cron"}), "schedules[1].name"),
    ] {
        let (st, v) = s.post("/api/v1/projects/ops/schedules", json!({"schedules": [good, bad]})).await;
        assert_eq!((st, v["error"]["field"].as_str()), (400, Some(field)), "{v}");
    }
    let (_, list) = s.get("/api/v1/schedules?project=ops").await;
    assert_eq!(list, json!([]), "nothing registered half-way");

    let (st, v) = s.post("/api/v1/projects/ops/schedules", json!({"schedules": [good]})).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!((v[0]["task"].as_str(), v[0]["source"].as_str()), (Some("backup"), Some("discovered")));
    let url = v[0]["check"]["ping_url"].as_str().unwrap().to_string();
    assert_eq!(reqwest::get(&url).await.unwrap().status().as_u16(), 200);

    // A reload of the manifest keeps it, and its check's URL.
    let (st, _) = s.post("/api/v1/projects/ops/reload", json!({})).await;
    assert_eq!(st, 200);
    let (_, list) = s.get("/api/v1/schedules?project=ops").await;
    assert_eq!(list[0]["check"]["ping_url"], url.as_str());
    assert_eq!(list[0]["state"], "up", "the ping counted");

    let (st, _) = s.req(reqwest::Method::DELETE, "/api/v1/projects/ops/schedules/backup", Some(&s.admin), None).await;
    assert_eq!(st, 204);
    let (_, list) = s.get("/api/v1/schedules?project=ops").await;
    assert_eq!(list, json!([]));
    let (_, checks) = s.get("/api/v1/checks?project=ops").await;
    assert_eq!(checks.as_array().unwrap().len(), 1, "only the manifest's heartbeat check is left");
    let (st, _) = s.req(reqwest::Method::DELETE, "/api/v1/projects/ops/schedules/backup", Some(&s.admin), None).await;
    assert_eq!(st, 404);
}

/// A discovered job that is the manifest's own schedule kept elsewhere (same task or command,
/// same cron; the machine's zone stands for the manifest's when the file names none) is
/// recognised instead of registered beside it, and replaces an older registration of its name.
#[tokio::test]
async fn a_discovered_schedule_the_manifest_declares_is_recognised_not_duplicated() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("studio");
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::write(root.join("scripts/backup.sh"), "#!/bin/sh\n").unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        "name: studio\ntasks:\n  backup: { run: scripts/backup.sh }\n  send: { run: [npm, run, send] }\nschedules:\n  - { task: backup, cron: \"30 3 * * *\", timezone: America/Los_Angeles, managed_by: cron }\n  - { task: send, cron: \"0 9 * * 1-5\", timezone: Europe/Paris, managed_by: launchd }\n",
    )
    .unwrap();
    s.add(&root).await;
    // An older registration, made before discovery recognised the job.
    let old = json!({"name": "nightly", "cron": "0 1 * * *", "managed_by": "cron"});
    let (st, v) = s.post("/api/v1/projects/studio/schedules", json!({"schedules": [old]})).await;
    assert_eq!(st, 201, "{v}");

    let entries = json!({"schedules": [
        // The crontab names no zone: the machine discovery ran on is in UTC.
        {"name": "nightly", "cron": "30 3 * * *", "timezone": "Etc/UTC", "zone_from_machine": true, "managed_by": "cron",
         "command": "cd \"$HOME/studio\" && ./scripts/backup.sh >> \"$HOME/backup.log\" 2>&1"},
        // By the task's name, written the other way.
        {"name": "send", "cron": "0 9 * * mon-fri", "timezone": "Europe/Paris", "managed_by": "launchd"},
        // By the task's command, inside a longer line.
        {"name": "npm", "cron": "0 9 * * 1-5", "timezone": "Etc/UTC", "zone_from_machine": true, "managed_by": "cron",
         "command": "cd /home/me/studio && npm run send"},
        // A zone the file states must be the manifest's.
        {"name": "backup-2", "cron": "30 3 * * *", "timezone": "Asia/Tokyo", "managed_by": "cron", "command": "./scripts/backup.sh"},
        // Another cron is another job.
        {"name": "backup-3", "cron": "30 4 * * *", "timezone": "Etc/UTC", "zone_from_machine": true, "managed_by": "cron", "command": "./scripts/backup.sh"}
    ]});
    let (st, v) = s.post("/api/v1/projects/studio/schedules", entries).await;
    assert_eq!(st, 201, "{v}");
    let got: Vec<(&str, &str)> =
        v.as_array().unwrap().iter().map(|x| (x["task"].as_str().unwrap(), x["source"].as_str().unwrap())).collect();
    assert_eq!(
        got,
        [
            ("backup", "manifest"),
            ("send", "manifest"),
            ("send", "manifest"),
            ("backup-2", "discovered"),
            ("backup-3", "discovered")
        ]
    );
    let (_, list) = s.get("/api/v1/schedules?project=studio").await;
    let discovered: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["source"] == "discovered")
        .map(|x| x["task"].as_str().unwrap())
        .collect();
    assert_eq!(discovered, ["backup-2", "backup-3"], "the old \"nightly\" registration is gone: {list:#}");

    // Forgetting by id or PROJECT/NAME; a manifest schedule is not forgotten.
    let id =
        list.as_array().unwrap().iter().find(|x| x["task"] == "backup-2").unwrap()["id"].as_str().unwrap().to_string();
    let (st, _) = s.req(reqwest::Method::DELETE, &format!("/api/v1/schedules/{id}"), Some(&s.admin), None).await;
    assert_eq!(st, 204);
    let (st, _) = s.req(reqwest::Method::DELETE, "/api/v1/schedules/studio%2Fbackup-3", Some(&s.admin), None).await;
    assert_eq!(st, 204);
    let (st, v) = s.req(reqwest::Method::DELETE, "/api/v1/schedules/studio%2Fbackup", Some(&s.admin), None).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("manifest"), "{v}");
    let (st, _) = s.req(reqwest::Method::DELETE, "/api/v1/schedules/studio%2Fbackup-3", Some(&s.admin), None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn runs_wait_for_a_resource_and_say_why() {
    let s = start_with(|c| {
        c.resources.insert("openai".into(), limits(Some(1), None));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("res");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        "name: res\ntasks:\n  hog: { run: \"sleep 30\", resources: [openai] }\n  quick: { run: \"true\", resources: [openai], priority: 80 }\n  free: { run: \"true\" }\n",
    )
    .unwrap();
    s.add(&root).await;
    let (_, hog) = s.post("/api/v1/runs", json!({"project": "res", "task": "hog"})).await;
    let hog_id = hog["id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        if s.get(&format!("/api/v1/runs/{hog_id}")).await.1["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, quick) = s.post("/api/v1/runs", json!({"project": "res", "task": "quick"})).await;
    let quick_id = quick["id"].as_str().unwrap().to_string();
    // A run that needs nothing, queued after it, goes through: the dispatcher has looked at the
    // queue since, and left the quick run waiting.
    assert_eq!(s.run("res", "free", json!({})).await["status"], "succeeded");
    let (_, waiting) = s.get(&format!("/api/v1/runs/{quick_id}")).await;
    assert_eq!(waiting["status"], "queued");
    assert_eq!(waiting["priority"], 80);
    assert_eq!(waiting["waiting_for"], "waiting for openai: 1/1 held by res.hog", "{waiting}");
    let (_, listed) = s.get("/api/v1/runs?status=queued").await;
    assert_eq!(listed["runs"][0]["waiting_for"], waiting["waiting_for"]);
    let (_, resources) = s.get("/api/v1/resources").await;
    assert_eq!(resources[0]["name"], "openai");
    assert_eq!(resources[0]["holders"][0]["id"], hog_id.as_str());
    assert_eq!(resources[0]["waiters"][0]["id"], quick_id.as_str());

    s.post(&format!("/api/v1/runs/{hog_id}/cancel"), json!({})).await;
    assert_eq!(s.wait(&quick_id).await["status"], "succeeded", "the resource passed on when the hog ended");
    let (_, resources) = s.get("/api/v1/resources").await;
    assert_eq!(resources[0]["holders"], json!([]));

    // Schedules of tasks that hold the same resource collide on the timeline.
    for (name, minute) in [("gpu-a", 0), ("gpu-b", 2)] {
        let root = dir.path().join(name);
        std::fs::create_dir(&root).unwrap();
        std::fs::write(
            root.join("agent-os.yaml"),
            format!("name: {name}\ntasks:\n  t: {{ run: \"true\", resources: [openai] }}\nschedules:\n  - {{ task: t, cron: \"{minute} 3 * * *\", managed_by: cron }}\n"),
        )
        .unwrap();
        s.add(&root).await;
    }
    let (_, tl) = s.get("/api/v1/schedules/timeline?from=2026-11-25T00:00:00Z&to=2026-11-26T00:00:00Z").await;
    assert_eq!(tl["collisions"][0]["service"], "resource openai", "{tl}");

    // A task naming a resource the config does not declare is refused, with the place.
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("agent-os.yaml"), "name: bad\ntasks:\n  t: { run: \"true\", resources: [openia] }\n")
        .unwrap();
    let (st, v) = s.post("/api/v1/projects", json!({"path": bad.display().to_string()})).await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("tasks.t.resources")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("did you mean \"openai\""), "{v}");
}

#[tokio::test]
async fn leases_queue_renew_release_and_explain_refusals() {
    let s = start_with(|c| {
        c.resources.insert("openai".into(), limits(Some(1), None));
        c.resources.insert("search".into(), limits(None, Some((1, 60, 1))));
    })
    .await;
    let (st, lease) = s.post("/api/v1/resources/openai/leases", json!({"ttl": "30s", "label": "railway scan"})).await;
    assert_eq!(st, 201, "{lease}");
    let id = lease["id"].as_str().unwrap().to_string();
    assert_eq!((lease["ttl_ms"].as_i64(), lease["label"].as_str()), (Some(30_000), Some("railway scan")));

    let started = std::time::Instant::now();
    let (st, v) = s.post("/api/v1/resources/openai/leases", json!({"wait": "300ms"})).await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("conflict")), "{v}");
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited in line first");
    assert_eq!(v["error"]["message"], "waiting for openai: 1/1 held by railway scan");

    // A waiter is served as soon as the holder lets go.
    let s2 = s.http.clone();
    let (url, admin) = (s.url.clone(), s.admin.clone());
    let waiter = tokio::spawn(async move {
        let r = s2
            .post(format!("{url}/api/v1/resources/openai/leases"))
            .bearer_auth(admin)
            .json(&json!({"wait": "10s"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), std::time::Instant::now())
    });
    let resources = eventually("the waiter should be in line", Duration::from_secs(10), async || {
        let (_, resources) = s.get("/api/v1/resources").await;
        (!resources[0]["waiters"].as_array().unwrap().is_empty()).then_some(resources)
    })
    .await;
    assert_eq!(resources[0]["waiters"].as_array().unwrap().len(), 1, "{resources}");
    let (st, renewed) = s.post(&format!("/api/v1/resources/openai/leases/{id}/renew"), json!({"ttl": "1m"})).await;
    assert_eq!((st, renewed["ttl_ms"].as_i64()), (200, Some(60_000)));
    let released_at = std::time::Instant::now();
    let (st, _) =
        s.req(reqwest::Method::DELETE, &format!("/api/v1/resources/openai/leases/{id}"), Some(&s.admin), None).await;
    assert_eq!(st, 204);
    let (status, got_at) = waiter.await.unwrap();
    assert_eq!(status, 201);
    assert!(got_at.duration_since(released_at) < Duration::from_millis(500), "woken, not polled slowly");
    let (st, _) =
        s.req(reqwest::Method::DELETE, &format!("/api/v1/resources/openai/leases/{id}"), Some(&s.admin), None).await;
    assert_eq!(st, 404, "released once");
    let (st, _) = s.post(&format!("/api/v1/resources/openai/leases/{id}/renew"), json!({})).await;
    assert_eq!(st, 404);

    // A rate: the burst, then 429 until the bucket refills.
    assert_eq!(s.post("/api/v1/resources/search/leases", json!({})).await.0, 201);
    let (st, v) = s.post("/api/v1/resources/search/leases", json!({})).await;
    assert_eq!((st, v["error"]["code"].as_str()), (429, Some("rate_limited")), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().starts_with("waiting for search: rate 1/min used up, next in"),
        "{v}"
    );

    // Bad requests name the field; an unknown resource names the known ones.
    for (path, body, status, field) in [
        ("/api/v1/resources/openia/leases", json!({}), 404, None),
        ("/api/v1/resources/openai/leases", json!({"ttl": "0s"}), 400, Some("ttl")),
        ("/api/v1/resources/openai/leases", json!({"ttl": "2d"}), 400, Some("ttl")),
        ("/api/v1/resources/openai/leases", json!({"wait": "2h"}), 400, Some("wait")),
        ("/api/v1/resources/openai/leases", json!({"priority": 101}), 400, Some("priority")),
        ("/api/v1/resources/openai/leases", json!({"ttl": "soon"}), 400, Some("ttl")),
    ] {
        let (st, v) = s.post(path, body).await;
        assert_eq!((st, v["error"]["field"].as_str()), (status, field), "{path}: {v}");
    }
    let (_, v) = s.post("/api/v1/resources/openia/leases", json!({})).await;
    assert!(v["error"]["message"].as_str().unwrap().contains("did you mean \"openai\""), "{v}");
}

/// A project whose `lease` task renews, then releases, the lease named in its input with its
/// own run token, and reports the two statuses as outputs.
fn lease_project(dir: &Path, name: &str) -> std::path::PathBuf {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        format!("name: {name}\ntasks:\n  lease: {{ run: [python3, lease.py] }}\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("lease.py"),
        "import json, os, sys, urllib.request, urllib.error\nlease = json.load(sys.stdin)['lease']\nbase = os.environ['AGENT_OS_URL'] + '/api/v1/resources/gpu/leases/' + lease\ndef call(method, path, body):\n    req = urllib.request.Request(base + path, data=body, method=method, headers={'Authorization': 'Bearer ' + os.environ['AGENT_OS_TOKEN'], 'Content-Type': 'application/json'})\n    try:\n        return urllib.request.urlopen(req, timeout=5).status\n    except urllib.error.HTTPError as e:\n        return e.code\nout = {'renew': call('POST', '/renew', b'{}'), 'release': call('DELETE', '', None)}\nwith open(os.environ['AGENT_OS_OUTPUT'], 'w') as f:\n    json.dump(out, f)\n",
    )
    .unwrap();
    root
}

#[tokio::test]
async fn project_token_cannot_release_or_renew_another_projects_lease() {
    let s = start_with(|c| {
        c.resources.insert("gpu".into(), limits(Some(1), None));
        c.resources.insert("cpu".into(), limits(None, None));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&lease_project(dir.path(), "alpha")).await;
    s.add(&lease_project(dir.path(), "beta")).await;
    let (alpha, beta) = (project_token(&s, "alpha").await, project_token(&s, "beta").await);
    let (p, d) = (reqwest::Method::POST, reqwest::Method::DELETE);
    let (st, lease) =
        s.req(p.clone(), "/api/v1/resources/gpu/leases", Some(&alpha), Some(json!({"label": "nightly train"}))).await;
    assert_eq!(st, 201, "{lease}");
    let id = lease["id"].as_str().unwrap().to_string();
    let (renew, release) =
        (format!("/api/v1/resources/gpu/leases/{id}/renew"), format!("/api/v1/resources/gpu/leases/{id}"));

    // Beta's project token: neither renew nor release; the answer is the one an unknown id gets.
    let (st, v) = s.req(p.clone(), &renew, Some(&beta), Some(json!({}))).await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    let (st, v) = s.req(d.clone(), &release, Some(&beta), None).await;
    assert_eq!(st, 404, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("held by project \"beta\""), "{v}");
    // Beta's run token neither.
    let run = s.run("beta", "lease", json!({"lease": id})).await;
    assert_eq!(run["outputs"], json!({"renew": 404, "release": 404}), "{run}");
    // So alpha still holds the concurrency-1 resource, and beta cannot take it.
    let (st, v) = s.req(p.clone(), "/api/v1/resources/gpu/leases", Some(&beta), Some(json!({}))).await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["error"]["message"], "waiting for gpu: 1/1 held by another project's lease", "{v}");
    // Nor does another resource's name, even for the admin.
    let (st, _) = s.req(d.clone(), &format!("/api/v1/resources/cpu/leases/{id}"), Some(&s.admin), None).await;
    assert_eq!(st, 404);
    let (st, _) =
        s.req(p.clone(), &format!("/api/v1/resources/cpu/leases/{id}/renew"), Some(&s.admin), Some(json!({}))).await;
    assert_eq!(st, 404);

    // Alpha's runs act for alpha: its run token renews and releases alpha's lease.
    let run = s.run("alpha", "lease", json!({"lease": id})).await;
    assert_eq!(run["outputs"], json!({"renew": 200, "release": 204}), "{run}");

    // A lease the admin took is the admin's: no project token reaches it; the admin's does, and
    // the admin may also end any project's lease.
    let (_, admins) = s.post("/api/v1/resources/gpu/leases", json!({})).await;
    let admins = admins["id"].as_str().unwrap().to_string();
    assert_eq!(s.req(d.clone(), &format!("/api/v1/resources/gpu/leases/{admins}"), Some(&alpha), None).await.0, 404);
    assert_eq!(s.req(d.clone(), &format!("/api/v1/resources/gpu/leases/{admins}"), Some(&s.admin), None).await.0, 204);
    let (_, lease) = s.req(p.clone(), "/api/v1/resources/gpu/leases", Some(&alpha), Some(json!({}))).await;
    let id = lease["id"].as_str().unwrap();
    assert_eq!(s.req(d.clone(), &format!("/api/v1/resources/gpu/leases/{id}"), Some(&alpha), None).await.0, 204);
}

#[tokio::test]
async fn resources_list_shows_other_projects_leases_without_ids_or_labels() {
    let s = start_with(|c| {
        c.resources.insert("gpu".into(), limits(Some(1), None));
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&lease_project(dir.path(), "alpha")).await;
    s.add(&lease_project(dir.path(), "beta")).await;
    let (alpha, beta) = (project_token(&s, "alpha").await, project_token(&s, "beta").await);
    let p = reqwest::Method::POST;
    let (_, lease) =
        s.req(p.clone(), "/api/v1/resources/gpu/leases", Some(&alpha), Some(json!({"label": "nightly train"}))).await;
    let id = lease["id"].as_str().unwrap().to_string();
    // Beta waits in line (a lease request waiting as a row) while we look.
    let (http, url, beta2) = (s.http.clone(), s.url.clone(), beta.clone());
    let waiter = tokio::spawn(async move {
        http.post(format!("{url}/api/v1/resources/gpu/leases"))
            .bearer_auth(beta2)
            .json(&json!({"wait": "20s", "label": "beta batch"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let everything = loop {
        let (_, r) = s.get("/api/v1/resources").await;
        if r[0]["waiters"].as_array().is_some_and(|w| !w.is_empty()) {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "beta never joined the line: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let g = reqwest::Method::GET;
    // The admin sees everything.
    assert_eq!(everything[0]["holders"][0]["id"], id.as_str());
    assert_eq!(everything[0]["holders"][0]["label"], "nightly train");
    assert_eq!(everything[0]["waiters"][0]["label"], "beta batch");
    // Beta sees that gpu is held, not by whom nor with what id; its own request in full.
    let (_, r) = s.req(g.clone(), "/api/v1/resources", Some(&beta), None).await;
    let holder = &r[0]["holders"][0];
    assert_eq!((holder["kind"].as_str(), holder["id"].as_str()), (Some("lease"), None), "{r}");
    assert!(holder["label"].is_null() && holder["project"].is_null(), "{r}");
    assert!(!r.to_string().contains(&id) && !r.to_string().contains("nightly"), "{r}");
    assert_eq!(
        (r[0]["waiters"][0]["label"].as_str(), r[0]["waiters"][0]["project"].as_str()),
        (Some("beta batch"), Some("beta"))
    );
    // Alpha sees its own lease in full, and beta's request without its id or label.
    let (_, r) = s.req(g.clone(), "/api/v1/resources", Some(&alpha), None).await;
    assert_eq!(
        (r[0]["holders"][0]["id"].as_str(), r[0]["holders"][0]["label"].as_str()),
        (Some(id.as_str()), Some("nightly train"))
    );
    assert!(r[0]["waiters"][0]["id"].is_null() && r[0]["waiters"][0]["label"].is_null(), "{r}");

    let (st, _) =
        s.req(reqwest::Method::DELETE, &format!("/api/v1/resources/gpu/leases/{id}"), Some(&alpha), None).await;
    assert_eq!(st, 204);
    assert_eq!(waiter.await.unwrap(), 201, "beta gets it once alpha lets go");
}

// Real time on purpose: sixteen clients hammer the real server for 3 s, and the rate is
// checked against the wall-clock times they got their leases at.
#[tokio::test]
async fn sixteen_clients_never_hold_a_concurrency_one_resource_together_and_a_rate_is_never_exceeded() {
    let s = start_with(|c| {
        c.resources.insert("openai".into(), limits(Some(1), None));
        c.resources.insert("api".into(), limits(None, Some((20, 1, 3))));
    })
    .await;
    let run_for = Duration::from_secs(3);
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (http, url, admin) = (s.http.clone(), s.url.clone(), s.admin.clone());
        clients.push(tokio::spawn(async move {
            let mut held = Vec::new();
            let mut rated = Vec::new();
            let end = std::time::Instant::now() + run_for;
            while std::time::Instant::now() < end {
                let r = http
                    .post(format!("{url}/api/v1/resources/openai/leases"))
                    .bearer_auth(&admin)
                    .json(&json!({"wait": "10s", "ttl": "30s"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
                let got = std::time::Instant::now();
                let lease: Value = r.json().await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
                let letting_go = std::time::Instant::now();
                let d = http
                    .delete(format!("{url}/api/v1/resources/openai/leases/{}", lease["id"].as_str().unwrap()))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(d.status().as_u16(), 204);
                held.push((got, letting_go));
                let r = http
                    .post(format!("{url}/api/v1/resources/api/leases"))
                    .bearer_auth(&admin)
                    .json(&json!({"wait": "0s", "ttl": "1s"}))
                    .send()
                    .await
                    .unwrap();
                if r.status().as_u16() == 201 {
                    let lease: Value = r.json().await.unwrap();
                    let at: jiff::Timestamp = lease["acquired_at"].as_str().unwrap().parse().unwrap();
                    rated.push(at.as_millisecond());
                } else {
                    assert_eq!(r.status().as_u16(), 429);
                }
            }
            (held, rated)
        }));
    }
    let mut held = Vec::new();
    let mut rated = Vec::new();
    for c in clients {
        let (h, r) = c.await.unwrap();
        held.extend(h);
        rated.extend(r);
    }
    held.sort();
    assert!(held.len() > 50, "only {} leases in {run_for:?}", held.len());
    for pair in held.windows(2) {
        assert!(pair[1].0 > pair[0].1, "two holders at once: {pair:?}");
    }
    // 20/s with a burst of 3: in any window of w ms, at most 3 + 20·w/1000 grants.
    rated.sort();
    assert!(rated.len() >= 40, "the rate let {} through in 3 s", rated.len());
    for i in 0..rated.len() {
        for j in i..rated.len() {
            let allowed = 3.0 + 20.0 * (rated[j] - rated[i]) as f64 / 1000.0;
            assert!((j - i + 1) as f64 <= allowed + 1e-9, "{} grants within {} ms", j - i + 1, rated[j] - rated[i]);
        }
    }
}

#[tokio::test]
async fn cost_totals_are_exact_over_thousands_of_records_and_group_by_period() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ledger");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), "name: ledger\ntasks:\n  t: { run: \"true\" }\n").unwrap();
    s.add(&root).await;
    // 3000 records with nine-decimal amounts, over two months and three services; the expected
    // totals are integer sums of nano-units.
    let services = ["openai", "anthropic", "replicate"];
    let mut want: std::collections::BTreeMap<&str, i64> = Default::default();
    let mut want_month: std::collections::BTreeMap<&str, i64> = Default::default();
    // (In batches of 300: the test server takes bodies of at most 64 KiB.)
    for batch in 0..10 {
        let mut records = Vec::new();
        for i in 0..300 {
            let n = batch * 300 + i;
            let nanos: i64 = (n as i64 * 7_919_731) % 3_000_000_000 + 1;
            let service = services[n % 3];
            let (month, at) =
                if n % 2 == 0 { ("2026-10", "2026-10-31T23:59:59Z") } else { ("2026-11", "2026-11-01T00:00:00Z") };
            *want.entry(service).or_default() += nanos;
            *want_month.entry(month).or_default() += nanos;
            records.push(json!({
                "project": "ledger", "service": service, "at": at, "idempotency_key": format!("k{n}"),
                "amount": format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000),
            }));
        }
        let (st, v) = s.post("/api/v1/costs", json!({"records": records})).await;
        assert_eq!(st, 201, "{v}");
    }
    let (_, sum) = s.get("/api/v1/costs/summary?by=service").await;
    for g in sum["groups"].as_array().unwrap() {
        assert_eq!(g["amount_nanos"].as_i64().unwrap(), want[g["group"].as_str().unwrap()], "{g}");
        assert_eq!(g["records"], 1000);
    }
    let total: i64 = want.values().sum();
    assert_eq!(sum["totals"][0]["amount_nanos"].as_i64().unwrap(), total);
    assert_eq!(
        sum["totals"][0]["amount"].as_str().unwrap(),
        agent_os_core::cost::format_amount(total),
        "the decimal text is exact too"
    );
    let (_, by_month) = s.get("/api/v1/costs/summary?by=month").await;
    let months: Vec<(String, i64)> = by_month["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"].as_str().unwrap().to_string(), g["amount_nanos"].as_i64().unwrap()))
        .collect();
    assert_eq!(months, vec![("2026-10".into(), want_month["2026-10"]), ("2026-11".into(), want_month["2026-11"])]);
    let (_, november) = s.get("/api/v1/costs/summary?by=day&from=2026-11-01&to=2026-12-01").await;
    assert_eq!(november["groups"][0]["group"], "2026-11-01");
    assert_eq!(november["totals"][0]["amount_nanos"].as_i64().unwrap(), want_month["2026-11"]);
    let (st, v) = s.get("/api/v1/costs/summary?by=week").await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("by")));
    let (st, v) = s.get("/api/v1/costs/summary?from=yesterday").await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("from")));

    // A duplicate batch counts once; a bad record rejects its whole batch.
    let (st, v) = s
        .post(
            "/api/v1/costs",
            json!({"records": [{"project": "ledger", "service": "openai", "amount": "1", "idempotency_key": "k0"}]}),
        )
        .await;
    assert_eq!((st, v["duplicates"].as_i64()), (201, Some(1)), "{v}");
    let (st, v) = s
        .post(
            "/api/v1/costs",
            json!({"records": [{"project": "ledger", "service": "openai", "amount": "1", "idempotency_key": "new"}, {"project": "ledger", "service": "openai", "amount": "-1"}]}),
        )
        .await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("records[1].amount")), "{v}");
    let (_, after) = s.get("/api/v1/costs/summary").await;
    assert_eq!(after["totals"][0]["amount_nanos"].as_i64().unwrap(), total, "nothing of the bad batch was stored");
}

#[tokio::test]
async fn a_budget_warns_once_per_threshold_and_pauses_the_project_until_resumed() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("spender");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        "name: spender\ntasks:\n  t: { run: \"true\" }\nschedules:\n  - { task: t, cron: \"0 0 1 1 *\" }\n",
    )
    .unwrap();
    s.add(&root).await;
    let (st, b) = s
        .req(
            reqwest::Method::PUT,
            "/api/v1/budgets",
            Some(&s.admin),
            Some(json!({"project": "spender", "period": "monthly", "amount": "1.00", "thresholds": [50, 100], "on_exceed": "pause"})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!((b["spent"].as_str(), b["paused"].is_null()), (Some("0.00"), true));
    let spend = |amount: &str, key: &str| json!({"project": "spender", "service": "openai", "amount": amount, "idempotency_key": key});
    s.post("/api/v1/costs", spend("0.60", "a")).await;
    s.post("/api/v1/costs", spend("0.30", "b")).await;
    let (_, events) = s.get("/api/v1/events?type=budget.").await;
    assert_eq!(events.as_array().unwrap().len(), 1, "50 % is announced once: {events}");
    assert_eq!(
        (events[0]["data"]["threshold"].as_i64(), events[0]["data"]["spent"].as_str()),
        (Some(50), Some("0.60"))
    );
    let (st, _) = s.post("/api/v1/runs", json!({"project": "spender", "task": "t"})).await;
    assert_eq!(st, 201, "under the limit, runs go");

    s.post("/api/v1/costs", spend("0.20", "c")).await;
    let (_, events) = s.get("/api/v1/events?type=budget.").await;
    assert_eq!(events.as_array().unwrap().len(), 2);
    assert_eq!(
        (events[0]["data"]["threshold"].as_i64(), events[0]["data"]["paused"].as_bool()),
        (Some(100), Some(true))
    );
    let (st, v) = s.post("/api/v1/runs", json!({"project": "spender", "task": "t"})).await;
    assert_eq!(st, 409, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("is paused: its monthly budget of 1.00 USD is used up (1.10 USD spent)"), "{msg}");
    assert!(msg.contains("agent-os budget resume spender"), "{msg}");
    let (_, schedules) = s.get("/api/v1/schedules?project=spender").await;
    let (st, _) = s.post(&format!("/api/v1/schedules/{}/run", schedules[0]["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(st, 409, "run now is refused too");
    let (_, budgets) = s.get("/api/v1/budgets").await;
    assert_eq!((budgets[0]["percent"].as_f64(), budgets[0]["crossed"].clone()), (Some(110.0), json!([50, 100])));
    assert!(budgets[0]["paused"].as_str().unwrap().contains("used up"));

    let (st, _) = s.post("/api/v1/projects/spender/resume", json!({})).await;
    assert_eq!(st, 204);
    let (st, _) = s.post("/api/v1/runs", json!({"project": "spender", "task": "t"})).await;
    assert_eq!(st, 201, "resumed");
    s.post("/api/v1/costs", spend("0.50", "d")).await;
    let (st, _) = s.post("/api/v1/runs", json!({"project": "spender", "task": "t"})).await;
    assert_eq!(st, 201, "a resumed project is not paused again in the same period");
    let (st, _) = s.post("/api/v1/projects/spender/resume", json!({})).await;
    assert_eq!(st, 404, "not paused");

    // Bad budgets name the field and store nothing.
    for (body, field) in [
        (json!({"project": "spender", "period": "weekly", "amount": "1"}), "period"),
        (json!({"project": "spender", "period": "daily", "amount": "abc"}), "amount"),
        (json!({"project": "spender", "period": "daily", "amount": "1", "currency": "XXQ"}), "currency"),
        (json!({"project": "spender", "period": "daily", "amount": "1", "thresholds": [0]}), "thresholds"),
        (json!({"project": "spender", "period": "daily", "amount": "1", "on_exceed": "stop"}), "on_exceed"),
    ] {
        let (st, v) = s.req(reqwest::Method::PUT, "/api/v1/budgets", Some(&s.admin), Some(body)).await;
        assert_eq!((st, v["error"]["field"].as_str()), (400, Some(field)), "{v}");
    }
    let (st, _) = s
        .req(
            reqwest::Method::PUT,
            "/api/v1/budgets",
            Some(&s.admin),
            Some(json!({"project": "nope", "period": "daily", "amount": "1"})),
        )
        .await;
    assert_eq!(st, 404);
    let (_, budgets) = s.get("/api/v1/budgets").await;
    assert_eq!(budgets.as_array().unwrap().len(), 1);
    let id = budgets[0]["id"].as_str().unwrap();
    let (st, _) = s.req(reqwest::Method::DELETE, &format!("/api/v1/budgets/{id}"), Some(&s.admin), None).await;
    assert_eq!(st, 204);
}

#[tokio::test]
async fn a_projects_key_audit_is_served_without_its_values() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("leaky");
    std::fs::create_dir(&root).unwrap();
    let canary = format!("sk-proj-{}", agent_os_core::id::new_id().replace('-', ""));
    std::fs::write(
        root.join("agent-os.yaml"),
        "name: leaky\nenv_file: .env\nkeys:\n  OPENAI_API_KEY: { service: openai, key_name: leaky-openai }\ntasks:\n  t: { run: \"true\" }\n",
    )
    .unwrap();
    std::fs::write(root.join(".env"), format!("OPENAI_API_KEY={canary}\nSTRIPE_SECRET=abc123abc123abc\n")).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(&root).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    s.add(&root).await;
    let (st, audit) = s.get("/api/v1/projects/leaky/audit").await;
    assert_eq!(st, 200, "{audit}");
    let checks: Vec<&str> =
        audit["findings"].as_array().unwrap().iter().map(|f| f["check"].as_str().unwrap()).collect();
    assert!(checks.contains(&"env-not-ignored"), "{audit}");
    assert!(checks.contains(&"undeclared-credential"), "{audit}");
    assert!(audit["errors"].as_u64().unwrap() >= 1);
    assert!(!audit.to_string().contains(&canary), "no value in the answer");

    std::fs::write(root.join(".gitignore"), ".env\n").unwrap();
    let (_, audit) = s.get("/api/v1/projects/leaky/audit").await;
    let checks: Vec<&str> =
        audit["findings"].as_array().unwrap().iter().map(|f| f["check"].as_str().unwrap()).collect();
    assert!(!checks.contains(&"env-not-ignored"), "{audit}");
}

#[tokio::test]
async fn notifications_fan_out_through_the_outbox_with_retries_and_idempotency_keys() {
    let (discord, discord_url) = Sink::start(&[429, 200]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels.push(
            agent_os_core::channel::parse("team", &format!("discord://123456/tok-en?base={discord_url}")).unwrap(),
        );
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("trading");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), "name: trading\ntasks:\n  t: { run: \"true\" }\n").unwrap();
    s.add(&root).await;

    let note = json!({"project": "trading", "title": "Volatility spike", "body": "ETH moved 2.6σ", "severity": "warning", "tags": ["eth"], "dedup_key": "spike-eth"});
    let (st, n) = s.post("/api/v1/notifications", note.clone()).await;
    assert_eq!(st, 201, "{n}");
    let delivered = wait_delivery(&s, "delivered").await;
    let d = &delivered["deliveries"][0];
    assert_eq!(
        (d["attempts"].as_i64(), d["last_status"].as_i64()),
        (Some(2), Some(200)),
        "429 Retry-After, then delivered: {d}"
    );
    let seen = discord.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/api/webhooks/123456/tok-en");
    assert_eq!(seen[0].key(), d["id"].as_str().unwrap(), "the delivery id is the idempotency key");
    assert_eq!(seen[0].key(), seen[1].key(), "the same key on the retry");
    let content = seen[1].body["content"].as_str().unwrap();
    assert!(content.contains("**Volatility spike** · trading") && content.contains("ETH moved 2.6σ"), "{content}");

    // The same dedup_key within 10 minutes counts once.
    let (st, again) = s.post("/api/v1/notifications", note).await;
    assert_eq!((st, again["deduplicated"].as_bool(), again["id"].clone()), (200, Some(true), n["id"].clone()));
    assert_eq!(discord.seen.lock().unwrap().len(), 2, "nothing sent again");

    // Bad notifications name the field.
    for (body, field) in [
        (json!({"title": ""}), "title"),
        (json!({"title": "x", "severity": "panic"}), "severity"),
        (json!({"title": "x", "tags": ["no spaces"]}), "tags"),
    ] {
        let (st, v) = s.post("/api/v1/notifications", body).await;
        assert_eq!((st, v["error"]["field"].as_str()), (400, Some(field)), "{v}");
    }
    let (_, channels) = s.get("/api/v1/channels").await;
    assert_eq!(channels, json!([{"name": "team", "kind": "discord", "endpoint": "discord://123456/…"}]));
}

#[tokio::test]
async fn a_gone_channel_is_disabled_and_private_targets_are_refused_unless_allowed() {
    let (gone, gone_url) = Sink::start(&[410]).await;
    let s = start_with(|c| {
        c.allow_private_targets = true;
        c.channels
            .push(agent_os_core::channel::parse("old", &format!("slack://T1/B1/secret?base={gone_url}")).unwrap());
    })
    .await;
    let (st, _) = s.post("/api/v1/channels/old/test", json!({})).await;
    assert_eq!(st, 201);
    let n = wait_delivery(&s, "disabled").await;
    assert_eq!(n["deliveries"][0]["last_status"], 410);
    assert_eq!(
        gone.seen.lock().unwrap()[0].body["text"].as_str().map(|t| t.contains("Test from Agent OS to old")),
        Some(true)
    );
    let (_, events) = s.get("/api/v1/events?type=channel.").await;
    assert_eq!((events[0]["type"].as_str(), events[0]["subject"].as_str()), (Some("channel.gone"), Some("old")));
    let (st, _) = s.post("/api/v1/channels/nope/test", json!({})).await;
    assert_eq!(st, 404);
    let (_, later) = s.post("/api/v1/notifications", json!({"title": "after"})).await;
    assert_eq!(later["deliveries"], json!([]), "nothing goes to a gone channel: {later}");
    assert_eq!(gone.seen.lock().unwrap().len(), 1);
    let (_, open) = s.get("/api/v1/incidents?open=true").await;
    assert_eq!((open[0]["source"].as_str(), open[0]["subject"].as_str()), (Some("channel"), Some("old")), "{open}");
    // A test that is delivered again says the channel works: its incident resolves.
    gone.answers.lock().unwrap()[0] = 200;
    let (st, _) = s.post("/api/v1/channels/old/test", json!({})).await;
    assert_eq!(st, 201);
    wait_delivery(&s, "delivered").await;
    for _ in 0..100 {
        if s.get("/api/v1/incidents?open=true").await.1 == json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.get("/api/v1/incidents?open=true").await.1, json!([]), "the channel incident is resolved");

    // Without allow_private_targets, 127.0.0.1 is never called.
    let (sink, url) = Sink::start(&[200]).await;
    let strict = start_with(|c| {
        c.channels.push(
            agent_os_core::channel::parse("local", &format!("json://{}/hook", url.trim_start_matches("http://")))
                .unwrap(),
        );
    })
    .await;
    strict.post("/api/v1/notifications", json!({"title": "hello"})).await;
    let n = wait_delivery(&strict, "failed").await;
    assert!(n["deliveries"][0]["last_error"].as_str().unwrap().contains("private or local address"), "{n}");
    assert!(sink.seen.lock().unwrap().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn json_channels_are_signed_per_standard_webhooks() {
    let (sink, url) = Sink::start(&[200]).await;
    let secret = agent_os_engine::secrets::new_signing_secret();
    let s = start_with(|c| {
        c.allow_private_targets = true;
        let u = format!("json://{}/in?secret={secret}", url.trim_start_matches("http://"));
        c.channels.push(agent_os_core::channel::parse("hook", &u).unwrap());
    })
    .await;
    s.post("/api/v1/notifications", json!({"title": "signed", "tags": ["a"]})).await;
    wait_delivery(&s, "delivered").await;
    let got = sink.seen.lock().unwrap()[0].clone();
    let (path, key, body) = (got.path.clone(), got.key().to_string(), got.body.clone());
    let [id, ts, signature] =
        ["webhook-id", "webhook-timestamp", "webhook-signature"].map(|h| got.header(h).to_string());
    assert_eq!((path.as_str(), id.as_str()), ("/in", key.as_str()), "the webhook id is the delivery id");
    assert_eq!((body["type"].as_str(), body["title"].as_str()), (Some("notification"), Some("signed")));
    let raw = serde_json::to_vec(&body).unwrap();
    let want = agent_os_engine::secrets::sign_webhook(&secret, &id, ts.parse().unwrap(), &raw).unwrap();
    assert_eq!(signature, want, "a receiver can verify it with any Standard Webhooks library");
}

/// The operations of the served OpenAPI document: (method, path, operation).
fn openapi_operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                out.push((method.clone(), path.clone(), op.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn openapi_documents_the_error_answers_every_operation_can_give() {
    let s = start().await;
    let (st, doc) = s.req(reqwest::Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(st, 200);
    let ops = openapi_operations(&doc);
    assert!(ops.len() >= 59, "{} operations", ops.len());
    for (method, path, op) in &ops {
        let documented = |status: &str| op["responses"].get(status).is_some();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let api = path.starts_with("/api/v1/");
        if api {
            for status in ["401", "403", "503"] {
                assert!(documented(status), "{method} {path} does not document {status}");
            }
            assert!(documented("400"), "{method} {path} does not document 400");
        }
        if params.iter().any(|p| p["in"] == "path") {
            assert!(documented("404"), "{method} {path} does not document 404");
        }
        if op.get("requestBody").is_some() {
            for status in ["400", "413", "415"] {
                assert!(documented(status), "{method} {path} takes a body but does not document {status}");
            }
        }
        if !api {
            continue;
        }
        // The server agrees: without a token every operation answers a documented 401, and a
        // body that is not JSON a documented status, with the JSON error shape.
        let concrete = path
            .replace("/api/v1", "")
            .split('/')
            .map(|p| if p.starts_with('{') { "x" } else { p })
            .collect::<Vec<_>>()
            .join("/");
        let url = format!("{}/api/v1{concrete}", s.url);
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = s.http.request(m.clone(), &url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{method} {path} without a token");
        if op.get("requestBody").is_some() {
            let resp = s
                .http
                .request(m, &url)
                .bearer_auth(&s.admin)
                .header("content-type", "text/plain")
                .body("not json")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16().to_string();
            let body: Value = resp.json().await.unwrap();
            assert!(documented(&status), "{method} {path} answered an undocumented {status} to a text body: {body}");
            assert!(body["error"]["code"].is_string(), "{method} {path}: {body}");
        }
    }
}

#[tokio::test]
async fn openapi_says_which_fields_may_be_null_and_which_bodies_are_optional() {
    let s = start().await;
    let (_, doc) = s.req(reqwest::Method::GET, "/api/openapi.json", None, None).await;
    let schemas = &doc["components"]["schemas"];
    let admits_null = |schema: &Value| match &schema["type"] {
        Value::Null => schema.get("$ref").is_none(),
        Value::String(t) => t == "null",
        Value::Array(types) => types.iter().any(|t| t == "null"),
        _ => false,
    };
    for (schema, field) in [
        ("RunView", "outputs"),
        ("WorkflowRunView", "event"),
        ("WorkflowRunView", "outputs"),
        ("WorkflowStepView", "outputs"),
        ("WorkflowInputView", "default"),
    ] {
        let f = &schemas[schema]["properties"][field];
        assert!(admits_null(f), "{schema}.{field} must admit null: {f}");
    }
    // A workflow input's default and a run's outputs are any JSON value, not only objects.
    for (schema, field) in [("WorkflowInputView", "default"), ("WorkflowRunView", "outputs")] {
        let f = &schemas[schema]["properties"][field];
        assert!(f.get("type").is_none(), "{schema}.{field} may be any JSON value: {f}");
    }
    // The server does send null: a run that wrote no outputs.
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let run = s.run("fixture", "no_retry", json!({})).await;
    assert!(run["outputs"].is_null(), "{run}");

    // Operations whose body may be left out say so, and the server agrees.
    for (method, path) in [
        ("post", "/api/v1/projects/{name}/reload"),
        ("post", "/api/v1/resources/{name}/leases"),
        ("post", "/api/v1/resources/{name}/leases/{id}/renew"),
        ("post", "/api/v1/incidents/{id}/ack"),
        ("post", "/api/v1/workflows/{name}/runs"),
    ] {
        let body = &doc["paths"][path][method]["requestBody"];
        assert!(body.is_object(), "{method} {path} documents its body");
        assert_ne!(body["required"], true, "{method} {path}: the body is optional");
    }
    let (st, v) = s.req(reqwest::Method::POST, "/api/v1/projects/fixture/reload", Some(&s.admin), None).await;
    assert_eq!(st, 200, "a reload without a body: {v}");
    let (st, v) =
        s.req(reqwest::Method::POST, "/api/v1/projects/fixture/reload", Some(&s.admin), Some(Value::Null)).await;
    assert_eq!(st, 200, "a JSON null is no body too: {v}");
}

#[tokio::test]
async fn a_late_ping_keeps_its_time_and_a_resent_one_counts_once() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("late");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), "name: late\nchecks:\n  - { slug: job, every: 1h, grace: 5m }\n")
        .unwrap();
    s.add(&root).await;
    let (_, checks) = s.get("/api/v1/checks?project=late").await;
    let url = checks[0]["ping_url"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let ping = |path: String| {
        let http = http.clone();
        async move { http.post(path).send().await.unwrap().status().as_u16() }
    };
    // A job's start and finish, sent a minute late from its spool, keep the times they happened.
    assert_eq!(ping(format!("{url}/start?rid=r1&ts={}", now - 60)).await, 200);
    assert_eq!(ping(format!("{url}?rid=r1&ts={}", now - 30)).await, 200);
    let (_, after) = s.get("/api/v1/checks?project=late").await;
    assert_eq!(after[0]["state"], "up");
    assert_eq!(after[0]["last_duration_ms"], 30_000, "{after}");
    let last = after[0]["last_ping_at"].as_str().unwrap().to_string();
    assert_eq!(last, agent_os_server::views::time((now - 30) * 1000));
    // Sent again (its answer was lost): recorded once, nothing moves.
    assert_eq!(ping(format!("{url}?rid=r1&ts={}", now - 10)).await, 200);
    let (_, again) = s.get("/api/v1/checks?project=late").await;
    assert_eq!(
        (again[0]["last_ping_at"].as_str(), again[0]["last_duration_ms"].as_i64()),
        (Some(last.as_str()), Some(30_000))
    );
    // A time in the future is taken as now; one before the last ping as the last ping.
    assert_eq!(ping(format!("{url}?rid=r2&ts={}", now + 3600)).await, 200);
    let (_, future) = s.get("/api/v1/checks?project=late").await;
    let future_at: jiff::Timestamp = future[0]["last_ping_at"].as_str().unwrap().parse().unwrap();
    assert!(future_at.as_millisecond() <= (now + 60) * 1000, "{future}");
    assert_eq!(ping(format!("{url}?rid=r3&ts={}", now - 3600)).await, 200);
    let (_, past) = s.get("/api/v1/checks?project=late").await;
    assert_eq!(past[0]["last_ping_at"], future[0]["last_ping_at"], "a late ping never moves the check back");
    // A ts that is not a time is ignored, as an unknown parameter.
    assert_eq!(ping(format!("{url}?ts=yesterday")).await, 200);
}

#[tokio::test]
async fn a_notification_resent_with_its_idempotency_key_is_stored_and_sent_once() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let token = project_token(&s, "fixture").await;
    let body = json!({"title": "Nightly import done", "body": "42 rows", "idempotency_key": "import-2026-12-06"});
    let (st, first) = s.req(reqwest::Method::POST, "/api/v1/notifications", Some(&token), Some(body.clone())).await;
    assert_eq!(st, 201, "{first}");
    assert_eq!(first["deduplicated"], false);
    let (st, again) = s.req(reqwest::Method::POST, "/api/v1/notifications", Some(&token), Some(body)).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!((again["id"].clone(), again["deduplicated"].clone()), (first["id"].clone(), json!(true)));
    let (_, list) = s.get("/api/v1/notifications?project=fixture").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // The key belongs to its sender: the admin's own notification with the same key is another.
    let (st, admin) =
        s.post("/api/v1/notifications", json!({"title": "x", "idempotency_key": "import-2026-12-06"})).await;
    assert_eq!(st, 201, "{admin}");
    let (st, bad) = s.post("/api/v1/notifications", json!({"title": "x", "idempotency_key": ""})).await;
    assert_eq!((st, bad["error"]["field"].as_str()), (400, Some("idempotency_key")));
}

#[tokio::test]
async fn a_cost_sent_late_with_another_token_of_its_project_keeps_its_run() {
    let s = start().await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let run = s.run("fixture", "echo", json!({})).await;
    let id = run["id"].as_str().unwrap();
    let token = project_token(&s, "fixture").await;
    let record = json!({"service": "openai", "model": "gpt-4o", "tokens_in": 1000, "tokens_out": 100, "run_id": id, "idempotency_key": "late-1", "metadata": {"step": "comment"}});
    let (st, v) = s.req(reqwest::Method::POST, "/api/v1/costs", Some(&token), Some(record)).await;
    assert_eq!((st, v["accepted"].as_i64(), v["unpriced"].as_i64()), (201, Some(1), Some(0)), "{v}");
    let (_, costs) = s.get(&format!("/api/v1/costs?run={id}")).await;
    assert_eq!(costs[0]["amount"], "0.0035", "{costs}");
    assert_eq!(costs[0]["metadata"], json!({"step": "comment"}), "the record's metadata comes back");
    // A run of no project of the token's is refused, naming the field.
    let other = json!({"service": "openai", "amount": "1", "run_id": "01936f2a-0000-7000-8000-000000000000"});
    let (st, v) = s.req(reqwest::Method::POST, "/api/v1/costs", Some(&token), Some(other)).await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("run_id")), "{v}");
}

#[tokio::test]
async fn any_token_reads_the_price_table_and_a_config_price_is_listed_over_the_built_in_one() {
    let s = start_with(|cfg| {
        cfg.prices.set(agent_os_core::price::Price {
            model: "gpt-4o-mini".into(),
            input: 100_000_000,
            cached_input: 50_000_000,
            output: 400_000_000,
            source: agent_os_core::price::PriceSource::Config,
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let token = project_token(&s, "fixture").await;
    let (st, list) = s.req(reqwest::Method::GET, "/api/v1/prices?model=GPT-4O", Some(&token), None).await;
    assert_eq!(st, 200, "{list}");
    let mini = list.as_array().unwrap().iter().find(|p| p["model"] == "gpt-4o-mini").unwrap();
    assert_eq!(
        (mini["input"].as_str(), mini["output"].as_str(), mini["source"].as_str()),
        (Some("0.10"), Some("0.40"), Some("config"))
    );
    assert!(list.as_array().unwrap().iter().all(|p| p["model"].as_str().unwrap().contains("gpt-4o")), "{list}");
    let built_in = list.as_array().unwrap().iter().find(|p| p["model"] == "gpt-4o").unwrap();
    assert!(built_in["source"].as_str().unwrap().starts_with("built-in 20"), "{built_in}");
    // Records are priced with the configured price.
    let record = json!({"service": "openai", "model": "gpt-4o-mini", "tokens_in": 1000, "tokens_out": 1000});
    assert_eq!(s.req(reqwest::Method::POST, "/api/v1/costs", Some(&token), Some(record)).await.0, 201);
    let (_, costs) = s.get("/api/v1/costs?project=fixture").await;
    assert_eq!(costs[0]["amount"], "0.0005", "{costs}");
    let long = "m".repeat(129);
    let (st, v) = s.get(&format!("/api/v1/prices?model={long}")).await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("model")), "{v}");
}

#[tokio::test]
async fn config_yaml_is_applied_again_over_the_api_and_a_bad_version_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, "resources:\n  gpu: { concurrency: 1 }\n").unwrap();
    let parsed =
        agent_os_core::config::Config::parse("config.yaml", "resources:\n  gpu: { concurrency: 1 }\n").unwrap();
    let watched = file.clone();
    let s = start_with(move |cfg| {
        cfg.apply_file(&parsed, Vec::new());
        cfg.config_file = Some(watched);
        // Only the API reloads here: the watch looks too rarely to race it.
        cfg.config_poll_every = Duration::from_secs(3600);
    })
    .await;
    let (st, status) = s.get("/api/v1/config").await;
    assert_eq!((st, status["file"].as_str(), &status["last_reload"]), (200, file.to_str(), &Value::Null), "{status}");

    std::fs::write(&file, "resources:\n  gpu: { concurrency: 1 }\n  ops: { rate: 10/min }\n").unwrap();
    let (st, r) = s.post("/api/v1/config/reload", json!({})).await;
    assert_eq!(
        (st, &r["applied"], &r["changed"], &r["trigger"]),
        (200, &json!(true), &json!(["resources"]), &json!("api"))
    );
    let (_, resources) = s.get("/api/v1/resources").await;
    let names: Vec<&str> = resources.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["gpu", "ops"]);

    std::fs::write(&file, "resources:\n  gpu: { concurrency: 1 }\n  ops: { rate: often }\n").unwrap();
    let (st, r) = s.post("/api/v1/config/reload", json!({})).await;
    assert_eq!((st, &r["applied"]), (200, &json!(false)), "{r}");
    assert_eq!(
        (r["errors"][0]["line"].as_u64(), r["errors"][0]["path"].as_str()),
        (Some(3), Some("resources.ops.rate"))
    );
    let (_, resources) = s.get("/api/v1/resources").await;
    let ops = resources.as_array().unwrap().iter().find(|r| r["name"] == "ops").cloned().unwrap();
    assert_eq!(ops["rate"], "10/min", "the settings in force are kept");
    let (_, status) = s.get("/api/v1/config").await;
    assert_eq!(status["last_reload"]["applied"], false, "{status}");

    // Admin only.
    s.add(&fixture(dir.path())).await;
    let (st, tok) = s.post("/api/v1/tokens", json!({"name": "ci", "project": "fixture"})).await;
    assert_eq!(st, 201, "{tok}");
    let t = tok["token"].as_str().map(str::to_string);
    assert_eq!(s.req(reqwest::Method::GET, "/api/v1/config", t.as_deref(), None).await.0, 403);
    assert_eq!(s.req(reqwest::Method::POST, "/api/v1/config/reload", t.as_deref(), Some(json!({}))).await.0, 403);
}

/// serde reads a struct from an array of its fields too; the API takes objects only (found by
/// schemathesis: `POST /api/v1/prune` with the body `[]` ran a pass).
#[tokio::test]
async fn a_json_array_where_an_object_belongs_is_refused() {
    let s = start().await;
    for (path, body) in
        [("/api/v1/prune", json!([])), ("/api/v1/prune", json!([true])), ("/api/v1/tokens", json!(["ci", null]))]
    {
        let (st, v) = s.post(path, body.clone()).await;
        assert_eq!(st, 400, "{path} {body}: {v}");
        assert_eq!(v["error"]["message"], "the body must be a JSON object, not an array", "{v}");
    }
    let (st, v) = s.post("/api/v1/prune", json!({"dry_run": true})).await;
    assert_eq!((st, &v["dry_run"]), (200, &json!(true)), "{v}");
}
