//! SQLite's write-ahead log, kept bounded by [`wal_keeper`]: a checkpoint that merely copies
//! pages back never lets the log start over while readers keep coming, so past
//! [`WAL_LIMIT_BYTES`] the keeper waits its turn as the writer and truncates it.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::{Any, AnyPool, Executor, Row};

use crate::Result;

/// The size past which SQLite's write-ahead log is truncated (see [`wal_keeper`]).
///
/// Large enough that under a steady load the truncating checkpoint (which holds writes back
/// while it finishes) runs about once a second at most; small enough that the log stays a
/// fraction of a typical database and a start after a crash reads it back in milliseconds.
pub const WAL_LIMIT_BYTES: u64 = 64 << 20;

/// How often the keeper looks at the WAL's size: a stat, cheap enough to do often, so that
/// under heavy writing the log passes its bound by little before it is cut.
const WAL_LOOK_EVERY: Duration = Duration::from_millis(250);

/// The `-wal` file next to the database (`None` for a database without a file).
pub(super) async fn wal_path(pool: &AnyPool) -> Result<Option<PathBuf>> {
    let rows = sqlx::query("PRAGMA database_list").fetch_all(pool).await?;
    for row in rows {
        let name: String = row.try_get("name")?;
        let file: Option<String> = row.try_get("file")?;
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
    Ok(row.try_get::<i64, _>("busy")? == 0)
}

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
pub(super) async fn wal_keeper(write: AnyPool, read: AnyPool, wal: Option<PathBuf>, limit: u64) {
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

/// The last checkpoint of a closing store: the whole log copied back and the file cut to zero.
pub(super) async fn truncate_at_close(write: &AnyPool) -> Result<bool, sqlx::Error> {
    checkpoint(write, Checkpoint::Truncate).await
}
