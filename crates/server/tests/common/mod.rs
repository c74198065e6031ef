//! Test support shared by the server's integration tests: a real in-process server on an
//! ephemeral port with its own SQLite file, the misbehaving fixture project, and `Sink`, a local
//! HTTP receiver that records what notification channels send and answers as told.

#![allow(dead_code)] // each test binary uses a subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};

use agent_os_engine::secrets::{TokenKind, new_token, token_record};
use agent_os_engine::testing::{HeldTime, hold_time, nap, store_options};
use agent_os_engine::{Clock, Engine, EngineConfig, SystemClock, TokioClock};
use agent_os_store::{SqlStore, Store, StoreOptions, sqlite_url};

pub struct TestServer {
    pub url: String,
    pub admin: String,
    pub engine: Arc<Engine>,
    pub http: reqwest::Client,
    pub home: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
    /// Set for a server on held time ([`start_held`]).
    _time: Option<HeldTime>,
}

pub async fn start_with(tune: impl FnOnce(&mut EngineConfig)) -> TestServer {
    start_with_options(tune, default_options()).await
}

fn default_options() -> agent_os_server::ServerOptions {
    agent_os_server::ServerOptions { max_body_bytes: 64 * 1024, ..Default::default() }
}

/// The same server on the PostgreSQL database at `url` (see `agent_os_store::testing`).
pub async fn start_on(url: &str) -> TestServer {
    start_on_with(url, |_| {}).await
}

/// A server on the PostgreSQL database at `url`, its engine tuned.
pub async fn start_on_with(url: &str, tune: impl FnOnce(&mut EngineConfig)) -> TestServer {
    start_at(Some(url), tune, default_options(), false).await
}

/// A server on held time (`agent_os_engine::testing`): its engine reads tokio's clock, which
/// only `tokio::time::advance` moves, so grace periods, retries and timeouts pass when the test
/// says so. For tests with `#[tokio::test(start_paused = true)]`; wait for what the server
/// does with `nap` (never `tokio::time::sleep`, which would wait forever).
pub async fn start_held(tune: impl FnOnce(&mut EngineConfig)) -> TestServer {
    start_at(None, tune, default_options(), true).await
}

/// A server with its engine tuned and its own server options.
pub async fn start_with_options(
    tune: impl FnOnce(&mut EngineConfig),
    opts: agent_os_server::ServerOptions,
) -> TestServer {
    start_at(None, tune, opts, false).await
}

async fn start_at(
    database_url: Option<&str>,
    tune: impl FnOnce(&mut EngineConfig),
    opts: agent_os_server::ServerOptions,
    held: bool,
) -> TestServer {
    agent_os_engine::plugin::install_crypto_provider();
    let time = held.then(hold_time);
    let home = tempfile::tempdir().unwrap();
    let url = database_url.map_or_else(|| sqlite_url(&home.path().join("agent-os.db")), str::to_string);
    let store_opts = if held { store_options(url) } else { StoreOptions::new(url) };
    let store = SqlStore::open(&store_opts, 1).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let (admin, hash) = new_token(TokenKind::Admin);
    store.insert_token(&token_record(TokenKind::Admin, "test", hash, None, 1)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut cfg = EngineConfig::new(agent_os_core::id::new_id(), url.clone(), home.path().join("run"));
    cfg.kill_grace = Duration::from_millis(500);
    cfg.probes_enabled = false;
    tune(&mut cfg);
    let clock: Arc<dyn Clock> = if held { Arc::new(TokioClock::starting_now()) } else { Arc::new(SystemClock) };
    let engine = Engine::start(store, clock, cfg).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent_os_server::run(listener, engine.clone(), opts, async move {
        let _ = stopped.await;
    }));
    TestServer { url, admin, engine, http: reqwest::Client::new(), home, _stop: stop, _time: time }
}

/// Every answer a test sees from an operation of the OpenAPI document must be one the document
/// lists for it, so a status added to a handler without its annotation fails the suite here
/// rather than the API check of a client. Paths outside the document (the dashboard) pass.
pub fn assert_documented(method: String, path: &str, status: u16, body: &str) {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| serde_json::from_str(&agent_os_server::openapi_json()).unwrap());
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let matches = |template: &str| {
        let t: Vec<&str> = template.split('/').collect();
        t.len() == segments.len() && t.iter().zip(&segments).all(|(t, s)| t.starts_with('{') || t == s)
    };
    let Some(paths) = doc["paths"].as_object() else { return };
    // A literal segment wins over a parameter (`/schedules/timeline` over `/schedules/{id}`).
    let template =
        paths.keys().filter(|t| matches(t)).max_by_key(|t| t.split('/').filter(|s| !s.starts_with('{')).count());
    let Some(op) = template.and_then(|t| paths[t].get(&method)) else { return };
    assert!(
        op["responses"].get(status.to_string()).is_some(),
        "{} {path} answered {status}, which its OpenAPI operation does not document: {body}",
        method.to_uppercase()
    );
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

impl TestServer {
    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method_name = method.as_str().to_ascii_lowercase();
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_documented(method_name, path, status, &text);
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.req(reqwest::Method::GET, path, Some(&self.admin), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.req(reqwest::Method::POST, path, Some(&self.admin), Some(body)).await
    }

    pub async fn add(&self, dir: &Path) -> Value {
        let (s, v) = self.post("/api/v1/projects", json!({"path": dir.display().to_string()})).await;
        assert_eq!(s, 201, "{v}");
        v
    }

    /// Starts a run and waits for it to end.
    pub async fn run(&self, project: &str, task: &str, input: Value) -> Value {
        let (s, run) = self.post("/api/v1/runs", json!({"project": project, "task": task, "input": input})).await;
        assert_eq!(s, 201, "{run}");
        self.wait(run["id"].as_str().unwrap()).await
    }

    pub async fn wait(&self, id: &str) -> Value {
        let (s, run) = self.get(&format!("/api/v1/runs/{id}/wait?timeout=60s")).await;
        assert_eq!(s, 200, "{run}");
        run
    }

    pub async fn log(&self, id: &str) -> String {
        let (s, v) = self.get(&format!("/api/v1/runs/{id}/logs")).await;
        assert_eq!(s, 200, "{v}");
        v["chunks"].as_array().unwrap().iter().map(|c| c["data"].as_str().unwrap().to_string()).collect()
    }
}

pub const FIXTURE: &str = r#"name: fixture
description: tasks that misbehave on purpose
env_file: .env
keys:
  OPENAI_API_KEY: { service: openai, key_name: fixture-openai }
tasks:
  echo:
    run: [python3, echo.py]
  fail:
    run: "echo failing >&2; exit 3"
    retries: 2
    retry_delay: 50ms
  no_retry:
    run: "echo giving up; exit 78"
    retries: 3
    retry_delay: 50ms
  flaky:
    run: [sh, flaky.sh]
    retries: 3
    retry_delay: 50ms
  slow:
    run: "sleep 30 & echo $! > grandchild.pid; sleep 30"
    timeout: 1s
    kill_grace: 500ms
  sleeper:
    run: "sleep 30 & echo $! > sleeper.pid; echo started; wait"
  missing:
    run: [no-such-program-for-agent-os]
  secrets:
    run: [sh, secrets.sh]
  chatty:
    run: "i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"
  bad_outputs:
    run: "printf '[1,2]' > \"$AGENT_OS_OUTPUT\""
  cost:
    run: [python3, cost_push.py]
  envdump:
    run: [env]
status: { run: [sh, status.sh], every: 1s }
cost: { run: [python3, cost_probe.py], every: 1s }
schedule: { run: [sh, schedule.sh] }
schedules:
  - { task: echo, cron: "*/15 * * * *", timezone: Europe/Berlin }
"#;

pub fn fixture(dir: &Path) -> PathBuf {
    let root = dir.join("fixture");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), FIXTURE).unwrap();
    std::fs::write(
        root.join("schedule.sh"),
        "cat > /dev/null; echo '{\"schedules\": [{\"task\": \"echo\", \"cron\": \"0 5 * * *\", \"managed_by\": \"github\", \"description\": \"nightly workflow\"}, {\"task\": \"nope\", \"cron\": \"0 5 * * *\"}]}'\n",
    )
    .unwrap();
    std::fs::write(
        root.join("echo.py"),
        "import json, os, sys\ndata = json.load(sys.stdin)\nprint('got', json.dumps(data, sort_keys=True), flush=True)\nprint('to stderr', file=sys.stderr)\nwith open(os.environ['AGENT_OS_OUTPUT'], 'w') as f:\n    json.dump({'echo': data, 'env': sorted(os.environ), 'cwd': os.getcwd()}, f)\n",
    )
    .unwrap();
    std::fs::write(
        root.join("flaky.sh"),
        "n=$(cat attempts 2>/dev/null || echo 0); n=$((n+1)); echo $n > attempts\necho attempt $n\n[ $n -ge 3 ]\n",
    )
    .unwrap();
    std::fs::write(root.join("secrets.sh"), "echo \"key sk-proj-abcdefghijklmnopqrstuvwxyz0123\"\necho \"mine $AGENT_OS_TOKEN\"\necho \"header Authorization: Bearer abcdef0123456789\"\n").unwrap();
    std::fs::write(
        root.join("status.sh"),
        "cat > /dev/null; echo '{\"status\": \"degraded\", \"message\": \"disk 91% full\"}'\n",
    )
    .unwrap();
    std::fs::write(
        root.join("cost_probe.py"),
        "import json, sys\nreq = json.load(sys.stdin)\nassert req['op'] == 'report_cost' and req['protocol'] == 1\nsince = int(req['since'] or 0)\nrecords = [{'service': 'openai', 'amount': '0.5', 'idempotency_key': f'p{i}', 'at': '2026-01-01T00:00:00Z'} for i in range(3)]\nprint(json.dumps({'records': records[since:], 'cursor': str(len(records))}))\n",
    )
    .unwrap();
    std::fs::write(
        root.join("cost_push.py"),
        "import json, os, urllib.request\nbody = json.dumps({'service': 'openai', 'key_name': 'fixture-openai', 'amount': '0.0123', 'tokens_in': 100, 'idempotency_key': 'run-' + os.environ['AGENT_OS_RUN_ID']}).encode()\nreq = urllib.request.Request(os.environ['AGENT_OS_URL'] + '/api/v1/costs', data=body, method='POST', headers={'Authorization': 'Bearer ' + os.environ['AGENT_OS_TOKEN'], 'Content-Type': 'application/json'})\nprint(urllib.request.urlopen(req, timeout=5).read().decode())\n",
    )
    .unwrap();
    root
}

/// What a receiver got: the method, path, every header (names in lower case) and the JSON body
/// (`null` when it was not JSON).
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// The query string as sent ("" when there was none).
    pub query: String,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

impl Received {
    /// A header's value, or "" when it was not sent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(&name.to_ascii_lowercase()).map_or("", String::as_str)
    }

    /// The `Idempotency-Key`: the delivery's id.
    pub fn key(&self) -> &str {
        self.header("idempotency-key")
    }
}

/// A local receiver that records every request and answers as told: a list of statuses, one per
/// request (the last one repeats), with `Retry-After: 1` on 429 (or, as Telegram does, the wait
/// in the JSON body: `retry_after_in_body`), the given `Location` on a 3xx, a JSON body when
/// `replying`, and each answer held back by `delay` (to outlast a sender's timeout). A request
/// is recorded when it arrives, before the delay.
#[derive(Clone, Default)]
pub struct Sink {
    pub seen: Arc<Mutex<Vec<Received>>>,
    pub answers: Arc<Mutex<Vec<u16>>>,
    location: Option<String>,
    delay: Duration,
    body_retry_after: Option<u64>,
    reply: Option<Value>,
}

impl Sink {
    /// A receiver on 127.0.0.1 answering `answers`, and its base URL.
    pub async fn start(answers: &[u16]) -> (Sink, String) {
        Sink::answering(answers).listen("127.0.0.1:0").await.expect("a receiver on 127.0.0.1")
    }

    pub fn answering(answers: &[u16]) -> Sink {
        assert!(!answers.is_empty(), "a receiver needs at least one answer");
        Sink { answers: Arc::new(Mutex::new(answers.to_vec())), ..Default::default() }
    }

    /// Sends `Location: location` with every 3xx answer.
    pub fn redirecting_to(self, location: &str) -> Sink {
        Sink { location: Some(location.into()), ..self }
    }

    /// Answers 429 as Telegram does: no `Retry-After` header, the wait in the JSON body's
    /// `parameters.retry_after`.
    pub fn retry_after_in_body(self, secs: u64) -> Sink {
        Sink { body_retry_after: Some(secs), ..self }
    }

    /// Answers every request but a 429 with this JSON body.
    pub fn replying(self, body: Value) -> Sink {
        Sink { reply: Some(body), ..self }
    }

    /// Holds every answer back this long.
    pub fn delayed(self, delay: Duration) -> Sink {
        Sink { delay, ..self }
    }

    /// Serves on `addr` (`127.0.0.1:0`, `[::1]:0`, …); the base URL is `http://ADDR:PORT`.
    pub async fn listen(self, addr: &str) -> std::io::Result<(Sink, String)> {
        async fn receive(
            State(s): State<Sink>,
            method: Method,
            uri: Uri,
            h: HeaderMap,
            body: axum::body::Bytes,
        ) -> (StatusCode, HeaderMap, String) {
            let headers = h
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            s.seen.lock().unwrap().push(Received {
                method: method.to_string(),
                path: uri.path().to_string(),
                query: uri.query().unwrap_or_default().to_string(),
                headers,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
            let status = {
                let mut a = s.answers.lock().unwrap();
                if a.len() > 1 { a.remove(0) } else { a[0] }
            };
            tokio::time::sleep(s.delay).await;
            let mut headers = HeaderMap::new();
            let mut answer = s.reply.as_ref().map(Value::to_string).unwrap_or_default();
            if status == 429 {
                match s.body_retry_after {
                    Some(secs) => {
                        answer = serde_json::json!({"ok": false, "error_code": 429,
                            "description": format!("Too Many Requests: retry after {secs}"),
                            "parameters": {"retry_after": secs}})
                        .to_string();
                    }
                    None => {
                        headers.insert("retry-after", "1".parse().unwrap());
                    }
                }
            }
            if (300..400).contains(&status)
                && let Some(to) = &s.location
            {
                headers.insert("location", to.parse().unwrap());
            }
            (StatusCode::from_u16(status).unwrap(), headers, answer)
        }
        let app = axum::Router::new().fallback(axum::routing::any(receive)).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Ok((self, url))
    }

    /// What it has received so far.
    pub fn received(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }
}

/// Polls the delivery log (`GET /api/v1/notifications`, newest first) until `done` holds for it,
/// for at most `within`, and returns it.
pub async fn wait_log(s: &TestServer, within: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let until = std::time::Instant::now() + within;
    loop {
        let (st, list) = s.get("/api/v1/notifications").await;
        assert_eq!(st, 200, "{list}");
        if done(&list) {
            return list;
        }
        if std::time::Instant::now() > until {
            panic!("{what} within {within:?}: {list:#}");
        }
        nap(Duration::from_millis(50)).await;
    }
}

/// The newest notification sent to any channel, once its first delivery has `status`. Newest
/// "sent to any channel", because Agent OS also records notifications of its own (an incident
/// about a gone channel, say) that may go nowhere.
pub async fn wait_delivery(s: &TestServer, status: &str) -> Value {
    fn newest_sent(list: &Value) -> Option<&Value> {
        list.as_array()?.iter().find(|n| n["deliveries"].as_array().is_some_and(|d| !d.is_empty()))
    }
    let list = wait_log(s, Duration::from_secs(10), &format!("a delivery should become {status}"), |l| {
        newest_sent(l).is_some_and(|n| n["deliveries"][0]["status"] == status)
    })
    .await;
    newest_sent(&list).cloned().unwrap_or_default()
}

/// A logged-in dashboard browser: the session cookie and the page's CSRF token, with
/// redirects left to the test to see.
pub struct Browser {
    pub base: String,
    pub cookie: String,
    pub csrf: String,
    pub http: reqwest::Client,
}

/// What a dashboard request answered.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl TestServer {
    /// Logs in to the dashboard with the admin token.
    pub async fn browser(&self) -> Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let resp = http
            .post(format!("{}/login", self.url))
            .form(&[("secret", self.admin.as_str()), ("next", "/")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "login should redirect");
        let set = resp.headers().get("set-cookie").expect("a session cookie").to_str().unwrap().to_string();
        let cookie = set.split(';').next().unwrap().to_string();
        let mut b = Browser { base: self.url.clone(), cookie, csrf: String::new(), http };
        let home = b.get("/").await;
        assert_eq!(home.status, 200, "{}", home.body);
        b.csrf = meta_csrf(&home.body).expect("pages carry the CSRF token");
        b
    }
}

/// The CSRF token a page carries in `<meta name="csrf-token">`.
pub fn meta_csrf(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf-token" content=""#)? + r#"name="csrf-token" content=""#.len();
    Some(html[at..].split('"').next()?.to_string())
}

impl Browser {
    async fn page(resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_string());
        let headers = resp.headers().clone();
        Page { status, location, headers, body: resp.text().await.unwrap() }
    }

    pub async fn get(&self, path: &str) -> Page {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        Self::page(resp).await
    }

    /// Posts a form with the session's CSRF token added.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("_csrf", &self.csrf));
        self.post_raw(path, &all).await
    }

    /// Posts a form exactly as given (no CSRF token added).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(fields)
            .send()
            .await
            .unwrap();
        Self::page(resp).await
    }
}

/// Resource limits for a test: a concurrency and a rate of (count, per seconds, burst).
pub fn limits(concurrency: Option<u32>, rate: Option<(u32, u64, u32)>) -> agent_os_core::resource::Limits {
    agent_os_core::resource::Limits {
        concurrency,
        rate: rate.map(|(count, secs, burst)| agent_os_core::resource::Rate {
            count,
            per: Duration::from_secs(secs),
            burst,
        }),
    }
}

/// Makes a project token for `project` and returns its value.
pub async fn project_token(s: &TestServer, project: &str) -> String {
    let (st, tok) = s.post("/api/v1/tokens", json!({"project": project, "name": "test"})).await;
    assert_eq!(st, 201, "{tok}");
    tok["token"].as_str().unwrap().to_string()
}

/// An HTTP client whose connections come from `local` (any 127.x.y.z reaches a server on
/// 127.0.0.1), so one test can play several clients; redirects are left to the test.
pub fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
