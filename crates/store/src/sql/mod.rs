//! [`SqlStore`]: the store on SQLite or PostgreSQL through sqlx's `Any` driver, one module per
//! aggregate, each with its trait and that trait's implementation.
//!
//! SQLite runs in WAL mode with one writer connection (writes are serialised in-process, and
//! every write transaction starts with `BEGIN IMMEDIATE` so it never has to upgrade a read lock)
//! and a few reader connections. PostgreSQL uses one pool and row locks (`FOR UPDATE SKIP
//! LOCKED`) so several nodes can claim runs from the same queue.
//!
//! Every statement is written once, with `$N` placeholders (both engines accept them); where
//! the dialects differ, the one statement takes the dialect's piece from [`Backend`]. Rows are
//! read by column name.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

use crate::{Database, Result, StoreError};

/// The columns of a run, as `RunRecord` reads them.
macro_rules! run_columns {
    () => {
        "id, project_id, project, task, status, input, outputs, attempt, max_attempts, exit_code, error, trigger,
         cancel_requested, queued_at, not_before, started_at, finished_at, log_bytes, log_dropped, concurrency_key,
         scheduled_for, resources, priority, logs_pruned_at"
    };
}

/// The columns of an attempt, as `AttemptRecord` reads them.
macro_rules! attempt_columns {
    () => {
        "run_id, attempt, status, node_id, pid, proc_start, started_at, finished_at, exit_code, error, worker_id,
         seen_at, worker_seq"
    };
}

/// A queued run `q` that no run of its concurrency key holds back: none of the key is running,
/// and none queued before it (by `not_before`, then id) still waits. "One at a time, oldest
/// first" per key, decided in the claim's own statement.
macro_rules! first_of_its_key {
    () => {
        "(q.concurrency_key IS NULL OR NOT EXISTS (
             SELECT 1 FROM runs o
             WHERE o.concurrency_key = q.concurrency_key AND o.id <> q.id
               AND (o.status = 'running'
                    OR (o.status = 'queued'
                        AND (o.not_before < q.not_before OR (o.not_before = q.not_before AND o.id < q.id))))))"
    };
}

mod auto_vacuum;
mod budgets;
mod checks;
mod costs;
mod events;
mod incidents;
mod notifications;
mod projects;
mod resources;
mod retention;
mod runs;
mod schedules;
mod settings;
mod tokens;
mod wal;
mod workers;
mod workflows;

pub use budgets::BudgetStore;
pub use checks::CheckStore;
pub use costs::CostStore;
pub use events::EventStore;
pub use incidents::IncidentStore;
pub use notifications::NotificationStore;
pub use projects::ProjectStore;
pub use resources::ResourceStore;
pub use retention::RetentionStore;
pub use runs::RunStore;
pub use schedules::ScheduleStore;
pub use settings::SettingStore;
pub use tokens::TokenStore;
pub use wal::WAL_LIMIT_BYTES;
pub use workers::WorkerStore;
pub use workflows::WorkflowStore;

/// A write transaction.
pub(crate) type Tx = Transaction<'static, Any>;

/// Whose queued runs a claim (or a look at the queue) is about: the server's own nodes', or
/// those of the worker projects a worker serves. A run of a worker project is only ever a
/// worker's to run, and a worker runs nothing else.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Claimer<'a> {
    /// A node of the server: runs of every project but worker projects.
    Node,
    /// A worker: runs of these worker projects (by name).
    Worker(&'a [String]),
}

impl<'a> Claimer<'a> {
    /// The condition on a queued run `q`, with the placeholders of the worker's project names
    /// numbered from `$first` (bind them with [`Claimer::names`], in order).
    pub(crate) fn condition(self, first: usize) -> String {
        match self {
            Claimer::Node => "q.project_id NOT IN (SELECT wp.id FROM projects wp WHERE wp.transport = 'worker')".into(),
            Claimer::Worker(names) => {
                let params: Vec<String> = (0..names.len().max(1)).map(|i| format!("${}", first + i)).collect();
                format!(
                    "q.project_id IN (SELECT wp.id FROM projects wp WHERE wp.transport = 'worker' AND wp.name IN ({}))",
                    params.join(", ")
                )
            }
        }
    }

    /// The values of the condition's placeholders: the worker's project names (one that matches
    /// nothing when it serves none, so the statement stays valid).
    pub(crate) fn names(self) -> Vec<&'a str> {
        match self {
            Claimer::Node => Vec::new(),
            Claimer::Worker([]) => vec![""],
            Claimer::Worker(names) => names.iter().map(String::as_str).collect(),
        }
    }
}

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

    /// What a claim's inner `SELECT` ends with. On PostgreSQL, rows another node is claiming
    /// are passed over rather than waited for, so nodes claim different rows at once; SQLite's
    /// one writer makes claims take turns anyway.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }

    /// What a read that must hold its row until the commit ends with: PostgreSQL locks it, so
    /// a second writer of the same row waits; SQLite's one writer already does.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE",
        }
    }

    /// How a write transaction starts: SQLite takes the write lock at once, so a transaction
    /// never has to upgrade a read lock (which could fail as busy) halfway.
    pub(crate) fn begin(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
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
    /// How long a query waits for a free connection before it fails: 30 s. Tests that move a
    /// paused tokio clock on by more than that (`agent_os_engine::testing`) make it longer,
    /// since a query waiting while they do would otherwise fail at once.
    pub acquire_timeout: Duration,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            durability: Durability::Normal,
            max_connections: 8,
            wal_limit_bytes: WAL_LIMIT_BYTES,
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

/// The SQLite URL for a database file (created if missing).
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", sqlite_path(path))
}

/// A file path as an SQLite URL's path: the characters a URL would read otherwise escaped.
pub(crate) fn sqlite_path(path: &Path) -> String {
    let mut encoded = String::new();
    for ch in path.to_string_lossy().chars() {
        match ch {
            '%' | '?' | '#' | ' ' => encoded.push_str(&format!("%{:02X}", ch as u32)),
            c => encoded.push(c),
        }
    }
    encoded
}

/// Single-statement writes run in autocommit mode on the writer: one statement is atomic by
/// itself, and skipping BEGIN/COMMIT saves two round trips to SQLite's connection thread.
pub struct SqlStore {
    backend: Backend,
    /// The URL the store was opened with, for the advice a PostgreSQL backup gets (redacted
    /// when shown).
    url: String,
    pub(crate) write: AnyPool,
    pub(crate) read: AnyPool,
    /// SQLite's WAL keeper task, kept so that closing the store stops it before the last
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
                        .acquire_timeout(opts.acquire_timeout)
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
                auto_vacuum::prepare(&write).await?;
                // WAL is a property of the file; set it once through the writer.
                sqlx::query("PRAGMA journal_mode = WAL").fetch_all(&write).await?;
                let read = pool(opts.max_connections.clamp(1, 4)).connect_with(connect).await?;
                let wal = wal::wal_path(&write).await?;
                let keeper = tokio::spawn(wal::wal_keeper(write.clone(), read.clone(), wal, opts.wal_limit_bytes));
                SqlStore {
                    backend,
                    url: opts.url.clone(),
                    write,
                    read,
                    wal_keeper: std::sync::Mutex::new(Some(keeper)),
                }
            }
            Backend::Postgres => {
                // Keep a few connections open: opening one (with TLS negotiation) takes ~100 ms.
                let pool = AnyPoolOptions::new()
                    .max_connections(opts.max_connections.max(2))
                    .min_connections(opts.max_connections.max(2))
                    .idle_timeout(None)
                    .acquire_timeout(opts.acquire_timeout)
                    .connect_with(connect)
                    .await?;
                SqlStore {
                    backend,
                    url: opts.url.clone(),
                    write: pool.clone(),
                    read: pool,
                    wal_keeper: std::sync::Mutex::new(None),
                }
            }
        };
        crate::migrate::run(&store.write, backend, now).await?;
        Ok(store)
    }

    pub(crate) async fn tx(&self) -> Result<Tx> {
        Ok(self.write.begin_with(self.backend.begin()).await?)
    }

    /// A write transaction for what every node does once as it starts (the admin token, the
    /// budgets of `config.yaml`): on PostgreSQL, nodes starting together take turns (an advisory
    /// lock held to the commit), so each sees what the one before it wrote instead of racing
    /// it to the same insert. SQLite's single writer already makes them take turns.
    pub(crate) async fn startup_tx(&self) -> Result<Tx> {
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
            if let Err(e) = wal::truncate_at_close(&self.write).await {
                tracing::warn!(error = %e, "the WAL could not be truncated at shutdown");
            }
        }
        self.write.close().await;
        self.read.close().await;
    }
}

#[async_trait]
impl Database for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn close(&self) {
        SqlStore::close(self).await
    }

    async fn snapshot(&self, dest: &Path) -> Result<()> {
        match self.backend {
            Backend::Postgres => Err(StoreError::Unsupported(crate::backup::postgres_advice(&self.url))),
            Backend::Sqlite => {
                let mut conn = self.read.acquire().await?;
                crate::backup::vacuum_into(&mut conn, dest).await
            }
        }
    }
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Every row read into a record.
pub(crate) fn all<T>(rows: Vec<AnyRow>, f: impl Fn(&AnyRow) -> Result<T, sqlx::Error>) -> Result<Vec<T>> {
    rows.iter().map(|r| f(r).map_err(StoreError::from)).collect()
}

/// A yes/no column, stored as 0 or 1 on both engines.
pub(crate) fn flag(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

/// Resource names as stored: space-separated, `NULL` for none.
pub(crate) fn split_names(text: Option<&str>) -> Vec<String> {
    text.map(|t| t.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
}

pub(crate) fn join_names(names: &[String]) -> Option<String> {
    (!names.is_empty()).then(|| names.join(" "))
}

/// `select` with a condition for each filter that is given (`column op $n`, the values to bind
/// in order), then `order` and `LIMIT $last`. Leaving out the filters not given, rather than
/// writing `($1 IS NULL OR column = $1)`, lets the planner use the index each combination has:
/// SQLite cannot see through such an `OR`, and a rare status would then scan every row.
pub(crate) fn filtered<'a>(
    select: &str,
    conditions: &[(&str, &'a Option<String>)],
    order: &str,
) -> (String, Vec<&'a str>) {
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

/// Runs a statement built by [`filtered`] on the reader, binding its values and the limit.
pub(crate) async fn fetch_filtered(
    pool: &AnyPool,
    (sql, args): (String, Vec<&str>),
    limit: i64,
) -> Result<Vec<AnyRow>> {
    let mut q = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
    for a in args {
        q = q.bind(a);
    }
    Ok(q.bind(limit).fetch_all(pool).await?)
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
    }

    #[test]
    fn filters_write_only_the_conditions_given() {
        let (project, status) = (Some("trading".to_string()), None);
        let (sql, args) =
            filtered("SELECT id FROM runs", &[("project = ", &project), ("status = ", &status)], "ORDER BY id");
        assert_eq!(sql, "SELECT id FROM runs WHERE project = $1 ORDER BY id LIMIT $2");
        assert_eq!(args, ["trading"]);
    }
}
