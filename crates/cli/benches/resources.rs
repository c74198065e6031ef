//! End-to-end benchmark of named resources and of the cost ledger: it starts the real
//! `agent-os serve` binary in a home whose `config.yaml` declares `openai` (one holder at a time)
//! and `api` (100 a second, bursts of 10), registers a project, and measures over real HTTP on
//! 127.0.0.1 the round trip of taking and releasing a lease, and how many cost records a second
//! the ledger stores from concurrent clients (then checks the count and the exact sum). Last, 16
//! clients hammer both resources and the bench fails if two leases on `openai` ever overlapped or
//! if `api` granted more than its rate allows in any window. It repeats everything on PostgreSQL
//! when `AGENT_OS_BENCH_POSTGRES_URL` is set, and prints a Markdown table.
//!
//! `cargo bench -p agent-os --bench resources` runs the full measurement (about a minute and a
//! half with PostgreSQL); `AGENT_OS_BENCH_QUICK=1` (or running it without `--bench`) runs a smoke
//! version that still checks everything, on fewer leases and records. See docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};

// Each bench uses a part of the shared module.
#[allow(dead_code)]
mod common;

use common::{Database, Stats, ms};

/// The resources under test. The server reads config.yaml only when it starts, so it is written
/// into the home first.
const CONFIG: &str = "resources:\n  openai: { concurrency: 1 }\n  api: { rate: 100/s, burst: 10 }\n";
/// `api`'s limits as CONFIG declares them, for checking the grants against.
const API_RATE_PER_SEC: i64 = 100;
const API_BURST: i64 = 10;
/// How often each hammering client asks for `api`, beside its turns on `openai`: 16 clients
/// ask 320 times a second, over three times the rate. Asking only between turns on `openai`
/// would ask no faster than `openai` changes hands, which may be below the rate.
const API_ATTEMPT_EVERY: Duration = Duration::from_millis(50);

// `true` is quoted: bare, YAML reads it as a boolean, which is not an argv element.
const MANIFEST: &str = "name: bench\ntasks:\n  noop:\n    run: [\"true\"]\n";
const PROJECT: &str = "bench";

/// Records per `POST /api/v1/costs`: the most the API takes at once.
const BATCH: usize = 1000;

/// How much work each phase does: the full measurement or the smoke version.
struct Plan {
    quick: bool,
    warmup: usize,
    round_trips: usize,
    cost_records: usize,
    cost_clients: usize,
    hammer_clients: usize,
    hammer_for: Duration,
    hold: Duration,
}

impl Plan {
    fn from_env() -> Plan {
        let quick = common::quick_mode();
        Plan {
            quick,
            warmup: if quick { 5 } else { 20 },
            round_trips: if quick { 200 } else { 2000 },
            cost_records: if quick { 10_000 } else { 100_000 },
            cost_clients: 4,
            hammer_clients: 16,
            hammer_for: Duration::from_secs(if quick { 3 } else { 30 }),
            hold: Duration::from_millis(2),
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
        eprintln!(
            "smoke mode: {} lease round trips, {} cost records, {} s of hammering",
            plan.round_trips,
            plan.cost_records,
            plan.hammer_for.as_secs()
        );
    }

    let mut columns = Vec::new();
    {
        let server = Server::start(&bin, None).await?;
        server.register(&http, project.path()).await?;
        columns.push(measure(&http, &server, plan, "SQLite").await?);
    }
    match common::postgres_url() {
        Some(url) => {
            let db = Database::create(&url)?;
            let server = Server::start(&bin, Some(&db.url)).await?;
            server.register(&http, project.path()).await?;
            let measured = measure(&http, &server, plan, "PostgreSQL").await;
            // The server holds connections to the database: stop it before dropping it.
            drop(server);
            drop(db);
            columns.push(measured?);
        }
        None => eprintln!("AGENT_OS_BENCH_POSTGRES_URL is not set: PostgreSQL is not measured"),
    }

    print_report(plan, &columns);
    // The table comes first so that a failed check still shows what was measured.
    let failures: Vec<String> =
        columns.iter().flat_map(|c| c.failures.iter().map(move |f| format!("{}: {f}", c.backend))).collect();
    if !failures.is_empty() {
        bail!("{} check(s) failed:\n  {}", failures.len(), failures.join("\n  "));
    }
    Ok(())
}

/// What one database backend measured, and the checks it failed.
struct Column {
    backend: &'static str,
    leases: LeaseFigures,
    costs: CostFigures,
    /// The same records as a model's tokens, priced by the server.
    tokens: CostFigures,
    hammer: HammerFigures,
    failures: Vec<String>,
}

async fn measure(http: &reqwest::Client, server: &Server, plan: &Plan, backend: &'static str) -> Result<Column> {
    let mut failures = Vec::new();
    let leases = lease_round_trips(http, server, plan).await?;
    eprintln!(
        "{backend}: {} lease round trips: acquire + release p50 {:.2} ms, p99 {:.2} ms; acquire p50 {:.2} ms, p99 {:.2} ms",
        plan.round_trips, leases.round_trip.p50, leases.round_trip.p99, leases.acquire.p50, leases.acquire.p99
    );
    let costs = cost_ingestion(http, server, plan, Given::Amount, &mut failures).await?;
    eprintln!(
        "{backend}: {} cost records from {} clients in {:.2} s: {:.0} records/s; server busy {:.2} cores",
        plan.cost_records, plan.cost_clients, costs.secs, costs.per_sec, costs.server_cores
    );
    let tokens = cost_ingestion(http, server, plan, Given::Tokens, &mut failures).await?;
    eprintln!(
        "{backend}: {} token records priced by the server in {:.2} s: {:.0} records/s; server busy {:.2} cores",
        plan.cost_records, tokens.secs, tokens.per_sec, tokens.server_cores
    );
    let hammer = hammer(http, server, plan, &mut failures).await?;
    eprintln!(
        "{backend}: hammer: {} leases on openai, {} overlaps; api granted {} and refused {}, at most {} in 1 s, {} violations",
        hammer.leases,
        hammer.overlaps,
        hammer.api_granted,
        hammer.api_refused,
        hammer.api_max_per_sec,
        hammer.violations
    );
    Ok(Column { backend, leases, costs, tokens, hammer, failures })
}

// Phase 1: lease round trips ----------------------------------------------------------------

struct LeaseFigures {
    round_trip: Stats,
    acquire: Stats,
    /// Server CPU (user + system) per round trip, in ms.
    cpu_per_trip: f64,
}

/// One client takes and releases the lease on `openai`, one after the other.
async fn lease_round_trips(http: &reqwest::Client, server: &Server, plan: &Plan) -> Result<LeaseFigures> {
    let body = json!({"ttl": "1m"});
    for _ in 0..plan.warmup {
        let lease =
            take_lease(http, &server.endpoint, "openai", &body).await?.context("openai refused a lease nobody held")?;
        release_lease(http, &server.endpoint, "openai", &lease.id).await?;
    }
    let mut round_trip = Vec::with_capacity(plan.round_trips);
    let mut acquire = Vec::with_capacity(plan.round_trips);
    let cpu_before = server.cpu_ms()?;
    for _ in 0..plan.round_trips {
        let started = Instant::now();
        let lease =
            take_lease(http, &server.endpoint, "openai", &body).await?.context("openai refused a lease nobody held")?;
        acquire.push(ms(started.elapsed()));
        release_lease(http, &server.endpoint, "openai", &lease.id).await?;
        round_trip.push(ms(started.elapsed()));
    }
    let cpu_per_trip = (server.cpu_ms()? - cpu_before) / plan.round_trips as f64;
    Ok(LeaseFigures { round_trip: Stats::of(round_trip), acquire: Stats::of(acquire), cpu_per_trip })
}

// Phase 2: cost ingestion -------------------------------------------------------------------

struct CostFigures {
    secs: f64,
    per_sec: f64,
    batch: Stats,
    /// Server CPU (user + system) per 1,000 records, in ms.
    cpu_per_batch: f64,
    /// Server CPU time over wall time: how many cores the server kept busy.
    server_cores: f64,
    /// The same for the bench process (the clients).
    client_cores: f64,
    /// Whether `GET /api/v1/costs/summary` gave the count and the exact sum sent.
    verified: bool,
}

/// The amount of record `i` in nano-units: 0.000123 plus up to 999 nanos, so that the check of
/// the sum also catches a record stored with another record's amount.
fn amount_nanos(i: usize) -> i64 {
    123_000 + (i % 1000) as i64
}

/// What the records carry: an amount, or gpt-4o-mini's tokens for the server to price.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Given {
    Amount,
    Tokens,
}

/// Record `i`'s input tokens in the token phase: 1,000 to 1,999, so that the check of the sum
/// catches a record priced with another's tokens.
fn tokens_in(i: usize) -> i64 {
    1_000 + (i % 1000) as i64
}

/// What the built-in price of gpt-4o-mini (0.15 in, 0.60 out per million) makes of record `i`:
/// `tokens_in(i)` in and 100 out, in nano-dollars.
fn priced_nanos(i: usize) -> i64 {
    tokens_in(i) * 150 + 100 * 600
}

async fn cost_ingestion(
    http: &reqwest::Client,
    server: &Server,
    plan: &Plan,
    given: Given,
    failures: &mut Vec<String>,
) -> Result<CostFigures> {
    let service = match given {
        Given::Amount => "openai",
        Given::Tokens => "openai-tokens",
    };
    // The bodies are serialized up front, so that the clients spend the measured time sending.
    let batches = plan.cost_records.div_ceil(BATCH);
    let mut per_client: Vec<Vec<Vec<u8>>> = (0..plan.cost_clients).map(|_| Vec::new()).collect();
    for b in 0..batches {
        let records: Vec<Value> = (b * BATCH..((b + 1) * BATCH).min(plan.cost_records))
            .map(|i| match given {
                Given::Amount => json!({
                    "project": PROJECT,
                    "service": service,
                    "amount": format!("0.{:09}", amount_nanos(i)),
                    "idempotency_key": format!("bench-{i}"),
                }),
                Given::Tokens => json!({
                    "project": PROJECT,
                    "service": service,
                    "model": "gpt-4o-mini-2024-07-18",
                    "tokens_in": tokens_in(i),
                    "tokens_out": 100,
                    "idempotency_key": format!("bench-tokens-{i}"),
                }),
            })
            .collect();
        per_client[b % plan.cost_clients].push(serde_json::to_vec(&json!({"records": records}))?);
    }
    let expected_nanos: i64 = match given {
        Given::Amount => (0..plan.cost_records).map(amount_nanos).sum(),
        Given::Tokens => (0..plan.cost_records).map(priced_nanos).sum(),
    };

    let cpu_before = server.cpu_ms()?;
    let client_before = client_cpu_ms()?;
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for bodies in per_client {
        let (http, Endpoint { url, token }) = (http.clone(), server.endpoint.clone());
        clients.spawn(async move {
            let mut times = Vec::with_capacity(bodies.len());
            for body in bodies {
                let sent = Instant::now();
                let resp = http
                    .post(format!("{url}/api/v1/costs"))
                    .bearer_auth(&token)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = resp.status();
                ensure!(status == StatusCode::CREATED, "POST /api/v1/costs: HTTP {status}: {}", resp.text().await?);
                let answer: Value = resp.json().await?;
                times.push(ms(sent.elapsed()));
                ensure!(answer["duplicates"] == 0, "POST /api/v1/costs found duplicates among unique keys: {answer}");
                ensure!(answer["accepted"].as_u64().is_some_and(|n| n > 0), "POST /api/v1/costs: {answer}");
                ensure!(answer["unpriced"] == 0, "POST /api/v1/costs left records unpriced: {answer}");
            }
            anyhow::Ok(times)
        });
    }
    let mut batch_times = Vec::with_capacity(batches);
    while let Some(joined) = clients.join_next().await {
        batch_times.extend(joined??);
    }
    let elapsed = started.elapsed();
    let server_cpu = server.cpu_ms()? - cpu_before;
    let client_cpu = client_cpu_ms()? - client_before;
    let secs = elapsed.as_secs_f64();

    let summary = server.get_json(http, &format!("/api/v1/costs/summary?project={PROJECT}&service={service}")).await?;
    let total = &summary["totals"][0];
    let (records, nanos) = (total["records"].as_i64(), total["amount_nanos"].as_i64());
    let verified = summary["totals"].as_array().map(Vec::len) == Some(1)
        && records == Some(plan.cost_records as i64)
        && nanos == Some(expected_nanos);
    if !verified {
        failures.push(format!(
            "the cost summary does not match what was sent: {} records summing to {expected_nanos} nanos sent, \
             the ledger holds {:?} summing to {:?} (totals: {})",
            plan.cost_records, records, nanos, summary["totals"]
        ));
    }
    Ok(CostFigures {
        secs,
        per_sec: plan.cost_records as f64 / secs,
        batch: Stats::of(batch_times),
        cpu_per_batch: server_cpu / batches as f64,
        server_cores: server_cpu / ms(elapsed),
        client_cores: client_cpu / ms(elapsed),
        verified,
    })
}

// Phase 3: the correctness hammer -----------------------------------------------------------

struct HammerFigures {
    secs: f64,
    /// Leases taken on `openai`.
    leases: usize,
    /// How long a client waited in line for `openai`.
    wait: Stats,
    overlaps: usize,
    api_granted: usize,
    api_refused: usize,
    /// The most `api` grants within any 1 s (by the server's `acquired_at`).
    api_max_per_sec: usize,
    violations: usize,
    server_cores: f64,
}

/// What one hammering client saw.
struct ClientLog {
    /// Each lease on `openai` as the client held it: from the answer that granted it to just
    /// before the request that released it was sent.
    held: Vec<(Instant, Instant)>,
    waits: Vec<f64>,
    /// `acquired_at` of each lease `api` granted, in ms.
    api_grants: Vec<i64>,
    api_refused: usize,
}

async fn hammer(
    http: &reqwest::Client,
    server: &Server,
    plan: &Plan,
    failures: &mut Vec<String>,
) -> Result<HammerFigures> {
    let cpu_before = server.cpu_ms()?;
    let started = Instant::now();
    let deadline = started + plan.hammer_for;
    let mut clients = tokio::task::JoinSet::new();
    for k in 0..plan.hammer_clients {
        let (http, server, hold) = (http.clone(), server.endpoint.clone(), plan.hold);
        // Spread the clients' `api` attempts over the interval rather than firing them together.
        let first_api_attempt = started + API_ATTEMPT_EVERY * k as u32 / plan.hammer_clients as u32;
        clients.spawn(async move {
            let openai = async {
                let wait_in_line = json!({"wait": "30s", "ttl": "1m"});
                let (mut held, mut waits) = (Vec::new(), Vec::new());
                while Instant::now() < deadline {
                    let asked = Instant::now();
                    let lease = take_lease(&http, &server, "openai", &wait_in_line)
                        .await?
                        .context("openai refused a lease after 30 s in line")?;
                    waits.push(ms(lease.answered - asked));
                    tokio::time::sleep(hold).await;
                    let releasing = Instant::now();
                    release_lease(&http, &server, "openai", &lease.id).await?;
                    held.push((lease.answered, releasing));
                }
                anyhow::Ok((held, waits))
            };
            let api = async {
                let at_once = json!({"wait": "0s", "ttl": "1m"});
                let (mut grants, mut refused) = (Vec::new(), 0);
                let mut every = tokio::time::interval_at(first_api_attempt.into(), API_ATTEMPT_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while every.tick().await.into_std() < deadline {
                    match take_lease(&http, &server, "api", &at_once).await? {
                        Some(lease) => {
                            grants.push(lease.acquired_at_ms);
                            release_lease(&http, &server, "api", &lease.id).await?;
                        }
                        None => refused += 1,
                    }
                }
                anyhow::Ok((grants, refused))
            };
            let ((held, waits), (api_grants, api_refused)) = tokio::try_join!(openai, api)?;
            anyhow::Ok(ClientLog { held, waits, api_grants, api_refused })
        });
    }
    let mut held = Vec::new();
    let mut waits = Vec::new();
    let mut grants = Vec::new();
    let mut api_refused = 0;
    while let Some(joined) = clients.join_next().await {
        let log = joined??;
        held.extend(log.held);
        waits.extend(log.waits);
        grants.extend(log.api_grants);
        api_refused += log.api_refused;
    }
    let elapsed = started.elapsed();
    let server_cores = (server.cpu_ms()? - cpu_before) / ms(elapsed);

    let leases = held.len();
    let overlaps = overlaps(held);
    if overlaps > 0 {
        failures.push(format!("{overlaps} of {leases} leases on openai (concurrency 1) overlapped another"));
    }
    grants.sort_unstable();
    let RateCheck { violations, worst } = check_rate(&grants, API_RATE_PER_SEC, API_BURST);
    if let Some((n, span)) = worst {
        failures.push(format!(
            "{violations} of {} grants on api ended a window holding more than {API_BURST} + {API_RATE_PER_SEC}/s; \
             the worst: {n} grants within {span} ms, where at most {:.1} are allowed",
            grants.len(),
            API_BURST as f64 + API_RATE_PER_SEC as f64 * span as f64 / 1000.0
        ));
    }
    if api_refused == 0 {
        failures
            .push("api never refused a lease: the hammer did not reach its rate, so the rate was not tested".into());
    }
    let resources = server.get_json(http, "/api/v1/resources").await?;
    let left: Vec<&Value> = resources
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["holders"].as_array().is_none_or(|h| !h.is_empty())
                || r["waiters"].as_array().is_none_or(|w| !w.is_empty())
        })
        .collect();
    if !left.is_empty() {
        failures.push(format!("holders or waiters were left after every lease was released: {left:?}"));
    }
    Ok(HammerFigures {
        secs: elapsed.as_secs_f64(),
        leases,
        wait: Stats::of(waits),
        overlaps,
        api_granted: grants.len(),
        api_refused,
        api_max_per_sec: max_in_a_second(&grants),
        violations,
        server_cores,
    })
}

/// How many intervals begin before an earlier-beginning one has ended.
fn overlaps(mut intervals: Vec<(Instant, Instant)>) -> usize {
    intervals.sort_by_key(|&(start, _)| start);
    let mut count = 0;
    let mut latest_end: Option<Instant> = None;
    for (start, end) in intervals {
        if latest_end.is_some_and(|e| start < e) {
            count += 1;
        }
        latest_end = Some(latest_end.map_or(end, |e| e.max(end)));
    }
    count
}

/// The check of a rate limit's grants.
struct RateCheck {
    /// Grants that end a window [t_i, t_j] holding more than `burst + rate · (t_j − t_i)`
    /// grants, which a token bucket that starts full never allows.
    violations: usize,
    /// The window that exceeds the bound most: (grants in it, its length in ms).
    worst: Option<(usize, i64)>,
}

/// Checks grants (sorted ms) against a token bucket of `per_sec` a second and `burst`.
fn check_rate(grants: &[i64], per_sec: i64, burst: i64) -> RateCheck {
    // In integers, times 1000: (j − i + 1)·1000 ≤ burst·1000 + per_sec·(t_j − t_i), that is
    // f(j) − f(i) ≤ (burst − 1)·1000 with f(k) = k·1000 − per_sec·t_k; so keep the least f(i).
    let f = |k: usize| k as i64 * 1000 - per_sec * grants[k];
    let (mut least, mut least_at) = (i64::MAX, 0);
    let (mut violations, mut worst, mut worst_excess) = (0, None, 0);
    for j in 0..grants.len() {
        if f(j) < least {
            (least, least_at) = (f(j), j);
        }
        let excess = f(j) - least - (burst - 1) * 1000;
        if excess > 0 {
            violations += 1;
            if excess > worst_excess {
                worst_excess = excess;
                worst = Some((j + 1 - least_at, grants[j] - grants[least_at]));
            }
        }
    }
    RateCheck { violations, worst }
}

/// The most grants (sorted ms) in any window [t, t + 1 s).
fn max_in_a_second(grants: &[i64]) -> usize {
    let mut first = 0;
    let mut most = 0;
    for (j, &t) in grants.iter().enumerate() {
        while t - grants[first] >= 1000 {
            first += 1;
        }
        most = most.max(j + 1 - first);
    }
    most
}

// Talking to the server ---------------------------------------------------------------------

/// Where a server is and how to talk to it, to move into client tasks.
#[derive(Clone)]
struct Endpoint {
    url: String,
    token: String,
}

/// A lease as granted.
struct Lease {
    id: String,
    acquired_at_ms: i64,
    /// When the answer that granted it arrived.
    answered: Instant,
}

/// Takes a lease; `None` when the resource is busy (`409`) or its rate is used up (`429`).
async fn take_lease(http: &reqwest::Client, e: &Endpoint, resource: &str, body: &Value) -> Result<Option<Lease>> {
    let resp = http
        .post(format!("{}/api/v1/resources/{resource}/leases", e.url))
        .bearer_auth(&e.token)
        .json(body)
        .send()
        .await?;
    let answered = Instant::now();
    let status = resp.status();
    if status == StatusCode::CONFLICT || status == StatusCode::TOO_MANY_REQUESTS {
        return Ok(None);
    }
    ensure!(status == StatusCode::CREATED, "POST …/{resource}/leases: HTTP {status}: {}", resp.text().await?);
    let lease: Value = resp.json().await?;
    let id = lease["id"].as_str().context("a lease without an id")?.to_string();
    let acquired_at = lease["acquired_at"].as_str().context("a lease without acquired_at")?;
    let acquired_at_ms = acquired_at
        .parse::<jiff::Timestamp>()
        .with_context(|| format!("acquired_at {acquired_at:?} is not RFC 3339"))?
        .as_millisecond();
    Ok(Some(Lease { id, acquired_at_ms, answered }))
}

async fn release_lease(http: &reqwest::Client, e: &Endpoint, resource: &str, id: &str) -> Result<()> {
    let resp =
        http.delete(format!("{}/api/v1/resources/{resource}/leases/{id}", e.url)).bearer_auth(&e.token).send().await?;
    let status = resp.status();
    ensure!(status == StatusCode::NO_CONTENT, "DELETE …/{resource}/leases/{id}: HTTP {status}: {}", resp.text().await?);
    Ok(())
}

/// CPU time (user + system) of the bench process so far, in ms.
fn client_cpu_ms() -> Result<f64> {
    let [user, system, _] = common::cpu_ms("self")?;
    Ok(user + system)
}

/// A running `agent-os serve` in a home of its own with CONFIG as its config.yaml; stopped
/// (SIGTERM, then waited for) on drop. `common::Server` starts with the default config, which
/// declares no resources.
/// The shared bench server, started with [`CONFIG`], and the endpoint the phases use.
struct Server {
    inner: common::Server,
    endpoint: Endpoint,
}

impl Server {
    async fn start(bin: &Path, database_url: Option<&str>) -> Result<Server> {
        let inner = common::Server::start_with_config(bin, database_url, Some(CONFIG)).await?;
        // A typo in CONFIG would show up only as a 404 in the middle of a phase.
        let resources = inner.get_json(&reqwest::Client::new(), "/api/v1/resources").await?;
        let names: Vec<&str> = resources.as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).collect();
        ensure!(
            names.contains(&"openai") && names.contains(&"api"),
            "the server declares {names:?}, not openai and api"
        );
        let endpoint = Endpoint { url: inner.url.clone(), token: inner.token.clone() };
        Ok(Server { inner, endpoint })
    }

    async fn register(&self, http: &reqwest::Client, dir: &Path) -> Result<()> {
        self.inner.register(http, dir).await
    }

    async fn get_json(&self, http: &reqwest::Client, path_and_query: &str) -> Result<Value> {
        self.inner.get_json(http, path_and_query).await
    }

    /// CPU time (user + system) of the server so far, in ms.
    fn cpu_ms(&self) -> Result<f64> {
        let [user, system, _] = self.inner.cpu_ms()?;
        Ok(user + system)
    }
}

// The report --------------------------------------------------------------------------------

fn print_report(plan: &Plan, columns: &[Column]) {
    let mode = if plan.quick { " (smoke mode: too little work to quote)" } else { "" };
    println!();
    println!("## Agent OS resources and cost ledger benchmark{mode}");
    println!();
    let head: Vec<&str> = columns.iter().map(|c| c.backend).collect();
    println!("| | {} |", head.join(" | "));
    println!("|---|{}", "---:|".repeat(columns.len()));
    let row = |label: String, cell: &dyn Fn(&Column) -> String| {
        let cells: Vec<String> = columns.iter().map(cell).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    let n = plan.round_trips;
    row(format!("lease acquire + release p50 ({n} sequential)"), &|c| format!("{:.2} ms", c.leases.round_trip.p50));
    row("lease acquire + release p99".into(), &|c| format!("{:.2} ms", c.leases.round_trip.p99));
    row("lease acquire alone p50".into(), &|c| format!("{:.2} ms", c.leases.acquire.p50));
    row("lease acquire alone p99".into(), &|c| format!("{:.2} ms", c.leases.acquire.p99));
    row("server CPU per round trip".into(), &|c| format!("{:.2} ms", c.leases.cpu_per_trip));
    let (records, clients) = (plan.cost_records, plan.cost_clients);
    row(format!("cost records stored ({records} in batches of {BATCH}, {clients} clients)"), &|c| {
        format!("{:.0} records/s ({:.2} s)", c.costs.per_sec, c.costs.secs)
    });
    row("`POST /costs` of 1,000 records p50 / p99".into(), &|c| {
        format!("{:.1} / {:.1} ms", c.costs.batch.p50, c.costs.batch.p99)
    });
    row("server CPU per 1,000 records".into(), &|c| format!("{:.1} ms", c.costs.cpu_per_batch));
    row("cores busy during ingestion: server / bench clients".into(), &|c| {
        format!("{:.2} / {:.2}", c.costs.server_cores, c.costs.client_cores)
    });
    row("summary: count and exact sum".into(), &|c| (if c.costs.verified { "match" } else { "MISMATCH" }).into());
    row(format!("the same {records} as gpt-4o-mini tokens, priced by the server"), &|c| {
        format!("{:.0} records/s ({:.2} s)", c.tokens.per_sec, c.tokens.secs)
    });
    row("server CPU per 1,000 token records".into(), &|c| format!("{:.1} ms", c.tokens.cpu_per_batch));
    row("summary of the priced records: count and exact sum".into(), &|c| {
        (if c.tokens.verified { "match" } else { "MISMATCH" }).into()
    });
    let (k, secs) = (plan.hammer_clients, plan.hammer_for.as_secs());
    row(format!("hammer ({k} clients, {secs} s): leases on `openai`"), &|c| {
        format!("{} ({:.0}/s)", c.hammer.leases, c.hammer.leases as f64 / c.hammer.secs)
    });
    row("wait in line for `openai` p50 / p99".into(), &|c| {
        format!("{:.1} / {:.1} ms", c.hammer.wait.p50, c.hammer.wait.p99)
    });
    row("overlapping `openai` leases (must be 0)".into(), &|c| c.hammer.overlaps.to_string());
    row("`api` leases granted / refused".into(), &|c| format!("{} / {}", c.hammer.api_granted, c.hammer.api_refused));
    row("most `api` grants in any 1 s (limit 100/s, burst 10)".into(), &|c| c.hammer.api_max_per_sec.to_string());
    row("`api` rate violations (must be 0)".into(), &|c| c.hammer.violations.to_string());
    row("cores busy during the hammer: server".into(), &|c| format!("{:.2}", c.hammer.server_cores));
}
