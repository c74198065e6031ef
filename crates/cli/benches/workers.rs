//! End-to-end benchmark of workers: the real `agent-os serve` on SQLite and real `agent-os
//! worker` processes on 127.0.0.1. It measures the overhead of a run through a worker — from
//! queued to ended, as the server recorded both times, for a task that runs `true` — and what
//! idle workers cost the server: its CPU time (from `/proc`) while 50 workers hold their long
//! polls, and the resident memory each adds. Prints a Markdown table.
//!
//! `cargo bench -p agent-os --bench workers` runs the full measurement; `AGENT_OS_BENCH_QUICK=1`
//! (or running it without `--bench`, as `cargo test --benches` does) runs a short smoke version.
//! See docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

// Each bench uses a part of the shared module.
#[allow(dead_code)]
mod common;

use common::{Server, Stats, ms};

// `true` is quoted: bare, YAML reads it as a boolean, which is not an argv element.
const MANIFEST: &str = "name: bench\ntasks:\n  noop:\n    run: [\"true\"]\n";
const PROJECT: &str = "bench";

struct Plan {
    quick: bool,
    warmup: usize,
    sequential: usize,
    idle_workers: usize,
    idle_window: Duration,
}

impl Plan {
    fn from_env() -> Plan {
        if common::quick_mode() {
            Plan { quick: true, warmup: 5, sequential: 50, idle_workers: 10, idle_window: Duration::from_secs(3) }
        } else {
            Plan { quick: false, warmup: 20, sequential: 500, idle_workers: 50, idle_window: Duration::from_secs(30) }
        }
    }
}

fn main() -> Result<()> {
    let plan = Plan::from_env();
    agent_os_engine::plugin::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(bench(&plan))
}

/// A running `agent-os worker`, killed on drop.
struct Worker {
    child: Child,
}

impl Worker {
    fn start(bin: &Path, server: &Server, token: &str, name: &str, home: &Path, project: &Path) -> Result<Worker> {
        std::fs::create_dir_all(home)?;
        let log = std::fs::File::create(home.with_extension("log"))?;
        let child = Command::new(bin)
            .args(["worker", "--server", &server.url, "--name", name, "--capacity", "4"])
            .arg("--project")
            .arg(project)
            .arg("--home")
            .arg(home)
            .env("AGENT_OS_WORKER_TOKEN", token)
            .env("AGENT_OS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Worker { child })
    }

    fn rss_mib(&self) -> Result<f64> {
        rss_mib(self.child.id())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}

async fn bench(plan: &Plan) -> Result<()> {
    let bin = common::binary();
    let dir = tempfile::tempdir()?;
    let project = dir.path().join("bench");
    std::fs::create_dir_all(&project)?;
    std::fs::write(project.join("agent-os.yaml"), MANIFEST)?;
    if plan.quick {
        eprintln!("smoke mode: {} sequential runs, {} idle workers", plan.sequential, plan.idle_workers);
    }
    let http = reqwest::Client::builder().no_proxy().build()?;
    let server = Server::start(&bin, None).await?;
    let token = worker_token(&http, &server).await?;

    // Run overhead through one worker.
    let worker = Worker::start(&bin, &server, &token, "bench-0", &dir.path().join("home-0"), &project)?;
    wait_connected(&http, &server, 1).await?;
    for _ in 0..plan.warmup {
        one_run(&http, &server).await?;
    }
    let mut queued_to_ended = Vec::with_capacity(plan.sequential);
    let mut queued_to_started = Vec::with_capacity(plan.sequential);
    let mut round_trip = Vec::with_capacity(plan.sequential);
    for _ in 0..plan.sequential {
        let t = one_run(&http, &server).await?;
        queued_to_ended.push(t.queued_to_ended);
        queued_to_started.push(t.queued_to_started);
        round_trip.push(t.round_trip);
    }
    let overhead = Stats::of(queued_to_ended);
    let claim = Stats::of(queued_to_started);
    let round_trip = Stats::of(round_trip);
    eprintln!(
        "{} sequential runs through a worker: queued → ended p50 {:.2} ms, p95 {:.2} ms; client round trip p50 {:.2} ms",
        plan.sequential, overhead.p50, overhead.p95, round_trip.p50
    );
    let worker_rss = worker.rss_mib()?;

    // Idle workers: the server with one, then with many more, over the same window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu_one, rss_one) = idle_window(&server, plan.idle_window).await?;
    let mut idle = Vec::with_capacity(plan.idle_workers);
    for i in 1..=plan.idle_workers {
        let home = dir.path().join(format!("home-{i}"));
        idle.push(Worker::start(&bin, &server, &token, &format!("bench-{i}"), &home, &project)?);
    }
    wait_connected(&http, &server, plan.idle_workers + 1).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu_many, rss_many) = idle_window(&server, plan.idle_window).await?;
    let n = plan.idle_workers as f64;
    let window = plan.idle_window.as_secs_f64();
    let cpu_per_worker = (cpu_many - cpu_one) / n / window / 10.0; // ms per s → % of a core
    let rss_per_worker = (rss_many - rss_one) * 1024.0 / n;
    eprintln!(
        "server idle CPU: {:.3} % with 1 worker, {:.3} % with {}; RSS {rss_one:.1} → {rss_many:.1} MiB",
        cpu_one / window / 10.0,
        cpu_many / window / 10.0,
        plan.idle_workers + 1
    );
    drop(idle);
    drop(worker);

    let mode = if plan.quick { " (smoke mode: too few samples to quote)" } else { "" };
    println!();
    println!("## Agent OS worker benchmark{mode}");
    println!();
    println!("| | SQLite |");
    println!("|---|---:|");
    println!(
        "| run through a worker, queued → ended, p50 ({} sequential runs) | {:.2} ms |",
        plan.sequential, overhead.p50
    );
    println!("| the same, p95 | {:.2} ms |", overhead.p95);
    println!("| the same, max | {:.2} ms |", overhead.max);
    println!("| of which queued → started (the claim through the held poll), p50 | {:.2} ms |", claim.p50);
    println!("| client round trip (`POST /runs` to the end seen by `/wait`), p50 | {:.2} ms |", round_trip.p50);
    println!("| server CPU, 1 idle worker | {:.3} % of a core |", cpu_one / window / 10.0);
    println!("| server CPU, {} idle workers | {:.3} % of a core |", plan.idle_workers + 1, cpu_many / window / 10.0);
    println!("| server CPU added per idle worker | {cpu_per_worker:.4} % of a core |");
    println!("| server RSS added per idle worker | {rss_per_worker:.0} KiB |");
    println!("| server RSS with {} idle workers | {rss_many:.1} MiB |", plan.idle_workers + 1);
    println!("| worker RSS (after the runs) | {worker_rss:.1} MiB |");
    Ok(())
}

/// The server's CPU time over `window` (user + system, ms) and its RSS at the end.
async fn idle_window(server: &Server, window: Duration) -> Result<(f64, f64)> {
    let before = server.cpu_ms()?;
    tokio::time::sleep(window).await;
    let after = server.cpu_ms()?;
    Ok((after[0] - before[0] + after[1] - before[1], server.rss_mib()?))
}

async fn worker_token(http: &reqwest::Client, server: &Server) -> Result<String> {
    let resp = http
        .post(format!("{}/api/v1/tokens", server.url))
        .bearer_auth(&server.token)
        .json(&json!({"kind": "worker", "projects": [PROJECT], "name": "bench"}))
        .send()
        .await?;
    let status = resp.status();
    let v: Value = resp.json().await?;
    ensure!(status.is_success(), "POST /api/v1/tokens: HTTP {status}: {v}");
    v["token"].as_str().map(str::to_string).context("no token in the answer")
}

/// Waits until `n` workers are connected.
async fn wait_connected(http: &reqwest::Client, server: &Server, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = server.get_json(http, "/api/v1/workers").await?;
        let connected = list.as_array().map_or(0, |l| l.iter().filter(|w| w["connected"] == true).count());
        if connected >= n {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "only {connected} of {n} workers connected in 60 s\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one run took, in ms.
struct Timing {
    /// As the server recorded them.
    queued_to_ended: f64,
    queued_to_started: f64,
    /// `POST /runs` to the answer of `/wait`, as this client saw it.
    round_trip: f64,
}

async fn one_run(http: &reqwest::Client, server: &Server) -> Result<Timing> {
    let started = Instant::now();
    let resp = http
        .post(format!("{}/api/v1/runs", server.url))
        .bearer_auth(&server.token)
        .json(&json!({"project": PROJECT, "task": "noop"}))
        .send()
        .await?;
    ensure!(resp.status() == reqwest::StatusCode::CREATED, "POST /api/v1/runs: HTTP {}", resp.status());
    let run: Value = resp.json().await?;
    let id = run["id"].as_str().context("no run id")?.to_string();
    let resp =
        http.get(format!("{}/api/v1/runs/{id}/wait?timeout=10s", server.url)).bearer_auth(&server.token).send().await?;
    ensure!(resp.status() == reqwest::StatusCode::OK, "waiting for run {id}: HTTP {}", resp.status());
    let run: Value = resp.json().await?;
    let round_trip = ms(started.elapsed());
    ensure!(run["status"] == "succeeded", "run {id} ended {}: {}", run["status"], run["error"]);
    let at = |field: &str| -> Result<f64> {
        let text = run[field].as_str().with_context(|| format!("run {id} has no {field}"))?;
        let t: jiff::Timestamp = text.parse().with_context(|| format!("{field} {text:?}"))?;
        Ok(t.as_millisecond() as f64)
    };
    let queued = at("queued_at")?;
    Ok(Timing {
        queued_to_ended: at("finished_at")? - queued,
        queued_to_started: at("started_at")? - queued,
        round_trip,
    })
}
