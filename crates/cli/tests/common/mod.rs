//! What the backup and upgrade tests share: the real `agent-os serve` in a home of its own on
//! an ephemeral port (a fixed fake admin token, nothing from the test's environment steering
//! it), its JSON API over real HTTP, the CLI, and a project whose task logs two lines; and how
//! the pytest suites (the Python package's, the MCP server's) are run against this build.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // tests: a failed assumption is the test failing

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_agent-os");

/// The admin token every test server starts with (fake, made for these tests).
pub const ADMIN: &str = "aosa_backup_tests_fake_0123456789abcdef";

/// Every variable that would steer `serve` or the CLI from outside the test.
const STEERING: [&str; 8] = [
    "PORT",
    "DATABASE_URL",
    "AGENT_OS_DATABASE_URL",
    "AGENT_OS_PUBLIC_URL",
    "AGENT_OS_ADMIN_TOKEN",
    "AGENT_OS_URL",
    "AGENT_OS_TOKEN",
    "AGENT_OS_HOME",
];

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// An HTTP client (reqwest is built without a default TLS provider; the binary's is installed).
pub fn http() -> reqwest::Client {
    agent_os_engine::plugin::install_crypto_provider();
    reqwest::Client::new()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `agent-os ARGS` with the steering variables removed; `--home` first when given.
pub fn agent_os(home: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    if let Some(h) = home {
        c.arg("--home").arg(h);
    }
    c.args(args);
    for k in STEERING {
        c.env_remove(k);
    }
    c.env("NO_COLOR", "1").output().unwrap()
}

pub fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

pub struct Server {
    child: Child,
    pub home: PathBuf,
    pub base: String,
    log: PathBuf,
}

impl Server {
    /// `agent-os serve --home HOME` on a free port (with `--database-url` when given); waits
    /// until it answers `/healthz`.
    pub async fn start(home: &Path, database_url: Option<&str>) -> Server {
        std::fs::create_dir_all(home).unwrap();
        let port = free_port();
        let log = home.with_extension("log");
        let mut c = Command::new(BIN);
        c.arg("serve").arg("--home").arg(home).arg("--bind").arg(format!("127.0.0.1:{port}"));
        if let Some(url) = database_url {
            c.arg("--database-url").arg(url);
        }
        for k in STEERING {
            c.env_remove(k);
        }
        let file = std::fs::File::create(&log).unwrap();
        c.env("AGENT_OS_ADMIN_TOKEN", ADMIN)
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file));
        let mut s = Server {
            child: c.spawn().unwrap(),
            home: home.to_path_buf(),
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        s.wait_healthy().await;
        s
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = http();
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("serve exited ({status}) before it answered:\n{}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{}/healthz never answered 200:\n{}", self.base, self.output());
    }

    /// SIGTERM, then waits for the exit, which must be clean.
    pub fn stop(mut self) {
        // SAFETY: a signal to our own child.
        unsafe { kill(self.child.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "serve exited with {status}:\n{}", self.output());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not stop within 30 s:\n{}", self.output());
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base, ADMIN)
    }

    /// `agent-os ARGS` against this server (its URL and the admin token).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut all = vec!["--url", &self.base, "--token", ADMIN];
        all.extend_from_slice(args);
        agent_os(None, &all)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON API with one token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        Api { base: base.to_string(), token: token.to_string(), http: http() }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.timeout(Duration::from_secs(120)).send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A GET that must answer 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Every run, following the pages.
    pub async fn all_runs(&self) -> Vec<Value> {
        let mut runs = Vec::new();
        let mut path = "/api/v1/runs?limit=500".to_string();
        loop {
            let page = self.get(&path).await;
            runs.extend(page["runs"].as_array().unwrap().iter().cloned());
            match page["next"].as_str() {
                Some(next) => path = format!("/api/v1/runs?limit=500&before={next}"),
                None => return runs,
            }
        }
    }

    /// Starts a run of `project/task` and waits for its end; the finished run.
    pub async fn run_and_wait(&self, project: &str, task: &str) -> Value {
        let (status, run) = self.post("/api/v1/runs", json!({"project": project, "task": task})).await;
        assert_eq!(status, 201, "start {project}/{task}: {run}");
        let id = run["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let (_, run) = self.call(reqwest::Method::GET, &format!("/api/v1/runs/{id}/wait?timeout=10s"), None).await;
            if matches!(run["status"].as_str(), Some("succeeded" | "failed" | "timed_out" | "cancelled")) {
                return run;
            }
        }
        panic!("run {id} of {project}/{task} did not end within 60 s");
    }
}

/// A project directory `DIR/NAME` whose task `hello` prints two lines.
pub fn project(dir: &Path, name: &str) -> PathBuf {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        format!(
            "name: {name}\ndescription: a test project\ntasks:\n  hello:\n    run: [sh, -c, \"echo hello from {name}; echo second line\"]\n    timeout: 1m\n"
        ),
    )
    .unwrap();
    root
}

/// Registers the project at `root` through the API (admin).
pub async fn register(api: &Api, root: &Path) {
    let (status, v) = api.post("/api/v1/projects", json!({"path": root.display().to_string()})).await;
    assert_eq!(status, 201, "register {}: {v}", root.display());
}

/// Runs the pytest suite `tests` (a path under `dir`, run from `dir`) against this build's binary
/// (`AGENT_OS_BIN`), with no other `AGENT_OS_*` variable and no `DATABASE_URL` or `PORT`
/// steering it. When python3 cannot import `modules` it says to run `install` and passes, unless
/// CI=true, where it fails.
pub fn pytest(dir: &Path, tests: &str, modules: &str, install: &str) {
    let importable =
        Command::new("python3").args(["-c", &format!("import {modules}")]).output().is_ok_and(|o| o.status.success());
    if !importable {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but the tests in {} cannot run; {install}", dir.display());
        }
        eprintln!("NOTE: the tests in {} not run; to run them, {install}", dir.display());
        return;
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", tests])
        .current_dir(dir)
        .env("AGENT_OS_BIN", BIN)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("DATABASE_URL")
        .env_remove("PORT");
    for (key, _) in std::env::vars() {
        if key.starts_with("AGENT_OS_") && key != "AGENT_OS_BIN" {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().expect("cannot start python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "the tests in {} failed ({}):\n{stdout}\n{stderr}", dir.display(), out.status);
    assert!(stdout.contains(" passed"), "pytest ran no test:\n{stdout}");
}
