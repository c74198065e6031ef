//! The worker protocol against a real in-process server: the test acts as an `agent-os worker`
//! would, over real HTTP, with a worker token and the protocol's header. Timing (a silent
//! worker, a project without one, a poll that re-checks each second) runs on held time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::time::Duration;

use serde_json::{Value, json};

use agent_os_engine::testing::{eventually, nap};

mod common;
use common::*;

const CORTANA: &str = "name: cortana
description: Personal AI memory
tasks:
  daily_update:
    run: scripts/daily.sh
    retries: 2
    retry_delay: 10s
  strict:
    run: \"exit 78\"
    retries: 3
  once:
    run: \"true\"
status: { run: [sh, scripts/status.sh], every: 5m }
cost: { run: [sh, scripts/cost.sh], every: 1h }
schedule: { run: [sh, scripts/schedule.sh] }
";

const IMAGES: &str = "name: image-workflow
tasks:
  backup:
    run: scripts/backup.sh
";

/// A worker's side of the conversation: its token, and the worker id its hello was given.
struct Worker<'a> {
    s: &'a TestServer,
    token: String,
    id: String,
}

impl TestServer {
    /// A worker token for `projects`, made by the admin.
    async fn worker_token(&self, projects: &[&str]) -> String {
        let (st, v) =
            self.post("/api/v1/tokens", json!({"kind": "worker", "projects": projects, "name": "mac-mini"})).await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["kind"], "worker");
        v["token"].as_str().unwrap().to_string()
    }

    /// A request as a worker sends it: its token and the protocol's header (`protocol`).
    async fn wreq(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        protocol: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let name = method.as_str().to_ascii_lowercase();
        let mut r = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(token);
        if let Some(p) = protocol {
            r = r.header("Agent-OS-Worker-Protocol", p);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_documented(name, path, status, &text);
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn wpost(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.wreq(reqwest::Method::POST, path, token, Some("1"), Some(body)).await
    }

    async fn hello_as(
        &self,
        token: &str,
        name: &str,
        projects: &[(&str, &str)],
        running: Value,
        pending: Value,
    ) -> (u16, Value) {
        let projects: Vec<Value> = projects.iter().map(|(n, m)| json!({"name": n, "manifest": m})).collect();
        let body = json!({"name": name, "version": "0.9.0", "hostname": format!("{name}.local"), "capacity": 4,
            "projects": projects, "running": running, "pending": pending});
        self.wpost("/api/v1/worker/hello", token, body).await
    }

    /// A worker for `projects` that has said hello.
    async fn worker(&self, name: &str, projects: &[(&str, &str)]) -> Worker<'_> {
        let names: Vec<&str> = projects.iter().map(|p| p.0).collect();
        let token = self.worker_token(&names).await;
        self.worker_with(&token, name, projects).await
    }

    async fn worker_with(&self, token: &str, name: &str, projects: &[(&str, &str)]) -> Worker<'_> {
        let (st, v) = self.hello_as(token, name, projects, json!([]), json!([])).await;
        assert_eq!(st, 200, "{v}");
        Worker { s: self, token: token.to_string(), id: v["worker_id"].as_str().unwrap().to_string() }
    }

    async fn queue(&self, project: &str, task: &str) -> String {
        let (st, run) = self.post("/api/v1/runs", json!({"project": project, "task": task})).await;
        assert_eq!(st, 201, "{run}");
        run["id"].as_str().unwrap().to_string()
    }

    async fn run_view(&self, id: &str) -> Value {
        let (st, run) = self.get(&format!("/api/v1/runs/{id}")).await;
        assert_eq!(st, 200, "{run}");
        run
    }
}

impl Worker<'_> {
    async fn poll(&self, capacity: i64, running: Value) -> Value {
        let (st, v) = self
            .s
            .wpost(
                "/api/v1/worker/poll",
                &self.token,
                json!({"worker_id": self.id, "capacity": capacity, "running": running}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        v
    }

    /// A poll on held time that finds nothing: answered once the test moves the clock past
    /// the poll's wait.
    async fn poll_held(&self, capacity: i64, running: Value, wait: Duration) -> Value {
        let advance = async {
            nap(Duration::from_millis(50)).await;
            tokio::time::advance(wait).await;
        };
        tokio::join!(self.poll(capacity, running), advance).0
    }

    /// Polls until it is handed a run; gives the run as handed out.
    async fn take(&self) -> Value {
        for _ in 0..50 {
            let got = self.poll(1, json!([])).await;
            if let Some(run) = got["runs"].as_array().and_then(|r| r.first()) {
                return run.clone();
            }
        }
        panic!("no run was handed out");
    }

    async fn logs(&self, run: &str, attempt: i64, chunks: Value) -> (u16, Value) {
        let path = format!("/api/v1/worker/attempts/{run}/{attempt}/logs");
        self.s.wpost(&path, &self.token, json!({"worker_id": self.id, "chunks": chunks})).await
    }

    async fn end(&self, run: &str, attempt: i64, end: Value) -> (u16, Value) {
        let mut body = json!({"worker_id": self.id, "exit_code": null, "error": null, "retryable": false,
            "interrupted": false, "outputs": null, "last_seq": 0});
        for (k, v) in end.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.s.wpost(&format!("/api/v1/worker/attempts/{run}/{attempt}/end"), &self.token, body).await
    }

    async fn probe(&self, project: &str, kind: &str, answer: Value, error: Value, since: Value) -> (u16, Value) {
        let body = json!({"worker_id": self.id, "project": project, "kind": kind, "answer": answer, "error": error,
            "duration_ms": 12, "since": since});
        self.s.wpost("/api/v1/worker/probes", &self.token, body).await
    }
}

fn chunk(seq: i64, data: &str) -> Value {
    json!({"seq": seq, "stream": "stdout", "at": "2026-12-06T10:00:00Z", "data": data})
}

fn quick(cfg: &mut agent_os_engine::EngineConfig) {
    cfg.workers.poll_wait = Duration::from_millis(300);
}

#[tokio::test]
async fn a_worker_token_calls_only_the_worker_operations_of_its_projects() {
    let s = start_with(quick).await;
    let token = s.worker_token(&["cortana", "image-workflow"]).await;

    // Only the admin makes one, and it names its projects.
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let scoped = project_token(&s, "fixture").await;
    let ask = json!({"kind": "worker", "projects": ["fixture"]});
    let (st, v) = s.req(reqwest::Method::POST, "/api/v1/tokens", Some(&scoped), Some(ask)).await;
    assert_eq!(st, 403, "a project token makes no worker token: {v}");
    for (body, field) in [
        (json!({"kind": "worker"}), "projects"),
        (json!({"kind": "worker", "projects": []}), "projects"),
        (json!({"kind": "worker", "projects": ["Bad Name"]}), "projects[0]"),
        (json!({"kind": "worker", "projects": ["a"], "project": "a"}), "project"),
        (json!({"kind": "admin", "projects": ["a"]}), "projects"),
    ] {
        let (st, v) = s.post("/api/v1/tokens", body.clone()).await;
        assert_eq!((st, v["error"]["field"].as_str()), (400, Some(field)), "{body}: {v}");
    }
    let (_, tokens) = s.get("/api/v1/tokens").await;
    let listed = tokens.as_array().unwrap().iter().find(|t| t["kind"] == "worker" && t["projects"][0] == "cortana");
    assert_eq!(listed.unwrap()["projects"], json!(["cortana", "image-workflow"]));

    // Every other operation refuses it, and it cannot make tokens.
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/projects"),
        (reqwest::Method::GET, "/api/v1/runs"),
        (reqwest::Method::GET, "/api/v1/workers"),
        (reqwest::Method::POST, "/api/v1/tokens"),
        (reqwest::Method::GET, "/metrics"),
    ] {
        let body = (method == reqwest::Method::POST).then(|| json!({"kind": "worker", "projects": ["cortana"]}));
        let (st, v) = s.req(method, path, Some(&token), body).await;
        assert_eq!(st, 403, "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("worker operations"), "{v}");
    }
    // The worker operations take nothing but a worker token.
    let (st, v) = s.hello_as(&s.admin, "w", &[], json!([]), json!([])).await;
    assert_eq!(st, 403, "{v}");
    let (st, _) = s.hello_as("aosw_unknown", "w", &[], json!([]), json!([])).await;
    assert_eq!(st, 401);

    // Its projects only, named in the refusal.
    let (st, v) = s.hello_as(&token, "w", &[("trading", "name: trading\ntasks: {}\n")], json!([]), json!([])).await;
    assert_eq!(st, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("\"trading\""), "{v}");
    let elsewhere = s.worker_token(&["x"]).await;
    let w = s.worker_with(&elsewhere, "other", &[]).await;
    let (st, v) = s
        .wreq(
            reqwest::Method::PUT,
            "/api/v1/worker/projects/cortana",
            &elsewhere,
            Some("1"),
            Some(json!({"worker_id": w.id, "manifest": CORTANA})),
        )
        .await;
    assert_eq!(st, 403, "{v}");
    // A project token is no worker's either.
    let (st, _) = s.hello_as(&scoped, "w", &[], json!([]), json!([])).await;
    assert_eq!(st, 403);

    // The protocol's header: missing, or another version, is refused with what to do.
    let hello = json!({"name": "w", "version": "1", "hostname": "h", "capacity": 1});
    for protocol in [None, Some("2")] {
        let (st, v) =
            s.wreq(reqwest::Method::POST, "/api/v1/worker/hello", &token, protocol, Some(hello.clone())).await;
        assert_eq!((st, v["error"]["code"].as_str()), (400, Some("worker_protocol")), "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("protocol 1") && message.contains("upgrade the worker or the server"), "{message}");
    }

    // Another token's worker, or none at all, is not found.
    let (st, v) = s.wpost("/api/v1/worker/poll", &token, json!({"worker_id": w.id, "capacity": 1})).await;
    assert_eq!(st, 404, "{v}");
    let (st, _) = s.wpost("/api/v1/worker/poll", &token, json!({"worker_id": "nope", "capacity": 1})).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn hello_registers_worker_projects_from_their_manifests() {
    let s = start_with(quick).await;
    let token = s.worker_token(&["cortana", "image-workflow", "fixture"]).await;
    let (st, v) = s.hello_as(&token, "mac-mini", &[("cortana", CORTANA)], json!([]), json!([])).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["protocol"].as_u64(), v["poll_wait_ms"].as_u64()), (Some(1), Some(300)));
    assert_eq!(v["public_url"], s.url.as_str());
    assert_eq!(v["projects"], json!([{"name": "cortana", "cost_cursor": null}]));
    let id = v["worker_id"].as_str().unwrap().to_string();

    let (st, p) = s.get("/api/v1/projects/cortana").await;
    assert_eq!(st, 200, "{p}");
    assert_eq!((p["transport"].as_str(), p["root"].as_str()), (Some("worker"), None));
    let tasks: Vec<&str> = p["tasks"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(tasks.contains(&"daily_update"), "{tasks:?}");

    // The same token and name is the same worker.
    let (_, again) = s.hello_as(&token, "mac-mini", &[("cortana", CORTANA)], json!([]), json!([])).await;
    assert_eq!(again["worker_id"], id.as_str());
    let (st, workers) = s.get("/api/v1/workers").await;
    assert_eq!(st, 200, "{workers}");
    assert_eq!(workers.as_array().unwrap().len(), 1);
    assert_eq!((workers[0]["name"].as_str(), workers[0]["connected"].as_bool()), (Some("mac-mini"), Some(true)));
    assert_eq!(workers[0]["projects"], json!(["cortana"]));

    // A bad manifest is refused with its errors, and nothing of the hello is stored.
    let (st, v) = s
        .hello_as(
            &token,
            "mac-mini",
            &[("image-workflow", IMAGES), ("cortana", "name: cortana\ntasks:\n  x: { run: 5, nope: 1 }\n")],
            json!([]),
            json!([]),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("invalid_manifest")), "{v}");
    assert_eq!(v["error"]["field"], "projects[1].manifest");
    assert!(!v["error"]["errors"].as_array().unwrap().is_empty(), "{v}");
    let (st, _) = s.get("/api/v1/projects/image-workflow").await;
    assert_eq!(st, 404, "a refused hello registers nothing");
    let (st, v) = s.hello_as(&token, "mac-mini", &[("cortana", IMAGES)], json!([]), json!([])).await;
    assert_eq!((st, v["error"]["field"].as_str()), (400, Some("projects[0].name")), "{v}");
    let http = "name: cortana\nplugin: { url: \"https://example.com/agent-os\" }\ntasks:\n  a: {}\n";
    let (st, v) = s.hello_as(&token, "mac-mini", &[("cortana", http)], json!([]), json!([])).await;
    assert_eq!(st, 400, "{v}");

    // A name registered from a path is not a worker's to serve.
    let dir = tempfile::tempdir().unwrap();
    s.add(&fixture(dir.path())).await;
    let (st, v) = s
        .hello_as(
            &token,
            "mac-mini",
            &[("fixture", "name: fixture\ntasks:\n  a: { run: \"true\" }\n")],
            json!([]),
            json!([]),
        )
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("\"fixture\" is already registered from a directory"),
        "{v}"
    );

    // A manifest changed on the worker's disk.
    let changed = format!("{CORTANA}  # v2\n").replace("  once:\n", "  added:\n    run: \"true\"\n  once:\n");
    let (st, v) = s
        .wreq(
            reqwest::Method::PUT,
            "/api/v1/worker/projects/cortana",
            &token,
            Some("1"),
            Some(json!({"worker_id": id, "manifest": changed})),
        )
        .await;
    assert_eq!((st, v["name"].as_str()), (200, Some("cortana")), "{v}");
    let (_, p) = s.get("/api/v1/projects/cortana").await;
    assert!(p["tasks"].as_array().unwrap().iter().any(|t| t["name"] == "added"), "{p}");
    let (st, v) = s
        .wreq(
            reqwest::Method::PUT,
            "/api/v1/worker/projects/cortana",
            &token,
            Some("1"),
            Some(json!({"worker_id": id, "manifest": "name: cortana\ntasks: 3\n"})),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("invalid_manifest")), "{v}");
    let (_, p) = s.get("/api/v1/projects/cortana").await;
    assert!(p["tasks"].as_array().unwrap().iter().any(|t| t["name"] == "added"), "the stored manifest stays: {p}");

    // Only its workers change it.
    let (st, v) = s.post("/api/v1/projects/cortana/reload", json!({"manifest": CORTANA})).await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("served by workers"), "{v}");
}

#[tokio::test]
async fn two_workers_polling_at_once_never_get_the_same_run() {
    race_story(&start_with(quick).await).await;
    if let Some(db) = agent_os_store::testing::PgDatabase::create().await {
        let s = start_on_with(&db.url, quick).await;
        race_story(&s).await;
        s.engine.shutdown(Duration::from_secs(1)).await;
        drop(s);
        db.drop_it().await;
    }
}

/// Two workers drain 30 runs at once; each run goes to one of them, with a token of its own,
/// and an end and its log are stored on either database.
async fn race_story(s: &TestServer) {
    let token = s.worker_token(&["cortana"]).await;
    let a = s.worker_with(&token, "a", &[("cortana", CORTANA)]).await;
    let b = s.worker_with(&token, "b", &[("cortana", CORTANA)]).await;
    let mut queued = Vec::new();
    for _ in 0..30 {
        queued.push(s.queue("cortana", "once").await);
    }
    let drain = async |w: &Worker<'_>| {
        let mut got = Vec::new();
        let mut quiet = 0;
        while quiet < 2 {
            let v = w.poll(3, json!([])).await;
            let runs = v["runs"].as_array().unwrap();
            quiet = if runs.is_empty() { quiet + 1 } else { 0 };
            got.extend(
                runs.iter()
                    .map(|r| (r["run_id"].as_str().unwrap().to_string(), r["token"].as_str().unwrap().to_string())),
            );
        }
        got
    };
    let (got_a, got_b) = tokio::join!(drain(&a), drain(&b));
    let mut all: Vec<String> = got_a.iter().chain(&got_b).map(|(id, _)| id.clone()).collect();
    let tokens: std::collections::HashSet<&String> = got_a.iter().chain(&got_b).map(|(_, t)| t).collect();
    assert_eq!(tokens.len(), all.len(), "each attempt has its own token");
    all.sort();
    let total = all.len();
    all.dedup();
    assert_eq!((total, all.len()), (30, 30), "a run was handed out twice (a: {}, b: {})", got_a.len(), got_b.len());
    queued.sort();
    assert_eq!(all, queued);
    let (_, workers) = s.get("/api/v1/workers").await;
    let running: usize = workers.as_array().unwrap().iter().map(|w| w["running"].as_array().unwrap().len()).sum();
    assert_eq!(running, 30);
    let (id, _) = &got_a.first().or(got_b.first()).unwrap().clone();
    let owner = if got_a.iter().any(|(r, _)| r == id) { &a } else { &b };
    let (st, v) = owner.logs(id, 1, json!([chunk(1, "done\n"), chunk(1, "again\n")])).await;
    assert_eq!(st, 400, "{v}");
    let (_, v) = owner.logs(id, 1, json!([chunk(1, "done\n")])).await;
    assert_eq!(v["acked_seq"], 1);
    owner.logs(id, 1, json!([chunk(1, "done\n")])).await;
    let (_, v) = owner.end(id, 1, json!({"end": "succeeded", "exit_code": 0, "last_seq": 1})).await;
    assert_eq!(v["run_status"], "succeeded", "{v}");
    assert_eq!(s.log(id).await, "done\n");
}

#[tokio::test]
async fn the_run_token_acts_for_the_task_until_its_attempt_ends() {
    let s = start_with(quick).await;
    let w = s.worker("mac-mini", &[("cortana", CORTANA)]).await;
    let id = s.queue("cortana", "once").await;
    let run = w.take().await;
    assert_eq!((run["run_id"].as_str(), run["attempt"].as_i64()), (Some(id.as_str()), Some(1)));
    assert_eq!(
        (run["project"].as_str(), run["task"].as_str(), run["trigger"].as_str()),
        (Some("cortana"), Some("once"), Some("api"))
    );
    assert_eq!((run["input"].clone(), run["max_attempts"].as_i64()), (json!({}), Some(1)));
    let token = run["token"].as_str().unwrap();
    assert!(token.starts_with("aosr_"), "{token}");

    // What the task does with AGENT_OS_TOKEN: report a cost of its run.
    let cost = json!({"service": "openai", "amount": "0.25", "idempotency_key": "k1"});
    let (st, v) = s.req(reqwest::Method::POST, "/api/v1/costs", Some(token), Some(cost.clone())).await;
    assert_eq!(st, 201, "{v}");
    let (_, costs) = s.get("/api/v1/costs?project=cortana").await;
    assert_eq!(costs[0]["run_id"], id.as_str());

    let (st, v) = w.end(&id, 1, json!({"end": "succeeded", "exit_code": 0})).await;
    assert_eq!((st, v["recorded"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(s.run_view(&id).await["attempts"][0]["worker"], w.id.as_str(), "the attempt names its worker");
    let (st, _) = s.req(reqwest::Method::POST, "/api/v1/costs", Some(token), Some(cost)).await;
    assert_eq!(st, 401, "the token ends with its attempt");
}

#[tokio::test]
async fn logs_are_stored_once_by_seq_redacted_and_capped() {
    let s = start_with(|cfg| {
        quick(cfg);
        cfg.log_max_bytes = 2048;
    })
    .await;
    let w = s.worker("mac-mini", &[("cortana", CORTANA)]).await;
    let id = s.queue("cortana", "once").await;
    let run = w.take().await;
    let token = run["token"].as_str().unwrap().to_string();

    let (st, v) = w.logs(&id, 1, json!([chunk(1, "one\n"), chunk(2, "two\n")])).await;
    assert_eq!((st, v["acked_seq"].as_i64()), (200, Some(2)), "{v}");
    // The answer was lost: the worker sends again, with one more.
    let (st, v) = w.logs(&id, 1, json!([chunk(1, "one\n"), chunk(2, "two\n"), chunk(3, "three\n")])).await;
    assert_eq!((st, v["acked_seq"].as_i64()), (200, Some(3)), "{v}");
    assert_eq!(s.log(&id).await, "one\ntwo\nthree\n", "a repeat stores nothing twice");

    let secret = format!("key sk-proj-abcdefghijklmnopqrstuvwxyz0123 and mine {token}\n");
    w.logs(&id, 1, json!([chunk(4, &secret)])).await;
    let log = s.log(&id).await;
    assert!(!log.contains("sk-proj-abc") && !log.contains(&token), "{log}");
    assert!(log.contains("key [REDACTED] and mine [REDACTED]"), "{log}");

    let big = "x".repeat(3000);
    let (st, _) = w.logs(&id, 1, json!([chunk(5, &big)])).await;
    assert_eq!(st, 200);
    let run = s.run_view(&id).await;
    assert!(run["log_bytes"].as_i64().unwrap() <= 2048 && run["log_dropped_bytes"].as_i64().unwrap() > 0, "{run}");

    for bad in [json!([chunk(7, "a"), chunk(6, "b")]), json!([chunk(0, "a")])] {
        let (st, v) = w.logs(&id, 1, bad).await;
        assert_eq!(st, 400, "{v}");
        assert!(v["error"]["field"].as_str().unwrap().ends_with(".seq"), "{v}");
    }
    let other = s.worker("laptop", &[("cortana", CORTANA)]).await;
    let (st, _) = other.logs(&id, 1, json!([chunk(6, "not mine")])).await;
    assert_eq!(st, 404);

    let (st, v) = w.end(&id, 1, json!({"end": "succeeded", "exit_code": 0, "last_seq": 7})).await;
    assert_eq!((st, v["recorded"].as_bool()), (200, Some(true)), "{v}");
    assert!(s.log(&id).await.contains("the worker's log chunks 6 to 7 never arrived"));
    let (st, v) = w.logs(&id, 1, json!([chunk(6, "late")])).await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("attempt_ended")), "{v}");
}

#[tokio::test]
async fn an_end_is_recorded_once_and_retried_as_a_local_attempt_would_be() {
    let s = start_with(quick).await;
    let w = s.worker("mac-mini", &[("cortana", CORTANA)]).await;

    // A success, with its outputs redacted; a repeat is not recorded again.
    let id = s.queue("cortana", "once").await;
    w.take().await;
    let outputs = json!({"count": 3, "note": "sk-proj-abcdefghijklmnopqrstuvwxyz0123"});
    let (st, v) = w.end(&id, 1, json!({"end": "succeeded", "exit_code": 0, "outputs": outputs})).await;
    assert_eq!(v, json!({"recorded": true, "run_status": "succeeded"}), "{st}");
    let run = s.run_view(&id).await;
    assert_eq!(run["outputs"], json!({"count": 3, "note": "[REDACTED]"}));
    let (st, v) = w.end(&id, 1, json!({"end": "failed", "error": "again"})).await;
    assert_eq!((st, v["recorded"].as_bool(), v["run_status"].as_str()), (200, Some(false), Some("succeeded")), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("already ended"), "{v}");
    assert_eq!(s.run_view(&id).await["status"], "succeeded");

    // A retryable failure goes back to the queue after the task's delay, as a local one would.
    let id = s.queue("cortana", "daily_update").await;
    w.take().await;
    let (_, v) =
        w.end(&id, 1, json!({"end": "failed", "exit_code": 1, "error": "exit status 1", "retryable": true})).await;
    assert_eq!((v["recorded"].as_bool(), v["run_status"].as_str()), (Some(true), Some("queued")), "{v}");
    let run = s.run_view(&id).await;
    let after = jiff::Timestamp::from_millisecond(s.engine.now()).unwrap() + jiff::SignedDuration::from_secs(4);
    assert!(run["not_before"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap() > after, "{run}");
    assert_eq!((run["exit_code"].as_i64(), run["error"].as_str()), (Some(1), Some("exit status 1")));

    // Exit code 78 is never retried, whatever the worker says.
    let id = s.queue("cortana", "strict").await;
    w.take().await;
    let (_, v) =
        w.end(&id, 1, json!({"end": "failed", "exit_code": 78, "error": "exit status 78", "retryable": true})).await;
    assert_eq!(v["run_status"], "failed", "{v}");

    // Not retryable: failed at once.
    let id = s.queue("cortana", "daily_update").await;
    w.take().await;
    let (_, v) = w
        .end(&id, 1, json!({"end": "failed", "error": "task \"nope\" is not declared here", "retryable": false}))
        .await;
    assert_eq!(v["run_status"], "failed", "{v}");

    // Interrupted (the worker was stopping): again at once, without using up an attempt.
    let id = s.queue("cortana", "once").await;
    w.take().await;
    let (_, v) = w.end(&id, 1, json!({"end": "failed", "error": "interrupted: the worker stopped", "retryable": true, "interrupted": true})).await;
    assert_eq!(v["run_status"], "queued", "{v}");
    let run = w.take().await;
    assert_eq!(
        (run["run_id"].as_str(), run["attempt"].as_i64(), run["max_attempts"].as_i64()),
        (Some(id.as_str()), Some(2), Some(2))
    );

    // Bad ends are refused with the field at fault.
    for (body, field) in [
        (json!({"end": "queued"}), "end"),
        (json!({"end": "succeeded", "outputs": [1]}), "outputs"),
        (json!({"end": "succeeded", "last_seq": -1}), "last_seq"),
    ] {
        let (st, v) = w.end(&id, 2, body).await;
        assert_eq!((st, v["error"]["field"].as_str()), (400, Some(field)), "{v}");
    }
    let (st, _) = w.end(&id, 0, json!({"end": "succeeded"})).await;
    assert_eq!(st, 400);
    let (st, _) = w.end(&id, 9, json!({"end": "succeeded"})).await;
    assert_eq!(st, 404);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_reaches_a_held_poll() {
    let s = start_held(|cfg| cfg.workers.poll_wait = Duration::from_secs(25)).await;
    let w = s.worker("mac-mini", &[("cortana", CORTANA)]).await;
    let id = s.queue("cortana", "daily_update").await;
    let run = w.take().await;
    let running = json!([{"run_id": id, "attempt": run["attempt"]}]);

    // A cancel through this server wakes the held poll at once: time does not move at all, and
    // the poll would otherwise be held for 25 s.
    let cancel = async {
        nap(Duration::from_millis(100)).await;
        let (st, _) = s.post(&format!("/api/v1/runs/{id}/cancel"), json!({})).await;
        assert_eq!(st, 200);
    };
    let (got, ()) = tokio::join!(w.poll(4, running), cancel);
    assert_eq!(got["cancel"], json!([{"run_id": id, "attempt": 1}]), "{got}");

    // A cancel that another node stored rings no bell here: the poll finds it when it looks
    // again, within the second.
    let id = s.queue("cortana", "daily_update").await;
    let run = w.take().await;
    let running = json!([{"run_id": id, "attempt": run["attempt"]}]);
    let elsewhere = async {
        nap(Duration::from_millis(100)).await;
        s.engine.store().request_cancel(&id, s.engine.now()).await.unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
    };
    let (got, ()) = tokio::join!(w.poll(4, running), elsewhere);
    assert_eq!(got["cancel"][0]["run_id"], id.as_str(), "{got}");

    // The worker reports it cancelled: the run is, and not retried.
    let (_, v) = w.end(&id, 1, json!({"end": "cancelled"})).await;
    assert_eq!(v["run_status"], "cancelled", "{v}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_worker_loses_its_attempts_but_not_in_the_servers_first_lost_after() {
    let s = start_held(|cfg| {
        cfg.workers.poll_wait = Duration::from_secs(5);
        cfg.workers.lost_after = Duration::from_secs(60);
    })
    .await;
    let w = s.worker("mac-mini", &[("cortana", CORTANA)]).await;
    let id = s.queue("cortana", "daily_update").await;
    w.take().await;

    // The worker was last heard from long before this server started: the server gives it
    // lost_after from its own start to come back.
    let store = s.engine.store();
    let mut record = store.get_worker(&w.id).await.unwrap().unwrap();
    record.last_contact = s.engine.now() - 300_000;
    store.upsert_worker(&record).await.unwrap();
    assert_eq!(s.engine.judge_workers().await.unwrap(), 0, "nothing is judged in the server's first lost_after");
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(s.engine.judge_workers().await.unwrap(), 0);
    assert_eq!(s.run_view(&id).await["status"], "running");

    // Past it, the silent worker has lost the attempt: ended as lost, retried per the policy
    // (by the heartbeat loop's pass, every 10 s), on any worker of the project.
    let run = eventually("the heartbeat loop's pass judges the attempt lost", Duration::from_secs(10), async || {
        tokio::time::advance(Duration::from_secs(1)).await;
        let run = s.run_view(&id).await;
        (run["status"] == "queued").then_some(run)
    })
    .await;
    let attempt = &run["attempts"][0];
    assert_eq!(attempt["status"], "failed");
    assert!(
        attempt["error"].as_str().unwrap().contains("lost: worker mac-mini has not been heard from since"),
        "{run}"
    );
    let other = s.worker("laptop", &[("cortana", CORTANA)]).await;
    let again = other.take().await;
    assert_eq!((again["run_id"].as_str(), again["attempt"].as_i64()), (Some(id.as_str()), Some(2)));

    // The lost worker's late news is dropped.
    let (st, v) = w.logs(&id, 1, json!([chunk(1, "late")])).await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("attempt_ended")), "{v}");
    let (_, v) = w.end(&id, 1, json!({"end": "succeeded"})).await;
    assert_eq!((v["recorded"].as_bool(), v["run_status"].as_str()), (Some(false), Some("running")), "{v}");

    // A worker that keeps polling keeps its attempts.
    let runs = json!([{"run_id": id, "attempt": 2}]);
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(40)).await;
        let got = other.poll_held(0, runs.clone(), Duration::from_secs(5)).await;
        assert_eq!(got["cancel"], json!([]), "{got}");
        assert_eq!(s.engine.judge_workers().await.unwrap(), 0);
    }
    // One that polls but no longer says it runs an attempt (it never got the answer that
    // handed it out) loses that attempt.
    for _ in 0..2 {
        tokio::time::advance(Duration::from_secs(40)).await;
        other.poll_held(0, json!([]), Duration::from_secs(5)).await;
    }
    let run = eventually("the attempt its worker no longer lists is lost", Duration::from_secs(10), async || {
        s.engine.judge_workers().await.unwrap();
        let run = s.run_view(&id).await;
        (run["attempts"][1]["status"] == "failed").then_some(run)
    })
    .await;
    assert!(run["attempts"][1]["error"].as_str().unwrap().contains("has not said it runs attempt 2"), "{run}");
}

#[tokio::test]
async fn hello_ends_the_attempts_a_worker_came_back_without() {
    let s = start_with(quick).await;
    let token = s.worker_token(&["cortana"]).await;
    let w = s.worker_with(&token, "mac-mini", &[("cortana", CORTANA)]).await;
    let other = s.worker_with(&token, "laptop", &[("cortana", CORTANA)]).await;
    let ids: Vec<String> = vec![
        s.queue("cortana", "once").await,
        s.queue("cortana", "once").await,
        s.queue("cortana", "daily_update").await,
    ];
    for _ in 0..3 {
        w.take().await;
    }
    let elsewhere = s.queue("cortana", "once").await;
    other.take().await;

    // Restarted: it runs the first, holds the result of the second, and lost the third.
    let running = json!([{"run_id": ids[0], "attempt": 1}]);
    let pending = json!([{"run_id": ids[1], "attempt": 1}]);
    let (st, v) = s.hello_as(&token, "mac-mini", &[("cortana", CORTANA)], running, pending).await;
    assert_eq!((st, v["worker_id"].as_str()), (200, Some(w.id.as_str())), "{v}");
    assert_eq!(s.run_view(&ids[0]).await["status"], "running");
    assert_eq!(s.run_view(&ids[1]).await["status"], "running");
    let lost = s.run_view(&ids[2]).await;
    assert_eq!(lost["status"], "queued", "retried: {lost}");
    assert!(lost["attempts"][0]["error"].as_str().unwrap().contains("started again without attempt 1"), "{lost}");
    assert_eq!(s.run_view(&elsewhere).await["status"], "running", "another worker's attempts are its own");
    let (_, v) = w.end(&ids[1], 1, json!({"end": "succeeded", "exit_code": 0})).await;
    assert_eq!(v["recorded"], true, "{v}");
}

#[tokio::test(start_paused = true)]
async fn a_queued_run_says_why_it_waits_and_a_project_without_a_worker_is_an_incident() {
    let s = start_held(|cfg| {
        cfg.workers.poll_wait = Duration::from_secs(5);
        cfg.workers.lost_after = Duration::from_secs(60);
        cfg.workers.grace = Duration::from_secs(120);
    })
    .await;
    let token = s.worker_token(&["cortana"]).await;
    let w = s.worker_with(&token, "mac-mini", &[("cortana", CORTANA)]).await;
    let id = s.queue("cortana", "once").await;
    let run = s.run_view(&id).await;
    assert_eq!((run["status"].as_str(), &run["waiting"]), (Some("queued"), &Value::Null), "a worker is connected");

    tokio::time::advance(Duration::from_secs(61)).await;
    let run = s.run_view(&id).await;
    let waiting = run["waiting"].as_str().unwrap();
    assert!(waiting.starts_with("no worker serving cortana is connected (last seen 20"), "{waiting}");
    let (_, list) = s.get("/api/v1/runs?project=cortana").await;
    assert_eq!(list["runs"][0]["waiting"], waiting);
    let (_, health) = s.get("/api/v1/projects/cortana/health").await;
    assert_eq!(health["state"], "degraded", "{health}");

    // Past the grace, an incident; none before.
    s.engine.judge_workers().await.unwrap();
    let (_, open) = s.get("/api/v1/incidents?project=cortana").await;
    assert_eq!(open.as_array().unwrap().len(), 0, "{open}");
    tokio::time::advance(Duration::from_secs(60)).await;
    s.engine.judge_workers().await.unwrap();
    let (_, open) = s.get("/api/v1/incidents?project=cortana").await;
    let incident = &open[0];
    assert_eq!((incident["source"].as_str(), incident["status"].as_str()), (Some("worker"), Some("open")), "{open}");
    assert_eq!(incident["title"], "no worker serving cortana is connected");
    let (_, health) = s.get("/api/v1/projects/cortana/health").await;
    assert_eq!(health["state"], "down", "{health}");

    // A worker is back: resolved, and the run no longer waits for one.
    s.worker_with(&token, "mac-mini", &[("cortana", CORTANA)]).await;
    let (_, incident) = s.get(&format!("/api/v1/incidents/{}", incident["id"].as_str().unwrap())).await;
    assert_eq!(incident["status"], "resolved", "{incident}");
    assert_eq!(s.run_view(&id).await["waiting"], Value::Null);
    assert_eq!(s.engine.store().get_worker(&w.id).await.unwrap().unwrap().last_contact, s.engine.now());
}

#[tokio::test]
async fn probes_from_a_worker_are_taken_as_local_ones_are() {
    let s = start_with(quick).await;
    let w = s.worker("mac-mini", &[("cortana", CORTANA)]).await;

    let (st, v) = w
        .probe("cortana", "status", json!({"status": "degraded", "message": "disk 91% full"}), Value::Null, Value::Null)
        .await;
    assert_eq!((st, &v["cost_cursor"]), (200, &Value::Null), "{v}");
    let (_, p) = s.get("/api/v1/projects/cortana").await;
    let status = p["probes"].as_array().unwrap().iter().find(|r| r["kind"] == "status").unwrap().clone();
    assert_eq!(
        (status["status"].as_str(), status["message"].as_str()),
        (Some("degraded"), Some("disk 91% full")),
        "{p}"
    );
    let (_, health) = s.get("/api/v1/projects/cortana/health").await;
    assert_eq!(health["state"], "degraded", "{health}");

    let records: Vec<Value> = (0..3)
        .map(|i| json!({"service": "openai", "amount": "0.5", "idempotency_key": format!("p{i}"), "at": "2026-01-01T00:00:00Z"}))
        .collect();
    let (st, v) =
        w.probe("cortana", "cost", json!({"records": records, "cursor": "3"}), Value::Null, Value::Null).await;
    assert_eq!((st, v["cost_cursor"].as_str()), (200, Some("3")), "{v}");
    let (st, v) = w.probe("cortana", "cost", json!({"records": records}), Value::Null, json!("3")).await;
    assert_eq!((st, v["cost_cursor"].as_str()), (200, Some("3")), "{v}");
    let (_, costs) = s.get("/api/v1/costs?project=cortana").await;
    assert_eq!(costs.as_array().unwrap().len(), 3, "a record sent twice counts once: {costs}");
    let (_, again) = s.hello_as(&w.token, "mac-mini", &[("cortana", CORTANA)], json!([]), json!([])).await;
    assert_eq!(again["projects"][0]["cost_cursor"], "3");

    let answer = json!({"schedules": [{"task": "once", "cron": "0 5 * * *", "managed_by": "github"}]});
    let (st, _) = w.probe("cortana", "schedule", answer, Value::Null, Value::Null).await;
    assert_eq!(st, 200);
    let (_, schedules) = s.get("/api/v1/schedules?project=cortana").await;
    assert!(
        schedules.as_array().unwrap().iter().any(|x| x["task"] == "once" && x["source"] == "plugin"),
        "{schedules}"
    );

    let (st, _) = w.probe("cortana", "status", Value::Null, json!("status.sh: exit status 1"), Value::Null).await;
    assert_eq!(st, 200);
    let (_, p) = s.get("/api/v1/projects/cortana").await;
    let status = p["probes"].as_array().unwrap().iter().find(|r| r["kind"] == "status").unwrap().clone();
    assert_eq!(
        (status["ok"].as_bool(), status["error"].as_str()),
        (Some(false), Some("status.sh: exit status 1")),
        "{p}"
    );

    for (answer, error, kind, field) in [
        (json!({"status": "ok"}), json!("x"), "status", "answer"),
        (Value::Null, Value::Null, "status", "answer"),
        (json!({}), Value::Null, "health", "kind"),
    ] {
        let (st, v) = w.probe("cortana", kind, answer, error, Value::Null).await;
        assert_eq!((st, v["error"]["field"].as_str()), (400, Some(field)), "{v}");
    }
    let (st, _) = w.probe("trading", "status", json!({"status": "ok"}), Value::Null, Value::Null).await;
    assert_eq!(st, 403);
}

#[tokio::test(start_paused = true)]
async fn the_dashboard_shows_workers_and_why_a_worker_projects_run_waits() {
    let s = start_held(|cfg| {
        cfg.workers.poll_wait = Duration::from_secs(5);
        cfg.workers.lost_after = Duration::from_secs(60);
    })
    .await;
    let _worker = s.worker("mac-mini", &[("cortana", CORTANA)]).await;
    let b = s.browser().await;
    let overview = b.get("/").await;
    assert_eq!(overview.status, 200);
    let workers = overview.body.split("Workers").nth(1).unwrap_or_default();
    assert!(workers.contains("mac-mini") && workers.contains("connected"), "{}", overview.body);
    assert!(workers.contains("href=\"/projects/cortana\"") && workers.contains("0/4"), "{workers}");

    let page = b.get("/projects/cortana").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Served by") && page.body.contains("mac-mini.local"), "{}", page.body);
    assert!(!page.body.contains("Reload manifest"), "a worker project changes only through its workers");

    // The worker goes quiet: its project's page and the run say why the run waits.
    let id = s.queue("cortana", "once").await;
    tokio::time::advance(Duration::from_secs(61)).await;
    let page = b.get("/projects/cortana").await;
    assert!(page.body.contains("No worker serving it is connected"), "{}", page.body);
    assert!(page.body.contains("no worker serving cortana is connected (last seen"), "{}", page.body);
    let overview = b.get("/").await;
    assert!(overview.body.contains("not connected") && overview.body.contains("last seen"), "{}", overview.body);
    let run = b.get(&format!("/runs/{id}")).await;
    assert!(run.body.contains("no worker serving cortana is connected"), "{}", run.body);
}
