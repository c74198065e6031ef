//! What the end-to-end benchmarks share: a real `agent-os serve` in a temporary home (started,
//! waited for, stopped with SIGTERM), a throw-away PostgreSQL database, readings of the server's
//! CPU time and memory from `/proc`, and nearest-rank percentiles. Each bench is a crate of its
//! own that includes this module with `mod common;`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};

/// Whether to run the smoke version: asked for with `AGENT_OS_BENCH_QUICK=1`, or implied when
/// the bench runs without `--bench` (`cargo bench` passes it; `cargo test --benches` does not,
/// and there a smoke run is what is wanted).
pub fn quick_mode() -> bool {
    let asked = std::env::var("AGENT_OS_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let under_cargo_bench = std::env::args().any(|a| a == "--bench");
    asked || !under_cargo_bench
}

/// The `agent-os` binary to measure: the one cargo built beside the bench, or another build named
/// by `AGENT_OS_BENCH_BIN` (to compare two versions with one harness, interleaved).
pub fn binary() -> PathBuf {
    match std::env::var_os("AGENT_OS_BENCH_BIN").filter(|b| !b.is_empty()) {
        Some(b) => PathBuf::from(b),
        None => PathBuf::from(env!("CARGO_BIN_EXE_agent-os")),
    }
}

/// The PostgreSQL server to measure against as well, from `AGENT_OS_BENCH_POSTGRES_URL`.
pub fn postgres_url() -> Option<String> {
    std::env::var("AGENT_OS_BENCH_POSTGRES_URL").ok().filter(|u| !u.is_empty())
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub struct Stats {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    /// Percentiles of a non-empty sample.
    pub fn of(mut samples: Vec<f64>) -> Stats {
        assert!(!samples.is_empty(), "percentiles of no samples");
        samples.sort_by(f64::total_cmp);
        // Nearest rank: the smallest sample with at least p of all samples at or below it.
        let rank = |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
        Stats { p50: rank(0.50), p90: rank(0.90), p95: rank(0.95), p99: rank(0.99), max: samples[samples.len() - 1] }
    }
}

/// A running `agent-os serve` in a home of its own; stopped (SIGTERM, then waited for) on drop.
pub struct Server {
    child: Child,
    pub url: String,
    pub token: String,
    home: tempfile::TempDir,
    bin: PathBuf,
    database_url: Option<String>,
}

impl Server {
    pub async fn start(bin: &Path, database_url: Option<&str>) -> Result<Server> {
        Self::start_with_config(bin, database_url, None).await
    }

    /// The same, with `config` written to the home's `config.yaml` first.
    pub async fn start_with_config(bin: &Path, database_url: Option<&str>, config: Option<&str>) -> Result<Server> {
        let home = tempfile::tempdir()?;
        if let Some(text) = config {
            std::fs::write(home.path().join("config.yaml"), text)?;
        }
        let token = random_hex(24)?;
        let child = spawn(bin, home.path(), database_url, &token)?;
        let (bin, database_url) = (bin.to_path_buf(), database_url.map(str::to_string));
        let mut server = Server { child, url: String::new(), token, home, bin, database_url };
        server.wait_ready().await.map_err(|e| anyhow!("{e}\n--- serve.log ---\n{}", server.log()))?;
        Ok(server)
    }

    /// Stops the server and starts it again in the same home, with the same database and token
    /// (e.g. after the bench wrote to its database directly).
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        std::fs::remove_file(self.home.path().join("client.json")).ok();
        self.child = spawn(&self.bin, self.home.path(), self.database_url.as_deref(), &self.token)?;
        self.wait_ready().await.map_err(|e| anyhow!("{e}\n--- serve.log ---\n{}", self.log()))
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client_json = self.home.path().join("client.json");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("agent-os serve exited early: {status}");
            }
            ensure!(Instant::now() < deadline, "agent-os serve did not write client.json in 30 s");
            if let Ok(text) = std::fs::read_to_string(&client_json)
                && let Ok(cfg) = serde_json::from_str::<Value>(&text)
                && let (Some(url), Some(token)) = (cfg["url"].as_str(), cfg["token"].as_str())
            {
                ensure!(token == self.token, "client.json holds another admin token than the one given");
                self.url = url.to_string();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let http = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("agent-os serve exited early: {status}");
            }
            ensure!(Instant::now() < deadline, "{}/healthz did not answer 200 in 30 s", self.url);
            if let Ok(resp) = http.get(format!("{}/healthz", self.url)).send().await
                && resp.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Logs in to the dashboard with the admin token as the login form does; the session
    /// cookie's `name=value`.
    pub async fn login(&self, http: &reqwest::Client) -> Result<String> {
        let resp = http
            .post(format!("{}/login", self.url))
            .header(reqwest::header::ORIGIN, &self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("secret={}", self.token))
            .send()
            .await?;
        ensure!(resp.status() == reqwest::StatusCode::SEE_OTHER, "POST /login: HTTP {}", resp.status());
        resp.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|kv| kv.starts_with("agentos_session="))
            .map(str::to_string)
            .context("the login set no agentos_session cookie")
    }

    /// Registers the project in `dir` (which holds its `agent-os.yaml`).
    pub async fn register(&self, http: &reqwest::Client, dir: &Path) -> Result<()> {
        let path = dir.canonicalize()?;
        let resp = http
            .post(format!("{}/api/v1/projects", self.url))
            .bearer_auth(&self.token)
            .json(&json!({"path": path}))
            .send()
            .await?;
        let status = resp.status();
        ensure!(
            status == reqwest::StatusCode::CREATED,
            "registering the project in {}: HTTP {status}: {}",
            dir.display(),
            resp.text().await?
        );
        Ok(())
    }

    /// `GET` of an API path (with its query), as the admin; the answer must be 200 and JSON.
    pub async fn get_json(&self, http: &reqwest::Client, path_and_query: &str) -> Result<Value> {
        let resp = http.get(format!("{}{path_and_query}", self.url)).bearer_auth(&self.token).send().await?;
        let status = resp.status();
        ensure!(status == reqwest::StatusCode::OK, "GET {path_and_query}: HTTP {status}: {}", resp.text().await?);
        Ok(resp.json().await?)
    }

    pub fn rss_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/<pid>/status")?;
        Ok(kib / 1024.0)
    }

    /// CPU time so far in ms: [server user, server system, reaped children user + system].
    pub fn cpu_ms(&self) -> Result<[f64; 3]> {
        cpu_ms(&self.child.id().to_string())
    }

    /// The SQLite database of a server started without a database URL.
    pub fn sqlite_path(&self) -> PathBuf {
        self.home.path().join("agent-os.db")
    }

    /// The server's home directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("serve.log")).unwrap_or_default()
    }

    /// Stops the server (SIGTERM, then SIGKILL after 15 s) and waits for it; the home stays
    /// until the value is dropped. Does nothing when it has already stopped.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("agent-os serve did not stop within 15 s of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `agent-os serve` in `home` on a free loopback port, its output appended to `serve.log`.
fn spawn(bin: &Path, home: &Path, database_url: Option<&str>, token: &str) -> Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(home.join("serve.log"))?;
    let mut cmd = Command::new(bin);
    cmd.arg("serve").arg("--home").arg(home).args(["--bind", "127.0.0.1:0"]);
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    cmd.env("AGENT_OS_ADMIN_TOKEN", token)
        .env_remove("AGENT_OS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("AGENT_OS_PUBLIC_URL")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    cmd.spawn().with_context(|| format!("cannot start {}", bin.display()))
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh PostgreSQL database for one measurement, made and dropped with `psql`.
pub struct Database {
    admin_url: String,
    name: String,
    pub url: String,
}

impl Database {
    pub fn create(admin_url: &str) -> Result<Database> {
        let name = format!("aos_bench_{}", random_hex(6)?);
        let url = with_database(admin_url, &name)?;
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        Ok(Database { admin_url: admin_url.to_string(), name, url })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = psql(&self.admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
            eprintln!("could not drop the database {}: {e}", self.name);
        }
    }
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql (is the PostgreSQL client installed?)")?;
    ensure!(out.status.success(), "psql -c {sql:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

/// The same connection URL with another database name (the path), keeping any query.
fn with_database(url: &str, name: &str) -> Result<String> {
    let (scheme, rest) = url.split_once("://").context("AGENT_OS_BENCH_POSTGRES_URL is not a URL")?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    Ok(match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    })
}

/// CPU time so far of a process (`self` for this one) in ms: [user, system, reaped children
/// user + system].
pub fn cpu_ms(pid: &str) -> Result<[f64; 3]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may hold spaces: utime is field 14 of the whole
    // line, so index 11 here.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("unreadable /proc/<pid>/stat")?;
    let f: Vec<f64> = rest.split_whitespace().skip(11).take(4).map(|v| v.parse().unwrap_or(0.0)).collect();
    ensure!(f.len() == 4, "unreadable /proc/<pid>/stat");
    let tick = 1000.0 / clock_ticks_per_sec();
    Ok([f[0] * tick, f[1] * tick, (f[2] + f[3]) * tick])
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
