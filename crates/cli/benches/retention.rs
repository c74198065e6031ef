//! A simulated year of one person's Agent OS, with and without retention: how big the database
//! gets, how long the prune loop holds other writers back, how big SQLite's WAL grows, and how
//! fast the dashboard's main pages answer on what is left.
//!
//! The history is written through the store (`SqlStore`, as the engine writes it) on simulated
//! time: 3 projects with about 50 runs a day each (a log of a few KB, a run token each), 10
//! heartbeat checks pinged every 5 minutes (start and success), 200 cost records a day, events
//! (routed) and notifications with a delivery each, and a health probe per project every 30
//! seconds (the store keeps one row per change: most probes extend the latest row). With
//! retention, the prune pass of the engine (`agent_os_engine::prune_pass`, the same code the
//! hourly loop runs) runs at the end of each simulated day under the default policy, while a
//! second task makes a small write every 2 ms and records how long each waited: the longest of
//! those waits is the write stall reported. Then the real `agent-os serve` starts on the
//! resulting database and the dashboard's pages are timed over HTTP.
//!
//! `AGENT_OS_BENCH_QUICK=1` (or `cargo test --benches`) simulates 14 days with fewer runs and
//! probes and a policy scaled down to match, and only reports; the full mode uses the default
//! policy. `AGENT_OS_BENCH_POSTGRES_URL`
//! adds PostgreSQL. `AGENT_OS_BENCH_RETENTION_DAYS=N` sets the simulated days in either mode,
//! `AGENT_OS_BENCH_RETENTION_PROBE_EVERY=S` the seconds between probes, and
//! `AGENT_OS_BENCH_RETENTION_ONLY=sqlite|postgres` runs one backend.
//! `cargo bench -p agent-os --bench retention`; see docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent_os_core::alerting::{DeliveryStatus, Severity};
use agent_os_core::check::{CheckState, PingKind};
use agent_os_core::cost::CostSource;
use agent_os_core::id::new_id;
use agent_os_core::manifest::{ProbeKind, ProbeStatus};
use agent_os_core::retention::{Keep, Retention};
use agent_os_core::run::{LogStream, RunStatus};
use agent_os_engine::secrets::{TokenKind, new_token, token_record};
use agent_os_store::{
    CheckStore, ClaimHere, CostStore, DeliveryOutcome, EventStore, FinishAttempt, NewCost, NewEvent, NewLogChunk,
    NewRun, NotificationRecord, NotificationStore, PingUpdate, PlannedDelivery, ProbeResult, ProjectStore, RunStore,
    SqlStore, Store, StoreOptions, sqlite_url,
};
use anyhow::{Context, Result, ensure};

#[allow(dead_code)]
mod common;

use common::{Server, Stats, ms};

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;

/// The simulated user's projects and their heartbeat checks (10 in all).
const PROJECTS: [(&str, usize); 3] = [("trading", 4), ("cortana", 3), ("homelab", 3)];

struct Plan {
    days: i64,
    runs_per_day: i64,
    log_bytes: usize,
    ping_every_min: i64,
    costs_per_day: i64,
    events_per_day: i64,
    notifications_per_day: i64,
    probe_every_s: i64,
    /// The policy of the run with retention.
    policy: Retention,
    samples: usize,
}

fn main() -> Result<()> {
    let quick = common::quick_mode();
    let days = match std::env::var("AGENT_OS_BENCH_RETENTION_DAYS") {
        Ok(v) if !v.is_empty() => v.parse().context("AGENT_OS_BENCH_RETENTION_DAYS is not a number")?,
        _ if quick => 14,
        _ => 365,
    };
    let plan = Plan {
        days,
        runs_per_day: if quick { 10 } else { 50 },
        log_bytes: 3000,
        ping_every_min: 5,
        costs_per_day: if quick { 50 } else { 200 },
        events_per_day: 40,
        notifications_per_day: 8,
        probe_every_s: match std::env::var("AGENT_OS_BENCH_RETENTION_PROBE_EVERY") {
            Ok(v) if !v.is_empty() => {
                v.parse().context("AGENT_OS_BENCH_RETENTION_PROBE_EVERY is not a number of seconds")?
            }
            _ if quick => 300,
            _ => 30,
        },
        policy: if quick { scaled_policy(days) } else { Retention::default() },
        samples: if quick { 5 } else { 30 },
    };
    agent_os_engine::plugin::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(bench(&plan))
}

/// The quick mode's policy: the default one with each period shrunk as a year is to `days` (at
/// least a day), so that a short simulation prunes too. The full mode keeps the defaults.
fn scaled_policy(days: i64) -> Retention {
    let d = Retention::default();
    if days >= 365 {
        return d;
    }
    let scale = |k: Keep| match k {
        Keep::Forever => Keep::Forever,
        Keep::For(t) => Keep::For((t * days as u32 / 365).max(Duration::from_secs(86_400))),
    };
    Retention {
        runs: scale(d.runs),
        logs: scale(d.logs),
        events: scale(d.events),
        pings: scale(d.pings),
        health: scale(d.health),
        notifications: scale(d.notifications),
        incidents: scale(d.incidents),
        workflow_runs: scale(d.workflow_runs),
        tokens: scale(d.tokens),
        costs: d.costs,
    }
}

struct Outcome {
    backend: &'static str,
    retention: bool,
    bytes: u64,
    rows: Vec<(&'static str, i64)>,
    wal_max: u64,
    longest_batch_ms: f64,
    longest_stall_ms: f64,
    stall_p99_ms: f64,
    pages_reclaimed: u64,
    /// The longest batch of each kind over every pass, in ms.
    kind_batches: Vec<(String, f64)>,
    simulated_in: Duration,
    pages: Vec<(String, Stats)>,
}

async fn bench(plan: &Plan) -> Result<()> {
    let pg = common::postgres_url();
    let only = std::env::var("AGENT_OS_BENCH_RETENTION_ONLY").unwrap_or_default();
    let mut outcomes = Vec::new();
    for retention in [false, true] {
        if only != "postgres" {
            outcomes.push(scenario(plan, None, retention).await.context("SQLite")?);
        }
        if let Some(admin) = pg.as_ref().filter(|_| only != "sqlite") {
            let db = common::Database::create(admin)?;
            outcomes.push(scenario(plan, Some(&db.url), retention).await.context("PostgreSQL")?);
        }
    }
    println!(
        "\nsimulated {} days: {} runs/day/project, log {} B, {} checks pinged every {} min, {} costs/day, probes every {} s",
        plan.days,
        plan.runs_per_day,
        plan.log_bytes,
        PROJECTS.iter().map(|p| p.1).sum::<usize>(),
        plan.ping_every_min,
        plan.costs_per_day,
        plan.probe_every_s
    );
    println!(
        "{:<9} {:<10} {:>10} {:>9} {:>13} {:>11} {:>12} {:>10} {:>11}",
        "backend",
        "retention",
        "size MiB",
        "WAL MiB",
        "longest batch",
        "write stall",
        "stall p99",
        "reclaimed",
        "simulated"
    );
    for o in &outcomes {
        println!(
            "{:<9} {:<10} {:>10.1} {:>9.1} {:>10.1} ms {:>8.1} ms {:>9.2} ms {:>10} {:>10.0}s",
            o.backend,
            if o.retention { "default" } else { "none" },
            o.bytes as f64 / (1 << 20) as f64,
            o.wal_max as f64 / (1 << 20) as f64,
            o.longest_batch_ms,
            o.longest_stall_ms,
            o.stall_p99_ms,
            o.pages_reclaimed,
            o.simulated_in.as_secs_f64()
        );
    }
    for o in &outcomes {
        let rows: Vec<String> = o.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!("rows, {} {}: {}", o.backend, if o.retention { "with retention" } else { "without" }, rows.join(", "));
    }
    for o in outcomes.iter().filter(|o| o.retention) {
        let kinds: Vec<String> = o.kind_batches.iter().map(|(k, b)| format!("{k} {b:.1}")).collect();
        println!("longest batch per kind (ms), {}: {}", o.backend, kinds.join(", "));
    }
    println!("\ndashboard pages on the result (ms, p50 / p95 / max):");
    for o in &outcomes {
        for (path, s) in &o.pages {
            println!(
                "  {:<9} {:<10} {:<22} {:>7.1} {:>7.1} {:>7.1}",
                o.backend,
                if o.retention { "default" } else { "none" },
                path,
                s.p50,
                s.p95,
                s.max
            );
        }
    }
    Ok(())
}

/// The manifest of a simulated project: one task, its checks.
fn manifest(name: &str, checks: usize) -> String {
    let mut m =
        format!("name: {name}\ndescription: a simulated project\ntasks:\n  work: {{ run: [sh, -c, \"true\"] }}\n");
    m.push_str("checks:\n");
    for i in 0..checks {
        m.push_str(&format!("  - {{ slug: job-{i}, every: 5m, grace: 1m }}\n"));
    }
    m
}

async fn scenario(plan: &Plan, database_url: Option<&str>, retention: bool) -> Result<Outcome> {
    let backend = if database_url.is_some() { "postgres" } else { "sqlite" };
    eprintln!("{backend}, retention {}: simulating {} days…", if retention { "on" } else { "off" }, plan.days);
    let bin = common::binary();
    let dirs = tempfile::tempdir()?;
    // The server's own passes stay out of the way: the simulation prunes on its own clock.
    let config = "retention: { runs: forever, logs: forever, events: forever, pings: forever, health: forever, \
                  notifications: forever, incidents: forever, workflow_runs: forever, tokens: forever }\n";
    let mut server = Server::start_with_config(&bin, database_url, Some(config)).await?;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    for (name, checks) in PROJECTS {
        let dir = dirs.path().join(name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("agent-os.yaml"), manifest(name, checks))?;
        server.register(&http, &dir).await?;
    }
    server.stop();

    let url = match database_url {
        Some(u) => u.to_string(),
        None => sqlite_url(&server.sqlite_path()),
    };
    let wal = database_url.is_none().then(|| PathBuf::from(format!("{}-wal", server.sqlite_path().display())));
    let store: Arc<SqlStore> = Arc::new(SqlStore::open(&StoreOptions::new(&url), now_ms()).await?);
    let started = Instant::now();
    let figures = simulate(plan, store.clone(), wal.as_deref(), retention).await?;
    let simulated_in = started.elapsed();
    store.close().await;
    let rows = row_counts(&url).await?;
    let bytes = match database_url {
        None => std::fs::metadata(server.sqlite_path())?.len(),
        Some(u) => postgres_bytes(u).await?,
    };

    server.restart().await?;
    let pages = time_pages(&server, &http, plan.samples).await?;
    server.stop();
    Ok(Outcome {
        backend,
        retention,
        bytes,
        rows,
        wal_max: figures.wal_max,
        longest_batch_ms: figures.longest_batch_ms,
        longest_stall_ms: figures.longest_stall_ms,
        stall_p99_ms: figures.stall_p99_ms,
        pages_reclaimed: figures.pages_reclaimed,
        kind_batches: figures.kind_batches.into_iter().collect(),
        simulated_in,
        pages,
    })
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[derive(Default)]
struct Figures {
    wal_max: u64,
    longest_batch_ms: f64,
    longest_stall_ms: f64,
    stall_p99_ms: f64,
    pages_reclaimed: u64,
    kind_batches: std::collections::BTreeMap<String, f64>,
}

fn wal_size(wal: Option<&Path>) -> u64 {
    wal.and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len())
}

/// Writes `plan.days` of history ending now, pruning at the end of each day when `retention`.
async fn simulate(plan: &Plan, store: Arc<SqlStore>, wal: Option<&Path>, retention: bool) -> Result<Figures> {
    let projects = store.list_projects().await?;
    ensure!(projects.len() == PROJECTS.len(), "the simulated projects are not registered");
    let checks = store.list_checks(None).await?;
    ensure!(checks.len() == PROJECTS.iter().map(|p| p.1).sum::<usize>(), "the checks are not there");
    let node = new_id();
    let log_line = "simulated output of a task that does its work and says so\n";
    let log = log_line.repeat(plan.log_bytes / log_line.len() + 1);
    let mut figures = Figures::default();
    let mut stalls: Vec<f64> = Vec::new();
    let start = now_ms() - plan.days * DAY_MS;
    // A fixed pseudo-random sequence, so both scenarios write the same history.
    let mut seed: u64 = 0x5eed;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    for day in 0..plan.days {
        let day_start = start + day * DAY_MS;
        // Runs: queued, claimed with a run token, a log, finished.
        for p in &projects {
            for i in 0..plan.runs_per_day {
                let at = day_start + i * DAY_MS / plan.runs_per_day;
                let (_, hash) = new_token(TokenKind::Run);
                let mut token = token_record(TokenKind::Run, "run", hash, None, at);
                token.expires_at = Some(at + 3_600_000);
                let run = NewRun {
                    id: new_id(),
                    project_id: p.id.clone(),
                    project: p.name.clone(),
                    task: "work".into(),
                    input: "{}".into(),
                    max_attempts: 1,
                    trigger: "schedule".into(),
                    concurrency_key: None,
                    scheduled_for: Some(at),
                    resources: Vec::new(),
                    priority: 50,
                    now: at,
                };
                let here = ClaimHere { node_id: node.clone(), now: at, tokens: vec![token] };
                let queued = store.queue_runs(&[run], Some(&here)).await?;
                let run = queued.claimed.first().context("the run was not claimed")?;
                let chunk = NewLogChunk { stream: LogStream::Stdout, at: at + 1000, data: log.clone() };
                store.append_log(&run.id, &[chunk], 1 << 20).await?;
                let failed = rand(20) == 0;
                store
                    .finish_attempt(&FinishAttempt {
                        run_id: run.id.clone(),
                        attempt: 1,
                        attempt_status: if failed { RunStatus::Failed } else { RunStatus::Succeeded },
                        retry_at: None,
                        exit_code: Some(i64::from(failed)),
                        error: failed.then(|| "exit 1".to_string()),
                        outputs: None,
                        now: at + 30_000,
                        extra_attempt: false,
                    })
                    .await?;
            }
        }
        // Pings: every check, start and success, each tick; one write per tick, as the ping
        // writer groups them.
        let ticks = 24 * 60 / plan.ping_every_min;
        for t in 0..ticks {
            let at = day_start + t * plan.ping_every_min * MINUTE_MS;
            let mut batch = Vec::with_capacity(checks.len() * 2);
            for c in &checks {
                for (kind, offset) in [(PingKind::Start, 0), (PingKind::Success, 20_000)] {
                    batch.push(PingUpdate {
                        id: new_id(),
                        check_id: c.id.clone(),
                        at: at + offset,
                        kind,
                        rid: None,
                        duration_ms: (kind == PingKind::Success).then_some(offset),
                        body: None,
                        remote: Some("127.0.0.1".into()),
                        last_finish_at: Some(at + offset),
                        last_failed: false,
                        running_since: (kind == PingKind::Start).then_some(at),
                        state: CheckState::Up,
                        event: None,
                    });
                }
            }
            store.record_pings(&batch).await?;
        }
        // Costs, in batches as clients send them.
        let per_batch = 10;
        for b in 0..plan.costs_per_day / per_batch {
            let p = &projects[(b as usize) % projects.len()];
            let records: Vec<NewCost> = (0..per_batch)
                .map(|i| {
                    let at = day_start + (b * per_batch + i) * DAY_MS / plan.costs_per_day;
                    NewCost {
                        id: new_id(),
                        project_id: p.id.clone(),
                        project: p.name.clone(),
                        run_id: None,
                        service: "openai".into(),
                        key_name: None,
                        amount_nanos: 1_000_000 + rand(5_000_000) as i64,
                        currency: "USD".into(),
                        tokens_in: Some(1200),
                        tokens_out: Some(300),
                        tokens_cached_in: None,
                        model: Some("gpt-4o-mini".into()),
                        at,
                        idempotency_key: new_id(),
                        source: CostSource::Api,
                        metadata: None,
                        created_at: at,
                        price: None,
                        unpriced: false,
                    }
                })
                .collect();
            store.insert_costs(&records).await?;
        }
        // Events, routed as the workflow router would.
        let mut routed = Vec::new();
        for i in 0..plan.events_per_day {
            let at = day_start + i * DAY_MS / plan.events_per_day;
            let e = NewEvent {
                id: new_id(),
                kind: "run.failed".into(),
                project: Some(projects[0].name.clone()),
                subject: Some("trading/work".into()),
                data: "{\"run\":\"simulated\"}".into(),
                at,
            };
            store.insert_event(&e).await?;
            routed.push(e.id);
        }
        store.mark_routed(&routed, day_start + DAY_MS - 1).await?;
        // Notifications, each delivered to one channel.
        for i in 0..plan.notifications_per_day {
            let at = day_start + i * DAY_MS / plan.notifications_per_day;
            let n = NotificationRecord {
                id: new_id(),
                project: Some(projects[1].name.clone()),
                title: "a task failed".into(),
                body: "cortana/work failed with exit 1".into(),
                severity: Severity::Warning,
                tags: vec!["simulated".into()],
                dedup_key: None,
                created_at: at,
                source: None,
                incident_id: None,
                suppressed: None,
                idempotency_key: None,
            };
            let planned = [PlannedDelivery { channel: "inbox".into(), held: None }];
            for d in store.insert_notification(&n, &planned).await? {
                store
                    .finish_delivery(&DeliveryOutcome {
                        id: d.id,
                        status: DeliveryStatus::Delivered,
                        next_at: at,
                        last_status: Some(200),
                        last_error: None,
                        delivered_at: Some(at + 300),
                    })
                    .await?;
            }
        }
        // Health probes: mostly "ok", now and then degraded for a while.
        let probes = 86_400 / plan.probe_every_s;
        for p in &projects {
            let trouble_at = rand(probes as u64) as i64;
            for k in 0..probes {
                let at = day_start + k * plan.probe_every_s * 1000;
                let degraded = (trouble_at..trouble_at + 600 / plan.probe_every_s.max(1)).contains(&k);
                store
                    .insert_probe_result(&ProbeResult {
                        id: new_id(),
                        project_id: p.id.clone(),
                        kind: ProbeKind::Health,
                        at,
                        since: at,
                        repeats: 1,
                        ok: true,
                        duration_ms: 5 + rand(20) as i64,
                        status: Some(if degraded { ProbeStatus::Degraded } else { ProbeStatus::Ok }),
                        message: degraded.then(|| "slow answers".to_string()),
                        body: Some("{\"status\":\"ok\"}".into()),
                        error: None,
                    })
                    .await?;
            }
        }
        figures.wal_max = figures.wal_max.max(wal_size(wal));
        if retention {
            let day_end = day_start + DAY_MS;
            let (pass, waits) = prune_with_writer(&store, &plan.policy, day_end, &projects[0].id, wal).await?;
            figures.longest_batch_ms = figures.longest_batch_ms.max(ms(pass.longest_batch()));
            for k in &pass.kinds {
                let longest = figures.kind_batches.entry(k.kind.to_string()).or_insert(0.0);
                *longest = longest.max(ms(k.longest_batch));
            }
            figures.pages_reclaimed += pass.pages_reclaimed;
            figures.wal_max = figures.wal_max.max(waits.wal_max);
            stalls.extend(waits.waits);
        }
        if (day + 1) % 30 == 0 {
            eprintln!("  day {} of {}; WAL {:.1} MiB", day + 1, plan.days, wal_size(wal) as f64 / (1 << 20) as f64);
        }
    }
    if !stalls.is_empty() {
        let s = Stats::of(stalls);
        figures.longest_stall_ms = s.max;
        figures.stall_p99_ms = s.p99;
    }
    Ok(figures)
}

struct Waits {
    waits: Vec<f64>,
    wal_max: u64,
}

/// One prune pass at simulated time `at`, with a writer beside it making one small write
/// (a one-row update) every 2 ms: how long each of those writes took while the pass ran.
async fn prune_with_writer(
    store: &Arc<SqlStore>,
    policy: &Retention,
    at: i64,
    project_id: &str,
    wal: Option<&Path>,
) -> Result<(agent_os_engine::PrunePass, Waits)> {
    let done = Arc::new(AtomicBool::new(false));
    let wal_max = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, done, wal_max) = (store.clone(), done.clone(), wal_max.clone());
        let (project_id, wal) = (project_id.to_string(), wal.map(Path::to_path_buf));
        tokio::spawn(async move {
            let mut waits = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let began = Instant::now();
                store.set_cost_cursor(&project_id, Some("simulated")).await?;
                waits.push(ms(began.elapsed()));
                wal_max.fetch_max(wal_size(wal.as_deref()), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::Ok(waits)
        })
    };
    let never = || false;
    let pass = agent_os_engine::prune_pass(store.as_ref() as &dyn Store, policy, &|| at, false, &never).await;
    done.store(true, Ordering::Relaxed);
    let waits = writer.await??;
    Ok((pass?, Waits { waits, wal_max: wal_max.load(Ordering::Relaxed) }))
}

/// Rows of the tables that grow, at the end.
async fn row_counts(url: &str) -> Result<Vec<(&'static str, i64)>> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let mut out = Vec::new();
    for table in [
        "runs",
        "run_logs",
        "tokens",
        "pings",
        "probe_results",
        "cost_records",
        "events",
        "notifications",
        "deliveries",
    ] {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}"))).fetch_one(&mut conn).await?;
        out.push((table, row.try_get::<i64, _>("n")?));
    }
    conn.close().await?;
    Ok(out)
}

/// `pg_total_relation_size` (table, indexes, TOAST) summed over the database's own tables.
async fn postgres_bytes(url: &str) -> Result<u64> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS BIGINT) AS bytes
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r'",
    )
    .fetch_one(&mut conn)
    .await?;
    Ok(u64::try_from(row.try_get::<i64, _>("bytes")?).unwrap_or(0))
}

/// The dashboard's main pages, each GET timed from send to the last byte, as a logged-in user.
async fn time_pages(server: &Server, http: &reqwest::Client, samples: usize) -> Result<Vec<(String, Stats)>> {
    let cookie = server.login(http).await?;
    let mut out = Vec::new();
    for path in ["/", "/runs", "/costs", "/schedules", "/projects/trading"] {
        let mut times = Vec::with_capacity(samples);
        for i in 0..samples + 2 {
            let began = Instant::now();
            let resp =
                http.get(format!("{}{path}", server.url)).header(reqwest::header::COOKIE, &cookie).send().await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            ensure!(status == reqwest::StatusCode::OK, "GET {path}: HTTP {status}: {}", String::from_utf8_lossy(&body));
            if i >= 2 {
                times.push(ms(began.elapsed()));
            }
        }
        out.push((path.to_string(), Stats::of(times)));
    }
    Ok(out)
}
