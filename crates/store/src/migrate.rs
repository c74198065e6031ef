//! Schema migrations: one directory per backend, embedded in the binary by the build script
//! (the files are the list) and applied by sqlx's migrator, each file whole, in its own
//! transaction, recorded in `_sqlx_migrations` with its checksum, so an edited released
//! migration is refused rather than silently skipped.
//!
//! Databases made before the migrator recorded their versions in `schema_migrations`, with a
//! checksum of their own. Opening one adopts it once: each version recorded there is checked
//! against its file as before and recorded as applied in `_sqlx_migrations`. From then on
//! `schema_migrations` holds only [`MOVED`], a version higher than any release before the
//! migrator knew, so such an older Agent OS refuses the database (as newer than it knows)
//! instead of running on a schema it cannot see.

use std::borrow::Cow;

use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row, SqlSafeStr};

use crate::sql::Backend;
use crate::{Result, StoreError};

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The table sqlx's migrator keeps.
const TABLE: &str = "_sqlx_migrations";

/// What `schema_migrations` says once the migrator keeps the versions.
const MOVED: i64 = 1_000_000_000;

fn files(backend: Backend) -> &'static [(i64, &'static str, &'static str)] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

fn migrator(backend: Backend) -> Migrator {
    let migrations = files(backend)
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(*version, Cow::Borrowed(*description), MigrationType::Simple, sql.into_sql_str(), false)
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// FNV-1a over the text: the checksum `schema_migrations` kept.
fn legacy_checksum(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn newer(version: i64) -> StoreError {
    StoreError::Migration(format!(
        "the database is at schema version {version}, newer than this Agent OS knows; upgrade Agent OS"
    ))
}

fn edited(version: i64, description: &str) -> StoreError {
    StoreError::Migration(format!("migration {version} ({description}) differs from the one applied to this database"))
}

pub(crate) async fn run(pool: &AnyPool, backend: Backend, now: i64) -> Result<()> {
    let migrator = migrator(backend);
    adopt(pool, backend, &migrator, now).await?;
    migrator.run(pool).await.map_err(|e| match e {
        MigrateError::Execute(e) => StoreError::Database(e),
        MigrateError::VersionMismatch(v) => {
            edited(v, migrator.iter().find(|m| m.version == v).map_or("", |m| &m.description))
        }
        MigrateError::VersionMissing(v) => StoreError::Migration(format!(
            "the database records migration {v}, which this Agent OS does not have; upgrade Agent OS"
        )),
        other => StoreError::Migration(other.to_string()),
    })
}

/// Adopts the versions `schema_migrations` recorded (once), leaves [`MOVED`] there, and
/// refuses a database newer than this binary. Nodes starting together on PostgreSQL take turns.
async fn adopt(pool: &AnyPool, backend: Backend, migrator: &Migrator, now: i64) -> Result<()> {
    let known = files(backend);
    let newest_known = known.last().map_or(0, |m| m.0);
    let mut tx = pool.begin_with(backend.begin()).await?;
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(7700001)").execute(&mut *tx).await?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations
             (version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    Migrate::ensure_migrations_table(&mut *tx, TABLE).await.map_err(|e| StoreError::Migration(e.to_string()))?;
    let legacy: Vec<(i64, String)> = sqlx::query("SELECT version, checksum FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("version")?, row.try_get("checksum")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let recorded: Vec<i64> = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get("version"))
        .collect::<Result<_, sqlx::Error>>()?;
    let adopted = legacy.iter().any(|(version, _)| *version == MOVED);
    let legacy_newest = legacy.iter().map(|(version, _)| *version).filter(|v| *v != MOVED).max();
    if let Some(newest) = recorded.last().copied().max(legacy_newest)
        && newest > newest_known
    {
        return Err(newer(newest));
    }
    if adopted {
        return Ok(());
    }
    // A database from before the migrator (or a new one): check what it recorded as the
    // migrations of the time did, then record it the migrator's way.
    for (version, checksum) in &legacy {
        let Some(m) = migrator.iter().find(|m| m.version == *version) else {
            return Err(StoreError::Migration(format!(
                "the database records migration {version}, which this Agent OS does not have; upgrade Agent OS"
            )));
        };
        if legacy_checksum(m.sql.as_str()) != *checksum {
            return Err(edited(*version, &m.description));
        }
        if !recorded.contains(version) {
            Migrate::skip(&mut *tx, TABLE, m).await.map_err(|e| StoreError::Migration(e.to_string()))?;
        }
    }
    sqlx::query("DELETE FROM schema_migrations").execute(&mut *tx).await?;
    sqlx::query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, '', $3)")
        .bind(MOVED)
        .bind(format!("versions are kept in {TABLE}"))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The newest schema version this binary knows for `backend`: the version of its last
/// migration file.
pub fn newest_known(backend: Backend) -> i64 {
    files(backend).last().map_or(0, |m| m.0)
}

/// What a database's bookkeeping says about its schema, read without changing anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The newest migration applied to the database (0 when it records none).
    pub version: i64,
    /// The newest migration this binary has ([`newest_known`]).
    pub newest_known: i64,
}

impl SchemaStatus {
    /// Whether this binary can open the database: it is at the newest schema, or older (the
    /// next start migrates it).
    pub fn opens(&self) -> bool {
        self.version <= self.newest_known
    }
}

/// Reads which schema version a database is at, in either bookkeeping (`_sqlx_migrations`,
/// or the `schema_migrations` of databases made before the migrator), without migrating.
/// A database with neither table is not an Agent OS database, and says so.
pub async fn schema_status(conn: &mut sqlx::AnyConnection, backend: Backend) -> Result<SchemaStatus> {
    let exists = match backend {
        Backend::Sqlite => "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = $1",
        Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
        }
    };
    let mut version: Option<i64> = None;
    // `schema_migrations` holds [`MOVED`] once the migrator keeps the versions: not a version.
    for (table, sql) in [
        (TABLE, "SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success AND version < $1"),
        ("schema_migrations", "SELECT MAX(version) AS v FROM schema_migrations WHERE version < $1"),
    ] {
        let n: i64 = sqlx::query(exists).bind(table).fetch_one(&mut *conn).await?.try_get("n")?;
        if n == 0 {
            continue;
        }
        let row = sqlx::query(sql).bind(MOVED).fetch_one(&mut *conn).await?;
        let v: Option<i64> = row.try_get("v")?;
        version = Some(version.unwrap_or(0).max(v.unwrap_or(0)));
    }
    let Some(version) = version else {
        return Err(StoreError::Migration(
            "the database has no schema bookkeeping (no _sqlx_migrations table): it is not an Agent OS database".into(),
        ));
    };
    Ok(SchemaStatus { version, newest_known: newest_known(backend) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_define_the_same_versions() {
        let a: Vec<i64> = SQLITE.iter().map(|m| m.0).collect();
        let b: Vec<i64> = POSTGRES.iter().map(|m| m.0).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn the_files_are_the_list_in_version_order() {
        assert_eq!(SQLITE[0].0, 1);
        assert_eq!(SQLITE[0].1, "foundation");
        assert_eq!(SQLITE[1].1, "schedule slots");
        assert!(SQLITE.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(SQLITE[0].2.contains("CREATE TABLE"));
    }
}
