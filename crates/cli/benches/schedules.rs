//! End-to-end benchmark of the scheduler and of heartbeat pings: it starts the real
//! `agent-os serve` binary and measures over real HTTP on 127.0.0.1 what 10,000 managed
//! schedules that are not due cost an idle server (CPU and memory, and how long registering
//! them takes), how punctually schedules fire with those 10,000 loaded (`started_at` of each
//! run against the cron slot it was fired for), and how many Healthchecks-style pings per second
//! one check takes from concurrent clients — after which it counts the stored pings in the
//! database and fails if one is missing. It measures the pings on PostgreSQL too when
//! `AGENT_OS_BENCH_POSTGRES_URL` is set, and prints a Markdown table.
//!
//! `cargo bench -p agent-os --bench schedules` runs the full measurement (about 4.5 minutes, most
//! of it waiting for minute boundaries); `AGENT_OS_BENCH_QUICK=1` (or running it without
//! `--bench`) runs a smoke version that skips the fire-precision phase. See docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use serde_json::Value;

// Each bench uses a part of the shared module.
#[allow(dead_code)]
mod common;

use common::{Database, Server, Stats, ms};

/// The project whose schedules fire every minute in the precision phase.
const ON_TIME_PROJECT: &str = "on-time";
/// The project whose check takes the pings.
const PINGED_PROJECT: &str = "pinged";
const PINGED_CHECK: &str = "heartbeat";

/// How much work each phase does: the full measurement or the smoke version.
struct Plan {
    quick: bool,
    idle_projects: usize,
    schedules_per_project: usize,
    /// Time left to the server after registering, before the idle window opens.
    settle: Duration,
    /// How long the idle server's CPU time is watched.
    idle_window: Duration,
    /// The precision phase, or `None` to skip it.
    precision: Option<Precision>,
    /// Sequential pings before the timed burst (stored too, and counted).
    ping_warmup: usize,
    pings: usize,
    ping_clients: usize,
}

struct Precision {
    schedules: usize,
    /// Minute boundaries to observe after the project is registered.
    minutes: i64,
}

impl Plan {
    fn from_env() -> Plan {
        if common::quick_mode() {
            Plan {
                quick: true,
                idle_projects: 20,
                schedules_per_project: 500,
                settle: Duration::from_secs(2),
                idle_window: Duration::from_secs(3),
                // Up to a minute of waiting for a boundary: too long for a smoke run.
                precision: None,
                ping_warmup: 20,
                pings: 1_000,
                ping_clients: 32,
            }
        } else {
            Plan {
                quick: false,
                idle_projects: 20,
                schedules_per_project: 500,
                settle: Duration::from_secs(10),
                idle_window: Duration::from_secs(30),
                precision: Some(Precision { schedules: 50, minutes: 3 }),
                ping_warmup: 200,
                pings: 20_000,
                ping_clients: 32,
            }
        }
    }

    fn idle_schedules(&self) -> usize {
        self.idle_projects * self.schedules_per_project
    }
}

fn main() -> Result<()> {
    let plan = Plan::from_env();
    agent_os_engine::plugin::install_crypto_provider();
    // One thread for the client side: on a small machine the server should get the rest.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(bench(&plan))
}

/// The server's config.yaml.
const CONFIG: &str = "runs:\n  max_concurrent: 64\n";

async fn bench(plan: &Plan) -> Result<()> {
    let bin = common::binary();
    let projects = tempfile::tempdir()?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    if plan.quick {
        eprintln!(
            "smoke mode: {} s idle window, no fire-precision phase, {} pings",
            plan.idle_window.as_secs(),
            plan.pings
        );
    }
    // Correctness problems found on the way; reported after the table, then the bench fails.
    let mut problems: Vec<String> = Vec::new();

    // 50 runs start in the same second: let them all run at once, so the figure is the
    // scheduler's precision and not the queue behind the default cap of 16 concurrent runs.
    let mut server = Server::start_with_config(&bin, None, Some(CONFIG)).await?;
    let idle = measure_idle(&http, &server, plan, projects.path()).await?;
    let precision = match &plan.precision {
        Some(p) => Some(measure_precision(&http, &server, p, projects.path(), &mut problems).await?),
        None => {
            eprintln!("smoke mode: the fire-precision phase is skipped");
            None
        }
    };
    let pinged = write_pinged_project(projects.path())?;
    let mut pings = vec![measure_pings(&http, &mut server, plan, ("SQLite", None), &pinged, &mut problems).await?];

    if let Some(url) = common::postgres_url() {
        let db = Database::create(&url)?;
        let measured = async {
            let mut server = Server::start(&bin, Some(&db.url)).await?;
            measure_pings(&http, &mut server, plan, ("PostgreSQL", Some(&db.url)), &pinged, &mut problems).await
        }
        .await;
        // The server is stopped by now (or was dropped on the error): the database can go.
        drop(db);
        pings.push(measured?);
    } else {
        eprintln!("AGENT_OS_BENCH_POSTGRES_URL is not set: pings on PostgreSQL are not measured");
    }

    print_report(plan, &idle, precision.as_ref(), &pings);
    if !problems.is_empty() {
        bail!("the server lost or refused work:\n- {}", problems.join("\n- "));
    }
    Ok(())
}

// Idle CPU with many schedules ---------------------------------------------------------------

struct Idle {
    registration: Duration,
    /// From the first `POST /projects` until the server's CPU went quiet again, and the CPU
    /// time it used in between (ms): registering returns before the scheduler has taken the
    /// schedules in.
    until_quiet: Duration,
    registration_cpu: f64,
    list_schedules: Duration,
    baseline_cpu: f64,
    baseline_rss: f64,
    loaded_cpu: f64,
    loaded_rss: f64,
}

/// Measures an empty server, registers the idle projects (none of whose slots comes within
/// the next hours), lets it settle, and measures again.
async fn measure_idle(http: &reqwest::Client, server: &Server, plan: &Plan, root: &Path) -> Result<Idle> {
    tokio::time::sleep(plan.settle).await;
    let baseline_cpu = cpu_percent_over(server, plan.idle_window).await?;
    let baseline_rss = server.rss_mib()?;
    eprintln!("no projects: {baseline_cpu:.2} % CPU, {baseline_rss:.1} MiB");

    let crons = idle_crons(plan.idle_schedules(), Timestamp::now())?;
    let mut dirs = Vec::with_capacity(plan.idle_projects);
    for (i, chunk) in crons.chunks(plan.schedules_per_project).enumerate() {
        let dir = root.join(format!("idle-{i:02}"));
        std::fs::create_dir(&dir)?;
        std::fs::write(dir.join("agent-os.yaml"), idle_manifest(&format!("idle-{i:02}"), chunk))?;
        dirs.push(dir);
    }
    let cpu_before = server.cpu_ms()?;
    let started = Instant::now();
    for dir in &dirs {
        server.register(http, dir).await?;
    }
    let registration = started.elapsed();
    let until_quiet = wait_quiet(server).await? - started;
    let cpu_after = server.cpu_ms()?;
    let registration_cpu = (cpu_after[0] + cpu_after[1]) - (cpu_before[0] + cpu_before[1]);
    eprintln!(
        "registered {} schedules in {} projects in {:.2} s; the server was quiet again after {:.1} s, \
         having used {:.2} s of CPU",
        plan.idle_schedules(),
        plan.idle_projects,
        registration.as_secs_f64(),
        until_quiet.as_secs_f64(),
        registration_cpu / 1000.0
    );

    let started = Instant::now();
    let schedules = server.get_json(http, "/api/v1/schedules").await?;
    let list_schedules = started.elapsed();
    let managed = schedules
        .as_array()
        .context("GET /api/v1/schedules did not answer a list")?
        .iter()
        .filter(|s| s["managed_by"] == "agent-os")
        .count();
    ensure!(
        managed == plan.idle_schedules(),
        "GET /api/v1/schedules lists {managed} managed schedules, expected {}",
        plan.idle_schedules()
    );

    tokio::time::sleep(plan.settle).await;
    let loaded_cpu = cpu_percent_over(server, plan.idle_window).await?;
    let loaded_rss = server.rss_mib()?;
    eprintln!("{} idle schedules: {loaded_cpu:.2} % CPU, {loaded_rss:.1} MiB", plan.idle_schedules());
    let runs = list_runs(http, server, "").await?;
    ensure!(runs.is_empty(), "{} runs were started although no idle schedule was due", runs.len());
    Ok(Idle {
        registration,
        until_quiet,
        registration_cpu,
        list_schedules,
        baseline_cpu,
        baseline_rss,
        loaded_cpu,
        loaded_rss,
    })
}

/// Waits until the server uses less than 1 % of a core over half a second (at most two
/// minutes) and returns when that quiet half second began.
async fn wait_quiet(server: &Server) -> Result<Instant> {
    const SLICE: Duration = Duration::from_millis(500);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let began = Instant::now();
        let before = server.cpu_ms()?;
        tokio::time::sleep(SLICE).await;
        let after = server.cpu_ms()?;
        if (after[0] + after[1]) - (before[0] + before[1]) < 0.01 * ms(SLICE) {
            return Ok(began);
        }
        ensure!(Instant::now() < deadline, "the server was still busy two minutes after registering");
    }
}

/// The server's CPU time (user + system) over `window`, in % of one core.
async fn cpu_percent_over(server: &Server, window: Duration) -> Result<f64> {
    let before = server.cpu_ms()?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = server.cpu_ms()?;
    let used = (after[0] + after[1]) - (before[0] + before[1]);
    Ok(100.0 * used / ms(started.elapsed()))
}

/// `count` distinct yearly expressions (`M H D MON *`), spread over the year but never on the
/// day before, the day of or the day after `now` (UTC), so none fires during the bench.
fn idle_crons(count: usize, now: Timestamp) -> Result<Vec<String>> {
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let near: Vec<(i8, i8)> =
        [today.yesterday()?, today, today.tomorrow()?].iter().map(|d: &Date| (d.month(), d.day())).collect();
    // Day 28 at most: every month has it.
    let days: Vec<(i8, i8)> =
        (1..=12).flat_map(|m| (1..=28).map(move |d| (m, d))).filter(|md| !near.contains(md)).collect();
    ensure!(count <= days.len() * 24 * 60, "cannot make {count} distinct yearly schedules");
    let utc = jiff::tz::TimeZone::UTC;
    let quiet_until = now + 2.hours();
    let mut crons = Vec::with_capacity(count);
    for i in 0..count {
        let (month, day) = days[i % days.len()];
        let hour = (i / days.len()) % 24;
        let minute = i / (days.len() * 24);
        let cron = format!("{minute} {hour} {day} {month} *");
        // With the real evaluator: the expression must not come due while the bench runs.
        let parsed = agent_os_core::cron::Cron::parse(&cron).map_err(|e| anyhow::anyhow!("{cron}: {e}"))?;
        let next = parsed.next_after(&utc, now).with_context(|| format!("{cron} never fires"))?;
        ensure!(next > quiet_until, "{cron} would fire at {next}, during the bench");
        crons.push(cron);
    }
    Ok(crons)
}

fn idle_manifest(name: &str, crons: &[String]) -> String {
    // `true` is quoted: bare, YAML reads it as a boolean, which is not an argv element.
    let mut yaml = format!("name: {name}\ntasks:\n  noop:\n    run: [\"true\"]\nschedules:\n");
    for cron in crons {
        let _ = writeln!(yaml, "  - {{ task: noop, cron: \"{cron}\", managed_by: agent-os }}");
    }
    yaml
}

// Fire precision ------------------------------------------------------------------------------

struct PrecisionResult {
    schedules: usize,
    minutes: i64,
    runs: usize,
    /// `started_at - scheduled_for`, ms.
    start_delay: Stats,
    /// `queued_at - scheduled_for`, ms. The scheduler stamps `queued_at` with the time its
    /// tick began, so this is how late it woke up, not how long firing took.
    fire_delay: Stats,
    /// For each observed slot: when its first and its last run started, ms after the slot.
    slots: Vec<(f64, f64)>,
    /// Server CPU over the whole phase, % of one core.
    cpu: f64,
}

/// Registers a project with `p.schedules` every-minute schedules (one task each, so each is a
/// schedule of its own), waits for `p.minutes` minute boundaries, and compares when each run
/// started with the slot it was fired for.
async fn measure_precision(
    http: &reqwest::Client,
    server: &Server,
    p: &Precision,
    root: &Path,
    problems: &mut Vec<String>,
) -> Result<PrecisionResult> {
    let dir = root.join(ON_TIME_PROJECT);
    std::fs::create_dir(&dir)?;
    let mut yaml = format!("name: {ON_TIME_PROJECT}\ntasks:\n");
    for i in 0..p.schedules {
        let _ = writeln!(yaml, "  t{i:02}:\n    run: [\"true\"]");
    }
    yaml.push_str("schedules:\n");
    for i in 0..p.schedules {
        let _ = writeln!(yaml, "  - {{ task: t{i:02}, cron: \"* * * * *\", managed_by: agent-os }}");
    }
    std::fs::write(dir.join("agent-os.yaml"), yaml)?;

    let cpu_before = server.cpu_ms()?;
    let phase_started = Instant::now();
    server.register(http, &dir).await?;
    let registered = Timestamp::now().as_millisecond();
    let first = (registered / 60_000 + 1) * 60_000;
    let last = first + (p.minutes - 1) * 60_000;
    // Ten seconds past the last slot: its runs of `true` have long ended by then.
    let until = last + 10_000;
    eprintln!(
        "{} every-minute schedules registered; waiting {:.0} s for {} minute boundaries",
        p.schedules,
        (until - registered) as f64 / 1000.0,
        p.minutes
    );
    tokio::time::sleep(Duration::from_millis((until - Timestamp::now().as_millisecond()).max(0) as u64)).await;
    let cpu_after = server.cpu_ms()?;
    let cpu = 100.0 * ((cpu_after[0] + cpu_after[1]) - (cpu_before[0] + cpu_before[1])) / ms(phase_started.elapsed());

    let runs = list_runs(http, server, "").await?;
    // Each slot's start delays.
    let mut per_slot: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    let (mut start_delays, mut fire_delays) = (Vec::new(), Vec::new());
    for run in &runs {
        let id = run["id"].as_str().unwrap_or("?");
        ensure!(run["project"] == ON_TIME_PROJECT, "run {id} of project {} started: it was not due", run["project"]);
        let slot = match run.get("scheduled_for") {
            None => bail!(
                "the run JSON has no `scheduled_for` field: this server does not say which cron slot a \
                 run was fired for yet, so fire precision cannot be measured (run {id})"
            ),
            Some(Value::Null) => bail!("scheduled run {id} (trigger {}) has `scheduled_for: null`", run["trigger"]),
            Some(v) => time_ms(v, "scheduled_for", id)?,
        };
        ensure!(run["trigger"] == "schedule", "run {id} has trigger {}, expected schedule", run["trigger"]);
        if run["status"] != "succeeded" {
            problems.push(format!("scheduled run {id} ended {}: {}", run["status"], run["error"]));
        }
        let delay = (time_ms(&run["started_at"], "started_at", id)? - slot) as f64;
        per_slot.entry(slot).or_default().push(delay);
        start_delays.push(delay);
        fire_delays.push((time_ms(&run["queued_at"], "queued_at", id)? - slot) as f64);
    }
    let mut slots = Vec::new();
    for k in 0..p.minutes {
        let slot = first + k * 60_000;
        let delays = per_slot.get(&slot).map(Vec::as_slice).unwrap_or_default();
        let fired = delays.len();
        if let (Some(a), Some(b)) = (delays.iter().copied().reduce(f64::min), delays.iter().copied().reduce(f64::max)) {
            eprintln!(
                "slot {}: {fired} runs, the first started after {a:.0} ms, the last after {b:.0} ms",
                Timestamp::from_millisecond(slot)?
            );
            slots.push((a, b));
        }
        if fired != p.schedules {
            problems.push(format!(
                "slot {}: {fired} runs, expected one per schedule ({})",
                Timestamp::from_millisecond(slot)?,
                p.schedules
            ));
        }
    }
    if let Some((slot, n)) =
        per_slot.iter().map(|(slot, d)| (slot, d.len())).find(|&(&slot, _)| slot < first || slot > last)
    {
        problems
            .push(format!("{n} runs for slot {}, outside the observed minutes", Timestamp::from_millisecond(*slot)?));
    }
    ensure!(!runs.is_empty(), "no scheduled run started in {} minutes", p.minutes);
    let start_delay = Stats::of(start_delays);
    let fire_delay = Stats::of(fire_delays);
    eprintln!(
        "{} scheduled runs: started_at - scheduled_for p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; \
         queued_at - scheduled_for p50 {:.0} ms, max {:.0} ms; server CPU {cpu:.2} %",
        runs.len(),
        start_delay.p50,
        start_delay.p99,
        start_delay.max,
        fire_delay.p50,
        fire_delay.max
    );
    Ok(PrecisionResult {
        schedules: p.schedules,
        minutes: p.minutes,
        runs: runs.len(),
        start_delay,
        fire_delay,
        slots,
        cpu,
    })
}

/// Every run the query selects (`project=…`, or empty for all), following `next` pages.
async fn list_runs(http: &reqwest::Client, server: &Server, query: &str) -> Result<Vec<Value>> {
    let mut runs = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/runs?limit=500{query}");
        if let Some(b) = &before {
            path.push_str("&before=");
            path.push_str(b);
        }
        let page = server.get_json(http, &path).await?;
        let got = page["runs"].as_array().context("GET /api/v1/runs answered without `runs`")?;
        runs.extend(got.iter().cloned());
        match page["next"].as_str() {
            Some(next) if !got.is_empty() => before = Some(next.to_string()),
            _ => return Ok(runs),
        }
    }
}

/// An RFC 3339 time of a run, as Unix ms.
fn time_ms(v: &Value, field: &str, run: &str) -> Result<i64> {
    let text = v.as_str().with_context(|| format!("run {run}: `{field}` is {v}, not a time"))?;
    let t: Timestamp = text.parse().with_context(|| format!("run {run}: `{field}` {text:?} is not RFC 3339"))?;
    Ok(t.as_millisecond())
}

// Pings -----------------------------------------------------------------------------------------

struct PingColumn {
    backend: &'static str,
    secs: f64,
    per_sec: f64,
    latency: Stats,
    /// Server CPU per ping of the burst, user and system, and the bench's own (the clients), ms.
    cpu_user: f64,
    cpu_sys: f64,
    cpu_client: f64,
    /// Pings answered `200 OK` (warm-up included) and pings found in the database.
    answered: usize,
    stored: i64,
}

fn write_pinged_project(root: &Path) -> Result<PathBuf> {
    let dir = root.join(PINGED_PROJECT);
    std::fs::create_dir(&dir)?;
    std::fs::write(
        dir.join("agent-os.yaml"),
        format!("name: {PINGED_PROJECT}\nchecks:\n  - {{ slug: {PINGED_CHECK}, every: 1h, grace: 10m }}\n"),
    )?;
    Ok(dir)
}

/// Registers the project with the check, pings it from many clients at once, then stops the
/// server and counts the check's pings in its database (PostgreSQL at `database_url`, else the
/// server's SQLite file): each ping answered `200 OK` must be there.
async fn measure_pings(
    http: &reqwest::Client,
    server: &mut Server,
    plan: &Plan,
    (backend, database_url): (&'static str, Option<&str>),
    project: &Path,
    problems: &mut Vec<String>,
) -> Result<PingColumn> {
    server.register(http, project).await?;
    let checks = server.get_json(http, &format!("/api/v1/checks?project={PINGED_PROJECT}")).await?;
    let check_id = checks
        .as_array()
        .and_then(|c| c.iter().find(|c| c["slug"] == PINGED_CHECK))
        .and_then(|c| c["id"].as_str())
        .with_context(|| format!("GET /api/v1/checks lists no check {PINGED_CHECK}: {checks}"))?
        .to_string();
    // The check id is the ping URL's secret; the server's own `ping_url` uses its public URL,
    // which need not be the address it listens on here.
    let url = format!("{}/ping/{check_id}", server.url);

    let mut refused = 0usize;
    for _ in 0..plan.ping_warmup {
        let resp = http.get(&url).send().await?;
        if resp.status() != reqwest::StatusCode::OK {
            refused += 1;
        }
    }
    let cpu_before = server.cpu_ms()?;
    let client_before = common::cpu_ms("self")?;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..plan.ping_clients {
        let (url, next, total) = (url.clone(), next.clone(), plan.pings);
        // A client of its own per task: one keep-alive connection each, as separate jobs have.
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
        clients.spawn(async move {
            let (mut latencies, mut refused) = (Vec::new(), 0usize);
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let sent = Instant::now();
                let ok = match client.get(&url).send().await {
                    // Read the body so that the connection is reused.
                    Ok(resp) => resp.status() == reqwest::StatusCode::OK && resp.bytes().await.is_ok(),
                    Err(_) => false,
                };
                latencies.push(ms(sent.elapsed()));
                if !ok {
                    refused += 1;
                }
            }
            (latencies, refused)
        });
    }
    let mut latencies = Vec::with_capacity(plan.pings);
    while let Some(joined) = clients.join_next().await {
        let (l, r) = joined?;
        latencies.extend(l);
        refused += r;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_after = server.cpu_ms()?;
    let client_after = common::cpu_ms("self")?;
    let per_ping = |i: usize| (cpu_after[i] - cpu_before[i]) / plan.pings as f64;
    let (cpu_user, cpu_sys) = (per_ping(0), per_ping(1));
    let cpu_client = ((client_after[0] + client_after[1]) - (client_before[0] + client_before[1])) / plan.pings as f64;
    let latency = Stats::of(latencies);
    let per_sec = plan.pings as f64 / secs;
    eprintln!(
        "{backend}: {} pings from {} clients in {secs:.2} s: {per_sec:.0} pings/s, p50 {:.2} ms, p99 {:.2} ms; \
         server CPU per ping {cpu_user:.3} + {cpu_sys:.3} ms, bench clients {cpu_client:.3} ms",
        plan.pings, plan.ping_clients, latency.p50, latency.p99
    );

    let check = server.get_json(http, &format!("/api/v1/checks?project={PINGED_PROJECT}")).await?;
    let state = check.as_array().and_then(|c| c.first()).map(|c| c["state"].clone()).unwrap_or(Value::Null);
    if state != "up" {
        problems.push(format!("{backend}: the check is {state} after its pings, expected up"));
    }
    let answered = plan.ping_warmup + plan.pings - refused;
    if refused > 0 {
        problems.push(format!("{backend}: {refused} pings were not answered 200 OK"));
    }

    // Count only once the server has stopped: what it acknowledged must have reached the
    // database, not just its memory.
    server.stop();
    let stored = match database_url {
        Some(url) => stored_pings_postgres(url, &check_id).await?,
        None => stored_pings_sqlite(&server.sqlite_path(), &check_id).await?,
    };
    if stored != answered as i64 {
        problems.push(format!("{backend}: {answered} pings answered 200 OK, {stored} stored"));
    }
    eprintln!("{backend}: {stored} pings stored, {answered} answered 200 OK");
    Ok(PingColumn { backend, secs, per_sec, latency, cpu_user, cpu_sys, cpu_client, answered, stored })
}

/// The check's pings in a stopped server's SQLite file, read without writing to it.
async fn stored_pings_sqlite(path: &Path, check_id: &str) -> Result<i64> {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot open {} read-only", path.display()))?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pings WHERE check_id = ?")
        .bind(check_id)
        .fetch_one(&mut conn)
        .await
        .context("counting the stored pings")?;
    conn.close().await?;
    Ok(n)
}

async fn stored_pings_postgres(url: &str, check_id: &str) -> Result<i64> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.context("cannot connect to the bench database")?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pings WHERE check_id = $1")
        .bind(check_id)
        .fetch_one(&mut conn)
        .await
        .context("counting the stored pings")?;
    conn.close().await?;
    Ok(n)
}

// The report ----------------------------------------------------------------------------------

fn print_report(plan: &Plan, idle: &Idle, precision: Option<&PrecisionResult>, pings: &[PingColumn]) {
    let mode = if plan.quick { " (smoke mode: too short to quote)" } else { "" };
    let window = plan.idle_window.as_secs();
    println!();
    println!("## Agent OS schedule and ping benchmark{mode}");
    println!();
    println!("| | |");
    println!("|---|---:|");
    println!(
        "| managed schedules loaded, none due | {} ({} projects × {}) |",
        thousands(plan.idle_schedules()),
        plan.idle_projects,
        plan.schedules_per_project
    );
    println!(
        "| registration of the {} schedules (one `POST /projects` each) | {:.2} s ({:.0} ms per project) |",
        thousands(plan.idle_schedules()),
        idle.registration.as_secs_f64(),
        ms(idle.registration) / plan.idle_projects as f64
    );
    println!(
        "| from the first `POST` until the server is quiet again (< 1 % CPU over 0.5 s) | {:.1} s ({:.2} s of CPU) |",
        idle.until_quiet.as_secs_f64(),
        idle.registration_cpu / 1000.0
    );
    println!("| `GET /api/v1/schedules` with them all | {:.0} ms |", ms(idle.list_schedules));
    println!("| idle server CPU, no projects ({window} s) | {:.2} % of one core |", idle.baseline_cpu);
    println!(
        "| idle server CPU, {} schedules ({window} s, {} s after registering) | {:.2} % of one core |",
        thousands(plan.idle_schedules()),
        plan.settle.as_secs(),
        idle.loaded_cpu
    );
    println!("| server RSS, no projects | {:.1} MiB |", idle.baseline_rss);
    println!("| server RSS, {} schedules loaded | {:.1} MiB |", thousands(plan.idle_schedules()), idle.loaded_rss);
    match precision {
        Some(p) => {
            println!(
                "| fire precision, `started_at − scheduled_for` p50 ({} runs: {} every-minute schedules × {} minutes) | {:.0} ms |",
                p.runs, p.schedules, p.minutes, p.start_delay.p50
            );
            println!("| fire precision p90 | {:.0} ms |", p.start_delay.p90);
            println!("| fire precision p99 | {:.0} ms |", p.start_delay.p99);
            println!("| fire precision max | {:.0} ms |", p.start_delay.max);
            let spans: Vec<String> = p.slots.iter().map(|(a, b)| format!("{a:.0}–{b:.0}")).collect();
            println!("| first–last start of each slot's runs | {} ms |", spans.join(", "));
            println!(
                "| scheduler wake-up, `queued_at − scheduled_for` p50 / max | {:.0} / {:.0} ms |",
                p.fire_delay.p50, p.fire_delay.max
            );
            println!("| server CPU over the precision phase | {:.2} % of one core |", p.cpu);
        }
        None => println!("| fire precision | skipped in smoke mode |"),
    }
    println!();
    let head: Vec<&str> = pings.iter().map(|c| c.backend).collect();
    println!("| pings to one check | {} |", head.join(" | "));
    println!("|---|{}", "---:|".repeat(pings.len()));
    let row = |label: String, cell: &dyn Fn(&PingColumn) -> String| {
        let cells: Vec<String> = pings.iter().map(cell).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    row(format!("rate ({} pings, {} clients)", thousands(plan.pings), plan.ping_clients), &|c| {
        format!("{:.0} pings/s ({:.2} s)", c.per_sec, c.secs)
    });
    row("latency p50".into(), &|c| format!("{:.2} ms", c.latency.p50));
    row("latency p99".into(), &|c| format!("{:.2} ms", c.latency.p99));
    row("latency max".into(), &|c| format!("{:.2} ms", c.latency.max));
    row("server CPU per ping (user + system)".into(), &|c| format!("{:.3} + {:.3} ms", c.cpu_user, c.cpu_sys));
    row("bench clients' CPU per ping".into(), &|c| format!("{:.3} ms", c.cpu_client));
    row("cores busy in the burst (server + clients)".into(), &|c| {
        format!("{:.2}", (c.cpu_user + c.cpu_sys + c.cpu_client) * c.per_sec / 1000.0)
    });
    row(format!("stored / answered 200 OK (with {} warm-up pings)", plan.ping_warmup), &|c| {
        format!("{} / {}", thousands(c.stored.max(0) as usize), thousands(c.answered))
    });
    println!();
    println!("| target | measured | |");
    println!("|---|---|---|");
    match precision {
        Some(p) => println!(
            "| fire precision p99 ≤ 50 ms | {:.0} ms | {} |",
            p.start_delay.p99,
            if p.start_delay.p99 <= 50.0 { "met" } else { "not met" }
        ),
        None => println!("| fire precision p99 ≤ 50 ms | not measured | |"),
    }
    for c in pings {
        println!(
            "| ≥ 5,000 pings/s ({}) | {:.0} pings/s | {} |",
            c.backend,
            c.per_sec,
            if c.per_sec >= 5000.0 { "met" } else { "not met" }
        );
    }
}

/// `12345` as `12,345`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
