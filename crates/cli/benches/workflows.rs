//! End-to-end benchmark of workflows and events: the real `agent-os serve` binary, a project
//! whose task does nothing (`true`), and over real HTTP on 127.0.0.1:
//! - a 40-step sequential workflow of that task, from `POST /workflows/NAME/runs` to the run
//!   read back as succeeded (target: 80 ms on SQLite, 150 ms on PostgreSQL);
//! - a 100-way `for_each` fan-out of the same task, 16 at a time;
//! - event ingestion: events a second stored by `POST /api/v1/events` from 32 clients, each
//!   answered only once it is committed (target: 5,000 a second).
//!
//! It repeats on PostgreSQL when `AGENT_OS_BENCH_POSTGRES_URL` is set and prints a Markdown
//! table. `cargo bench -p agent-os --bench workflows`; `AGENT_OS_BENCH_QUICK=1` runs a smoke
//! version. See docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

#[allow(dead_code)]
mod common;

use common::{Database, Server, Stats, ms};

/// Enough concurrent task runs for the fan-out to be limited by the engine, not the cap.
const CONFIG: &str = "runs:\n  max_concurrent: 100\n";
const MANIFEST: &str = "name: bench\ntasks:\n  noop:\n    run: [\"true\"]\n";

fn chain(steps: usize) -> String {
    let mut w = String::from("name: chain\non:\n  manual: {}\nsteps:\n");
    for i in 0..steps {
        if i == 0 {
            w.push_str("  - { id: s0, run: bench.noop }\n");
        } else {
            w.push_str(&format!("  - {{ id: s{i}, needs: [s{}], run: bench.noop }}\n", i - 1));
        }
    }
    w
}

const FANOUT: &str = "name: fanout\non:\n  manual: { inputs: { items: { type: array, required: true } } }\nsteps:\n  - id: each\n    for_each: { items: inputs.items, max_parallel: 16 }\n    run: bench.noop\n    with: { n: \"{{ item }}\" }\n";

/// Routes every event past one workflow that never matches, so ingestion pays for routing.
const UNMATCHED: &str = "name: unmatched\non:\n  event: { type: never.happens }\nsteps:\n  - { id: e, emit: { type: never.again, data: {} } }\n";

struct Plan {
    chain_runs: usize,
    fanout_runs: usize,
    events: usize,
    clients: usize,
}

struct Row {
    db: &'static str,
    /// Server-recorded (created → finished) and client-observed.
    chain: (Stats, Stats),
    fanout: (Stats, Stats),
    events_per_s: f64,
}

fn main() -> Result<()> {
    let quick = common::quick_mode();
    let plan = Plan {
        chain_runs: if quick { 2 } else { 10 },
        fanout_runs: if quick { 1 } else { 5 },
        events: if quick { 2_000 } else { 20_000 },
        clients: 32,
    };
    agent_os_engine::plugin::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(bench(&plan))
}

async fn bench(plan: &Plan) -> Result<()> {
    let bin = common::binary();
    let project = tempfile::tempdir()?;
    std::fs::write(project.path().join("agent-os.yaml"), MANIFEST)?;
    let mut rows = vec![measure(&bin, None, project.path(), plan).await.map(|r| Row { db: "SQLite", ..r })?];
    match common::postgres_url() {
        Some(url) => {
            let db = Database::create(&url)?;
            let row = measure(&bin, Some(&db.url), project.path(), plan).await;
            drop(db);
            rows.push(Row { db: "PostgreSQL", ..row? });
        }
        None => eprintln!("AGENT_OS_BENCH_POSTGRES_URL is not set: PostgreSQL is not measured"),
    }
    println!(
        "| database | 40-step chain p50 / max (server) | per step | the same seen by the client | 100-way fan-out p50 / max (server) | events stored /s ({} clients) |",
        plan.clients
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {:.0} / {:.0} ms | {:.1} ms | {:.0} / {:.0} ms | {:.0} / {:.0} ms | {:.0} |",
            r.db,
            r.chain.0.p50,
            r.chain.0.max,
            r.chain.0.p50 / 40.0,
            r.chain.1.p50,
            r.chain.1.max,
            r.fanout.0.p50,
            r.fanout.0.max,
            r.events_per_s
        );
    }
    Ok(())
}

async fn measure(bin: &Path, database_url: Option<&str>, project: &Path, plan: &Plan) -> Result<Row> {
    let mut server = Server::start_with_config(bin, database_url, Some(CONFIG)).await?;
    let http = reqwest::Client::new();
    server.register(&http, project).await?;
    let dir = server.home().join("workflows");
    std::fs::write(dir.join("chain.yaml"), chain(40))?;
    std::fs::write(dir.join("fanout.yaml"), FANOUT)?;
    std::fs::write(dir.join("unmatched.yaml"), UNMATCHED)?;
    let reload = post(&server, &http, "/api/v1/workflows/reload", json!({})).await?;
    ensure!(reload.1 == 200 && reload.0["errors"].as_array().is_none_or(|e| e.is_empty()), "reload: {:?}", reload.0);

    // Warm up, then measure the chain.
    run_to_end(&server, &http, "chain", json!({}), 40).await?;
    let mut chain = Vec::new();
    for _ in 0..plan.chain_runs {
        chain.push(run_to_end(&server, &http, "chain", json!({}), 40).await?);
    }
    let items: Vec<usize> = (0..100).collect();
    let mut fanout = Vec::new();
    for _ in 0..plan.fanout_runs {
        fanout.push(run_to_end(&server, &http, "fanout", json!({"items": items}), 1).await?);
    }

    let started = Instant::now();
    let per_client = plan.events / plan.clients;
    let mut clients = Vec::new();
    for c in 0..plan.clients {
        let (url, token, http) = (server.url.clone(), server.token.clone(), http.clone());
        clients.push(tokio::spawn(async move {
            for i in 0..per_client {
                let resp = http
                    .post(format!("{url}/api/v1/events"))
                    .bearer_auth(&token)
                    .json(&json!({"type": "bench.tick", "data": {"client": c, "i": i}}))
                    .send()
                    .await?;
                ensure!(resp.status() == reqwest::StatusCode::CREATED, "event {c}/{i}: HTTP {}", resp.status());
            }
            anyhow::Ok(())
        }));
    }
    for c in clients {
        c.await.context("an event client panicked")??;
    }
    let events_per_s = (per_client * plan.clients) as f64 / started.elapsed().as_secs_f64();
    server.stop();
    let split = |v: Vec<(f64, f64)>| {
        let (a, b): (Vec<f64>, Vec<f64>) = v.into_iter().unzip();
        (Stats::of(a), Stats::of(b))
    };
    Ok(Row { db: "", chain: split(chain), fanout: split(fanout), events_per_s })
}

async fn post(server: &Server, http: &reqwest::Client, path: &str, body: Value) -> Result<(Value, u16)> {
    let resp = http.post(format!("{}{path}", server.url)).bearer_auth(&server.token).json(&body).send().await?;
    let status = resp.status().as_u16();
    Ok((resp.json().await.unwrap_or(Value::Null), status))
}

/// Starts a run of `workflow` and waits for its end with `GET /workflows/runs/{id}/wait` (as
/// `agent-os workflow run --wait` does; a server without it is polled every 20 ms instead);
/// returns the run's own time from creation to its end as the server recorded them, and the
/// time from the start request to the answer that read it succeeded, in ms. `steps` is how
/// many steps must have succeeded.
async fn run_to_end(
    server: &Server,
    http: &reqwest::Client,
    workflow: &str,
    inputs: Value,
    steps: usize,
) -> Result<(f64, f64)> {
    let started = Instant::now();
    let (run, status) =
        post(server, http, &format!("/api/v1/workflows/{workflow}/runs"), json!({"inputs": inputs})).await?;
    ensure!(status == 201, "starting {workflow}: HTTP {status}: {run}");
    let id = run["id"].as_str().context("run id")?.to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut can_wait = true;
    loop {
        let r = if can_wait {
            let resp = http
                .get(format!("{}/api/v1/workflows/runs/{id}/wait?timeout=60s", server.url))
                .bearer_auth(&server.token)
                .send()
                .await?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                can_wait = false;
                continue;
            }
            ensure!(resp.status().is_success(), "waiting for {workflow}: HTTP {}", resp.status());
            resp.json::<Value>().await?
        } else {
            server.get_json(http, &format!("/api/v1/workflows/runs/{id}")).await?
        };
        match r["status"].as_str() {
            Some("succeeded") => {
                let client = ms(started.elapsed());
                let at =
                    |k: &str| r[k].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()).map(|t| t.as_millisecond());
                let server = match (at("created_at"), at("finished_at")) {
                    (Some(a), Some(b)) => (b - a) as f64,
                    _ => bail!("{workflow}: no created_at/finished_at: {r}"),
                };
                let done = r["steps"]
                    .as_array()
                    .map_or(0, |s| s.iter().filter(|s| s["status"] == "succeeded" && s["item"].is_null()).count());
                ensure!(done == steps, "{workflow}: {done} of {steps} steps succeeded: {r}");
                return Ok((server, client));
            }
            Some("queued" | "running") => {}
            _ => bail!("{workflow} ended {}: {r}", r["status"]),
        }
        ensure!(Instant::now() < deadline, "{workflow} did not end within 120 s: {r}");
        if !can_wait {
            // Polling more often would load the server it measures.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
