//! Events, workflows and signed inbound webhooks over HTTP, against a real in-process server
//! whose workflows directory holds the files each test writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;
use common::*;

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use agent_os_engine::secrets::{new_signing_secret, sign_webhook};

/// A project whose task writes `{"n": 1}` as its outputs.
const COUNTER: &str = r#"name: counter
description: a task with outputs
tasks:
  count:
    run: "echo '{\"n\": 1}' > \"$AGENT_OS_OUTPUT\""
"#;

const PIPELINE: &str = r#"name: pipeline
description: count, then announce the count
on:
  manual: {}
steps:
  - id: count
    run: counter.count
  - id: announce
    needs: [count]
    if: steps.count.outputs.n == 1
    emit:
      type: counter.counted
      data: { n: "{{ steps.count.outputs.n }}" }
"#;

/// The environment variable holding the secret of `hooked`; each test runs in its own process
/// under nextest, and it is set before the server starts.
const HOOK_SECRET_ENV: &str = "AGENT_OS_TEST_WORKFLOW_HOOK_SECRET";

const HOOKED: &str = r#"name: hooked
description: started by a signed webhook
on:
  webhook: { secret_env: AGENT_OS_TEST_WORKFLOW_HOOK_SECRET }
steps:
  - id: announce
    emit:
      type: hooked.received
      data: { who: "{{ event.data.who }}" }
"#;

/// A webhook workflow whose secret variable is never set.
const UNSET: &str = r#"name: unset
on:
  webhook: { secret_env: AGENT_OS_TEST_NEVER_SET_SECRET }
steps:
  - id: announce
    emit: { type: unset.received }
"#;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A server whose workflows directory holds `files`.
async fn server_with(files: &[(&str, &str)]) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let workflows = dir.path().join("workflows");
    std::fs::create_dir(&workflows).unwrap();
    for (name, text) in files {
        write(&workflows, name, text);
    }
    let s = start_with(|cfg| cfg.workflows_dir = Some(workflows)).await;
    (s, dir)
}

async fn add_project(s: &TestServer, dir: &Path, name: &str, manifest: &str) {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), manifest).unwrap();
    s.add(&root).await;
}

/// Reloads the workflow files and insists they all loaded.
async fn reload(s: &TestServer) -> Value {
    let (st, r) = s.post("/api/v1/workflows/reload", json!({})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["errors"], json!([]), "{r:#}");
    r
}

async fn wait_workflow_run(s: &TestServer, id: &str) -> Value {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (st, run) = s.get(&format!("/api/v1/workflows/runs/{id}")).await;
        assert_eq!(st, 200, "{run}");
        if !matches!(run["status"].as_str(), Some("queued" | "running")) {
            return run;
        }
        assert!(std::time::Instant::now() < until, "the workflow run should end: {run:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn workflow_runs(s: &TestServer, workflow: &str) -> Vec<Value> {
    let (st, list) = s.get(&format!("/api/v1/workflows/runs?workflow={workflow}")).await;
    assert_eq!(st, 200, "{list}");
    list.as_array().unwrap().clone()
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Posts `body` to `/hooks/{workflow}` with the given headers (and a JSON content type).
async fn post_hook(s: &TestServer, workflow: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let mut r = s
        .http
        .post(format!("{}/hooks/{workflow}", s.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A webhook signed with `secret`, Standard Webhooks style.
async fn signed_hook(s: &TestServer, workflow: &str, secret: &str, id: &str, ts: i64, body: &str) -> (u16, Value) {
    let sig = sign_webhook(secret, id, ts, body.as_bytes()).unwrap();
    let headers = [("webhook-id", id.to_string()), ("webhook-timestamp", ts.to_string()), ("webhook-signature", sig)];
    post_hook(s, workflow, &headers, body).await
}

#[tokio::test]
async fn events_are_stored_once_per_key_and_projects_emit_only_their_own_types() {
    let (s, dir) = server_with(&[]).await;
    add_project(&s, dir.path(), "alpha", "name: alpha\ntasks:\n  t: { run: \"true\" }\n").await;
    add_project(&s, dir.path(), "beta", "name: beta\ntasks:\n  t: { run: \"true\" }\n").await;
    let alpha = project_token(&s, "alpha").await;
    let t = Some(alpha.as_str());

    let (st, e) = s.req(Method::POST, "/api/v1/events", t, Some(json!({"type": "beta.spike"}))).await;
    assert_eq!(st, 403, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("\"alpha.\"") && msg.contains("beta.spike"), "{msg}");
    assert_eq!(e["error"]["field"], "type");
    let (st, e) = s.req(Method::POST, "/api/v1/events", t, Some(json!({"type": "alphabet.spike"}))).await;
    assert_eq!(st, 403, "a prefix of the name is not the project: {e}");

    let body = json!({"type": "alpha.spike", "data": {"magnitude": 3}, "idempotency_key": "k1"});
    let (st, first) = s.req(Method::POST, "/api/v1/events", t, Some(body.clone())).await;
    assert_eq!(st, 201, "{first}");
    assert_eq!(first["type"], "alpha.spike");
    assert_eq!(first["project"], "alpha");
    assert_eq!(first["data"], json!({"magnitude": 3}));
    assert_eq!(first["duplicate"], false);
    let (st, again) = s.req(Method::POST, "/api/v1/events", t, Some(body.clone())).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"], "the earlier event answers");

    // Keys are per caller: the admin's "k1" is not alpha's.
    let (st, admin) = s.post("/api/v1/events", body).await;
    assert_eq!(st, 201, "{admin}");
    assert_ne!(admin["id"], first["id"]);
    assert_eq!(admin["project"], Value::Null);
    // The admin may emit any type; data defaults to {}.
    let (st, other) = s.post("/api/v1/events", json!({"type": "beta.anything"})).await;
    assert_eq!(st, 201, "{other}");
    assert_eq!(other["data"], json!({}));

    for (body, field) in [
        (json!({"type": "Not A Type"}), "type"),
        (json!({"type": "alpha..spike"}), "type"),
        (json!({"type": ""}), "type"),
        (json!({"type": "alpha.spike", "data": [1]}), "data"),
        (json!({"type": "alpha.spike", "idempotency_key": ""}), "idempotency_key"),
        (json!({"type": "alpha.spike", "idempotency_key": "x".repeat(101)}), "idempotency_key"),
        (json!({"data": {}}), "type"),
    ] {
        let (st, e) = s.post("/api/v1/events", body.clone()).await;
        assert_eq!(st, 400, "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    let (st, _) = s.req(Method::POST, "/api/v1/events", None, Some(json!({"type": "alpha.spike"}))).await;
    assert_eq!(st, 401);

    let (st, list) = s.req(Method::GET, "/api/v1/events?type=alpha.", t, None).await;
    assert_eq!(st, 200, "{list}");
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first["id"].as_str().unwrap()], "alpha's token sees its own event only once");
}

#[tokio::test]
async fn signed_webhooks_start_a_run_once_and_everything_else_is_refused() {
    let secret = new_signing_secret();
    // SAFETY: nextest runs each test in a process of its own, and no other thread of this one
    // reads the environment yet: the server starts below.
    unsafe { std::env::set_var(HOOK_SECRET_ENV, &secret) };
    let (s, dir) = server_with(&[("hooked.yaml", HOOKED), ("unset.yaml", UNSET), ("pipeline.yaml", PIPELINE)]).await;
    add_project(&s, dir.path(), "counter", COUNTER).await;
    reload(&s).await;

    let body = r#"{"who": "tradingview"}"#;
    let (st, ok) = signed_hook(&s, "hooked", &secret, "msg_1", now_s(), body).await;
    assert_eq!(st, 202, "{ok}");
    assert_eq!(ok["duplicate"], false);
    let run_id = ok["run_id"].as_str().unwrap().to_string();
    let run = wait_workflow_run(&s, &run_id).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["trigger"], "webhook");
    assert_eq!(run["trigger_key"], "webhook:msg_1");
    assert_eq!(run["event"], json!({"type": "webhook", "id": "msg_1", "data": {"who": "tradingview"}}));
    assert_eq!(run["steps"][0]["outputs"]["data"], json!({"who": "tradingview"}), "{run:#}");

    // The same message again (a retry or a replay): nothing new starts.
    let (st, dup) = signed_hook(&s, "hooked", &secret, "msg_1", now_s(), body).await;
    assert_eq!(st, 200, "{dup}");
    assert_eq!(dup, json!({"duplicate": true, "run_id": run_id}), "the replay names the run it started");
    assert_eq!(workflow_runs(&s, "hooked").await.len(), 1);

    // A rotated secret: the old signature first, the new one second.
    let sig = |secret: &str, id: &str, ts: i64| sign_webhook(secret, id, ts, body.as_bytes()).unwrap();
    let ts = now_s();
    let both = format!("{} {}", sig(&new_signing_secret(), "msg_2", ts), sig(&secret, "msg_2", ts));
    let headers = [("webhook-id", "msg_2".into()), ("webhook-timestamp", ts.to_string()), ("webhook-signature", both)];
    let (st, rotated) = post_hook(&s, "hooked", &headers, body).await;
    assert_eq!(st, 202, "{rotated}");
    assert_eq!(workflow_runs(&s, "hooked").await.len(), 2);

    let refusals: Vec<(&str, (u16, Value))> = vec![
        ("another secret", signed_hook(&s, "hooked", &new_signing_secret(), "msg_3", now_s(), body).await),
        ("a stale timestamp", signed_hook(&s, "hooked", &secret, "msg_4", now_s() - 301, body).await),
        ("a future timestamp", signed_hook(&s, "hooked", &secret, "msg_5", now_s() + 301, body).await),
        ("an unknown workflow", signed_hook(&s, "nope", &secret, "msg_6", now_s(), body).await),
        ("a workflow without a webhook trigger", signed_hook(&s, "pipeline", &secret, "msg_7", now_s(), body).await),
        ("an unset secret variable", signed_hook(&s, "unset", &secret, "msg_8", now_s(), body).await),
        ("no headers", post_hook(&s, "hooked", &[], body).await),
        (
            "a tampered body",
            post_hook(
                &s,
                "hooked",
                &[
                    ("webhook-id", "msg_9".into()),
                    ("webhook-timestamp", ts.to_string()),
                    ("webhook-signature", sig(&secret, "msg_9", ts)),
                ],
                r#"{"who": "someone else"}"#,
            )
            .await,
        ),
        (
            "a timestamp that is not a number",
            post_hook(
                &s,
                "hooked",
                &[
                    ("webhook-id", "msg_10".into()),
                    ("webhook-timestamp", "soon".into()),
                    ("webhook-signature", sig(&secret, "msg_10", ts)),
                ],
                body,
            )
            .await,
        ),
    ];
    let first_message = refusals[0].1.1["error"]["message"].clone();
    for (what, (st, answer)) in &refusals {
        assert_eq!(*st, 401, "{what}: {answer}");
        assert_eq!(answer["error"]["message"], first_message, "{what}: every refusal reads the same");
    }
    assert_eq!(workflow_runs(&s, "hooked").await.len(), 2, "no refused webhook started a run");
    assert!(workflow_runs(&s, "unset").await.is_empty());
    assert!(workflow_runs(&s, "pipeline").await.is_empty());

    // A verified body that is not a JSON object is a bad request, and starts nothing.
    let (st, e) = signed_hook(&s, "hooked", &secret, "msg_11", now_s(), "[1, 2]").await;
    assert_eq!(st, 400, "{e}");
    assert_eq!(workflow_runs(&s, "hooked").await.len(), 2);
    // Over the body limit (64 KiB in tests).
    let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(70 * 1024));
    let (st, e) = signed_hook(&s, "hooked", &secret, "msg_12", now_s(), &big).await;
    assert_eq!(st, 413, "{e}");
    // The webhook route takes no bearer token and only POST.
    let (st, _) = s.req(Method::GET, "/hooks/hooked", None, None).await;
    assert_eq!(st, 405);
}

#[tokio::test]
async fn a_manual_run_goes_through_its_steps_and_shows_them() {
    let (s, dir) = server_with(&[("pipeline.yaml", PIPELINE), ("hooked.yaml", HOOKED)]).await;
    add_project(&s, dir.path(), "counter", COUNTER).await;
    let loaded = reload(&s).await;
    assert_eq!(loaded["workflows"], json!(["hooked", "pipeline"]));

    let (st, list) = s.get("/api/v1/workflows").await;
    assert_eq!(st, 200, "{list}");
    let pipeline = list.as_array().unwrap().iter().find(|w| w["name"] == "pipeline").unwrap();
    assert_eq!(pipeline["triggers"], json!(["manual"]));
    assert_eq!(pipeline["step_count"], 2);
    assert!(pipeline["file"].as_str().unwrap().ends_with("pipeline.yaml"));
    let (st, w) = s.get("/api/v1/workflows/pipeline").await;
    assert_eq!(st, 200, "{w}");
    assert_eq!(w["text"], PIPELINE);
    assert_eq!(w["steps"][0]["kind"], "run");
    assert_eq!(w["steps"][0]["target"], "counter.count");
    assert_eq!(w["steps"][1]["kind"], "emit");
    assert_eq!(w["steps"][1]["target"], "counter.counted");
    assert_eq!(w["steps"][1]["needs"], json!(["count"]));
    assert_eq!(w["steps"][1]["if"], "steps.count.outputs.n == 1");
    assert_eq!(w["webhook_path"], Value::Null);
    let (_, h) = s.get("/api/v1/workflows/hooked").await;
    assert_eq!(h["triggers"], json!(["webhook"]));
    assert_eq!(h["webhook_path"], "/hooks/hooked");

    // Only admins start workflows; project tokens may read them.
    let token = project_token(&s, "counter").await;
    let t = Some(token.as_str());
    let (st, _) = s.req(Method::GET, "/api/v1/workflows/pipeline", t, None).await;
    assert_eq!(st, 200);
    let (st, _) = s.req(Method::POST, "/api/v1/workflows/pipeline/runs", t, Some(json!({}))).await;
    assert_eq!(st, 403);

    let (st, e) = s.post("/api/v1/workflows/hooked/runs", json!({})).await;
    assert_eq!(st, 409, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("manual: {}"), "{e}");
    let (st, e) = s.post("/api/v1/workflows/nope/runs", json!({})).await;
    assert_eq!(st, 404, "{e}");
    let (st, e) = s.post("/api/v1/workflows/pipeline/runs", json!({"inputs": [1]})).await;
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["error"]["field"], "inputs");

    let (st, run) = s.post("/api/v1/workflows/pipeline/runs", json!({})).await;
    assert_eq!(st, 201, "{run}");
    assert_eq!(run["trigger"], "manual");
    let run = wait_workflow_run(&s, run["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let steps = run["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{run:#}");
    assert_eq!(steps[0]["step_id"], "count");
    assert_eq!(steps[0]["status"], "succeeded");
    assert_eq!(steps[0]["item"], Value::Null);
    assert_eq!(steps[0]["outputs"], json!({"n": 1}));
    let task_run = steps[0]["task_run_id"].as_str().unwrap();
    let (_, task) = s.get(&format!("/api/v1/runs/{task_run}")).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(steps[1]["step_id"], "announce");
    assert_eq!(steps[1]["status"], "succeeded");
    assert_eq!(steps[1]["outputs"]["type"], "counter.counted");
    let (_, events) = s.get("/api/v1/events?type=counter.counted").await;
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");

    let (st, list) = s.get("/api/v1/workflows/runs?workflow=pipeline&limit=5").await;
    assert_eq!(st, 200);
    assert_eq!(list[0]["id"], run["id"]);
    let (st, _) = s.get("/api/v1/workflows/runs?limit=0").await;
    assert_eq!(st, 400);
    let (st, _) = s.get("/api/v1/workflows/runs/nope").await;
    assert_eq!(st, 404);
    // Cancelling a run that has ended changes nothing.
    let (st, same) = s.post(&format!("/api/v1/workflows/runs/{}/cancel", run["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(st, 200, "{same}");
    assert_eq!(same["status"], "succeeded");
}

#[tokio::test]
async fn validate_reports_every_error_of_a_broken_file() {
    let (s, dir) = server_with(&[]).await;
    add_project(&s, dir.path(), "counter", COUNTER).await;

    let (st, ok) = s.post("/api/v1/workflows/validate", json!({"file": "pipeline.yaml", "text": PIPELINE})).await;
    assert_eq!(st, 200, "{ok}");
    assert_eq!(ok, json!({"valid": true, "workflow": "pipeline"}));

    let broken = PIPELINE.replace("counter.count", "counter.cuont").replace("needs: [count]", "needs: [nothing]");
    let (st, bad) = s.post("/api/v1/workflows/validate", json!({"file": "pipeline.yaml", "text": broken})).await;
    assert_eq!(st, 422, "{bad}");
    assert_eq!(bad["valid"], false);
    let errors = bad["errors"].as_str().unwrap();
    assert!(errors.contains("pipeline.yaml:"), "{errors}");
    assert!(errors.contains("cuont") && errors.contains("nothing"), "every error is reported: {errors}");
    assert_eq!(bad["error"]["code"], "invalid_workflow");
    assert_eq!(bad["error"]["message"], errors);

    let (st, bad) = s.post("/api/v1/workflows/validate", json!({"file": "other.yaml", "text": PIPELINE})).await;
    assert_eq!(st, 422, "{bad}");
    assert!(bad["errors"].as_str().unwrap().contains("name the file pipeline.yaml"), "{bad}");

    let (st, e) = s.post("/api/v1/workflows/validate", json!({"file": "", "text": PIPELINE})).await;
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["error"]["field"], "file");
    let token = project_token(&s, "counter").await;
    let (st, _) = s
        .req(Method::POST, "/api/v1/workflows/validate", Some(&token), Some(json!({"file": "a.yaml", "text": ""})))
        .await;
    assert_eq!(st, 403);

    // A broken file in the directory is reported by reload, and the rest still loads.
    let workflows = s.engine.config().workflows_dir.clone().unwrap();
    write(&workflows, "pipeline.yaml", PIPELINE);
    write(&workflows, "broken.yaml", "name: broken\non: { manual: {} }\nsteps: []\n");
    let (st, r) = s.post("/api/v1/workflows/reload", json!({})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["workflows"], json!(["pipeline"]));
    assert_eq!(r["errors"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["errors"][0]["file"].as_str().unwrap().ends_with("broken.yaml"), "{r}");
    assert!(r["errors"][0]["message"].as_str().unwrap().contains("no steps"), "{r}");
}

#[tokio::test]
async fn another_clients_unverified_webhooks_do_not_refuse_a_signed_one() {
    const LIMITED: &str = r#"name: limited
on:
  webhook: { secret_env: AGENT_OS_TEST_LIMITED_HOOK_SECRET }
steps:
  - id: announce
    emit:
      type: limited.received
"#;
    let secret = new_signing_secret();
    // SAFETY: as above; this variable is read by this test's workflow alone.
    unsafe { std::env::set_var("AGENT_OS_TEST_LIMITED_HOOK_SECRET", &secret) };
    let (s, _dir) = server_with(&[("limited.yaml", LIMITED)]).await;
    reload(&s).await;
    // One signed delivery from `client`, signed with `key`: the status, Retry-After and body.
    let send = |client: reqwest::Client, key: String, id: String| {
        let url = format!("{}/hooks/limited", s.url);
        async move {
            let sig = sign_webhook(&key, &id, now_s(), b"{}").unwrap();
            let resp = client
                .post(url)
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", now_s().to_string())
                .header("webhook-signature", sig)
                .body("{}")
                .send()
                .await
                .unwrap();
            let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (resp.status().as_u16(), retry, resp.text().await.unwrap())
        }
    };
    let attacker = client_from("127.0.0.2");
    for i in 0..60 {
        let forged = send(attacker.clone(), new_signing_secret(), format!("forged_{i}")).await;
        assert_eq!(forged.0, 401, "forgery {i}");
    }
    let (st, retry, body) = send(attacker.clone(), new_signing_secret(), "forged_61".into()).await;
    assert_eq!(st, 429, "{body}");
    assert!(body.contains("rate_limited") && body.contains("from this address"), "{body}");
    assert!(retry.is_some(), "Retry-After is set");
    // The real sender, on another address, is still heard.
    let (st, _, body) = send(client_from("127.0.0.1"), secret.clone(), "real_1".into()).await;
    assert_eq!(st, 202, "{body}");
}

/// `GET /workflows/runs/{id}/wait` answers as soon as the run ends (not at its timeout), with
/// the steps; a run still going is returned as it stands when the timeout passes; a bad
/// timeout, an unknown run and a project token are refused.
#[tokio::test]
async fn waiting_for_a_workflow_run_answers_when_it_ends() {
    const SLOW: &str = "name: slow\non:\n  manual: {}\nsteps:\n  - { id: nap, run: napper.nap }\n";
    let (s, dir) = server_with(&[("pipeline.yaml", PIPELINE), ("slow.yaml", SLOW)]).await;
    add_project(&s, dir.path(), "counter", COUNTER).await;
    add_project(&s, dir.path(), "napper", "name: napper\ntasks:\n  nap: { run: \"sleep 3\" }\n").await;
    reload(&s).await;

    let (st, run) = s.post("/api/v1/workflows/pipeline/runs", json!({})).await;
    assert_eq!(st, 201, "{run}");
    let id = run["id"].as_str().unwrap();
    let asked = std::time::Instant::now();
    let (st, done) = s.get(&format!("/api/v1/workflows/runs/{id}/wait?timeout=20s")).await;
    assert_eq!(st, 200, "{done}");
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["steps"].as_array().unwrap().len(), 2, "{done:#}");
    assert!(asked.elapsed() < Duration::from_secs(10), "answered at the end, not the timeout: {:?}", asked.elapsed());

    let (st, run) = s.post("/api/v1/workflows/slow/runs", json!({})).await;
    assert_eq!(st, 201, "{run}");
    let id = run["id"].as_str().unwrap();
    let asked = std::time::Instant::now();
    let (st, going) = s.get(&format!("/api/v1/workflows/runs/{id}/wait?timeout=300ms")).await;
    assert_eq!(st, 200, "{going}");
    assert!(matches!(going["status"].as_str(), Some("queued" | "running")), "{going:#}");
    assert!(asked.elapsed() >= Duration::from_millis(300), "{:?}", asked.elapsed());

    let (st, e) = s.get(&format!("/api/v1/workflows/runs/{id}/wait?timeout=soon")).await;
    assert_eq!((st, e["error"]["field"].as_str()), (400, Some("timeout")), "{e}");
    let (st, _) = s.get("/api/v1/workflows/runs/no-such-run/wait?timeout=1s").await;
    assert_eq!(st, 404);
    let token = project_token(&s, "counter").await;
    let (st, _) = s.req(Method::GET, &format!("/api/v1/workflows/runs/{id}/wait"), Some(&token), None).await;
    assert_eq!(st, 403);
    let (st, _) = s.post(&format!("/api/v1/workflows/runs/{id}/cancel"), json!({})).await;
    assert_eq!(st, 200);
}
