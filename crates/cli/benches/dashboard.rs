//! End-to-end benchmark of the dashboard at scale: the real `agent-os serve` binary on SQLite
//! with the example projects registered, a database seeded with 1,000,000 runs and 1,000,000
//! cost records over the last 90 days (plus 200,000 events and 40,000 incidents), and every page
//! requested over real HTTP on 127.0.0.1 by a logged-in browser session, one request at a
//! time; then the MCP tools an agent asks first, as `tools/call` requests to `/mcp` with the
//! admin token. The time measured is the client's, from sending the request to the last byte of
//! the answer (on loopback that is the server's time plus well under a millisecond).
//!
//! Target: every page's p95 at most 100 ms, every MCP tool's at most 250 ms. The full run fails
//! (non-zero exit) when a page or tool misses it or a page is not there; `AGENT_OS_BENCH_QUICK=1` (or `cargo test --benches`) seeds 20,000
//! of each, takes fewer samples, and only reports. `AGENT_OS_BENCH_DASHBOARD_ROWS=N` seeds N
//! runs and N cost records in either mode; `AGENT_OS_BENCH_DASHBOARD_KEEP=FILE` keeps a copy of
//! the seeded database, to look into a slow page's queries with `sqlite3`.
//! `cargo bench -p agent-os --bench dashboard`; see docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sqlx::{Connection, Row};

#[allow(dead_code)]
mod common;

use common::{Server, Stats, ms};

const DAY_MS: i64 = 86_400_000;
/// What the pages must stay within, at the 95th percentile.
const TARGET_MS: f64 = 100.0;
/// What an MCP tool call must stay within, at the 95th percentile: `overview` makes a dozen API
/// requests (projects, each one's health, incidents, checks, schedules, budgets, failed runs,
/// costs), a page makes one.
const MCP_TARGET_MS: f64 = 250.0;

/// The demo's settings less its local inbox: the shared resource, both budgets, one channel
/// (on the discard port: nothing is sent during the bench unless an incident opens), and the
/// maintenance window.
const CONFIG: &str = r#"resources:
  openai: { concurrency: 1, rate: 60/min, burst: 5 }
budgets:
  - { project: trading, period: monthly, amount: "20.00" }
  - { project: cortana, service: openai, period: daily, amount: "1.00", on_exceed: pause }
notifications:
  channels:
    inbox: "json://127.0.0.1:9/inbox"
  allow_private_targets: true
maintenance:
  - { project: cortana, cron: "30 3 * * *", timezone: America/Los_Angeles, duration: 30m, reason: nightly memory rebuild }
"#;

struct Plan {
    runs: i64,
    costs: i64,
    events: i64,
    incidents: i64,
    warmup: usize,
    samples: usize,
    /// Whether a slow or missing page fails the bench.
    strict: bool,
}

fn main() -> Result<()> {
    let quick = common::quick_mode();
    let rows = match std::env::var("AGENT_OS_BENCH_DASHBOARD_ROWS") {
        Ok(v) if !v.is_empty() => v.parse().context("AGENT_OS_BENCH_DASHBOARD_ROWS is not a number")?,
        _ if quick => 20_000,
        _ => 1_000_000,
    };
    let plan = Plan {
        runs: rows,
        costs: rows,
        events: rows / 5,
        incidents: (rows / 25).max(20),
        warmup: if quick { 2 } else { 5 },
        samples: if quick { 10 } else { 60 },
        strict: !quick,
    };
    agent_os_engine::plugin::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(bench(&plan))
}

struct Measured {
    path: String,
    /// `None`: the page answered 404 (not written yet).
    stats: Option<Stats>,
    p95: f64,
    bytes: usize,
}

async fn bench(plan: &Plan) -> Result<()> {
    let bin = common::binary();
    let examples = tempfile::tempdir()?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    copy_dir(&src.join("projects"), examples.path())?;
    let mut server = Server::start_with_config(&bin, None, Some(CONFIG)).await?;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let mut names: Vec<String> = std::fs::read_dir(examples.path())?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    for name in &names {
        server.register(&http, &examples.path().join(name)).await?;
    }
    for w in std::fs::read_dir(src.join("workflows"))? {
        let w = w?;
        std::fs::copy(w.path(), server.home().join("workflows").join(w.file_name()))?;
    }
    let projects = server.get_json(&http, "/api/v1/projects").await?;
    let tasks: Vec<(String, String)> = projects
        .as_array()
        .context("GET /api/v1/projects: not a list")?
        .iter()
        .flat_map(|p| {
            let project = p["name"].as_str().unwrap_or_default().to_string();
            let tasks = p["tasks"].as_array().cloned().unwrap_or_default();
            tasks.into_iter().map(move |t| (project.clone(), t["name"].as_str().unwrap_or_default().to_string()))
        })
        .collect();
    ensure!(tasks.iter().any(|(p, t)| p == "trading" && t == "scan_market"), "the example tasks are not registered");

    server.stop();
    let now = jiff::Timestamp::now().as_millisecond();
    let started = Instant::now();
    let picks = seed(&server.sqlite_path(), plan, &tasks, now).await?;
    let db_mib = std::fs::metadata(server.sqlite_path())?.len() as f64 / (1024.0 * 1024.0);
    eprintln!(
        "seeded {} runs, {} cost records, {} events and {} incidents in {:.1} s ({db_mib:.0} MiB)",
        plan.runs,
        plan.costs,
        plan.events,
        plan.incidents,
        started.elapsed().as_secs_f64()
    );
    server.restart().await?;
    let reload = http
        .post(format!("{}/api/v1/workflows/reload", server.url))
        .bearer_auth(&server.token)
        .json(&serde_json::json!({}))
        .send()
        .await?;
    ensure!(reload.status() == reqwest::StatusCode::OK, "reloading the workflows: HTTP {}", reload.status());
    settle(&server).await?;

    let cookie = server.login(&http).await?;
    let pages = [
        "/".to_string(),
        "/runs".into(),
        "/runs?status=failed".into(),
        "/runs?project=trading&task=scan_market".into(),
        // Filters that match few or no runs: each must still read its page from an index.
        "/runs?task=backup".into(),
        "/runs?project=image-workflow&task=backup&status=running".into(),
        format!("/runs?before={}", picks.deep_run),
        format!("/runs/{}", picks.run),
        "/projects/trading".into(),
        "/schedules".into(),
        "/schedules?range=7d".into(),
        "/workflows".into(),
        "/events".into(),
        // Event filters that match few events: each reads its own index.
        "/events?project=nobody".into(),
        "/events?type=nothing.".into(),
        "/costs".into(),
        "/costs?range=30d".into(),
        "/incidents".into(),
        "/incidents?project=image-workflow".into(),
        "/resources".into(),
        "/settings".into(),
    ];
    let mut results = Vec::new();
    for path in &pages {
        results.push(measure(&server, &http, &cookie, path, plan).await.with_context(|| format!("GET {path}"))?);
    }
    // The MCP tools an agent asks first, over Streamable HTTP on the same database.
    let tools = [
        ("overview", json!({ "since": "24h" })),
        ("list_runs", json!({ "status": "failed", "since": "12h" })),
        ("list_runs", json!({ "project": "trading", "task": "scan_market", "limit": 50 })),
        ("get_run", json!({ "id": picks.run })),
        ("run_log", json!({ "id": picks.run })),
        ("cost_summary", json!({ "by": "model", "since": "30d" })),
        ("list_schedules", json!({})),
        ("list_incidents", json!({})),
        ("list_budgets", json!({})),
        ("list_resources", json!({})),
    ];
    let mut tool_results = Vec::new();
    for (name, args) in &tools {
        let label = format!("{name} {args}");
        tool_results.push(measure_tool(&server, &http, name, args, plan).await.with_context(|| label.clone())?);
    }
    let rss = server.rss_mib().unwrap_or(0.0);
    server.stop();
    if let Ok(keep) = std::env::var("AGENT_OS_BENCH_DASHBOARD_KEEP")
        && !keep.is_empty()
    {
        std::fs::copy(server.sqlite_path(), &keep).with_context(|| format!("cannot keep the database as {keep}"))?;
        eprintln!("the seeded database is kept as {keep}");
    }

    println!(
        "Dashboard pages, SQLite, {} runs and {} cost records; {} requests a page after {} warm-up, one at a time",
        plan.runs, plan.costs, plan.samples, plan.warmup
    );
    println!();
    println!("| page | p50 | p95 | max | bytes |");
    println!("| --- | --- | --- | --- | --- |");
    for r in &results {
        match &r.stats {
            Some(s) => println!("| `{}` | {:.1} ms | {:.1} ms | {:.1} ms | {} |", r.path, s.p50, r.p95, s.max, r.bytes),
            None => println!("| `{}` | missing | | | |", r.path),
        }
    }
    println!();
    println!("MCP tools over Streamable HTTP (`POST /mcp`, one `tools/call` at a time), the same database");
    println!();
    println!("| tool and arguments | p50 | p95 | max | bytes |");
    println!("| --- | --- | --- | --- | --- |");
    for r in &tool_results {
        if let Some(s) = &r.stats {
            println!("| `{}` | {:.1} ms | {:.1} ms | {:.1} ms | {} |", r.path, s.p50, r.p95, s.max, r.bytes);
        }
    }
    println!();
    println!(
        "embedded assets: {} bytes; server RSS at the end: {rss:.0} MiB; database: {db_mib:.0} MiB",
        agent_os_server::dashboard::asset_bytes()
    );
    let missing: Vec<&str> = results.iter().filter(|r| r.stats.is_none()).map(|r| r.path.as_str()).collect();
    let mut slow: Vec<String> =
        results.iter().filter(|r| r.p95 > TARGET_MS).map(|r| format!("{} ({:.1} ms)", r.path, r.p95)).collect();
    slow.extend(
        tool_results.iter().filter(|r| r.p95 > MCP_TARGET_MS).map(|r| format!("MCP {} ({:.1} ms)", r.path, r.p95)),
    );
    if !missing.is_empty() {
        eprintln!("missing pages (404): {}", missing.join(", "));
    }
    if !slow.is_empty() {
        eprintln!("pages over {TARGET_MS} ms (MCP tools over {MCP_TARGET_MS} ms) at p95: {}", slow.join(", "));
    }
    if plan.strict && (!missing.is_empty() || !slow.is_empty()) {
        bail!("{} pages missing, {} over their p95 target", missing.len(), slow.len());
    }
    Ok(())
}

/// Waits until the freshly started server is quiet (under 5 % of a core over a second: its
/// first status probes and schedule catch-up done), for at most 30 s.
async fn settle(server: &Server) -> Result<()> {
    let busy = || -> Result<f64> {
        let [user, system, _] = server.cpu_ms()?;
        Ok(user + system)
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let before = busy()?;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let used = busy()? - before;
        if used < 50.0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!("the server is still busy ({used:.0} ms of CPU a second); measuring anyway");
            return Ok(());
        }
    }
}

async fn measure(server: &Server, http: &reqwest::Client, cookie: &str, path: &str, plan: &Plan) -> Result<Measured> {
    let mut times = Vec::with_capacity(plan.samples);
    let mut bytes = 0;
    for i in 0..plan.warmup + plan.samples {
        let started = Instant::now();
        let resp = http.get(format!("{}{path}", server.url)).header(reqwest::header::COOKIE, cookie).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        let took = ms(started.elapsed());
        if status == reqwest::StatusCode::NOT_FOUND && i == 0 {
            return Ok(Measured { path: path.into(), stats: None, p95: 0.0, bytes: 0 });
        }
        ensure!(status == reqwest::StatusCode::OK, "HTTP {status}: {}", String::from_utf8_lossy(&body));
        bytes = body.len();
        if i >= plan.warmup {
            times.push(took);
        }
    }
    let p95 = percentile(&times, 0.95);
    Ok(Measured { path: path.into(), stats: Some(Stats::of(times)), p95, bytes })
}

/// One MCP tool call, timed from sending `POST /mcp` to the last byte of its JSON answer, which
/// must be a result that is not a tool error.
async fn measure_tool(
    server: &Server,
    http: &reqwest::Client,
    name: &str,
    args: &Value,
    plan: &Plan,
) -> Result<Measured> {
    let mut times = Vec::with_capacity(plan.samples);
    let mut bytes = 0;
    for i in 0..plan.warmup + plan.samples {
        let call = json!({
            "jsonrpc": "2.0", "id": i, "method": "tools/call", "params": { "name": name, "arguments": args }
        });
        let started = Instant::now();
        let resp = http
            .post(format!("{}/mcp", server.url))
            .bearer_auth(&server.token)
            .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
            .json(&call)
            .send()
            .await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        let took = ms(started.elapsed());
        ensure!(status == reqwest::StatusCode::OK, "HTTP {status}: {}", String::from_utf8_lossy(&body));
        let answer: Value = serde_json::from_slice(&body).context("not a JSON answer")?;
        ensure!(
            answer["result"]["isError"] == json!(false),
            "not a result: {}",
            String::from_utf8_lossy(&body).chars().take(500).collect::<String>()
        );
        bytes = body.len();
        if i >= plan.warmup {
            times.push(took);
        }
    }
    let p95 = percentile(&times, 0.95);
    let label = format!("{name} {args}");
    Ok(Measured { path: label, stats: Some(Stats::of(times)), p95, bytes })
}

/// Nearest rank, as `Stats` does.
fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}

/// Ids the pages are asked about: a run a tenth of the way from the oldest (for `before=`) and
/// a failed run from the middle of the table.
struct Picks {
    deep_run: String,
    run: String,
}

/// A UUIDv7 in SQL, as `agent_os_core::id::new_id` makes them: the time in ms (the column or
/// expression `at`), then random bits.
const UUID7: &str = "printf('%08x-%04x-7%03x-%04x-%012x', at >> 16, at & 65535, abs(random()) % 4096, 32768 + abs(random()) % 16384, abs(random()) % 281474976710656)";

/// A well-mixed number from the counter `n` (Knuth's multiplicative hash, its upper bits), for
/// choosing a row's status, service and so on. Unlike `random()`, which SQLite calls afresh at
/// each use of a column that holds it, it is the same wherever a row's CASEs read it.
const HASH: &str = "((n * 2654435761) % 4294967296 / 4096)";

/// Rows per statement and transaction.
const CHUNK: i64 = 100_000;

/// Writes the runs, costs, events and incidents straight into the stopped server's database,
/// in chunks of big `INSERT … SELECT` statements over a counter, then fills the daily cost
/// rollup as migration 0011 does.
async fn seed(db: &Path, plan: &Plan, tasks: &[(String, String)], now: i64) -> Result<Picks> {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await.context("cannot open the bench database")?;
    sqlx::query("PRAGMA synchronous = OFF").execute(&mut conn).await?;
    sqlx::query("CREATE TEMP TABLE seed_tasks (i INTEGER PRIMARY KEY, project_id TEXT, project TEXT, task TEXT)")
        .execute(&mut conn)
        .await?;
    for (i, (project, task)) in tasks.iter().enumerate() {
        sqlx::query("INSERT INTO seed_tasks SELECT ?, id, name, ? FROM projects WHERE name = ?")
            .bind(i as i64)
            .bind(task)
            .bind(project)
            .execute(&mut conn)
            .await?;
    }
    let start = now - 90 * DAY_MS;
    let span = 90 * DAY_MS - 60_000;

    // Runs: spread evenly over the tasks and the 90 days, oldest first (so the ids, which begin
    // with the time, ascend); 4 % failed, 1.5 % cancelled, 0.5 % timed out, the rest succeeded.
    let runs = format!(
        "INSERT INTO runs (id, project_id, project, task, status, input, outputs, attempt, max_attempts, exit_code, error, trigger, cancel_requested, queued_at, not_before, started_at, finished_at, log_bytes, log_dropped, log_seq, concurrency_key, scheduled_for, resources, priority) \
         WITH RECURSIVE seq(n) AS (SELECT $1 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < $2), \
         t AS (SELECT n, $3 + n * $4 / $5 AS at, {HASH} % 1000 AS roll, {HASH} % 60000 AS took FROM seq) \
         SELECT {UUID7}, k.project_id, k.project, k.task, \
           CASE WHEN roll < 40 THEN 'failed' WHEN roll < 55 THEN 'cancelled' WHEN roll < 60 THEN 'timed_out' ELSE 'succeeded' END, \
           '{{\"seed\":' || n || '}}', CASE WHEN roll >= 60 THEN '{{\"ok\":true}}' END, 1, CASE WHEN n % 3 = 0 THEN 3 ELSE 1 END, \
           CASE WHEN roll < 40 THEN 1 WHEN roll >= 60 THEN 0 END, \
           CASE WHEN roll < 40 THEN 'exited with status 1' WHEN roll >= 55 AND roll < 60 THEN 'timed out after 5m' END, \
           CASE WHEN n % 4 = 0 THEN 'api' ELSE 'schedule' END, CASE WHEN roll >= 40 AND roll < 55 THEN 1 ELSE 0 END, \
           at, at, at + 3, at + 3 + took, 0, 0, 0, NULL, CASE WHEN n % 4 = 0 THEN NULL ELSE at - at % 60000 END, NULL, 50 \
         FROM t JOIN seed_tasks k ON k.i = t.n % {}",
        tasks.len()
    );
    chunked(&mut conn, &runs, plan.runs, start, span).await?;

    // Cost records: the three projects, five services, mostly USD; tokens and a model for the
    // language-model services.
    let costs = format!(
        "INSERT INTO cost_records (id, project_id, project, run_id, service, key_name, amount_nanos, currency, tokens_in, tokens_out, model, at, idempotency_key, source, metadata, created_at) \
         WITH RECURSIVE seq(n) AS (SELECT $1 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < $2), \
         t AS (SELECT n, $3 + n * $4 / $5 AS at, {HASH} % 5 AS s, {HASH} / 5 % 100 AS c FROM seq), \
         p AS (SELECT DISTINCT project_id, project FROM seed_tasks), \
         pi AS (SELECT project_id, project, row_number() OVER (ORDER BY project) - 1 AS i, count(*) OVER () AS k FROM p) \
         SELECT {UUID7}, pi.project_id, pi.project, NULL, \
           CASE s WHEN 0 THEN 'openai' WHEN 1 THEN 'anthropic' WHEN 2 THEN 'railway' WHEN 3 THEN 'modal' ELSE 'replicate' END, \
           pi.project || '-' || CASE s WHEN 0 THEN 'openai' WHEN 1 THEN 'anthropic' ELSE 'infra' END, \
           abs(random()) % 50000000, CASE WHEN c < 90 THEN 'USD' WHEN c < 97 THEN 'EUR' ELSE 'GBP' END, \
           CASE WHEN s < 2 THEN abs(random()) % 20000 END, CASE WHEN s < 2 THEN abs(random()) % 4000 END, \
           CASE s WHEN 0 THEN CASE WHEN n % 2 = 0 THEN 'gpt-4o-mini' ELSE 'gpt-4o' END WHEN 1 THEN 'claude-sonnet' END, \
           at, 'seed-' || n, CASE WHEN n % 3 = 0 THEN 'api' ELSE 'probe' END, NULL, at \
         FROM t JOIN pi ON pi.i = t.n % pi.k"
    );
    chunked(&mut conn, &costs, plan.costs, start, span).await?;
    sqlx::query("DELETE FROM cost_daily").execute(&mut conn).await?;
    sqlx::query(
        "INSERT INTO cost_daily (project, service, day, currency, amount_nanos, records, tokens_in, tokens_out) \
         SELECT project, service, CAST(at / 86400000 AS BIGINT) * 86400000, currency, CAST(SUM(amount_nanos) AS BIGINT), COUNT(*), \
           CAST(COALESCE(SUM(tokens_in), 0) AS BIGINT), CAST(COALESCE(SUM(tokens_out), 0) AS BIGINT) \
         FROM cost_records GROUP BY 1, 2, 3, 4",
    )
    .execute(&mut conn)
    .await?;

    // Events of a handful of types, most with a project; all routed to workflows long ago.
    let events = format!(
        "INSERT INTO events (id, type, project, subject, data, at, routed_at) \
         WITH RECURSIVE seq(n) AS (SELECT $1 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < $2), \
         t AS (SELECT n, $3 + n * $4 / $5 AS at, {HASH} % 6 AS e FROM seq) \
         SELECT {UUID7}, CASE e WHEN 0 THEN 'market.spike' WHEN 1 THEN 'cron.late' WHEN 2 THEN 'cron.up' WHEN 3 THEN 'github.push' WHEN 4 THEN 'memory.rebuilt' ELSE 'budget.threshold' END, \
           CASE e WHEN 0 THEN 'trading' WHEN 3 THEN NULL WHEN 4 THEN 'cortana' ELSE 'image-workflow' END, \
           'seed-' || (n % 50), '{{\"n\":' || n || ',\"note\":\"seeded\"}}', at, at FROM t"
    );
    chunked(&mut conn, &events, plan.events, start, span).await?;

    // Incidents (a failed run's, a late check's) over the same days: all resolved but the
    // newest three, as a run that fails now and then opens one each time.
    let incidents = format!(
        "INSERT INTO incidents (id, source, subject, project, severity, title, reason, status, opened_at, resolved_at, acked_at, acked_by, changes, flapping, notified, updated_at) \
         WITH RECURSIVE seq(n) AS (SELECT $1 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < $2), \
         t AS (SELECT n, $3 + n * $4 / $5 AS at, n >= $5 - 3 AS open FROM seq) \
         SELECT {UUID7}, CASE WHEN n % 2 = 0 THEN 'run' ELSE 'check' END, 'seed-' || n, \
           CASE WHEN n % 2 = 0 THEN 'trading' ELSE 'image-workflow' END, CASE WHEN n % 5 = 0 THEN 'critical' ELSE 'warning' END, \
           'Seeded incident ' || n, 'seeded for the benchmark', CASE WHEN open THEN 'open' ELSE 'resolved' END, \
           at, CASE WHEN NOT open THEN at + 600000 END, CASE WHEN n % 3 = 0 THEN at + 60000 END, CASE WHEN n % 3 = 0 THEN 'admin' END, \
           2, 0, 1, at + 600000 FROM t"
    );
    chunked(&mut conn, &incidents, plan.incidents, start, span).await?;

    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await?;
    let deep_run: String = sqlx::query("SELECT id FROM runs ORDER BY id LIMIT 1 OFFSET ?")
        .bind(plan.runs / 10)
        .fetch_one(&mut conn)
        .await?
        .try_get("id")?;
    let run: String = sqlx::query("SELECT id FROM runs WHERE id > ? AND status = 'failed' ORDER BY id LIMIT 1")
        .bind(format!("{:08x}", (start + span / 2) >> 16))
        .fetch_one(&mut conn)
        .await?
        .try_get("id")?;
    conn.close().await?;
    Ok(Picks { deep_run, run })
}

/// Runs `sql` over counter values [0, total) in transactions of `CHUNK`, binding $1 and $2 (the
/// chunk's counter range), $3 (start), $4 (span) and $5 (total).
async fn chunked(conn: &mut sqlx::SqliteConnection, sql: &str, total: i64, start: i64, span: i64) -> Result<()> {
    let mut from = 0;
    while from < total {
        let to = (from + CHUNK).min(total);
        let mut tx = conn.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .bind(from)
            .bind(to)
            .bind(start)
            .bind(span)
            .bind(total)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("seeding: {}", &sql[..sql.find('(').unwrap_or(0)]))?;
        tx.commit().await?;
        from = to;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        // Follows links: each example project links the Python package (`agent_os`).
        if std::fs::metadata(entry.path())?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
