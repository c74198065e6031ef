//! SQLite files that give space back: a database is made with `auto_vacuum = INCREMENTAL`, so
//! the pages a prune pass frees can be returned to the file system a few at a time
//! (`RetentionStore::reclaim_space`) instead of staying inside the file for good.
//!
//! The mode can only be chosen before the first table exists, or by rewriting the whole file
//! (`VACUUM`). A database made before this mode (`NONE`) is rewritten as it opens when it is
//! small enough for that to take a moment ([`CONVERT_UP_TO_BYTES`]); a bigger one is left as
//! it is, with a warning saying how to convert it while Agent OS is stopped
//! (docs/deploy.md#giving-space-back). Its freed pages are still reused by new rows.

use sqlx::{AnyPool, Row};

use crate::Result;

/// The largest database rewritten at start to turn incremental auto-vacuum on: a `VACUUM`
/// copies the whole file, at roughly 100 MB/s on a small disk, so this stays within a second.
pub(crate) const CONVERT_UP_TO_BYTES: i64 = 64 << 20;

/// SQLite's `auto_vacuum` values.
const NONE: i64 = 0;
pub(super) const INCREMENTAL: i64 = 2;

/// Turns incremental auto-vacuum on for a new database, or converts a small old one; run on
/// the writer before anything else touches the file.
pub(super) async fn prepare(write: &AnyPool) -> Result<()> {
    let tables: i64 = sqlx::query("SELECT COUNT(*) AS n FROM sqlite_master").fetch_one(write).await?.try_get("n")?;
    if tables == 0 {
        sqlx::query("PRAGMA auto_vacuum = INCREMENTAL").execute(write).await?;
        return Ok(());
    }
    let mode: i64 = sqlx::query("PRAGMA auto_vacuum").fetch_one(write).await?.try_get(0)?;
    if mode != NONE {
        return Ok(());
    }
    let pages: i64 = sqlx::query("PRAGMA page_count").fetch_one(write).await?.try_get(0)?;
    let page_size: i64 = sqlx::query("PRAGMA page_size").fetch_one(write).await?.try_get(0)?;
    let bytes = pages.saturating_mul(page_size);
    if bytes <= CONVERT_UP_TO_BYTES {
        let started = std::time::Instant::now();
        sqlx::query("PRAGMA auto_vacuum = INCREMENTAL").execute(write).await?;
        sqlx::query("VACUUM").execute(write).await?;
        let mode: i64 = sqlx::query("PRAGMA auto_vacuum").fetch_one(write).await?.try_get(0)?;
        if mode == INCREMENTAL {
            tracing::info!(
                bytes,
                took_ms = started.elapsed().as_millis() as u64,
                "the database was rewritten once so that pruned space goes back to the disk"
            );
        }
    } else {
        tracing::warn!(
            bytes,
            "the database keeps pruned space inside the file (auto_vacuum is NONE); to give it back to the disk, \
             stop Agent OS and run: sqlite3 FILE 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;' (docs/deploy.md)"
        );
    }
    Ok(())
}
