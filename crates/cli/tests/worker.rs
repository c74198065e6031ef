//! Workers end to end: the real `agent-os` binary as the server and as workers, each in a
//! home of its own, on 127.0.0.1. The server is never given a worker's project directory; it
//! learns the project from the worker's hello. Runs with live logs, outputs and a cost, a
//! cancel, a timeout, a status probe, a refused task, manifest changes; kill -9 of a worker and
//! of the server; the server stopped for a while; and on PostgreSQL two servers and two
//! workers sharing 200 runs, each run exactly once. Real time throughout, with deadlines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");

/// The admin token every test server is started with.
const ADMIN: &str = "aosa_worker_tests_0123456789abcdef0123";

/// How long the server stays down in the outage story.
const SERVER_OUTAGE: Duration = Duration::from_secs(30);

/// The server's worker timings in these tests: polls are held 1 s, and a worker silent for 3 s
/// has lost its attempts.
const SERVER_CONFIG: &str = "workers:\n  poll_wait: 1s\n  lost_after: 3s\n  grace: 20s\n";

/// A port nobody listens on now, for a server that must come back on the same address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Sends SIGTERM and waits for the exit (SIGKILL after `patience`): whether it exited 0.
fn terminate(child: &mut Child, patience: Duration) -> Option<i32> {
    // SAFETY: a signal to our own child.
    unsafe { kill(child.id() as i32, 15) };
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

struct Server {
    child: Option<Child>,
    home: PathBuf,
    port: u16,
    database_url: Option<String>,
}

impl Server {
    fn start(home: &Path, database_url: Option<&str>) -> Server {
        Self::start_with(home, database_url, SERVER_CONFIG)
    }

    /// The same with its own `config.yaml`.
    fn start_with(home: &Path, database_url: Option<&str>, config_yaml: &str) -> Server {
        std::fs::create_dir_all(home).unwrap();
        let config = home.join("config.yaml");
        if !config.exists() {
            std::fs::write(&config, config_yaml).unwrap();
        }
        let mut s = Server {
            child: None,
            home: home.to_path_buf(),
            port: free_port(),
            database_url: database_url.map(str::to_string),
        };
        s.spawn();
        s
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.home.join("serve.log")).unwrap();
        let mut c = Command::new(BIN);
        c.arg("serve").arg("--home").arg(&self.home).args(["--bind", &format!("127.0.0.1:{}", self.port)]);
        if let Some(url) = &self.database_url {
            c.args(["--database-url", url]);
        }
        c.env("AGENT_OS_ADMIN_TOKEN", ADMIN)
            .env_remove("AGENT_OS_URL")
            .env_remove("AGENT_OS_TOKEN")
            .env_remove("AGENT_OS_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(c.spawn().unwrap());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("serve.log")).unwrap_or_default()
    }

    async fn ready(&mut self) {
        let http = client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("the server exited ({status}):\n{}", self.log());
            }
            if let Ok(r) = http.get(format!("{}/healthz", self.url())).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "the server did not come up:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c, Duration::from_secs(30));
        }
    }

    async fn restart(&mut self) {
        self.spawn();
        self.ready().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Worker {
    child: Option<Child>,
    home: PathBuf,
    args: Vec<String>,
    token: String,
}

impl Worker {
    fn start(server: &str, token: &str, name: &str, home: &Path, projects: &[&Path]) -> Worker {
        let mut args = vec!["worker".to_string(), "--server".into(), server.into(), "--name".into(), name.into()];
        for p in projects {
            args.push("--project".into());
            args.push(p.display().to_string());
        }
        args.extend(["--home".into(), home.display().to_string()]);
        std::fs::create_dir_all(home).unwrap();
        let mut w = Worker { child: None, home: home.to_path_buf(), args, token: token.into() };
        w.spawn();
        w
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.home.with_extension("log")).unwrap();
        // Started beside its home, so a test can name the home relative to where it starts.
        let child = Command::new(BIN)
            .args(&self.args)
            .current_dir(self.home.parent().unwrap())
            .env("AGENT_OS_WORKER_TOKEN", &self.token)
            .env_remove("AGENT_OS_TOKEN")
            .env_remove("AGENT_OS_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.with_extension("log")).unwrap_or_default()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; the exit code.
    fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        terminate(&mut c, Duration::from_secs(30))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An HTTP client (reqwest is built without a default TLS provider).
fn client() -> reqwest::Client {
    agent_os_engine::plugin::install_crypto_provider();
    reqwest::Client::new()
}

/// The admin's view of one server's API.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> Api {
        Api { http: client(), base: base.to_string() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {v}");
        v
    }

    async fn worker_token(&self, projects: &[&str], name: &str) -> String {
        let v = self.post("/api/v1/tokens", json!({"kind": "worker", "projects": projects, "name": name})).await;
        let token = v["token"].as_str().unwrap().to_string();
        assert!(token.starts_with("aosw_"), "{v}");
        token
    }

    async fn start_run(&self, project: &str, task: &str, input: Value) -> String {
        let v = self.post("/api/v1/runs", json!({"project": project, "task": task, "input": input})).await;
        v["id"].as_str().unwrap().to_string()
    }

    async fn run(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/runs/{id}")).await
    }

    /// Waits for the run to end; its view.
    async fn finished(&self, id: &str, within: Duration) -> Value {
        eventually(&format!("run {id} ends"), within, async || {
            let run = self.run(id).await;
            let done = !matches!(run["status"].as_str(), Some("queued" | "running"));
            done.then_some(run)
        })
        .await
    }

    /// The whole log of a run, every chunk.
    async fn log(&self, id: &str) -> Vec<Value> {
        let mut chunks = Vec::new();
        let mut after = 0;
        loop {
            let v = self.get(&format!("/api/v1/runs/{id}/logs?after={after}&limit=1000")).await;
            let got = v["chunks"].as_array().unwrap().clone();
            if got.is_empty() {
                return chunks;
            }
            after = v["next_after"].as_i64().unwrap();
            chunks.extend(got);
        }
    }

    async fn log_text(&self, id: &str) -> String {
        self.log(id).await.iter().map(|c| c["data"].as_str().unwrap().to_string()).collect()
    }

    /// Waits until the named worker is connected.
    async fn connected(&self, name: &str) -> Value {
        eventually(&format!("worker {name} connects"), Duration::from_secs(60), async || {
            let list = self.get("/api/v1/workers").await;
            list.as_array().unwrap().iter().find(|w| w["name"] == name && w["connected"] == true).cloned()
        })
        .await
    }
}

/// Polls `check` until it gives a value, or fails the test after `within`.
async fn eventually<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A project directory `dir/name` with `manifest` and executable `scripts`.
fn project(dir: &Path, name: &str, manifest: &str, scripts: &[(&str, &str)]) -> PathBuf {
    let root = dir.join(name);
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::write(root.join("agent-os.yaml"), manifest).unwrap();
    for (file, text) in scripts {
        let path = root.join("scripts").join(file);
        std::fs::write(&path, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    root
}

/// `cortana`: a task that streams, waits to be let go, reports a cost with its run token and
/// writes outputs; one to cancel; one that times out; a status probe.
fn cortana(dir: &Path) -> PathBuf {
    let manifest = r#"name: cortana
tasks:
  work:
    run: scripts/work.sh
  wait:
    run: "echo waiting; exec sleep 60"
  slow:
    run: "sleep 30"
    timeout: 1s
    kill_grace: 1s
status: { run: scripts/status.sh, every: 1s }
"#;
    let work = format!(
        r#"#!/bin/sh
echo "line one, token $AGENT_OS_TOKEN"
echo "to stderr" >&2
deadline=$(( $(date +%s) + 30 ))
while [ ! -f go ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.05; done
echo "line two"
{bin} cost add --project cortana --service openai --amount 0.0123 --model gpt-test
printf '{{"answer": 42, "input": %s}}' "$(cat)" > "$AGENT_OS_OUTPUT"
"#,
        bin = BIN
    );
    let status = "#!/bin/sh\necho '{\"status\": \"degraded\", \"message\": \"disk 91% full\"}'\n";
    project(dir, "cortana", manifest, &[("work.sh", &work), ("status.sh", status)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_its_projects_tasks_with_live_logs_outputs_costs_cancels_timeouts_and_probes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("server"), None);
    server.ready().await;
    let api = Api::new(&server.url());
    let token = api.worker_token(&["cortana"], "mac-mini").await;
    let dir = cortana(&tmp.path().join("projects"));
    let _worker = Worker::start(&server.url(), &token, "mac-mini", &tmp.path().join("worker"), &[&dir]);
    let seen = api.connected("mac-mini").await;
    assert_eq!(seen["projects"], json!(["cortana"]), "{seen}");

    // The project came from the worker's hello: the server has its manifest, not its path.
    let project = api.get("/api/v1/projects/cortana").await;
    assert!(!project.to_string().contains(&dir.display().to_string()), "{project}");

    // Logs are seen through the API while the task still runs.
    let id = api.start_run("cortana", "work", json!({"q": "hello"})).await;
    let live = eventually("the first line is stored while the task runs", Duration::from_secs(20), async || {
        let text = api.log_text(&id).await;
        text.contains("line one").then_some(text)
    })
    .await;
    assert_eq!(api.run(&id).await["status"], "running");
    assert!(live.contains("[REDACTED]") && !live.contains("aosr_"), "the run token is redacted: {live}");
    std::fs::write(dir.join("go"), "").unwrap();
    let run = api.finished(&id, Duration::from_secs(30)).await;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", api.log_text(&id).await);
    assert_eq!(run["outputs"], json!({"answer": 42, "input": {"q": "hello"}}));
    assert_eq!(run["exit_code"], 0);
    let text = api.log_text(&id).await;
    for line in ["line one", "to stderr", "line two"] {
        assert_eq!(text.matches(line).count(), 1, "{line:?} once in: {text}");
    }
    let costs = api.get("/api/v1/costs?project=cortana").await;
    let cost = costs.as_array().unwrap().iter().find(|c| c["run_id"] == id.as_str()).cloned();
    assert!(cost.is_some_and(|c| c["amount"] == "0.0123" && c["model"] == "gpt-test"), "{costs}");

    // A cancel reaches the task within about a second.
    std::fs::remove_file(dir.join("go")).unwrap();
    let id = api.start_run("cortana", "wait", json!({})).await;
    eventually("the task runs", Duration::from_secs(20), async || {
        api.log_text(&id).await.contains("waiting").then_some(())
    })
    .await;
    let asked = Instant::now();
    api.post(&format!("/api/v1/runs/{id}/cancel"), json!({})).await;
    let run = api.finished(&id, Duration::from_secs(10)).await;
    let took = asked.elapsed();
    assert_eq!(run["status"], "cancelled", "{run}");
    assert!(took < Duration::from_secs(3), "the cancel took {took:?}");

    // A timeout kills the task and ends the run.
    let id = api.start_run("cortana", "slow", json!({})).await;
    let run = api.finished(&id, Duration::from_secs(20)).await;
    assert_eq!(run["status"], "timed_out", "{run}");
    assert!(api.log_text(&id).await.contains("timed out after 1s"));

    // The status probe ran on the worker, and the project view shows it.
    let probe = eventually("the status probe is shown", Duration::from_secs(20), async || {
        let p = api.get("/api/v1/projects/cortana").await;
        p["probes"].as_array().unwrap().iter().find(|x| x["kind"] == "status").cloned()
    })
    .await;
    assert_eq!(
        (probe["status"].as_str(), probe["message"].as_str()),
        (Some("degraded"), Some("disk 91% full")),
        "{probe}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_only_what_its_local_manifest_declares_and_follows_its_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("server"), None);
    server.ready().await;
    let api = Api::new(&server.url());
    let token = api.worker_token(&["notes"], "w").await;
    let full = "name: notes\ntasks:\n  a: { run: echo a }\n  b: { run: echo b }\n";
    let first = project(&tmp.path().join("one"), "notes", full, &[]);
    let second = project(&tmp.path().join("two"), "notes", "name: notes\ntasks:\n  a: { run: echo a }\n", &[]);

    // The second worker says hello first; the first one's manifest (with task b) is the
    // server's; then only the second is left to run b, which its own manifest lacks.
    let mut two = Worker::start(&server.url(), &token, "two", &tmp.path().join("home-two"), &[&second]);
    api.connected("two").await;
    let mut one = Worker::start(&server.url(), &token, "one", &tmp.path().join("home-one"), &[&first]);
    api.connected("one").await;
    assert_eq!(one.stop(), Some(0), "{}", one.log());
    let id = api.start_run("notes", "b", json!({})).await;
    let run = api.finished(&id, Duration::from_secs(20)).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["attempts"].as_array().map(Vec::len), Some(1), "not retried: {run}");
    let error = run["error"].as_str().unwrap_or("");
    assert!(error.contains("does not declare task \"b\""), "{run}");

    // A changed manifest reaches the server by itself.
    std::fs::write(second.join("agent-os.yaml"), "name: notes\ntasks:\n  a: { run: echo a }\n  c: { run: echo see }\n")
        .unwrap();
    let id = eventually("the new task can be started", Duration::from_secs(20), async || {
        let (status, v) =
            api.call(reqwest::Method::POST, "/api/v1/runs", Some(json!({"project": "notes", "task": "c"}))).await;
        (status == 201).then(|| v["id"].as_str().unwrap().to_string())
    })
    .await;
    let run = api.finished(&id, Duration::from_secs(20)).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(api.log_text(&id).await.contains("see"));

    // A run queued while no worker serves the project waits, and says why.
    assert_eq!(two.stop(), Some(0), "{}", two.log());
    let id = api.start_run("notes", "a", json!({})).await;
    let waiting = eventually("the run says why it waits", Duration::from_secs(20), async || {
        let run = api.run(&id).await;
        run["waiting"].as_str().map(str::to_string)
    })
    .await;
    assert!(waiting.starts_with("no worker serving notes is connected (last seen "), "{waiting}");
    two.spawn();
    let run = api.finished(&id, Duration::from_secs(30)).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(api.run(&id).await["waiting"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_loses_its_attempt_and_another_worker_runs_the_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("server"), None);
    server.ready().await;
    let api = Api::new(&server.url());
    let token = api.worker_token(&["jobs"], "pool").await;
    let manifest = "name: jobs\ntasks:\n  once:\n    run: scripts/once.sh\n    retries: 1\n";
    // The first attempt hangs (and records its pid); the retry finishes.
    let script = "#!/bin/sh\necho \"attempt $AGENT_OS_ATTEMPT\"\nif [ \"$AGENT_OS_ATTEMPT\" = 1 ]; then echo $$ > first.pid; exec sleep 120; fi\necho done >> ran.txt\n";
    let dir = project(&tmp.path().join("p"), "jobs", manifest, &[("once.sh", script)]);
    let mut a = Worker::start(&server.url(), &token, "a", &tmp.path().join("home-a"), &[&dir]);
    api.connected("a").await;
    let id = api.start_run("jobs", "once", json!({})).await;
    let pid: i32 = eventually("the first attempt runs", Duration::from_secs(20), async || {
        std::fs::read_to_string(dir.join("first.pid")).ok()?.trim().parse().ok()
    })
    .await;
    a.kill9();
    let _b = Worker::start(&server.url(), &token, "b", &tmp.path().join("home-b"), &[&dir]);
    let run = api.finished(&id, Duration::from_secs(40)).await;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", server.log());
    let attempts = run["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{run}");
    assert_eq!(attempts[0]["status"], "failed");
    assert!(attempts[0]["error"].as_str().unwrap_or("").contains("lost"), "{run}");
    assert_eq!(std::fs::read_to_string(dir.join("ran.txt")).unwrap(), "done\n");

    // The first worker, started again on its home, kills what it left running.
    // SAFETY: signal 0 only asks whether the process exists.
    assert_eq!(unsafe { kill(pid, 0) }, 0, "the orphaned task still runs until its worker comes back");
    a.spawn();
    eventually("the orphaned task is killed", Duration::from_secs(20), async || {
        // SAFETY: as above.
        (unsafe { kill(pid, 0) } != 0).then_some(())
    })
    .await;
    api.connected("a").await;
    assert!(a.log().contains("killed the process group"), "{}", a.log());
}

/// A task that prints numbered lines for a while, so its log can be checked line by line.
fn counter(dir: &Path, lines: u32) -> PathBuf {
    let manifest = "name: counter\ntasks:\n  count:\n    run: scripts/count.sh\n    retries: 2\n";
    let script = format!(
        "#!/bin/sh\ni=1\nwhile [ $i -le {lines} ]; do echo \"line $i\"; i=$((i+1)); sleep 0.1; done\nprintf '{{\"lines\": {lines}}}' > \"$AGENT_OS_OUTPUT\"\n"
    );
    project(dir, "counter", manifest, &[("count.sh", &script)])
}

/// Every numbered line exactly once, in order, and the run's single attempt succeeded.
async fn counted_once(api: &Api, id: &str, lines: u32) {
    let run = api.run(id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempts"].as_array().map(Vec::len), Some(1), "{run}");
    assert_eq!(run["outputs"], json!({"lines": lines}));
    let text = api.log_text(id).await;
    let got: Vec<&str> = text.lines().filter(|l| l.starts_with("line ")).collect();
    let want: Vec<String> = (1..=lines).map(|i| format!("line {i}")).collect();
    assert_eq!(got, want, "each line once, in order");
    let seqs: Vec<i64> = api.log(id).await.iter().map(|c| c["seq"].as_i64().unwrap()).collect();
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(seqs, sorted, "no chunk stored twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_server_mid_run_delivers_the_result_once_after_its_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("server"), None);
    server.ready().await;
    let api = Api::new(&server.url());
    let token = api.worker_token(&["counter"], "w").await;
    let dir = counter(&tmp.path().join("p"), 40);
    let worker = Worker::start(&server.url(), &token, "w", &tmp.path().join("home"), &[&dir]);
    api.connected("w").await;
    let id = api.start_run("counter", "count", json!({})).await;
    eventually("some lines are stored", Duration::from_secs(20), async || {
        api.log_text(&id).await.contains("line 5").then_some(())
    })
    .await;
    server.kill9();
    // The task goes on (and ends) while the server is down.
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.restart().await;
    let run = api.finished(&id, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", worker.log());
    counted_once(&api, &id, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reconnects_by_itself_after_the_server_was_stopped_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    // After an outage this long the worker's back-off is up to 30 s; a restarted server waits
    // lost_after before it judges, which must cover it (the default, 60 s, does).
    let config = "workers:\n  poll_wait: 1s\n  lost_after: 45s\n";
    let mut server = Server::start_with(&tmp.path().join("server"), None, config);
    server.ready().await;
    let api = Api::new(&server.url());
    let token = api.worker_token(&["counter"], "w").await;
    let dir = counter(&tmp.path().join("p"), 60);
    let worker = Worker::start(&server.url(), &token, "w", &tmp.path().join("home"), &[&dir]);
    api.connected("w").await;
    let id = api.start_run("counter", "count", json!({})).await;
    eventually("some lines are stored", Duration::from_secs(20), async || {
        api.log_text(&id).await.contains("line 3").then_some(())
    })
    .await;
    server.stop();
    tokio::time::sleep(SERVER_OUTAGE).await;
    server.restart().await;
    // Back-off after an outage this long is at most 30 s.
    let run = api.finished(&id, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "succeeded", "{run}\n{}", worker.log());
    counted_once(&api, &id, 60).await;
    api.connected("w").await;
    let spool = tmp.path().join("home/spool");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0, "the worker holds nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgresql_two_servers_and_two_workers_run_each_of_200_runs_once() {
    let Some(db) = agent_os_store::testing::PgDatabase::create().await else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut first = Server::start(&tmp.path().join("server-1"), Some(&db.url));
    first.ready().await;
    let mut second = Server::start(&tmp.path().join("server-2"), Some(&db.url));
    second.ready().await;
    let apis = [Api::new(&first.url()), Api::new(&second.url())];
    let token = apis[0].worker_token(&["shared"], "pool").await;
    let manifest = "name: shared\ntasks:\n  tick:\n    run: scripts/tick.sh\n    retries: 2\n";
    let script = "#!/bin/sh\necho \"$AGENT_OS_RUN_ID $AGENT_OS_ATTEMPT $AGENT_OS_URL\" >> ran.txt\n";
    let dir = project(&tmp.path().join("p"), "shared", manifest, &[("tick.sh", script)]);
    let one = Worker::start(&first.url(), &token, "one", &tmp.path().join("home-1"), &[&dir]);
    let two = Worker::start(&second.url(), &token, "two", &tmp.path().join("home-2"), &[&dir]);
    apis[0].connected("one").await;
    apis[0].connected("two").await;

    let mut ids = Vec::new();
    for i in 0..200 {
        ids.push(apis[i % 2].start_run("shared", "tick", json!({"i": i})).await);
    }
    for (i, id) in ids.iter().enumerate() {
        let run = apis[i % 2].finished(id, Duration::from_secs(120)).await;
        assert_eq!(run["status"], "succeeded", "{run}\n{}\n{}", one.log(), two.log());
        assert_eq!(run["attempts"].as_array().map(Vec::len), Some(1), "{run}");
    }
    let ran = std::fs::read_to_string(dir.join("ran.txt")).unwrap();
    let mut times: HashMap<&str, usize> = HashMap::new();
    let mut by_server: HashMap<&str, usize> = HashMap::new();
    for line in ran.lines() {
        let mut words = line.split(' ');
        let (run, attempt, url) = (words.next().unwrap(), words.next().unwrap(), words.next().unwrap());
        assert_eq!(attempt, "1", "{line}");
        *times.entry(run).or_default() += 1;
        *by_server.entry(url).or_default() += 1;
    }
    assert_eq!(times.len(), 200, "every run ran");
    assert!(times.values().all(|n| *n == 1), "each exactly once: {times:?}");
    // Each worker ran some (each passes on its own server's address as AGENT_OS_URL).
    assert_eq!(by_server.len(), 2, "{by_server:?}");
    drop((one, two, first, second));
    db.drop_it().await;
}

/// Runs `agent-os worker ARGS` to its exit (within 30 s): the exit code and what it printed.
fn worker_exit(args: &[&str], token: &str, home: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .arg("worker")
        .args(args)
        .arg("--home")
        .arg(home)
        .env("AGENT_OS_WORKER_TOKEN", token)
        .env_remove("AGENT_OS_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the worker did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_the_server_refuses_or_cannot_trust_exits_saying_why() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = project(&tmp.path().join("p"), "notes", "name: notes\ntasks:\n  a: { run: echo a }\n", &[]);
    let home = tmp.path().join("home");
    let dir_arg = dir.display().to_string();
    let token = "aosw_0123456789abcdef0123456789abcdef0123456789abcdef";

    // Plain HTTP to another machine, before anything is sent.
    let (code, text) = worker_exit(&["--server", "http://10.255.255.1:7700", "--project", &dir_arg], token, &home);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("--allow-http") && text.contains("unencrypted"), "{text}");

    // A token that does not allow the project.
    let mut server = Server::start(&tmp.path().join("server"), None);
    server.ready().await;
    let api = Api::new(&server.url());
    let other = api.worker_token(&["other"], "w").await;
    let (code, text) = worker_exit(&["--server", &server.url(), "--project", &dir_arg, "--name", "w"], &other, &home);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("notes"), "the refusal names the project: {text}");

    // A server that speaks another protocol: its message, and exit 2. No Agent OS server can be
    // made to say this, so a listener answers every request with that refusal.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let body = r#"{"error":{"code":"worker_protocol","message":"this server speaks worker protocol 2, and the worker speaks 1; upgrade the worker or the server so both speak protocol 2"}}"#;
            let _ = write!(
                s,
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    let (code, text) = worker_exit(&["--server", &url, "--project", &dir_arg], token, &home);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("upgrade the worker or the server so both speak protocol 2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_interrupts_the_workers_tasks_which_are_retried_without_using_up_an_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("server"), None);
    server.ready().await;
    let api = Api::new(&server.url());
    let token = api.worker_token(&["jobs"], "w").await;
    // No retries: only an interruption may give the run a second attempt.
    let manifest = "name: jobs\ntasks:\n  long:\n    run: scripts/long.sh\n    kill_grace: 2s\n";
    let script =
        "#!/bin/sh\necho \"attempt $AGENT_OS_ATTEMPT\"\nif [ \"$AGENT_OS_ATTEMPT\" = 1 ]; then exec sleep 60; fi\n";
    let dir = project(&tmp.path().join("p"), "jobs", manifest, &[("long.sh", script)]);
    let mut worker = Worker::start(&server.url(), &token, "w", &tmp.path().join("home"), &[&dir]);
    api.connected("w").await;
    let id = api.start_run("jobs", "long", json!({})).await;
    eventually("the task runs", Duration::from_secs(20), async || {
        api.log_text(&id).await.contains("attempt 1").then_some(())
    })
    .await;
    let asked = Instant::now();
    assert_eq!(worker.stop(), Some(0), "{}", worker.log());
    assert!(asked.elapsed() < Duration::from_secs(10), "the worker took {:?} to stop", asked.elapsed());
    let run = api.run(&id).await;
    assert_eq!(run["status"], "queued", "the interrupted run waits for a worker: {run}");
    let first = &run["attempts"][0];
    assert_eq!(first["status"], "failed", "{run}");
    assert!(first["error"].as_str().unwrap_or("").contains("interrupted"), "{run}");
    assert_eq!(std::fs::read_dir(tmp.path().join("home/spool")).unwrap().count(), 0, "all delivered");
    worker.spawn();
    let run = api.finished(&id, Duration::from_secs(30)).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["attempts"].as_array().map(Vec::len), Some(2), "{run}");
}

/// A task runs in its project's directory: the outputs path it is handed must not be relative to
/// where the worker was started, as it was with `--home` given as a relative path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_with_a_relative_home_hands_its_tasks_an_absolute_outputs_path() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("server"), None);
    server.ready().await;
    let api = Api::new(&server.url());
    let token = api.worker_token(&["cortana"], "relative").await;
    let dir = cortana(&tmp.path().join("projects"));
    std::fs::write(dir.join("go"), "").unwrap();
    let home = tmp.path().join("worker");
    std::fs::create_dir_all(&home).unwrap();
    let args = [
        "worker",
        "--server",
        &server.url(),
        "--name",
        "relative",
        "--project",
        &dir.display().to_string(),
        "--home",
        "worker",
    ];
    let mut worker = Worker { child: None, home, args: args.iter().map(|a| a.to_string()).collect(), token };
    worker.spawn();
    api.connected("relative").await;
    let id = api.start_run("cortana", "work", json!({"q": 1})).await;
    let run = api.finished(&id, Duration::from_secs(30)).await;
    assert_eq!(run["status"], "succeeded", "{run}\n{}\n{}", api.log_text(&id).await, worker.log());
    assert_eq!(run["outputs"], json!({"answer": 42, "input": {"q": 1}}));
}
