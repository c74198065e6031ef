//! [`SqlStore`]: the [`Store`] on SQLite or PostgreSQL through sqlx's `Any` driver.
//!
//! SQLite runs in WAL mode with one writer connection (writes are serialised in-process, and
//! every write transaction starts with `BEGIN IMMEDIATE` so it never has to upgrade a read lock)
//! and a few reader connections. PostgreSQL uses one pool and row locks (`FOR UPDATE SKIP
//! LOCKED`) so several nodes can claim runs from the same queue.
//!
//! SQLite's write-ahead log is kept bounded by [`wal_keeper`]: a checkpoint that merely copies
//! pages back never lets the log start over while readers keep coming, so past
//! [`WAL_LIMIT_BYTES`] the keeper waits its turn as the writer and truncates it.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

use agent_os_core::alerting::{DeliveryStatus, IncidentStatus};
use agent_os_core::budget::Period;
use agent_os_core::resource::{Bucket, HolderKind, Limits, Usage, Waiter, allocate};
use agent_os_core::token::TokenKind;

use crate::model::*;
use std::collections::HashMap;

/// A lease request that stops asking is forgotten after this long.

const WAITER_TTL_MS: i64 = 10_000;
use crate::{Result, Store, StoreError};

/// A UTC day in milliseconds: the cost rollup's bucket.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Which database engine a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// How hard SQLite works to keep a commit across power loss.
///
/// `Normal` (WAL with `synchronous=NORMAL`) keeps every commit across a crash of Agent OS
/// itself (kill -9), which is the promise Agent OS makes; a power cut may lose the last
/// moments. `Full` syncs the WAL on every commit, at a cost in throughput. PostgreSQL follows
/// its own `synchronous_commit` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    #[default]
    Normal,
    Full,
}

/// The size past which SQLite's write-ahead log is truncated (see [`wal_keeper`]).
///
/// Large enough that under a steady load the truncating checkpoint (which holds writes back
/// while it finishes) runs about once a second at most; small enough that the log stays a
/// fraction of a typical database and a start after a crash reads it back in milliseconds.
pub const WAL_LIMIT_BYTES: u64 = 64 << 20;

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `sqlite://PATH?mode=rwc` or `postgres://…`.
    pub url: String,
    pub durability: Durability,
    /// Pool size for PostgreSQL, and SQLite's reader pool.
    pub max_connections: u32,
    /// SQLite only: the bound on the write-ahead log, [`WAL_LIMIT_BYTES`] unless a test
    /// wants to reach it quickly.
    pub wal_limit_bytes: u64,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            durability: Durability::Normal,
            max_connections: 8,
            wal_limit_bytes: WAL_LIMIT_BYTES,
        }
    }
}

/// The SQLite URL for a database file (created if missing).
pub fn sqlite_url(path: &Path) -> String {
    let mut encoded = String::new();
    for ch in path.to_string_lossy().chars() {
        match ch {
            '%' | '?' | '#' | ' ' => encoded.push_str(&format!("%{:02X}", ch as u32)),
            c => encoded.push(c),
        }
    }
    format!("sqlite://{encoded}?mode=rwc")
}

/// Single-statement writes run in autocommit mode on the writer: one statement is atomic by
/// itself, and skipping BEGIN/COMMIT saves two round trips to SQLite's connection thread.
pub struct SqlStore {
    backend: Backend,
    pub(crate) write: AnyPool,
    pub(crate) read: AnyPool,
    /// SQLite's [`wal_keeper`] task, kept so that closing the store stops it before the last
    /// checkpoint, and a keeper that died (a panic) is reported then.
    wal_keeper: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else {
        Err(StoreError::Migration(format!(
            "unsupported database URL {:?}: use sqlite://PATH or postgres://USER@HOST/DB",
            redact_url(url)
        )))
    }
}

/// A URL with any password removed, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl SqlStore {
    /// Connects, configures and migrates.
    pub async fn open(opts: &StoreOptions, now: i64) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(&opts.url)?;
        let connect = AnyConnectOptions::from_str(&opts.url)?;
        let store = match backend {
            Backend::Sqlite => {
                let sync = match opts.durability {
                    Durability::Normal => "NORMAL",
                    Durability::Full => "FULL",
                };
                // Checkpoints are taken by a background task (below), not by whichever commit
                // happens to fill the WAL: a checkpoint syncs the database file, and doing it on
                // the writer's commit path made one commit in a few hundred take 20 ms.
                // `journal_size_limit` cuts the file back whenever the log starts over.
                let pragmas: Vec<String> = vec![
                    "PRAGMA busy_timeout = 10000".into(),
                    "PRAGMA foreign_keys = ON".into(),
                    format!("PRAGMA synchronous = {sync}"),
                    "PRAGMA cache_size = -2000".into(),
                    "PRAGMA wal_autocheckpoint = 0".into(),
                    format!("PRAGMA journal_size_limit = {}", opts.wal_limit_bytes),
                ];
                let pragmas: std::sync::Arc<[String]> = pragmas.into();
                let pool = |max: u32| {
                    let pragmas = pragmas.clone();
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .min_connections(0)
                        .idle_timeout(Some(Duration::from_secs(60)))
                        .acquire_timeout(Duration::from_secs(30))
                        .after_connect(move |conn, _| {
                            let pragmas = pragmas.clone();
                            Box::pin(async move {
                                for p in pragmas.iter() {
                                    conn.execute(sqlx::AssertSqlSafe(p.clone())).await?;
                                }
                                Ok(())
                            })
                        })
                };
                let write = pool(1).connect_with(connect.clone()).await?;
                // WAL is a property of the file; set it once through the writer.
                sqlx::query("PRAGMA journal_mode = WAL").fetch_all(&write).await?;
                let read = pool(opts.max_connections.clamp(1, 4)).connect_with(connect).await?;
                let wal = wal_path(&write).await?;
                let keeper = tokio::spawn(wal_keeper(write.clone(), read.clone(), wal, opts.wal_limit_bytes));
                SqlStore { backend, write, read, wal_keeper: std::sync::Mutex::new(Some(keeper)) }
            }
            Backend::Postgres => {
                // Keep a few connections open: opening one (with TLS negotiation) takes ~100 ms.
                let pool = AnyPoolOptions::new()
                    .max_connections(opts.max_connections.max(2))
                    .min_connections(opts.max_connections.max(2))
                    .idle_timeout(None)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(connect)
                    .await?;
                SqlStore { backend, write: pool.clone(), read: pool, wal_keeper: std::sync::Mutex::new(None) }
            }
        };
        crate::migrate::run(&store.write, backend, now).await?;
        Ok(store)
    }

    pub(crate) async fn tx(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        })
    }

    /// A write transaction for resource decisions: on PostgreSQL, nodes take turns (an
    /// advisory lock held to the commit); SQLite's single writer already makes them. Expired
    /// leases and abandoned lease requests are cleared first.
    async fn resource_tx(&self, now: i64) -> Result<Transaction<'static, Any>> {
        let mut tx = self.tx().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7370001)").execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM resource_holds WHERE expires_at IS NOT NULL AND expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM resource_waiters WHERE expires_at <= $1").bind(now).execute(&mut *tx).await?;
        Ok(tx)
    }

    /// A write transaction for what every node does once as it starts (the admin token, the
    /// budgets of `config.yaml`): on PostgreSQL, nodes starting together take turns (an advisory
    /// lock held to the commit), so each sees what the one before it wrote instead of racing
    /// it to the same insert. SQLite's single writer already makes them take turns.
    async fn startup_tx(&self) -> Result<Transaction<'static, Any>> {
        let mut tx = self.tx().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7700002)").execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    /// Closes the pools (tests and shutdown). On SQLite the keeper stops first and the WAL is
    /// truncated, so a stopped server leaves no log behind to be read back at the next start.
    pub async fn close(&self) {
        let keeper = self.wal_keeper.lock().ok().and_then(|mut k| k.take());
        if let Some(keeper) = keeper {
            keeper.abort();
            if let Err(e) = keeper.await
                && e.is_panic()
            {
                tracing::error!(error = %e, "the WAL keeper had died");
            }
            if let Err(e) = checkpoint(&self.write, Checkpoint::Truncate).await {
                tracing::warn!(error = %e, "the WAL could not be truncated at shutdown");
            }
        }
        self.write.close().await;
        self.read.close().await;
    }
}

/// The `-wal` file next to the database (`None` for a database without a file).
async fn wal_path(pool: &AnyPool) -> Result<Option<std::path::PathBuf>> {
    let rows = sqlx::query("PRAGMA database_list").fetch_all(pool).await?;
    for r in rows {
        let name: String = r.try_get(1)?;
        let file: Option<String> = r.try_get(2)?;
        if name == "main" {
            return Ok(file.filter(|f| !f.is_empty()).map(|f| format!("{f}-wal").into()));
        }
    }
    Ok(None)
}

/// SQLite's checkpoint modes that Agent OS uses.
#[derive(Clone, Copy)]
enum Checkpoint {
    /// Copies what it can without waiting for anyone.
    Passive,
    /// Waits for the writer and the readers of the log, copies everything, cuts the file to 0.
    Truncate,
}

/// Runs a checkpoint; true when it finished (SQLite's `busy` column is 0).
async fn checkpoint<'c, E: Executor<'c, Database = Any>>(on: E, mode: Checkpoint) -> Result<bool, sqlx::Error> {
    let sql = match mode {
        Checkpoint::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Checkpoint::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    let row = sqlx::query(sql).fetch_one(on).await?;
    Ok(row.try_get::<i64, _>(0)? == 0)
}

/// How often the keeper looks at the WAL's size: a stat, cheap enough to do often, so that
/// under heavy writing the log passes its bound by little before it is cut.
const WAL_LOOK_EVERY: Duration = Duration::from_millis(250);

/// Keeps SQLite's WAL small without putting checkpoints on the commit path.
///
/// Once a second a PASSIVE checkpoint, from a reader connection, copies what it can into the
/// database file; it never blocks anyone. But it cannot make the log *start over*: SQLite
/// rewinds the WAL only when a writer finds every page copied back and no reader still using
/// the log, and with readers always busy that moment never comes, so the file grew to GBs
/// under load. So when the file passes `limit`, the keeper takes the writer connection (no
/// write is in flight and none can start) and runs a TRUNCATE checkpoint: it copies the rest,
/// waits (at most a second) for the readers that still use the log to finish their
/// statement, and cuts the file to zero. Readers are never long-lived (every statement
/// releases its snapshot), so the wait is short; if it runs out, the keeper tries again.
async fn wal_keeper(write: AnyPool, read: AnyPool, wal: Option<std::path::PathBuf>, limit: u64) {
    let mut tick = tokio::time::interval(WAL_LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let passive_every = (Duration::from_secs(1).as_millis() / WAL_LOOK_EVERY.as_millis()).max(1) as u64;
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        ticks += 1;
        if write.is_closed() || read.is_closed() {
            return;
        }
        let size = wal.as_ref().and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len());
        let outcome = if size > limit {
            // Copy what can be copied without blocking anyone first: writes then wait only for
            // the tail written since.
            let truncated = match checkpoint(&read, Checkpoint::Passive).await {
                Ok(_) => truncate_wal(&write).await,
                Err(e) => Err(e),
            };
            truncated.map(|done| {
                if !done {
                    tracing::warn!(bytes = size, "the WAL is past its bound and readers kept it busy; trying again");
                }
            })
        } else if ticks.is_multiple_of(passive_every) {
            checkpoint(&read, Checkpoint::Passive).await.map(|_| ())
        } else {
            Ok(())
        };
        if let Err(e) = outcome {
            if write.is_closed() || read.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// A TRUNCATE checkpoint on the writer connection, waiting at most a second for readers.
async fn truncate_wal(write: &AnyPool) -> Result<bool, sqlx::Error> {
    let mut conn = write.acquire().await?;
    conn.execute("PRAGMA busy_timeout = 1000").await?;
    let done = checkpoint(&mut *conn, Checkpoint::Truncate).await;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    done
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

macro_rules! project_cols {
    () => {
        "id, name, description, transport, root, plugin_url, manifest, signing_secret, cost_cursor, created_at, updated_at"
    };
}

macro_rules! notification_cols {
    () => {
        "id, project, title, body, severity, tags, dedup_key, created_at, source, incident_id, suppressed"
    };
}

macro_rules! delivery_cols {
    () => {
        "id, notification_id, channel, status, attempts, next_at, last_status, last_error, delivered_at, held"
    };
}

macro_rules! run_cols {
    () => {
        "id, project_id, project, task, status, input, outputs, attempt, max_attempts, exit_code, error, trigger, cancel_requested, queued_at, not_before, started_at, finished_at, log_bytes, log_dropped, concurrency_key, scheduled_for, resources, priority"
    };
}

macro_rules! attempt_cols {
    () => {
        "run_id, attempt, status, node_id, pid, proc_start, started_at, finished_at, exit_code, error"
    };
}

macro_rules! token_cols {
    () => {
        "id, kind, name, project_id, run_id, hash, created_at, expires_at, revoked_at"
    };
}

macro_rules! probe_cols {
    () => {
        "id, project_id, kind, at, ok, duration_ms, status, message, body, error"
    };
}

macro_rules! check_cols {
    () => {
        "c.id, c.project_id, p.name, p.ping_key, c.slug, c.kind, c.period_ms, c.cron, c.timezone, c.grace_ms, c.description, c.state, c.last_finish_at, c.last_failed, c.running_since, c.last_ping_at, c.last_duration_ms, c.state_changed_at, c.created_at"
    };
}

fn check_from(r: &AnyRow) -> Result<CheckRecord, sqlx::Error> {
    Ok(CheckRecord {
        id: r.try_get(0)?,
        project_id: r.try_get(1)?,
        project: r.try_get(2)?,
        ping_key: r.try_get(3)?,
        slug: r.try_get(4)?,
        kind: r.try_get(5)?,
        period_ms: r.try_get(6)?,
        cron: r.try_get(7)?,
        timezone: r.try_get(8)?,
        grace_ms: r.try_get(9)?,
        description: r.try_get(10)?,
        state: r.try_get(11)?,
        last_finish_at: r.try_get(12)?,
        last_failed: r.try_get::<i64, _>(13)? != 0,
        running_since: r.try_get(14)?,
        last_ping_at: r.try_get(15)?,
        last_duration_ms: r.try_get(16)?,
        state_changed_at: r.try_get(17)?,
        created_at: r.try_get(18)?,
    })
}

async fn insert_token_on<'c, E: Executor<'c, Database = Any>>(on: E, t: &TokenRecord) -> Result<()> {
    sqlx::query(concat!("INSERT INTO tokens (", token_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
        .bind(&t.id)
        .bind(&t.kind)
        .bind(&t.name)
        .bind(&t.project_id)
        .bind(&t.run_id)
        .bind(&t.hash)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.revoked_at)
        .execute(on)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("that token is already registered".into())
            } else {
                e.into()
            }
        })?;
    Ok(())
}

async fn revoke_admin_tokens_except_tx(tx: &mut Transaction<'static, Any>, keep_id: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE kind = 'admin' AND id <> $1 AND revoked_at IS NULL")
        .bind(keep_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM dashboard_sessions WHERE via = 'token' AND (token_id IS NULL OR token_id <> $1)")
        .bind(keep_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Stores a queued run inside `tx`.
pub(crate) async fn insert_run_tx(tx: &mut Transaction<'static, Any>, run: &NewRun) -> Result<RunRecord> {
    let row = sqlx::query(concat!(
        "INSERT INTO runs (id, project_id, project, task, status, input, max_attempts, trigger, queued_at, not_before, concurrency_key, scheduled_for, resources, priority) VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $8, $9, $10, $11, $12) RETURNING ",
        run_cols!()
    ))
    .bind(&run.id)
    .bind(&run.project_id)
    .bind(&run.project)
    .bind(&run.task)
    .bind(&run.input)
    .bind(run.max_attempts)
    .bind(&run.trigger)
    .bind(run.now)
    .bind(&run.concurrency_key)
    .bind(run.scheduled_for)
    .bind(join_names(&run.resources))
    .bind(run.priority)
    .fetch_one(&mut **tx)
    .await?;
    Ok(run_from(&row)?)
}

async fn insert_event(tx: &mut Transaction<'static, Any>, e: &NewEvent) -> Result<()> {
    sqlx::query("INSERT INTO events (id, type, project, subject, data, at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&e.id)
        .bind(&e.kind)
        .bind(&e.project)
        .bind(&e.subject)
        .bind(&e.data)
        .bind(e.at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

macro_rules! cost_cols {
    () => {
        "id, project, run_id, service, key_name, amount_nanos, currency, tokens_in, tokens_out, model, at, idempotency_key, source, metadata"
    };
}

fn project_from(r: &AnyRow) -> Result<ProjectRecord, sqlx::Error> {
    Ok(ProjectRecord {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        transport: ProjectTransport::from_row(r)?,
        manifest: r.try_get(6)?,
        cost_cursor: r.try_get(8)?,
        created_at: r.try_get(9)?,
        updated_at: r.try_get(10)?,
    })
}

fn run_from(r: &AnyRow) -> Result<RunRecord, sqlx::Error> {
    Ok(RunRecord {
        id: r.try_get(0)?,
        project_id: r.try_get(1)?,
        project: r.try_get(2)?,
        task: r.try_get(3)?,
        status: r.try_get(4)?,
        input: r.try_get(5)?,
        outputs: r.try_get(6)?,
        attempt: r.try_get(7)?,
        max_attempts: r.try_get(8)?,
        exit_code: r.try_get(9)?,
        error: r.try_get(10)?,
        trigger: r.try_get(11)?,
        cancel_requested: r.try_get::<i64, _>(12)? != 0,
        queued_at: r.try_get(13)?,
        not_before: r.try_get(14)?,
        started_at: r.try_get(15)?,
        finished_at: r.try_get(16)?,
        log_bytes: r.try_get(17)?,
        log_dropped: r.try_get(18)?,
        concurrency_key: r.try_get(19)?,
        scheduled_for: r.try_get(20)?,
        resources: split_names(r.try_get::<Option<String>, _>(21)?.as_deref()),
        priority: r.try_get(22)?,
    })
}

/// Resource names as stored: space-separated, `NULL` for none.
fn split_names(text: Option<&str>) -> Vec<String> {
    text.map(|t| t.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
}

fn join_names(names: &[String]) -> Option<String> {
    (!names.is_empty()).then(|| names.join(" "))
}

fn attempt_from(r: &AnyRow, offset: usize) -> Result<AttemptRecord, sqlx::Error> {
    Ok(AttemptRecord {
        run_id: r.try_get(offset)?,
        attempt: r.try_get(offset + 1)?,
        status: r.try_get(offset + 2)?,
        node_id: r.try_get(offset + 3)?,
        pid: r.try_get(offset + 4)?,
        proc_start: r.try_get(offset + 5)?,
        started_at: r.try_get(offset + 6)?,
        finished_at: r.try_get(offset + 7)?,
        exit_code: r.try_get(offset + 8)?,
        error: r.try_get(offset + 9)?,
    })
}

fn token_from(r: &AnyRow) -> Result<TokenRecord, sqlx::Error> {
    Ok(TokenRecord {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        name: r.try_get(2)?,
        project_id: r.try_get(3)?,
        run_id: r.try_get(4)?,
        hash: r.try_get(5)?,
        created_at: r.try_get(6)?,
        expires_at: r.try_get(7)?,
        revoked_at: r.try_get(8)?,
    })
}

fn probe_from(r: &AnyRow) -> Result<ProbeResult, sqlx::Error> {
    Ok(ProbeResult {
        id: r.try_get(0)?,
        project_id: r.try_get(1)?,
        kind: r.try_get(2)?,
        at: r.try_get(3)?,
        ok: r.try_get::<i64, _>(4)? != 0,
        duration_ms: r.try_get(5)?,
        status: r.try_get(6)?,
        message: r.try_get(7)?,
        body: r.try_get(8)?,
        error: r.try_get(9)?,
    })
}

fn cost_from(r: &AnyRow) -> Result<CostRecord, sqlx::Error> {
    Ok(CostRecord {
        id: r.try_get(0)?,
        project: r.try_get(1)?,
        run_id: r.try_get(2)?,
        service: r.try_get(3)?,
        key_name: r.try_get(4)?,
        amount_nanos: r.try_get(5)?,
        currency: r.try_get(6)?,
        tokens_in: r.try_get(7)?,
        tokens_out: r.try_get(8)?,
        model: r.try_get(9)?,
        at: r.try_get(10)?,
        idempotency_key: r.try_get(11)?,
        source: r.try_get(12)?,
        metadata: r.try_get(13)?,
    })
}

/// `select` with a condition for each filter that is given (`column op $n`, the values to bind
/// in order), then `order` and `LIMIT $last`. Leaving out the filters not given, rather than
/// writing `($1 IS NULL OR column = $1)`, lets the planner use the index each combination has:
/// SQLite cannot see through such an `OR`, and a rare status would then scan every row.
fn filtered<'a>(select: &str, conditions: &[(&str, &'a Option<String>)], order: &str) -> (String, Vec<&'a str>) {
    let mut sql = String::from(select);
    let mut args = Vec::new();
    for (column_op, value) in conditions {
        if let Some(v) = value {
            args.push(v.as_str());
            sql.push_str(if args.len() == 1 { " WHERE " } else { " AND " });
            sql.push_str(&format!("{column_op}${}", args.len()));
        }
    }
    sql.push_str(&format!(" {order} LIMIT ${}", args.len() + 1));
    (sql, args)
}

pub(crate) fn all<T>(rows: Vec<AnyRow>, f: impl Fn(&AnyRow) -> Result<T, sqlx::Error>) -> Result<Vec<T>> {
    rows.iter().map(|r| f(r).map_err(StoreError::from)).collect()
}

async fn insert_schedules(
    tx: &mut Transaction<'static, Any>,
    project_id: &str,
    schedules: &[NewSchedule],
) -> Result<()> {
    // Registered discovered schedules are not part of the manifest: a reload keeps them.
    sqlx::query("DELETE FROM schedules WHERE project_id = $1 AND source <> 'discovered'")
        .bind(project_id)
        .execute(&mut **tx)
        .await?;
    for (i, s) in schedules.iter().enumerate() {
        insert_schedule(tx, project_id, s, i as i64).await?;
    }
    Ok(())
}

async fn insert_schedule(
    tx: &mut Transaction<'static, Any>,
    project_id: &str,
    s: &NewSchedule,
    position: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO schedules (id, project_id, task, cron, timezone, managed_by, description, source, position, check_slug) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(agent_os_core::id::new_id())
    .bind(project_id)
    .bind(&s.task)
    .bind(&s.cron)
    .bind(&s.timezone)
    .bind(&s.managed_by)
    .bind(&s.description)
    .bind(&s.source)
    .bind(position)
    .bind(&s.check_slug)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The run token and attempt row of each freshly claimed run, in the claim's transaction.
async fn start_attempts(
    tx: &mut Transaction<'static, Any>,
    runs: &[RunRecord],
    node_id: &str,
    now: i64,
    run_tokens: &[TokenRecord],
) -> Result<()> {
    for (i, run) in runs.iter().enumerate() {
        if let Some(t) = run_tokens.get(i) {
            sqlx::query(concat!(
                "INSERT INTO tokens (",
                token_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .bind(&t.id)
            .bind(&t.kind)
            .bind(&t.name)
            .bind(&run.project_id)
            .bind(&run.id)
            .bind(&t.hash)
            .bind(t.created_at)
            .bind(t.expires_at)
            .bind(t.revoked_at)
            .execute(&mut **tx)
            .await?;
        }
        sqlx::query("INSERT INTO run_attempts (run_id, attempt, status, node_id, started_at) VALUES ($1, $2, 'running', $3, $4)")
            .bind(&run.id)
            .bind(run.attempt)
            .bind(node_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Queued runs that wait for resources and could start now but for them (due, and not held
/// back by a run of their concurrency key).
const RESOURCE_RUNS: &str = "SELECT q.id, q.resources, q.priority, q.not_before, q.project, q.task FROM runs q WHERE q.status = 'queued' AND q.resources IS NOT NULL AND q.not_before <= $1 AND (q.concurrency_key IS NULL OR NOT EXISTS (SELECT 1 FROM runs o WHERE o.concurrency_key = q.concurrency_key AND o.id <> q.id AND (o.status = 'running' OR (o.status = 'queued' AND (o.not_before < q.not_before OR (o.not_before = q.not_before AND o.id < q.id)))))) ORDER BY q.not_before, q.id LIMIT 1000";

/// Everyone waiting for resources: runs and lease requests.
async fn load_waiters(tx: &mut Transaction<'static, Any>, now: i64) -> Result<Vec<WaiterRecord>> {
    let mut out = Vec::new();
    for r in sqlx::query(RESOURCE_RUNS).bind(now).fetch_all(&mut **tx).await? {
        let project: String = r.try_get(4)?;
        let task: String = r.try_get(5)?;
        out.push(WaiterRecord {
            id: r.try_get(0)?,
            kind: HolderKind::Run,
            resources: split_names(r.try_get::<Option<String>, _>(1)?.as_deref()),
            label: format!("{project}.{task}"),
            project: Some(project),
            priority: r.try_get(2)?,
            since: r.try_get(3)?,
        });
    }
    let rows = sqlx::query(
        "SELECT id, resources, project, label, priority, since FROM resource_waiters WHERE expires_at > $1",
    )
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    for r in rows {
        out.push(WaiterRecord {
            id: r.try_get(0)?,
            kind: HolderKind::Lease,
            resources: split_names(Some(&r.try_get::<String, _>(1)?)),
            project: r.try_get(2)?,
            label: r.try_get(3)?,
            priority: r.try_get(4)?,
            since: r.try_get(5)?,
        });
    }
    Ok(out)
}

fn hold_from(r: &AnyRow) -> Result<HoldRecord, sqlx::Error> {
    Ok(HoldRecord {
        holder: r.try_get(0)?,
        resource: r.try_get(1)?,
        kind: r.try_get(2)?,
        project: r.try_get(3)?,
        label: r.try_get(4)?,
        priority: r.try_get(5)?,
        acquired_at: r.try_get(6)?,
        expires_at: r.try_get(7)?,
        ttl_ms: r.try_get(8)?,
    })
}

macro_rules! hold_cols {
    () => {
        "holder, resource, kind, project, label, priority, acquired_at, expires_at, ttl_ms"
    };
}

async fn load_holds(tx: &mut Transaction<'static, Any>) -> Result<Vec<HoldRecord>> {
    let rows = sqlx::query(concat!("SELECT ", hold_cols!(), " FROM resource_holds ORDER BY resource, acquired_at"))
        .fetch_all(&mut **tx)
        .await?;
    all(rows, hold_from)
}

async fn load_buckets(tx: &mut Transaction<'static, Any>) -> Result<HashMap<String, Bucket>> {
    let rows = sqlx::query("SELECT resource, tokens, at FROM resource_buckets").fetch_all(&mut **tx).await?;
    let mut out = HashMap::new();
    for r in rows {
        out.insert(r.try_get(0)?, Bucket { tokens: r.try_get(1)?, at: r.try_get(2)? });
    }
    Ok(out)
}

async fn insert_hold(tx: &mut Transaction<'static, Any>, h: &HoldRecord) -> Result<()> {
    sqlx::query(concat!("INSERT INTO resource_holds (", hold_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
        .bind(&h.holder)
        .bind(&h.resource)
        .bind(&h.kind)
        .bind(&h.project)
        .bind(&h.label)
        .bind(h.priority)
        .bind(h.acquired_at)
        .bind(h.expires_at)
        .bind(h.ttl_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes `taken` tokens from each rated resource's bucket at `now`.
async fn draw_tokens(
    tx: &mut Transaction<'static, Any>,
    taken: &HashMap<String, u32>,
    limits: &HashMap<String, Limits>,
    usage: &Usage,
    now: i64,
) -> Result<()> {
    for (resource, n) in taken {
        let Some(rate) = limits.get(resource).and_then(|l| l.rate.as_ref()) else { continue };
        // A bucket's time never goes back: a caller whose clock reading is older than the last
        // draw (it read the clock before waiting for the lock) draws at the bucket's time, or
        // the refill since then would be counted twice.
        let (level, at) = match usage.buckets.get(resource) {
            Some(b) => (b.level(rate, now.max(b.at)), now.max(b.at)),
            None => (f64::from(rate.burst), now),
        };
        sqlx::query("INSERT INTO resource_buckets (resource, tokens, at) VALUES ($1, $2, $3) ON CONFLICT (resource) DO UPDATE SET tokens = excluded.tokens, at = excluded.at")
            .bind(resource)
            .bind(level - f64::from(*n))
            .bind(at)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn insert_budget(tx: &mut Transaction<'static, Any>, b: &BudgetRecord) -> Result<()> {
    let thresholds: Vec<String> = b.thresholds.iter().map(i64::to_string).collect();
    sqlx::query("INSERT INTO budgets (id, project, service, period, amount_nanos, currency, thresholds, on_exceed, source, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
        .bind(&b.id)
        .bind(&b.project)
        .bind(&b.service)
        .bind(&b.period)
        .bind(b.amount_nanos)
        .bind(&b.currency)
        .bind(thresholds.join(","))
        .bind(&b.on_exceed)
        .bind(&b.source)
        .bind(b.created_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn pause_from(r: &AnyRow) -> Result<PauseRecord, sqlx::Error> {
    Ok(PauseRecord {
        project: r.try_get(0)?,
        reason: r.try_get(1)?,
        budget_id: r.try_get(2)?,
        since: r.try_get(3)?,
        until: r.try_get(4)?,
    })
}

/// Claims a schedule slot, once ever, with its run, and moves the schedule's last slot forward;
/// false (and nothing written) when the slot was already claimed, by this node or another.
async fn write_slot(tx: &mut Transaction<'static, Any>, f: &SlotFire, now: i64) -> Result<bool> {
    let claimed = sqlx::query("INSERT INTO schedule_slots (schedule_key, slot, run_id, outcome, fired_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (schedule_key, slot) DO NOTHING")
        .bind(&f.key)
        .bind(f.slot)
        .bind(f.run.as_ref().map(|r| r.id.as_str()))
        .bind(&f.outcome)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    if claimed.rows_affected() == 0 {
        return Ok(false);
    }
    if let Some(run) = &f.run {
        sqlx::query("INSERT INTO runs (id, project_id, project, task, status, input, max_attempts, trigger, queued_at, not_before, concurrency_key, scheduled_for, resources, priority) VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10, $11, $12, $13)")
            .bind(&run.id)
            .bind(&run.project_id)
            .bind(&run.project)
            .bind(&run.task)
            .bind(&run.input)
            .bind(run.max_attempts)
            .bind(&run.trigger)
            .bind(now)
            .bind(run.now)
            .bind(&run.concurrency_key)
            .bind(run.scheduled_for)
            .bind(join_names(&run.resources))
            .bind(run.priority)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("INSERT INTO schedule_state (schedule_key, last_slot) VALUES ($1, $2) ON CONFLICT (schedule_key) DO UPDATE SET last_slot = CASE WHEN schedule_state.last_slot > excluded.last_slot THEN schedule_state.last_slot ELSE excluded.last_slot END")
        .bind(&f.key)
        .bind(f.slot)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

/// Most ping rows one multi-row insert carries (8 values each).
const PING_ROWS_PER_INSERT: usize = 200;

/// A check's row after a ping: its last ping, finish, state and (when the ping had one) duration.
async fn update_check_after_ping(
    tx: &mut Transaction<'static, Any>,
    p: &PingUpdate,
    duration: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "UPDATE checks SET last_ping_at = $2, last_finish_at = $3, last_failed = $4, running_since = $5, \
         last_duration_ms = COALESCE($6, last_duration_ms), state_changed_at = CASE WHEN state <> $7 THEN $2 ELSE state_changed_at END, state = $7 WHERE id = $1",
    )
    .bind(&p.check_id)
    .bind(p.at)
    .bind(p.last_finish_at)
    .bind(i64::from(p.last_failed))
    .bind(p.running_since)
    .bind(duration)
    .bind(&p.state)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn notification_from(r: &AnyRow) -> Result<NotificationRecord, sqlx::Error> {
    let tags: String = r.try_get(5)?;
    Ok(NotificationRecord {
        id: r.try_get(0)?,
        project: r.try_get(1)?,
        title: r.try_get(2)?,
        body: r.try_get(3)?,
        severity: r.try_get(4)?,
        tags: tags.lines().filter(|t| !t.is_empty()).map(str::to_string).collect(),
        dedup_key: r.try_get(6)?,
        created_at: r.try_get(7)?,
        source: r.try_get(8)?,
        incident_id: r.try_get(9)?,
        suppressed: r.try_get(10)?,
    })
}

macro_rules! incident_cols {
    () => {
        "id, source, subject, project, severity, title, reason, status, opened_at, resolved_at, acked_at, acked_by, changes, flapping, notified, updated_at"
    };
}

fn incident_from(r: &AnyRow) -> Result<IncidentRecord, sqlx::Error> {
    Ok(IncidentRecord {
        id: r.try_get(0)?,
        source: r.try_get(1)?,
        subject: r.try_get(2)?,
        project: r.try_get(3)?,
        severity: r.try_get(4)?,
        title: r.try_get(5)?,
        reason: r.try_get(6)?,
        status: r.try_get(7)?,
        opened_at: r.try_get(8)?,
        resolved_at: r.try_get(9)?,
        acked_at: r.try_get(10)?,
        acked_by: r.try_get(11)?,
        changes: r.try_get(12)?,
        flapping: r.try_get::<i64, _>(13)? != 0,
        notified: r.try_get::<i64, _>(14)? != 0,
        updated_at: r.try_get(15)?,
    })
}

fn maintenance_from(r: &AnyRow) -> Result<MaintenanceRecord, sqlx::Error> {
    Ok(MaintenanceRecord {
        id: r.try_get(0)?,
        project: r.try_get(1)?,
        starts_at: r.try_get(2)?,
        ends_at: r.try_get(3)?,
        reason: r.try_get(4)?,
        created_at: r.try_get(5)?,
    })
}

fn delivery_from(r: &AnyRow) -> Result<DeliveryRecord, sqlx::Error> {
    Ok(DeliveryRecord {
        id: r.try_get(0)?,
        notification_id: r.try_get(1)?,
        channel: r.try_get(2)?,
        status: r.try_get(3)?,
        attempts: r.try_get(4)?,
        next_at: r.try_get(5)?,
        last_status: r.try_get(6)?,
        last_error: r.try_get(7)?,
        delivered_at: r.try_get(8)?,
        held: r.try_get(9)?,
    })
}

/// Keeps the tail of `s` that fits in `max` bytes, on a character boundary.
fn tail_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn insert_project(&self, p: &NewProject, schedules: &[NewSchedule], now: i64) -> Result<ProjectRecord> {
        let mut tx = self.tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO projects (id, name, description, transport, root, plugin_url, manifest, signing_secret, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(&p.id)
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.transport.columns().0)
        .bind(p.transport.columns().1)
        .bind(p.transport.columns().2)
        .bind(&p.manifest)
        .bind(p.transport.columns().3)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("a project named {:?} is already registered", p.name)));
            }
            other => {
                other?;
            }
        }
        insert_schedules(&mut tx, &p.id, schedules).await?;
        let row = sqlx::query(concat!("SELECT ", project_cols!(), " FROM projects WHERE id = $1"))
            .bind(&p.id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(project_from(&row)?)
    }

    async fn update_project(
        &self,
        name: &str,
        manifest: &str,
        description: &str,
        schedules: &[NewSchedule],
        now: i64,
    ) -> Result<ProjectRecord> {
        let mut tx = self.tx().await?;
        let row = sqlx::query(concat!(
            "UPDATE projects SET manifest = $2, description = $3, updated_at = $4 WHERE name = $1 RETURNING ",
            project_cols!()
        ))
        .bind(name)
        .bind(manifest)
        .bind(description)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("project {name:?}")))?;
        let project = project_from(&row)?;
        insert_schedules(&mut tx, &project.id, schedules).await?;
        tx.commit().await?;
        Ok(project)
    }

    async fn set_signing_secret(&self, name: &str, secret: &str, now: i64) -> Result<ProjectRecord> {
        let row = sqlx::query(concat!(
            "UPDATE projects SET signing_secret = $2, updated_at = $3 WHERE name = $1 RETURNING ",
            project_cols!()
        ))
        .bind(name)
        .bind(secret)
        .bind(now)
        .fetch_optional(&self.write)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("project {name:?}")))?;
        Ok(project_from(&row)?)
    }

    async fn get_project(&self, name: &str) -> Result<Option<ProjectRecord>> {
        let row = sqlx::query(concat!("SELECT ", project_cols!(), " FROM projects WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(project_from).transpose()?)
    }

    async fn get_project_by_id(&self, id: &str) -> Result<Option<ProjectRecord>> {
        let row = sqlx::query(concat!("SELECT ", project_cols!(), " FROM projects WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(project_from).transpose()?)
    }

    async fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
        let rows = sqlx::query(concat!("SELECT ", project_cols!(), " FROM projects ORDER BY name"))
            .fetch_all(&self.read)
            .await?;
        all(rows, project_from)
    }

    async fn delete_project(&self, name: &str) -> Result<bool> {
        let mut tx = self.tx().await?;
        let id: Option<String> = sqlx::query("SELECT id FROM projects WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let Some(id) = id else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM tokens WHERE project_id = $1 AND kind <> 'admin'").bind(&id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM schedules WHERE project_id = $1").bind(&id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM probe_results WHERE project_id = $1").bind(&id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM projects WHERE id = $1").bind(&id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_schedules(&self, project: Option<&str>) -> Result<Vec<ScheduleRecord>> {
        let rows = sqlx::query(
            "SELECT s.id, p.name, s.task, s.cron, s.timezone, s.managed_by, s.description, s.source, s.project_id, s.check_slug FROM schedules s JOIN projects p ON p.id = s.project_id WHERE ($1 IS NULL OR p.name = $1) ORDER BY p.name, s.position",
        )
        .bind(project)
        .fetch_all(&self.read)
        .await?;
        all(rows, |r| {
            Ok(ScheduleRecord {
                id: r.try_get(0)?,
                project: r.try_get(1)?,
                task: r.try_get(2)?,
                cron: r.try_get(3)?,
                timezone: r.try_get(4)?,
                managed_by: r.try_get(5)?,
                description: r.try_get(6)?,
                source: r.try_get(7)?,
                project_id: r.try_get(8)?,
                check_slug: r.try_get(9)?,
            })
        })
    }

    async fn set_cost_cursor(&self, project_id: &str, cursor: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE projects SET cost_cursor = $2 WHERE id = $1")
            .bind(project_id)
            .bind(cursor)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn insert_run(&self, run: &NewRun) -> Result<RunRecord> {
        let mut tx = self.tx().await?;
        let stored = insert_run_tx(&mut tx, run).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        let row = sqlx::query(concat!("SELECT ", run_cols!(), " FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(run_from).transpose()?)
    }

    async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRecord>> {
        let status = f.status.map(|s| s.to_string());
        let conditions =
            [("project = ", &f.project), ("task = ", &f.task), ("status = ", &status), ("id < ", &f.before)];
        let (sql, args) = filtered(concat!("SELECT ", run_cols!(), " FROM runs"), &conditions, "ORDER BY id DESC");
        let mut q = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        let rows = q.bind(f.limit.clamp(1, 1000)).fetch_all(&self.read).await?;
        all(rows, run_from)
    }

    async fn claim_resource_runs(
        &self,
        node_id: &str,
        now: i64,
        limit: i64,
        run_tokens: &[TokenRecord],
        limits: &HashMap<String, Limits>,
    ) -> Result<ResourceClaim> {
        // Most of the time no run waits for a resource: find that out without a write lock.
        let waiting = sqlx::query("SELECT MIN(not_before) FROM runs WHERE status = 'queued' AND resources IS NOT NULL")
            .fetch_one(&self.read)
            .await?
            .try_get::<Option<i64>, _>(0)?;
        let Some(first_due) = waiting else { return Ok(ResourceClaim::default()) };
        if first_due > now {
            return Ok(ResourceClaim { runs: Vec::new(), wake_at: Some(first_due) });
        }
        let mut tx = self.resource_tx(now).await?;
        let waiters = load_waiters(&mut tx, now).await?;
        let holds = load_holds(&mut tx).await?;
        let usage = usage_of(&holds, load_buckets(&mut tx).await?);
        let plan: Vec<Waiter> = waiters.iter().map(WaiterRecord::waiter).collect();
        let alloc = allocate(&plan, limits, &usage, now);
        let mut runs = Vec::new();
        let mut taken: HashMap<String, u32> = HashMap::new();
        for id in &alloc.granted {
            if runs.len() as i64 >= limit {
                break;
            }
            let Some(w) = waiters.iter().find(|w| &w.id == id && w.kind == HolderKind::Run) else { continue };
            let row = sqlx::query(concat!(
                "UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = COALESCE(started_at, $1) WHERE id = $2 AND status = 'queued' RETURNING ",
                run_cols!()
            ))
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { continue };
            for resource in &w.resources {
                insert_hold(
                    &mut tx,
                    &HoldRecord {
                        holder: id.clone(),
                        resource: resource.clone(),
                        kind: HolderKind::Run,
                        project: w.project.clone(),
                        label: w.label.clone(),
                        priority: w.priority,
                        acquired_at: now,
                        expires_at: None,
                        ttl_ms: None,
                    },
                )
                .await?;
                *taken.entry(resource.clone()).or_insert(0) += 1;
            }
            runs.push(run_from(&row)?);
        }
        draw_tokens(&mut tx, &taken, limits, &usage, now).await?;
        start_attempts(&mut tx, &runs, node_id, now, run_tokens).await?;
        let later = sqlx::query(
            "SELECT MIN(not_before) FROM runs WHERE status = 'queued' AND resources IS NOT NULL AND not_before > $1",
        )
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get::<Option<i64>, _>(0)?;
        tx.commit().await?;
        let wake_at = [alloc.retry_at, later].into_iter().flatten().min();
        Ok(ResourceClaim { runs, wake_at })
    }

    async fn acquire_lease(
        &self,
        req: &LeaseRequest,
        limits: &HashMap<String, Limits>,
        now: i64,
    ) -> Result<LeaseAttempt> {
        let mut tx = self.resource_tx(now).await?;
        // The request waits in line as a row, so runs and other nodes see it.
        sqlx::query("INSERT INTO resource_waiters (id, resources, project, label, priority, since, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at")
            .bind(&req.id)
            .bind(&req.resource)
            .bind(&req.project)
            .bind(&req.label)
            .bind(req.priority)
            .bind(req.since)
            .bind(now + WAITER_TTL_MS)
            .execute(&mut *tx)
            .await?;
        let waiters = load_waiters(&mut tx, now).await?;
        let holds = load_holds(&mut tx).await?;
        let usage = usage_of(&holds, load_buckets(&mut tx).await?);
        let plan: Vec<Waiter> = waiters.iter().map(WaiterRecord::waiter).collect();
        let alloc = allocate(&plan, limits, &usage, now);
        if !alloc.granted.contains(&req.id) {
            let limit = limits.get(&req.resource);
            let held = usage.held.get(&req.resource).copied().unwrap_or(0);
            let blocked_by = match limit {
                Some(l) if l.concurrency.is_some_and(|c| held >= c) => Blocked::Concurrency,
                Some(Limits { rate: Some(rate), .. })
                    if usage.buckets.get(&req.resource).is_some_and(|b| b.level(rate, now) < 1.0) =>
                {
                    Blocked::Rate
                }
                _ => Blocked::Queue,
            };
            tx.commit().await?;
            return Ok(LeaseAttempt::Waiting { blocked_by, retry_at: alloc.retry_at });
        }
        let hold = HoldRecord {
            holder: req.id.clone(),
            resource: req.resource.clone(),
            kind: HolderKind::Lease,
            project: req.project.clone(),
            label: req.label.clone(),
            priority: req.priority,
            acquired_at: now,
            expires_at: Some(now + req.ttl_ms),
            ttl_ms: Some(req.ttl_ms),
        };
        insert_hold(&mut tx, &hold).await?;
        draw_tokens(&mut tx, &HashMap::from([(req.resource.clone(), 1)]), limits, &usage, now).await?;
        sqlx::query("DELETE FROM resource_waiters WHERE id = $1").bind(&req.id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(LeaseAttempt::Granted(hold))
    }

    async fn drop_lease_waiter(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM resource_waiters WHERE id = $1").bind(id).execute(&self.write).await?;
        Ok(())
    }

    async fn renew_lease(
        &self,
        id: &str,
        resource: &str,
        scope: &agent_os_core::resource::ResourceScope,
        ttl_ms: Option<i64>,
        now: i64,
    ) -> Result<Option<HoldRecord>> {
        // The owner is part of the match, so a check and its write cannot come apart.
        let row = sqlx::query(concat!(
            "UPDATE resource_holds SET ttl_ms = COALESCE($3, ttl_ms), expires_at = $2 + COALESCE($3, ttl_ms)",
            " WHERE holder = $1 AND kind = 'lease' AND expires_at > $2 AND resource = $4 AND ($5 IS NULL OR project = $5)",
            " RETURNING ",
            hold_cols!()
        ))
        .bind(id)
        .bind(now)
        .bind(ttl_ms)
        .bind(resource)
        .bind(scope.project())
        .fetch_optional(&self.write)
        .await?;
        Ok(row.as_ref().map(hold_from).transpose()?)
    }

    async fn release_lease(
        &self,
        id: &str,
        resource: &str,
        scope: &agent_os_core::resource::ResourceScope,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(concat!(
            "DELETE FROM resource_holds WHERE holder = $1 AND kind = 'lease' AND expires_at > $2",
            " AND resource = $3 AND ($4 IS NULL OR project = $4)"
        ))
        .bind(id)
        .bind(now)
        .bind(resource)
        .bind(scope.project())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn resource_snapshot(&self, now: i64) -> Result<ResourceSnapshot> {
        let mut tx = self.read.begin().await?;
        let holds = load_holds(&mut tx).await?.into_iter().filter(|h| h.expires_at.is_none_or(|e| e > now)).collect();
        let waiters = load_waiters(&mut tx, now).await?;
        let buckets = load_buckets(&mut tx).await?;
        tx.commit().await?;
        Ok(ResourceSnapshot { holds, waiters, buckets })
    }

    async fn list_attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>> {
        let rows =
            sqlx::query(concat!("SELECT ", attempt_cols!(), " FROM run_attempts WHERE run_id = $1 ORDER BY attempt"))
                .bind(run_id)
                .fetch_all(&self.read)
                .await?;
        all(rows, |r| attempt_from(r, 0))
    }

    async fn claim_runs(
        &self,
        node_id: &str,
        now: i64,
        limit: i64,
        run_tokens: &[TokenRecord],
    ) -> Result<Vec<RunRecord>> {
        let mut tx = self.tx().await?;
        let claim = match self.backend {
            Backend::Sqlite => concat!(
                "UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = COALESCE(started_at, $1) WHERE id IN (SELECT q.id FROM runs q WHERE q.status = 'queued' AND q.not_before <= $1 AND q.resources IS NULL AND (q.concurrency_key IS NULL OR NOT EXISTS (SELECT 1 FROM runs o WHERE o.concurrency_key = q.concurrency_key AND o.id <> q.id AND (o.status = 'running' OR (o.status = 'queued' AND (o.not_before < q.not_before OR (o.not_before = q.not_before AND o.id < q.id)))))) ORDER BY q.not_before, q.id LIMIT $2) RETURNING ",
                run_cols!()
            ),
            Backend::Postgres => concat!(
                "UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = COALESCE(started_at, $1) WHERE id IN (SELECT q.id FROM runs q WHERE q.status = 'queued' AND q.not_before <= $1 AND q.resources IS NULL AND (q.concurrency_key IS NULL OR NOT EXISTS (SELECT 1 FROM runs o WHERE o.concurrency_key = q.concurrency_key AND o.id <> q.id AND (o.status = 'running' OR (o.status = 'queued' AND (o.not_before < q.not_before OR (o.not_before = q.not_before AND o.id < q.id)))))) ORDER BY q.not_before, q.id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING ",
                run_cols!()
            ),
        };
        let rows = sqlx::query(claim).bind(now).bind(limit).fetch_all(&mut *tx).await?;
        let mut runs = all(rows, run_from)?;
        runs.sort_by(|a, b| (a.not_before, &a.id).cmp(&(b.not_before, &b.id)));
        start_attempts(&mut tx, &runs, node_id, now, run_tokens).await?;
        tx.commit().await?;
        Ok(runs)
    }

    async fn set_attempt_process(&self, run_id: &str, attempt: i64, pid: i64, proc_start: Option<i64>) -> Result<()> {
        sqlx::query("UPDATE run_attempts SET pid = $3, pgid = $3, proc_start = $4 WHERE run_id = $1 AND attempt = $2")
            .bind(run_id)
            .bind(attempt)
            .bind(pid)
            .bind(proc_start)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn finish_attempt(&self, f: &FinishAttempt) -> Result<RunRecord> {
        let mut tx = self.tx().await?;
        let ended = sqlx::query(
            "UPDATE run_attempts SET status = $3, finished_at = $4, exit_code = $5, error = $6 WHERE run_id = $1 AND attempt = $2 AND status = 'running'",
        )
        .bind(&f.run_id)
        .bind(f.attempt)
        .bind(&f.attempt_status)
        .bind(f.now)
        .bind(f.exit_code)
        .bind(&f.error)
        .execute(&mut *tx)
        .await?;
        if ended.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "attempt {} of run {} is not running any more",
                f.attempt, f.run_id
            )));
        }
        let row = match f.retry_at {
            // A cancel that arrived while the attempt ran wins over the retry.
            Some(at) => sqlx::query(concat!(
                "UPDATE runs SET status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END, finished_at = CASE WHEN cancel_requested = 1 THEN $5 ELSE NULL END, not_before = $2, exit_code = $3, error = $4, max_attempts = max_attempts + $6 WHERE id = $1 RETURNING ",
                run_cols!()
            ))
            .bind(&f.run_id)
            .bind(at)
            .bind(f.exit_code)
            .bind(&f.error)
            .bind(f.now)
            .bind(i64::from(f.extra_attempt))
            .fetch_one(&mut *tx)
            .await?,
            None => sqlx::query(concat!(
                "UPDATE runs SET status = $2, finished_at = $3, exit_code = $4, error = $5, outputs = $6 WHERE id = $1 RETURNING ",
                run_cols!()
            ))
            .bind(&f.run_id)
            .bind(&f.attempt_status)
            .bind(f.now)
            .bind(f.exit_code)
            .bind(&f.error)
            .bind(&f.outputs)
            .fetch_one(&mut *tx)
            .await?,
        };
        sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE run_id = $1 AND revoked_at IS NULL")
            .bind(&f.run_id)
            .bind(f.now)
            .execute(&mut *tx)
            .await?;
        // The attempt's resources are free again, whatever comes next (a retry queues anew).
        sqlx::query("DELETE FROM resource_holds WHERE holder = $1 AND kind = 'run'")
            .bind(&f.run_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(run_from(&row)?)
    }

    async fn request_cancel(&self, run_id: &str, now: i64) -> Result<RunRecord> {
        let mut tx = self.tx().await?;
        sqlx::query("UPDATE runs SET status = 'cancelled', cancel_requested = 1, finished_at = $2, error = 'cancelled before it started' WHERE id = $1 AND status = 'queued'")
            .bind(run_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = $1 AND status = 'running'")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(concat!("SELECT ", run_cols!(), " FROM runs WHERE id = $1"))
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("run {run_id:?}")))?;
        tx.commit().await?;
        Ok(run_from(&row)?)
    }

    async fn running_attempts(&self) -> Result<Vec<(RunRecord, AttemptRecord)>> {
        let rows = sqlx::query(concat!(
            "SELECT r.id, r.project_id, r.project, r.task, r.status, r.input, r.outputs, r.attempt, r.max_attempts, r.exit_code, r.error, r.trigger, r.cancel_requested, r.queued_at, r.not_before, r.started_at, r.finished_at, r.log_bytes, r.log_dropped, r.concurrency_key, r.scheduled_for, r.resources, r.priority, ",
            "a.run_id, a.attempt, a.status, a.node_id, a.pid, a.proc_start, a.started_at, a.finished_at, a.exit_code, a.error ",
            "FROM run_attempts a JOIN runs r ON r.id = a.run_id WHERE a.status = 'running' ORDER BY a.run_id"
        ))
        .fetch_all(&self.write)
        .await?;
        all(rows, |r| Ok((run_from(r)?, attempt_from(r, 23)?)))
    }

    async fn count_runs_by_status(&self) -> Result<Vec<(agent_os_core::run::RunStatus, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status")
            .fetch_all(&self.read)
            .await?;
        all(rows, |r| Ok((r.try_get(0)?, r.try_get(1)?)))
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        // A run waiting for another of its concurrency key is not due: the end of that run
        // wakes the dispatcher.
        let row = sqlx::query("SELECT MIN(q.not_before) FROM runs q WHERE q.status = 'queued' AND q.resources IS NULL AND (q.concurrency_key IS NULL OR NOT EXISTS (SELECT 1 FROM runs o WHERE o.concurrency_key = q.concurrency_key AND o.id <> q.id AND (o.status = 'running' OR (o.status = 'queued' AND (o.not_before < q.not_before OR (o.not_before = q.not_before AND o.id < q.id))))))").fetch_one(&self.read).await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    async fn append_log(&self, run_id: &str, chunks: &[NewLogChunk], cap_bytes: i64) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let cap = cap_bytes.max(1);
        let mut tx = self.tx().await?;
        let row = sqlx::query("SELECT log_seq, log_bytes, log_dropped FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("run {run_id:?}")))?;
        let (mut seq, mut bytes, mut dropped): (i64, i64, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        for c in chunks {
            let data = tail_bytes(&c.data, cap as usize);
            dropped += (c.data.len() - data.len()) as i64;
            seq += 1;
            bytes += data.len() as i64;
            sqlx::query("INSERT INTO run_logs (run_id, seq, stream, at, bytes, data) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(run_id)
                .bind(seq)
                .bind(&c.stream)
                .bind(c.at)
                .bind(data.len() as i64)
                .bind(data)
                .execute(&mut *tx)
                .await?;
        }
        if bytes > cap {
            // Drop the oldest chunks until the log fits again: the tail is what explains a failure.
            let sizes = sqlx::query("SELECT seq, bytes FROM run_logs WHERE run_id = $1 ORDER BY seq")
                .bind(run_id)
                .fetch_all(&mut *tx)
                .await?;
            let mut cut = 0;
            for r in &sizes {
                if bytes <= cap {
                    break;
                }
                let b: i64 = r.try_get(1)?;
                cut = r.try_get(0)?;
                bytes -= b;
                dropped += b;
            }
            sqlx::query("DELETE FROM run_logs WHERE run_id = $1 AND seq <= $2")
                .bind(run_id)
                .bind(cut)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE runs SET log_seq = $2, log_bytes = $3, log_dropped = $4 WHERE id = $1")
            .bind(run_id)
            .bind(seq)
            .bind(bytes)
            .bind(dropped)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn read_log(&self, run_id: &str, after_seq: i64, limit: i64) -> Result<Vec<LogChunk>> {
        let rows = sqlx::query(
            "SELECT seq, stream, at, data FROM run_logs WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after_seq)
        .bind(limit.clamp(1, 100_000))
        .fetch_all(&self.read)
        .await?;
        all(rows, |r| {
            Ok(LogChunk { seq: r.try_get(0)?, stream: r.try_get(1)?, at: r.try_get(2)?, data: r.try_get(3)? })
        })
    }

    async fn insert_token(&self, t: &TokenRecord) -> Result<()> {
        insert_token_on(&self.write, t).await
    }

    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(concat!("SELECT ", token_cols!(), " FROM tokens WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(token_from).transpose()?)
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        // Run tokens (one per attempt) far outnumber these: read the two kinds from the index.
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_cols!(),
            " FROM tokens WHERE kind IN ('admin', 'project') ORDER BY id"
        ))
        .fetch_all(&self.read)
        .await?;
        all(rows, token_from)
    }

    async fn revoke_token(&self, id: &str, now: i64) -> Result<bool> {
        let mut tx = self.tx().await?;
        let done = sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM dashboard_sessions WHERE token_id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_run_tokens(&self, run_id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE run_id = $1 AND revoked_at IS NULL")
            .bind(run_id)
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn revoke_admin_tokens_except(&self, keep_id: &str, now: i64) -> Result<()> {
        let mut tx = self.tx().await?;
        revoke_admin_tokens_except_tx(&mut tx, keep_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_admin_token(&self, t: &TokenRecord, now: i64) -> Result<()> {
        let mut tx = self.startup_tx().await?;
        let found = sqlx::query(concat!("SELECT ", token_cols!(), " FROM tokens WHERE hash = $1"))
            .bind(&t.hash)
            .fetch_optional(&mut *tx)
            .await?;
        let keep = match found.as_ref().map(token_from).transpose()? {
            Some(k) if k.kind == TokenKind::Admin && k.revoked_at.is_none() => k.id,
            Some(_) => return Err(StoreError::Conflict("that token is revoked or is not an admin token".into())),
            None => {
                insert_token_on(&mut *tx, t).await?;
                t.id.clone()
            }
        };
        revoke_admin_tokens_except_tx(&mut tx, &keep, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_first_admin_token(&self, t: &TokenRecord) -> Result<bool> {
        let mut tx = self.startup_tx().await?;
        let live: i64 = sqlx::query("SELECT COUNT(*) FROM tokens WHERE kind = 'admin' AND revoked_at IS NULL")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if live > 0 {
            return Ok(false);
        }
        insert_token_on(&mut *tx, t).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn count_admin_tokens(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM tokens WHERE kind = 'admin' AND revoked_at IS NULL")
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn insert_probe_result(&self, r: &ProbeResult) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO probe_results (",
            probe_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&r.id)
        .bind(&r.project_id)
        .bind(&r.kind)
        .bind(r.at)
        .bind(i64::from(r.ok))
        .bind(r.duration_ms)
        .bind(&r.status)
        .bind(&r.message)
        .bind(&r.body)
        .bind(&r.error)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn latest_probe_results(&self, project_id: &str) -> Result<Vec<ProbeResult>> {
        let mut out = Vec::new();
        for kind in agent_os_core::manifest::ProbeKind::ALL {
            let row = sqlx::query(concat!(
                "SELECT ",
                probe_cols!(),
                " FROM probe_results WHERE project_id = $1 AND kind = $2 ORDER BY at DESC, id DESC LIMIT 1"
            ))
            .bind(project_id)
            .bind(kind)
            .fetch_optional(&self.read)
            .await?;
            if let Some(r) = row {
                out.push(probe_from(&r)?);
            }
        }
        Ok(out)
    }

    async fn probe_history(
        &self,
        project_id: &str,
        kinds: &[agent_os_core::manifest::ProbeKind],
        limit: i64,
    ) -> Result<Vec<ProbeResult>> {
        let mut out = Vec::new();
        for kind in kinds {
            let rows = sqlx::query(concat!(
                "SELECT ",
                probe_cols!(),
                " FROM probe_results WHERE project_id = $1 AND kind = $2 ORDER BY at DESC, id DESC LIMIT $3"
            ))
            .bind(project_id)
            .bind(*kind)
            .bind(limit.clamp(1, 1000))
            .fetch_all(&self.read)
            .await?;
            out.extend(all(rows, probe_from)?);
        }
        out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
        out.truncate(limit.clamp(1, 1000) as usize);
        Ok(out)
    }

    async fn insert_costs(&self, records: &[NewCost]) -> Result<(i64, i64)> {
        let mut tx = self.tx().await?;
        let mut accepted = 0;
        for c in records {
            let done = sqlx::query(concat!(
                "INSERT INTO cost_records (id, project_id, project, run_id, service, key_name, amount_nanos, currency, tokens_in, tokens_out, model, at, idempotency_key, source, metadata, created_at) ",
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (project, idempotency_key) DO NOTHING"
            ))
            .bind(&c.id)
            .bind(&c.project_id)
            .bind(&c.project)
            .bind(&c.run_id)
            .bind(&c.service)
            .bind(&c.key_name)
            .bind(c.amount_nanos)
            .bind(&c.currency)
            .bind(c.tokens_in)
            .bind(c.tokens_out)
            .bind(&c.model)
            .bind(c.at)
            .bind(&c.idempotency_key)
            .bind(&c.source)
            .bind(&c.metadata)
            .bind(c.created_at)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                continue;
            }
            accepted += 1;
            sqlx::query(concat!(
                "INSERT INTO cost_daily (project, service, day, currency, amount_nanos, records, tokens_in, tokens_out) ",
                "VALUES ($1, $2, $3, $4, $5, 1, $6, $7) ON CONFLICT (project, service, day, currency) DO UPDATE SET ",
                "amount_nanos = cost_daily.amount_nanos + excluded.amount_nanos, records = cost_daily.records + 1, ",
                "tokens_in = cost_daily.tokens_in + excluded.tokens_in, tokens_out = cost_daily.tokens_out + excluded.tokens_out"
            ))
            .bind(&c.project)
            .bind(&c.service)
            .bind(c.at.div_euclid(DAY_MS) * DAY_MS)
            .bind(&c.currency)
            .bind(c.amount_nanos)
            .bind(c.tokens_in.unwrap_or(0))
            .bind(c.tokens_out.unwrap_or(0))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((accepted, records.len() as i64 - accepted))
    }

    async fn cost_page(
        &self,
        project: Option<&str>,
        from: i64,
        to: i64,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<CostRecord>> {
        // Without a cursor the page starts at `from`; `id > ''` holds for every record.
        let (start, after_id) = match after {
            Some((at, id)) => (at.max(from), if at >= from { id } else { "" }),
            None => (from, ""),
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            cost_cols!(),
            " FROM cost_records WHERE ($1 IS NULL OR project = $1) AND at >= $2 AND at < $3 AND (at > $2 OR id > $4) ORDER BY at, id LIMIT $5"
        ))
        .bind(project)
        .bind(start)
        .bind(to)
        .bind(after_id)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.read)
        .await?;
        all(rows, cost_from)
    }

    async fn list_costs(&self, f: &CostFilter) -> Result<Vec<CostRecord>> {
        let conditions = [("project = ", &f.project), ("run_id = ", &f.run_id)];
        let (sql, args) =
            filtered(concat!("SELECT ", cost_cols!(), " FROM cost_records"), &conditions, "ORDER BY at DESC, id DESC");
        let mut q = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        let rows = q.bind(f.limit.clamp(1, 10_000)).fetch_all(&self.read).await?;
        all(rows, cost_from)
    }

    async fn cost_totals(&self, f: &CostTotalsFilter, by: CostGroup) -> Result<Vec<CostTotal>> {
        /// The UTC days wholly inside [from, to) and not before 1970, as [first, last); an empty
        /// range at `to` when there is none.
        fn whole_days(from: i64, to: i64) -> (i64, i64) {
            let day = i128::from(DAY_MS);
            let first = (i128::from(from.max(0)) + day - 1).div_euclid(day) * day;
            let last = i128::from(to).div_euclid(day) * day;
            if first < last { (first as i64, last as i64) } else { (to, to) }
        }
        // The records' own columns for each grouping; the daily rollup holds project, service
        // and day (and currency) only, so key and model are summed from the records.
        let (raw_group, daily_group) = match by {
            CostGroup::Project => ("project", Some("project")),
            CostGroup::Service => ("service", Some("service")),
            CostGroup::Key => ("COALESCE(key_name, '')", None),
            CostGroup::Model => ("COALESCE(model, '')", None),
            CostGroup::Day => ("CAST(at / 86400000 AS BIGINT) * 86400000", Some("day")),
        };
        let (from, to) = (f.from.unwrap_or(i64::MIN), f.to.unwrap_or(i64::MAX));
        // Whole UTC days inside [from, to) come from `cost_daily` (kept by `insert_costs` in the
        // same transaction as the records); the partial days at either edge, and anything before
        // 1970 (whose day the rollup and SQL's division round differently), from the records.
        // The parts are added up by the database, grouped and ordered as one scan would be.
        let (days_from, days_to) = match daily_group {
            Some(_) => whole_days(from, to),
            None => (to, to),
        };
        let raw = |range: &str| {
            format!(
                "SELECT {raw_group} AS g, currency AS c, SUM(amount_nanos) AS a, COUNT(*) AS n, SUM(COALESCE(tokens_in, 0)) AS ti, SUM(COALESCE(tokens_out, 0)) AS tx FROM cost_records WHERE {range} AND ($1 IS NULL OR project = $1) AND ($2 IS NULL OR service = $2) GROUP BY 1, 2"
            )
        };
        let mut parts = vec![raw("at >= $3 AND at < $5"), raw("at >= $6 AND at < $4")];
        if let Some(g) = daily_group {
            parts.push(format!(
                "SELECT {g} AS g, currency AS c, SUM(amount_nanos) AS a, SUM(records) AS n, SUM(tokens_in) AS ti, SUM(tokens_out) AS tx FROM cost_daily WHERE day >= $5 AND day < $6 AND ($1 IS NULL OR project = $1) AND ($2 IS NULL OR service = $2) GROUP BY 1, 2"
            ));
        }
        let sql = format!(
            "SELECT g, c, CAST(SUM(a) AS BIGINT), CAST(SUM(n) AS BIGINT), CAST(SUM(ti) AS BIGINT), CAST(SUM(tx) AS BIGINT) FROM ({}) parts GROUP BY g, c ORDER BY g, c",
            parts.join(" UNION ALL ")
        );
        let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql))
            .bind(&f.project)
            .bind(&f.service)
            .bind(from)
            .bind(to)
            .bind(days_from)
            .bind(days_to)
            .fetch_all(&self.read)
            .await?;
        all(rows, |r| {
            let group = match by {
                CostGroup::Day => r.try_get::<i64, _>(0)?.to_string(),
                _ => r.try_get(0)?,
            };
            Ok(CostTotal {
                group,
                currency: r.try_get(1)?,
                amount_nanos: r.try_get(2)?,
                records: r.try_get(3)?,
                tokens_in: r.try_get(4)?,
                tokens_out: r.try_get(5)?,
            })
        })
    }

    async fn upsert_budget(&self, b: &BudgetRecord) -> Result<BudgetRecord> {
        let mut tx = self.tx().await?;
        let existing =
            sqlx::query("SELECT id, created_at FROM budgets WHERE project = $1 AND service = $2 AND period = $3")
                .bind(&b.project)
                .bind(&b.service)
                .bind(&b.period)
                .fetch_optional(&mut *tx)
                .await?;
        let (id, created_at) = match existing {
            Some(r) => (r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?),
            None => (b.id.clone(), b.created_at),
        };
        sqlx::query("DELETE FROM budgets WHERE id = $1").bind(&id).execute(&mut *tx).await?;
        let stored = BudgetRecord { id, created_at, ..b.clone() };
        insert_budget(&mut tx, &stored).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn sync_config_budgets(&self, budgets: &[BudgetRecord]) -> Result<()> {
        let mut tx = self.startup_tx().await?;
        let kept: Vec<(String, String, String, Period)> =
            sqlx::query("SELECT id, project, service, period FROM budgets WHERE source = 'config'")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                .collect::<Result<_, sqlx::Error>>()?;
        sqlx::query("DELETE FROM budgets WHERE source = 'config'").execute(&mut *tx).await?;
        for b in budgets {
            // A budget that stays in the file keeps its id, and so its marks.
            let id = kept
                .iter()
                .find(|(_, p, s, per)| p == &b.project && s == &b.service && per == &b.period)
                .map_or_else(|| b.id.clone(), |k| k.0.clone());
            sqlx::query("DELETE FROM budgets WHERE project = $1 AND service = $2 AND period = $3")
                .bind(&b.project)
                .bind(&b.service)
                .bind(&b.period)
                .execute(&mut *tx)
                .await?;
            insert_budget(&mut tx, &BudgetRecord { id, ..b.clone() }).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_budgets(&self, project: Option<&str>) -> Result<Vec<BudgetRecord>> {
        let rows = sqlx::query("SELECT id, project, service, period, amount_nanos, currency, thresholds, on_exceed, source, created_at FROM budgets WHERE ($1 IS NULL OR project = $1) ORDER BY project, service, period")
            .bind(project)
            .fetch_all(&self.read)
            .await?;
        all(rows, |r| {
            let thresholds: String = r.try_get(6)?;
            Ok(BudgetRecord {
                id: r.try_get(0)?,
                project: r.try_get(1)?,
                service: r.try_get(2)?,
                period: r.try_get(3)?,
                amount_nanos: r.try_get(4)?,
                currency: r.try_get(5)?,
                thresholds: thresholds.split(',').filter_map(|t| t.trim().parse().ok()).collect(),
                on_exceed: r.try_get(7)?,
                source: r.try_get(8)?,
                created_at: r.try_get(9)?,
            })
        })
    }

    async fn delete_budget(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM budgets WHERE id = $1").bind(id).execute(&self.write).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn mark_budget(
        &self,
        budget_id: &str,
        period_start: i64,
        thresholds: &[i64],
        event: &NewEvent,
        pause: Option<&PauseRecord>,
    ) -> Result<bool> {
        let Some(highest) = thresholds.last() else { return Ok(false) };
        let mut tx = self.tx().await?;
        let mut highest_is_new = false;
        for threshold in thresholds {
            let marked = sqlx::query("INSERT INTO budget_marks (budget_id, period_start, threshold, at) VALUES ($1, $2, $3, $4) ON CONFLICT (budget_id, period_start, threshold) DO NOTHING")
                .bind(budget_id)
                .bind(period_start)
                .bind(threshold)
                .bind(event.at)
                .execute(&mut *tx)
                .await?;
            highest_is_new = threshold == highest && marked.rows_affected() == 1;
        }
        if !highest_is_new {
            // Lower thresholds newly marked (thresholds edited) are not news after a higher one.
            tx.commit().await?;
            return Ok(false);
        }
        insert_event(&mut tx, event).await?;
        if let Some(p) = pause {
            sqlx::query("INSERT INTO project_pauses (project, reason, budget_id, since, until) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project) DO UPDATE SET reason = excluded.reason, budget_id = excluded.budget_id, since = excluded.since, until = excluded.until")
                .bind(&p.project)
                .bind(&p.reason)
                .bind(&p.budget_id)
                .bind(p.since)
                .bind(p.until)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn get_pause(&self, project: &str) -> Result<Option<PauseRecord>> {
        let row = sqlx::query("SELECT project, reason, budget_id, since, until FROM project_pauses WHERE project = $1")
            .bind(project)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(pause_from).transpose()?)
    }

    async fn list_pauses(&self) -> Result<Vec<PauseRecord>> {
        let rows = sqlx::query("SELECT project, reason, budget_id, since, until FROM project_pauses ORDER BY project")
            .fetch_all(&self.read)
            .await?;
        all(rows, pause_from)
    }

    async fn clear_pause(&self, project: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM project_pauses WHERE project = $1").bind(project).execute(&self.write).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn find_recent_notification(
        &self,
        project: Option<&str>,
        dedup_key: &str,
        since: i64,
    ) -> Result<Option<NotificationRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            notification_cols!(),
            " FROM notifications WHERE ((project IS NULL AND $1 IS NULL) OR project = $1) AND dedup_key = $2 AND created_at >= $3 ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(project)
        .bind(dedup_key)
        .bind(since)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.as_ref().map(notification_from).transpose()?)
    }

    async fn insert_notification(
        &self,
        n: &NotificationRecord,
        planned: &[PlannedDelivery],
    ) -> Result<Vec<DeliveryRecord>> {
        let mut tx = self.tx().await?;
        sqlx::query(concat!(
            "INSERT INTO notifications (",
            notification_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&n.id)
        .bind(&n.project)
        .bind(&n.title)
        .bind(&n.body)
        .bind(&n.severity)
        .bind(n.tags.join("\n"))
        .bind(&n.dedup_key)
        .bind(n.created_at)
        .bind(&n.source)
        .bind(&n.incident_id)
        .bind(&n.suppressed)
        .execute(&mut *tx)
        .await?;
        let mut out = Vec::new();
        for p in planned {
            let d = DeliveryRecord {
                id: agent_os_core::id::new_id(),
                notification_id: n.id.clone(),
                channel: p.channel.clone(),
                status: if p.held.is_some() { DeliveryStatus::Held } else { DeliveryStatus::Pending },
                attempts: 0,
                next_at: p.held.as_ref().map_or(n.created_at, |(until, _)| *until),
                last_status: None,
                last_error: None,
                delivered_at: None,
                held: p.held.as_ref().map(|(_, why)| why.clone()),
            };
            sqlx::query("INSERT INTO deliveries (id, notification_id, channel, status, attempts, next_at, held) VALUES ($1, $2, $3, $4, 0, $5, $6)")
                .bind(&d.id)
                .bind(&d.notification_id)
                .bind(&d.channel)
                .bind(&d.status)
                .bind(d.next_at)
                .bind(&d.held)
                .execute(&mut *tx)
                .await?;
            out.push(d);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn channel_sends_since(&self, channel: &str, since: i64) -> Result<(i64, Option<i64>)> {
        let row = sqlx::query("SELECT COUNT(*), MIN(n.created_at) FROM deliveries d JOIN notifications n ON n.id = d.notification_id WHERE d.channel = $1 AND n.created_at > $2 AND d.held IS NULL")
            .bind(channel)
            .bind(since)
            .fetch_one(&self.read)
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    async fn list_notifications(&self, project: Option<&str>, limit: i64) -> Result<Vec<NotificationRecord>> {
        let project = project.map(str::to_string);
        let (sql, args) = filtered(
            concat!("SELECT ", notification_cols!(), " FROM notifications"),
            &[("project = ", &project)],
            "ORDER BY created_at DESC, id DESC",
        );
        let mut q = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        let rows = q.bind(limit.clamp(1, 1000)).fetch_all(&self.read).await?;
        all(rows, notification_from)
    }

    async fn get_notification(&self, id: &str) -> Result<Option<NotificationRecord>> {
        let row = sqlx::query(concat!("SELECT ", notification_cols!(), " FROM notifications WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(notification_from).transpose()?)
    }

    async fn list_deliveries(&self, notification_id: Option<&str>, limit: i64) -> Result<Vec<DeliveryRecord>> {
        let notification_id = notification_id.map(str::to_string);
        let (sql, args) = filtered(
            concat!("SELECT ", delivery_cols!(), " FROM deliveries"),
            &[("notification_id = ", &notification_id)],
            "ORDER BY id DESC",
        );
        let mut q = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        let rows = q.bind(limit.clamp(1, 1000)).fetch_all(&self.read).await?;
        all(rows, delivery_from)
    }

    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<DeliveryRecord>> {
        let mut tx = self.tx().await?;
        let claim = match self.backend {
            Backend::Sqlite => concat!(
                "UPDATE deliveries SET attempts = attempts + 1, claimed_until = $2 WHERE id IN (SELECT id FROM deliveries WHERE status IN ('pending', 'held') AND next_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1) ORDER BY next_at, id LIMIT $3) RETURNING ",
                delivery_cols!()
            ),
            Backend::Postgres => concat!(
                "UPDATE deliveries SET attempts = attempts + 1, claimed_until = $2 WHERE id IN (SELECT id FROM deliveries WHERE status IN ('pending', 'held') AND next_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1) ORDER BY next_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING ",
                delivery_cols!()
            ),
        };
        let rows = sqlx::query(claim).bind(now).bind(lease_until).bind(limit).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        all(rows, delivery_from)
    }

    async fn finish_delivery(&self, o: &DeliveryOutcome) -> Result<()> {
        sqlx::query("UPDATE deliveries SET status = $2, next_at = $3, last_status = $4, last_error = $5, delivered_at = $6, claimed_until = NULL WHERE id = $1")
            .bind(&o.id)
            .bind(&o.status)
            .bind(o.next_at)
            .bind(o.last_status)
            .bind(&o.last_error)
            .bind(o.delivered_at)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn release_deliveries(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE deliveries SET claimed_until = NULL WHERE status IN ('pending', 'held') AND claimed_until IS NOT NULL",
        )
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    async fn next_delivery_due(&self, now: i64) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until > $1 THEN claimed_until ELSE next_at END) FROM deliveries WHERE status IN ('pending', 'held')")
            .bind(now)
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    async fn emit_events(&self, events: &[(NewEvent, Option<String>)]) -> Result<Vec<(EventRecord, bool)>> {
        self.wf_emit_events(events).await
    }

    async fn unrouted_events(&self, limit: i64) -> Result<Vec<EventRecord>> {
        self.wf_unrouted_events(limit).await
    }

    async fn mark_routed(&self, ids: &[String], at: i64) -> Result<()> {
        self.wf_mark_routed(ids, at).await
    }

    async fn events_since(&self, since: i64, type_prefix: Option<&str>, limit: i64) -> Result<Vec<EventRecord>> {
        self.wf_events_since(since, type_prefix, limit).await
    }

    async fn insert_workflow_run(&self, r: &WorkflowRunRecord) -> Result<(WorkflowRunRecord, bool)> {
        self.wf_insert_run(r).await
    }

    async fn get_workflow_run(&self, id: &str) -> Result<Option<WorkflowRunRecord>> {
        self.wf_get_run(id).await
    }

    async fn list_workflow_runs(
        &self,
        workflow: Option<&str>,
        active_only: bool,
        limit: i64,
    ) -> Result<Vec<WorkflowRunRecord>> {
        self.wf_list_runs(workflow, active_only, limit).await
    }

    async fn update_workflow_run(&self, r: &WorkflowRunRecord) -> Result<bool> {
        self.wf_update_run(r).await
    }

    async fn workflow_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        self.wf_steps(run_id).await
    }

    async fn put_steps(&self, steps: &[StepRecord]) -> Result<()> {
        self.wf_put_steps(steps).await
    }

    async fn start_step_task(&self, step: &StepRecord, run: &NewRun) -> Result<RunRecord> {
        self.wf_start_step_task(step, run).await
    }

    async fn raise_incident(
        &self,
        new: &IncidentRecord,
        reopen_since: i64,
        flap_changes: i64,
    ) -> Result<IncidentChange> {
        for _ in 0..2 {
            let mut tx = self.tx().await?;
            let open = sqlx::query(concat!(
                "SELECT ",
                incident_cols!(),
                " FROM incidents WHERE source = $1 AND subject = $2 AND status = 'open'"
            ))
            .bind(&new.source)
            .bind(&new.subject)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = open {
                let mut inc = incident_from(&row)?;
                let escalated = new.severity > inc.severity;
                if escalated {
                    inc.severity = new.severity;
                }
                inc.reason = new.reason.clone();
                inc.title = new.title.clone();
                inc.updated_at = new.updated_at;
                sqlx::query(
                    "UPDATE incidents SET severity = $2, reason = $3, updated_at = $4, title = $5 WHERE id = $1",
                )
                .bind(&inc.id)
                .bind(&inc.severity)
                .bind(&inc.reason)
                .bind(inc.updated_at)
                .bind(&inc.title)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(IncidentChange::Updated { incident: inc, escalated });
            }
            let recent = sqlx::query(concat!(
                "SELECT ",
                incident_cols!(),
                " FROM incidents WHERE source = $1 AND subject = $2 AND status = 'resolved' AND resolved_at >= $3 ORDER BY resolved_at DESC LIMIT 1"
            ))
            .bind(&new.source)
            .bind(&new.subject)
            .bind(reopen_since)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = recent {
                let mut inc = incident_from(&row)?;
                inc.status = IncidentStatus::Open;
                inc.resolved_at = None;
                inc.acked_at = None;
                inc.acked_by = None;
                inc.changes += 1;
                inc.flapping = inc.flapping || inc.changes >= flap_changes;
                inc.severity = new.severity;
                inc.title = new.title.clone();
                inc.reason = new.reason.clone();
                inc.updated_at = new.updated_at;
                inc.opened_at = new.opened_at;
                let done = sqlx::query("UPDATE incidents SET status = 'open', resolved_at = NULL, acked_at = NULL, acked_by = NULL, changes = $2, flapping = $3, severity = $4, title = $5, reason = $6, updated_at = $7, opened_at = $7 WHERE id = $1")
                    .bind(&inc.id)
                    .bind(inc.changes)
                    .bind(i64::from(inc.flapping))
                    .bind(&inc.severity)
                    .bind(&inc.title)
                    .bind(&inc.reason)
                    .bind(inc.updated_at)
                    .execute(&mut *tx)
                    .await;
                match done {
                    Ok(_) => {
                        tx.commit().await?;
                        return Ok(IncidentChange::Reopened(inc));
                    }
                    // Another node opened one meanwhile: look again.
                    Err(e) if is_unique_violation(&e) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let done = sqlx::query(concat!(
                "INSERT INTO incidents (",
                incident_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, NULL, NULL, NULL, 1, 0, 0, $9)"
            ))
            .bind(&new.id)
            .bind(&new.source)
            .bind(&new.subject)
            .bind(&new.project)
            .bind(&new.severity)
            .bind(&new.title)
            .bind(&new.reason)
            .bind(new.opened_at)
            .bind(new.updated_at)
            .execute(&mut *tx)
            .await;
            match done {
                Ok(_) => {
                    tx.commit().await?;
                    let mut inc = new.clone();
                    inc.status = IncidentStatus::Open;
                    inc.changes = 1;
                    return Ok(IncidentChange::Opened(inc));
                }
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(format!("incident {}/{} kept changing while it was raised", new.source, new.subject)))
    }

    async fn resolve_incident(
        &self,
        source: agent_os_core::alerting::IncidentSource,
        subject: &str,
        reason: &str,
        at: i64,
    ) -> Result<Option<IncidentRecord>> {
        let row = sqlx::query(concat!(
            "UPDATE incidents SET status = 'resolved', resolved_at = $3, reason = $4, changes = changes + 1, updated_at = $3 WHERE source = $1 AND subject = $2 AND status = 'open' RETURNING ",
            incident_cols!()
        ))
        .bind(source)
        .bind(subject)
        .bind(at)
        .bind(reason)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.as_ref().map(incident_from).transpose()?)
    }

    async fn ack_incident(&self, id: &str, by: &str, at: i64) -> Result<Option<IncidentRecord>> {
        sqlx::query(
            "UPDATE incidents SET acked_at = $2, acked_by = $3, updated_at = $2 WHERE id = $1 AND acked_at IS NULL",
        )
        .bind(id)
        .bind(at)
        .bind(by)
        .execute(&self.write)
        .await?;
        self.get_incident(id).await
    }

    async fn get_incident(&self, id: &str) -> Result<Option<IncidentRecord>> {
        let row = sqlx::query(concat!("SELECT ", incident_cols!(), " FROM incidents WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(incident_from).transpose()?)
    }

    async fn list_incidents(&self, open_only: bool, project: Option<&str>, limit: i64) -> Result<Vec<IncidentRecord>> {
        // The open ones in a statement of their own, which the partial index of open incidents
        // serves however many resolved ones have piled up (`($1 = 0 OR status = 'open')` would
        // read them all).
        let sql = if open_only {
            concat!(
                "SELECT ",
                incident_cols!(),
                " FROM incidents WHERE status = 'open' AND ($1 IS NULL OR project = $1) ORDER BY opened_at DESC, id DESC LIMIT $2"
            )
        } else {
            concat!(
                "SELECT ",
                incident_cols!(),
                " FROM incidents WHERE ($1 IS NULL OR project = $1) ORDER BY opened_at DESC, id DESC LIMIT $2"
            )
        };
        let rows = sqlx::query(sql).bind(project).bind(limit.clamp(1, 1000)).fetch_all(&self.read).await?;
        all(rows, incident_from)
    }

    async fn set_incident_notified(&self, id: &str, notified: bool) -> Result<()> {
        sqlx::query("UPDATE incidents SET notified = $2 WHERE id = $1")
            .bind(id)
            .bind(i64::from(notified))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn incident_channels(&self, incident_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT d.channel FROM deliveries d JOIN notifications n ON n.id = d.notification_id WHERE n.incident_id = $1 ORDER BY d.channel")
            .bind(incident_id)
            .fetch_all(&self.read)
            .await?;
        all(rows, |r| r.try_get(0))
    }

    async fn insert_maintenance(&self, m: &MaintenanceRecord) -> Result<()> {
        sqlx::query("INSERT INTO maintenance_windows (id, project, starts_at, ends_at, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&m.id)
            .bind(&m.project)
            .bind(m.starts_at)
            .bind(m.ends_at)
            .bind(&m.reason)
            .bind(m.created_at)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn list_maintenance(&self, now: i64) -> Result<Vec<MaintenanceRecord>> {
        let rows = sqlx::query("SELECT id, project, starts_at, ends_at, reason, created_at FROM maintenance_windows WHERE ends_at > $1 ORDER BY starts_at, id")
            .bind(now)
            .fetch_all(&self.read)
            .await?;
        all(rows, maintenance_from)
    }

    async fn end_maintenance(&self, id: &str, at: i64) -> Result<Option<MaintenanceRecord>> {
        let row = sqlx::query("UPDATE maintenance_windows SET ends_at = CASE WHEN ends_at > $2 THEN $2 ELSE ends_at END WHERE id = $1 RETURNING id, project, starts_at, ends_at, reason, created_at")
            .bind(id)
            .bind(at)
            .fetch_optional(&self.write)
            .await?;
        Ok(row.as_ref().map(maintenance_from).transpose()?)
    }

    async fn insert_event(&self, e: &NewEvent) -> Result<()> {
        let mut tx = self.tx().await?;
        insert_event(&mut tx, e).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn fire_slots(&self, fires: &[SlotFire], now: i64) -> Result<Vec<bool>> {
        let mut tx = self.tx().await?;
        let mut claimed = Vec::with_capacity(fires.len());
        for f in fires {
            claimed.push(write_slot(&mut tx, f, now).await?);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn last_schedule_run(&self, key: &str) -> Result<Option<(String, agent_os_core::run::RunStatus)>> {
        let row = sqlx::query("SELECT r.id, r.status FROM schedule_slots s JOIN runs r ON r.id = s.run_id WHERE s.schedule_key = $1 ORDER BY s.slot DESC LIMIT 1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
            None => None,
        })
    }

    async fn schedule_states(&self) -> Result<Vec<ScheduleState>> {
        let rows = sqlx::query(
            "SELECT st.schedule_key, st.last_slot, st.paused, st.paused_at, sl.slot, r.id, r.status, r.started_at, r.finished_at FROM schedule_state st \
             LEFT JOIN schedule_slots sl ON sl.schedule_key = st.schedule_key AND sl.slot = (SELECT MAX(x.slot) FROM schedule_slots x WHERE x.schedule_key = st.schedule_key AND x.run_id IS NOT NULL) \
             LEFT JOIN runs r ON r.id = sl.run_id",
        )
        .fetch_all(&self.read)
        .await?;
        all(rows, |r| {
            let run_id: Option<String> = r.try_get(5)?;
            Ok(ScheduleState {
                key: r.try_get(0)?,
                last_slot: r.try_get(1)?,
                paused: r.try_get::<i64, _>(2)? != 0,
                paused_at: r.try_get(3)?,
                last_run: match run_id {
                    Some(run_id) => Some(SlotRun {
                        slot: r.try_get(4)?,
                        run_id,
                        status: r.try_get(6)?,
                        started_at: r.try_get(7)?,
                        finished_at: r.try_get(8)?,
                    }),
                    None => None,
                },
            })
        })
    }

    async fn init_schedules(&self, keys: &[String], slot: i64) -> Result<()> {
        let mut tx = self.tx().await?;
        for key in keys {
            sqlx::query("INSERT INTO schedule_state (schedule_key, last_slot) VALUES ($1, $2) ON CONFLICT (schedule_key) DO NOTHING")
                .bind(key)
                .bind(slot)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_schedule_paused(&self, key: &str, paused: bool, now: i64) -> Result<()> {
        let sql = if paused {
            "INSERT INTO schedule_state (schedule_key, last_slot, paused, paused_at) VALUES ($1, $2, 1, $2) ON CONFLICT (schedule_key) DO UPDATE SET paused = 1, paused_at = excluded.paused_at"
        } else {
            // Slots that passed while paused are not caught up: counting starts again now.
            "INSERT INTO schedule_state (schedule_key, last_slot, paused) VALUES ($1, $2, 0) ON CONFLICT (schedule_key) DO UPDATE SET paused = 0, paused_at = NULL, last_slot = CASE WHEN schedule_state.last_slot > excluded.last_slot THEN schedule_state.last_slot ELSE excluded.last_slot END"
        };
        sqlx::query(sql).bind(key).bind(now).execute(&self.write).await?;
        Ok(())
    }

    async fn add_discovered_schedules(&self, project_id: &str, schedules: &[NewSchedule]) -> Result<()> {
        let mut tx = self.tx().await?;
        for s in schedules {
            sqlx::query("DELETE FROM schedules WHERE project_id = $1 AND source = 'discovered' AND task = $2")
                .bind(project_id)
                .bind(&s.task)
                .execute(&mut *tx)
                .await?;
            insert_schedule(&mut tx, project_id, s, 1_000_000).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn remove_discovered_schedule(&self, project_id: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM schedules WHERE project_id = $1 AND source = 'discovered' AND task = $2")
            .bind(project_id)
            .bind(name)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn ensure_ping_key(&self, project_id: &str, candidate: &str) -> Result<String> {
        sqlx::query("UPDATE projects SET ping_key = $2 WHERE id = $1 AND ping_key IS NULL")
            .bind(project_id)
            .bind(candidate)
            .execute(&self.write)
            .await?;
        let row = sqlx::query("SELECT ping_key FROM projects WHERE id = $1")
            .bind(project_id)
            .fetch_optional(&self.write)
            .await?;
        row.and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
            .ok_or_else(|| StoreError::NotFound(format!("project {project_id:?}")))
    }

    async fn sync_checks(&self, project_id: &str, checks: &[NewCheck], now: i64) -> Result<()> {
        let mut tx = self.tx().await?;
        let existing =
            sqlx::query("SELECT slug FROM checks WHERE project_id = $1").bind(project_id).fetch_all(&mut *tx).await?;
        for row in &existing {
            let slug: String = row.try_get(0)?;
            if !checks.iter().any(|c| c.slug == slug) {
                sqlx::query("DELETE FROM checks WHERE project_id = $1 AND slug = $2")
                    .bind(project_id)
                    .bind(&slug)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for c in checks {
            sqlx::query(
                "INSERT INTO checks (id, project_id, slug, kind, period_ms, cron, timezone, grace_ms, description, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (project_id, slug) DO UPDATE SET kind = excluded.kind, period_ms = excluded.period_ms, cron = excluded.cron, timezone = excluded.timezone, grace_ms = excluded.grace_ms, description = excluded.description",
            )
            .bind(agent_os_core::id::new_id())
            .bind(project_id)
            .bind(&c.slug)
            .bind(&c.kind)
            .bind(c.period_ms)
            .bind(&c.cron)
            .bind(&c.timezone)
            .bind(c.grace_ms)
            .bind(&c.description)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_checks(&self, project: Option<&str>) -> Result<Vec<CheckRecord>> {
        let rows = sqlx::query(concat!("SELECT ", check_cols!(), " FROM checks c JOIN projects p ON p.id = c.project_id WHERE ($1 IS NULL OR p.name = $1) ORDER BY p.name, c.slug"))
            .bind(project)
            .fetch_all(&self.read)
            .await?;
        all(rows, check_from)
    }

    async fn get_check(&self, id: &str) -> Result<Option<CheckRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            check_cols!(),
            " FROM checks c JOIN projects p ON p.id = c.project_id WHERE c.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(check_from).transpose()?)
    }

    async fn find_check_by_slug(&self, ping_key: &str, slug: &str) -> Result<Option<CheckRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            check_cols!(),
            " FROM checks c JOIN projects p ON p.id = c.project_id WHERE p.ping_key = $1 AND c.slug = $2"
        ))
        .bind(ping_key)
        .bind(slug)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(check_from).transpose()?)
    }

    async fn start_ping_at(&self, check_id: &str, rid: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MAX(at) FROM pings WHERE check_id = $1 AND rid = $2 AND kind = 'start'")
            .bind(check_id)
            .bind(rid)
            .fetch_one(&self.write)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    async fn record_pings(&self, pings: &[PingUpdate]) -> Result<()> {
        let mut tx = self.tx().await?;
        // A group (often of one): the ping rows in multi-row inserts, then each check's row once (its last
        // ping's fields; each ping was computed from the row as it was before the group), then
        // the events. A few statements instead of two per ping.
        for chunk in pings.chunks(PING_ROWS_PER_INSERT) {
            let mut sql =
                String::from("INSERT INTO pings (id, check_id, at, kind, rid, duration_ms, body, remote) VALUES ");
            for i in 0..chunk.len() {
                let b = i * 8;
                if i > 0 {
                    sql.push_str(", ");
                }
                let params: Vec<String> = (1..=8).map(|k| format!("${}", b + k)).collect();
                sql.push_str(&format!("({})", params.join(", ")));
            }
            // Only numbered placeholders go into the text; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for p in chunk {
                q = q
                    .bind(&p.id)
                    .bind(&p.check_id)
                    .bind(p.at)
                    .bind(&p.kind)
                    .bind(&p.rid)
                    .bind(p.duration_ms)
                    .bind(&p.body)
                    .bind(&p.remote);
            }
            q.execute(&mut *tx).await?;
        }
        let mut checks: Vec<&str> = Vec::new();
        for p in pings {
            if !checks.contains(&p.check_id.as_str()) {
                checks.push(&p.check_id);
            }
        }
        for check in checks {
            let group: Vec<&PingUpdate> = pings.iter().filter(|p| p.check_id == check).collect();
            let duration = group.iter().rev().find_map(|p| p.duration_ms);
            update_check_after_ping(&mut tx, group[group.len() - 1], duration).await?;
        }
        for e in pings.iter().filter_map(|p| p.event.as_ref()) {
            insert_event(&mut tx, e).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_check_state(
        &self,
        check_id: &str,
        state: agent_os_core::check::CheckState,
        event: &NewEvent,
    ) -> Result<bool> {
        let mut tx = self.tx().await?;
        let changed = sqlx::query("UPDATE checks SET state = $2, state_changed_at = $3 WHERE id = $1 AND state <> $2")
            .bind(check_id)
            .bind(state)
            .bind(event.at)
            .execute(&mut *tx)
            .await?;
        if changed.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_events(
        &self,
        kind_prefix: Option<&str>,
        project: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventRecord>> {
        let cursor = match before {
            None => None,
            Some(id) => {
                let row =
                    sqlx::query("SELECT at FROM events WHERE id = $1").bind(id).fetch_optional(&self.read).await?;
                match row {
                    Some(r) => Some((r.try_get::<i64, _>(0)?, id)),
                    None => return Ok(Vec::new()),
                }
            }
        };
        // Only the filters given are written, so each combination reads from its index (see
        // `filtered`). The type prefix is exact and case-sensitive, which `LIKE` (case-insensitive,
        // with `_` and `%` as wildcards) was not; on SQLite it is a range an index can serve.
        let prefix = kind_prefix.filter(|p| !p.is_empty());
        let mut sql = String::from("SELECT id, type, project, subject, data, at FROM events WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        // SQLite compares text byte by byte, so the range is exact there; PostgreSQL's collation
        // may not be, so it compares the type's start instead.
        let range = self.backend == Backend::Sqlite;
        if prefix.is_some() {
            if range {
                sql.push_str(&format!(" AND type >= ${} AND type < ${}", next(), next()));
            } else {
                let k = next();
                sql.push_str(&format!(" AND left(type, length(${k})) = ${k}"));
            }
        }
        if project.is_some() {
            sql.push_str(&format!(" AND project = ${}", next()));
        }
        if cursor.is_some() {
            // After the cursor event in (at, id) order; `at <= cursor` on its own lets the index
            // start the scan at the cursor instead of walking every newer event.
            let (a, b, c) = (next(), next(), next());
            sql.push_str(&format!(" AND at <= ${a} AND (at < ${b} OR id < ${c})"));
        }
        sql.push_str(&format!(" ORDER BY at DESC, id DESC LIMIT ${}", next()));
        let mut q = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        if let Some(p) = prefix {
            q = q.bind(p.to_string());
            if range {
                q = q.bind(format!("{p}\u{10FFFF}"));
            }
        }
        if let Some(p) = project {
            q = q.bind(p.to_string());
        }
        if let Some((at, id)) = cursor {
            q = q.bind(at).bind(at).bind(id.to_string());
        }
        let q = q.bind(limit.clamp(1, 1000));
        let rows = q.fetch_all(&self.read).await?;
        all(rows, crate::workflows::event_from)
    }

    async fn upsert_node(&self, n: &NodeRecord) -> Result<()> {
        sqlx::query("INSERT INTO nodes (id, hostname, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at")
            .bind(&n.id)
            .bind(&n.hostname)
            .bind(n.pid)
            .bind(n.started_at)
            .bind(n.heartbeat_at)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn get_node(&self, id: &str) -> Result<Option<NodeRecord>> {
        let row = sqlx::query("SELECT id, hostname, pid, started_at, heartbeat_at FROM nodes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            Ok(NodeRecord {
                id: r.try_get(0)?,
                hostname: r.try_get(1)?,
                pid: r.try_get(2)?,
                started_at: r.try_get(3)?,
                heartbeat_at: r.try_get(4)?,
            })
        })
        .transpose()
    }

    async fn insert_session(&self, s: &SessionRecord) -> Result<()> {
        self.sess_insert(s).await
    }

    async fn find_session(&self, id: &str, now: i64) -> Result<Option<SessionRecord>> {
        self.sess_find(id, now).await
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        self.sess_delete(id).await
    }

    async fn delete_sessions(&self, via: Option<agent_os_core::token::LoginVia>) -> Result<u64> {
        self.sess_delete_via(via).await
    }

    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1").bind(key).fetch_optional(&self.read).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.write)
            .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1").bind(key).fetch_one(&self.write).await?;
        Ok(row.try_get(0)?)
    }

    async fn close(&self) {
        SqlStore::close(self).await
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(sqlite_url(Path::new("/a b/x?.db")), "sqlite:///a%20b/x%3F.db?mode=rwc");
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert!(backend_of("mysql://x").is_err());
        assert_eq!(tail_bytes("héllo", 4), "llo");
    }
}
