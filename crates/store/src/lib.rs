//! Agent OS storage: the [`Store`] every other layer uses, and its implementation on SQLite
//! (the embedded default) and PostgreSQL (for several nodes).
//!
//! The store is split by aggregate: each has its own trait ([`RunStore`], [`ProjectStore`],
//! [`ScheduleStore`], …) in its own module under `sql/`, and [`Store`] is all of them at once,
//! so the engine and the server hold one `Arc<dyn Store>`. Both backends share one
//! implementation, [`SqlStore`], built on sqlx's `Any` driver: each statement is written once
//! with `$N` placeholders (both engines accept them), and where the dialects differ (claiming
//! rows, starting a write transaction) it takes the dialect's piece from [`Backend`]. Each
//! backend has its own migrations directory, applied by sqlx's migrator; released migrations
//! are never edited. The store never reads the clock (callers pass `now`, milliseconds since
//! the Unix epoch, UTC) and decides nothing: what to write is the caller's decision.

// Every field is bound as `.bind(&record.field)`, whatever its type: a field that becomes
// one of core's enums (which are `Copy`) keeps its binding as it was.
#![allow(clippy::needless_borrows_for_generic_args)]

pub mod backup;
mod migrate;
mod model;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

pub use migrate::{SchemaStatus, newest_known, schema_status};
pub use model::*;
pub use sql::{Backend, Durability, SqlStore, StoreOptions, WAL_LIMIT_BYTES, redact_url, sqlite_url};
pub use sql::{
    BudgetStore, CheckStore, CostStore, EventStore, IncidentStore, NotificationStore, ProjectStore, ResourceStore,
    RetentionStore, RunStore, ScheduleStore, SettingStore, TokenStore, WorkerStore, WorkflowStore,
};

use async_trait::async_trait;

/// What went wrong in the store; callers act on `NotFound` and `Conflict`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migration(String),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// This backend does not do what was asked; the message says the way that works.
    #[error("{0}")]
    Unsupported(String),
}

impl StoreError {
    /// The database refused what was asked (a constraint, a value it cannot store), as
    /// opposed to being unreachable: asking again without the offending part can succeed.
    pub fn is_refusal(&self) -> bool {
        match self {
            StoreError::Conflict(_) => true,
            StoreError::Database(e) => matches!(e, sqlx::Error::Database(_) | sqlx::Error::Encode(_)),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database under every aggregate: which backend it is, and letting go of it.
#[async_trait]
pub trait Database: Send + Sync + 'static {
    /// Which backend this is, for logs and `/healthz`.
    fn backend(&self) -> Backend;
    /// Lets go of the database, the last call of a stopping node. SQLite truncates its
    /// write-ahead log first, so the next start has nothing to read back.
    async fn close(&self);
    /// Writes a consistent copy of the database to `dest`, a path that must not exist yet:
    /// on SQLite a snapshot by `VACUUM INTO` from a reader connection, while writes go on. On
    /// PostgreSQL it is [`StoreError::Unsupported`], saying how `pg_dump` does it.
    async fn snapshot(&self, dest: &std::path::Path) -> Result<()>;
}

/// Everything Agent OS persists: every aggregate's store at once. Every method commits before
/// it returns. Anything that implements each aggregate's trait is a `Store`.
pub trait Store:
    Database
    + ProjectStore
    + ScheduleStore
    + RunStore
    + ResourceStore
    + CheckStore
    + EventStore
    + WorkflowStore
    + CostStore
    + BudgetStore
    + NotificationStore
    + IncidentStore
    + TokenStore
    + SettingStore
    + WorkerStore
    + RetentionStore
{
}

impl<T> Store for T where
    T: Database
        + ProjectStore
        + ScheduleStore
        + RunStore
        + ResourceStore
        + CheckStore
        + EventStore
        + WorkflowStore
        + CostStore
        + BudgetStore
        + NotificationStore
        + IncidentStore
        + TokenStore
        + SettingStore
        + WorkerStore
        + RetentionStore
{
}
