//! End-to-end benchmark of the run path: it starts the real `agent-os serve` binary, registers a
//! project whose only task runs `true`, and measures over real HTTP on 127.0.0.1 the overhead of
//! one run (submit, then wait for the end), the throughput of many trivial runs submitted at
//! once, and the resident memory of an idle and of a busy server. It repeats the run measurements
//! on PostgreSQL when `AGENT_OS_BENCH_POSTGRES_URL` is set, and prints a Markdown table.
//!
//! `cargo bench -p agent-os --bench runs` runs the full measurement; `AGENT_OS_BENCH_QUICK=1`
//! (or running it without `--bench`, as `cargo test --benches` does) runs a short smoke version
//! that only proves the harness still works. See docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

// Each bench uses a part of the shared module.
#[allow(dead_code)]
mod common;

use common::{Database, Server, Stats, ms};

// `true` is quoted: bare, YAML reads it as a boolean, which is not an argv element.
const MANIFEST: &str = "name: bench\ntasks:\n  noop:\n    run: [\"true\"]\n";
const PROJECT: &str = "bench";

/// How much work each phase does: the full measurement or the smoke version.
struct Plan {
    quick: bool,
    warmup: usize,
    sequential: usize,
    spawns: usize,
    burst: usize,
    clients: usize,
    idle_wait: Duration,
}

impl Plan {
    fn from_env() -> Plan {
        if common::quick_mode() {
            Plan {
                quick: true,
                warmup: 5,
                sequential: 50,
                spawns: 50,
                burst: 200,
                clients: 32,
                idle_wait: Duration::from_secs(2),
            }
        } else {
            Plan {
                quick: false,
                warmup: 20,
                sequential: 1000,
                spawns: 200,
                burst: 2000,
                clients: 32,
                idle_wait: Duration::from_secs(5),
            }
        }
    }
}

fn main() -> Result<()> {
    let plan = Plan::from_env();
    agent_os_engine::plugin::install_crypto_provider();
    // One thread for the client side: on a small machine the server should get the rest.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(bench(&plan))
}

async fn bench(plan: &Plan) -> Result<()> {
    let bin = common::binary();
    let project = tempfile::tempdir()?;
    std::fs::write(project.path().join("agent-os.yaml"), MANIFEST)?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    if plan.quick {
        eprintln!("smoke mode: {} sequential runs, {} in the burst", plan.sequential, plan.burst);
    }

    let spawn = spawn_baseline(plan.spawns, false)?;
    let spawn_like_runner = spawn_baseline(plan.spawns, true)?;
    eprintln!("spawn baseline: p50 {:.3} ms; as the runner spawns: p50 {:.3} ms", spawn.p50, spawn_like_runner.p50);

    let mut columns = Vec::new();
    let sqlite = {
        let server = Server::start(&bin, None).await?;
        server.register(&http, project.path()).await?;
        measure_runs(&http, &server, plan, "SQLite").await?
    };
    columns.push(sqlite);

    let idle = {
        let server = Server::start(&bin, None).await?;
        server.register(&http, project.path()).await?;
        tokio::time::sleep(plan.idle_wait).await;
        server.rss_mib()?
    };
    eprintln!("idle RSS: {idle:.1} MiB");

    match common::postgres_url() {
        Some(url) => {
            let db = Database::create(&url)?;
            let server = Server::start(&bin, Some(&db.url)).await?;
            server.register(&http, project.path()).await?;
            let measured = measure_runs(&http, &server, plan, "PostgreSQL").await;
            // The server holds connections to the database: stop it before dropping it.
            drop(server);
            drop(db);
            columns.push(measured?);
        }
        None => eprintln!("AGENT_OS_BENCH_POSTGRES_URL is not set: PostgreSQL is not measured"),
    }

    print_report(plan, &spawn, &spawn_like_runner, idle, &columns);
    Ok(())
}

/// What one database backend measured.
struct Column {
    backend: &'static str,
    overhead: Stats,
    submit: Stats,
    runs_per_sec: f64,
    burst_secs: f64,
    /// CPU time of the server (user, system) and of the task processes it reaped, per run of
    /// the burst, in ms.
    cpu_user: f64,
    cpu_sys: f64,
    cpu_tasks: f64,
    rss_after: f64,
}

async fn measure_runs(http: &reqwest::Client, server: &Server, plan: &Plan, backend: &'static str) -> Result<Column> {
    for _ in 0..plan.warmup {
        one_run(http, server).await?;
    }
    let mut total = Vec::with_capacity(plan.sequential);
    let mut submit = Vec::with_capacity(plan.sequential);
    for _ in 0..plan.sequential {
        let (t, s) = one_run(http, server).await?;
        total.push(t);
        submit.push(s);
    }
    let overhead = Stats::of(total);
    let submit = Stats::of(submit);
    eprintln!(
        "{backend}: {} sequential runs: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        plan.sequential, overhead.p50, overhead.p90, overhead.p99, overhead.max
    );

    let before = run_counts(http, server).await?;
    let cpu_before = server.cpu_ms()?;
    let expected = before.succeeded + plan.burst as u64;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..plan.clients {
        let (http, url, token, next, burst) =
            (http.clone(), server.url.clone(), server.token.clone(), next.clone(), plan.burst);
        clients.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < burst {
                submit_run(&http, &url, &token).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = clients.join_next().await {
        joined??;
    }
    let submitted = started.elapsed();
    let deadline = started + Duration::from_secs(120);
    let counts = loop {
        let c = run_counts(http, server).await?;
        ensure!(c.unsuccessful == 0, "{backend}: {} runs did not succeed", c.unsuccessful);
        if c.succeeded >= expected {
            break c;
        }
        ensure!(Instant::now() < deadline, "{backend}: only {} of {expected} runs succeeded in 120 s", c.succeeded);
        // Every look at /metrics counts all runs on the server: do not look too often.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let burst_secs = started.elapsed().as_secs_f64();
    let cpu_after = server.cpu_ms()?;
    let per_run = |i: usize| (cpu_after[i] - cpu_before[i]) / plan.burst as f64;
    let (cpu_user, cpu_sys, cpu_tasks) = (per_run(0), per_run(1), per_run(2));
    ensure!(counts.succeeded == expected, "{backend}: {} runs succeeded, expected {expected}", counts.succeeded);
    let runs_per_sec = plan.burst as f64 / burst_secs;
    eprintln!(
        "{backend}: {} runs from {} clients: submitted in {:.2} s, all succeeded after {burst_secs:.2} s: {runs_per_sec:.0} runs/s",
        plan.burst,
        plan.clients,
        submitted.as_secs_f64()
    );
    eprintln!(
        "{backend}: CPU per run in the burst: server {cpu_user:.2} ms user + {cpu_sys:.2} ms system, task processes {cpu_tasks:.2} ms"
    );
    let rss_after = server.rss_mib()?;
    Ok(Column { backend, overhead, submit, runs_per_sec, burst_secs, cpu_user, cpu_sys, cpu_tasks, rss_after })
}

/// One run, submitted and waited for: (total ms, submit ms).
async fn one_run(http: &reqwest::Client, server: &Server) -> Result<(f64, f64)> {
    let started = Instant::now();
    let id = submit_run(http, &server.url, &server.token).await?;
    let submitted = started.elapsed();
    let resp =
        http.get(format!("{}/api/v1/runs/{id}/wait?timeout=10s", server.url)).bearer_auth(&server.token).send().await?;
    ensure!(resp.status() == reqwest::StatusCode::OK, "waiting for run {id}: HTTP {}", resp.status());
    let run: Value = resp.json().await?;
    let elapsed = started.elapsed();
    ensure!(run["status"] == "succeeded", "run {id} ended {}: {}", run["status"], run["error"]);
    Ok((ms(elapsed), ms(submitted)))
}

async fn submit_run(http: &reqwest::Client, url: &str, token: &str) -> Result<String> {
    let resp = http
        .post(format!("{url}/api/v1/runs"))
        .bearer_auth(token)
        .json(&json!({"project": PROJECT, "task": "noop"}))
        .send()
        .await?;
    let status = resp.status();
    ensure!(status == reqwest::StatusCode::CREATED, "POST /api/v1/runs: HTTP {status}: {}", resp.text().await?);
    let run: Value = resp.json().await?;
    run["id"].as_str().map(str::to_string).context("POST /api/v1/runs answered without an id")
}

/// Starting `true` straight from this process, for comparison with a whole run. `like_runner`
/// sets what the task runner sets: the program resolved to an absolute path up front, a cleared
/// environment with its own `PATH`, a working directory, a new process group and three pipes —
/// which the standard library still starts with `posix_spawn`.
fn spawn_baseline(n: usize, like_runner: bool) -> Result<Stats> {
    let mut times = Vec::with_capacity(n);
    let dir = std::env::temp_dir();
    let true_path =
        ["/usr/bin/true", "/bin/true"].iter().map(PathBuf::from).find(|p| p.exists()).context("no `true` program")?;
    for _ in 0..n {
        let started = Instant::now();
        let mut cmd = Command::new(if like_runner { true_path.as_path() } else { Path::new("true") });
        if like_runner {
            use std::os::unix::process::CommandExt;
            cmd.env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .current_dir(&dir)
                .process_group(0)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        } else {
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        }
        let status = cmd.spawn()?.wait()?;
        times.push(ms(started.elapsed()));
        ensure!(status.success(), "`true` failed: {status}");
    }
    Ok(Stats::of(times))
}

struct RunCounts {
    succeeded: u64,
    /// failed, timed out or cancelled.
    unsuccessful: u64,
}

/// The run counts by status from `GET /metrics`.
async fn run_counts(http: &reqwest::Client, server: &Server) -> Result<RunCounts> {
    let resp = http.get(format!("{}/metrics", server.url)).bearer_auth(&server.token).send().await?;
    ensure!(resp.status() == reqwest::StatusCode::OK, "GET /metrics: HTTP {}", resp.status());
    let text = resp.text().await?;
    let count = |status: &str| -> Result<u64> {
        let prefix = format!("agent_os_runs{{status=\"{status}\"}} ");
        let line =
            text.lines().find_map(|l| l.strip_prefix(&prefix)).with_context(|| format!("/metrics has no {prefix}"))?;
        Ok(line.trim().parse()?)
    };
    Ok(RunCounts {
        succeeded: count("succeeded")?,
        unsuccessful: count("failed")? + count("timed_out")? + count("cancelled")?,
    })
}

fn print_report(plan: &Plan, spawn: &Stats, spawn_like_runner: &Stats, idle: f64, columns: &[Column]) {
    let mode = if plan.quick { " (smoke mode: too few runs to quote)" } else { "" };
    println!();
    println!("## Agent OS run benchmark{mode}");
    println!();
    let head: Vec<&str> = columns.iter().map(|c| c.backend).collect();
    println!("| | {} |", head.join(" | "));
    println!("|---|{}", "---:|".repeat(columns.len()));
    let row = |label: String, cell: &dyn Fn(&Column) -> String| {
        let cells: Vec<String> = columns.iter().map(cell).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    let n = plan.sequential;
    row(format!("run overhead p50 ({n} sequential runs)"), &|c| format!("{:.2} ms", c.overhead.p50));
    row("run overhead p90".into(), &|c| format!("{:.2} ms", c.overhead.p90));
    row("run overhead p99".into(), &|c| format!("{:.2} ms", c.overhead.p99));
    row("run overhead max".into(), &|c| format!("{:.2} ms", c.overhead.max));
    row("of which `POST /runs` p50".into(), &|c| format!("{:.2} ms", c.submit.p50));
    row(format!("throughput ({} runs, {} clients)", plan.burst, plan.clients), &|c| {
        format!("{:.0} runs/s ({:.2} s)", c.runs_per_sec, c.burst_secs)
    });
    row("server CPU per run in the burst (user + system)".into(), &|c| {
        format!("{:.2} + {:.2} ms", c.cpu_user, c.cpu_sys)
    });
    row("task process CPU per run".into(), &|c| format!("{:.2} ms", c.cpu_tasks));
    row("server RSS after the throughput test".into(), &|c| format!("{:.1} MiB", c.rss_after));
    println!();
    println!("| | |");
    println!("|---|---:|");
    println!("| spawn + wait of `true` from the bench, p50 ({} spawns) | {:.2} ms |", plan.spawns, spawn.p50);
    println!("| the same, set up as the runner does, p50 | {:.2} ms |", spawn_like_runner.p50);
    println!("| idle server RSS (SQLite, one project, after {} s) | {idle:.1} MiB |", plan.idle_wait.as_secs());
}
