//! Copies of a database, and what a copy holds. On SQLite a copy is a snapshot made by
//! `VACUUM INTO` from a connection that only reads: it sees one committed state of the file
//! while writers go on, and writes a compact new file. [`inspect`] opens a file read-only and
//! says whether it is a whole SQLite database (`PRAGMA integrity_check`) and which schema it is
//! at, so a copy is checked before anyone relies on it. PostgreSQL has its own tools for this
//! (`pg_dump`, `pg_restore`); [`postgres_advice`] names them for a database URL.

use std::path::Path;
use std::str::FromStr;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection, Row};

use crate::migrate::{self, SchemaStatus};
use crate::sql::{Backend, redact_url};
use crate::{Result, StoreError};

/// What [`inspect`] found in a database file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The file, as given.
    pub path: std::path::PathBuf,
    /// The file's size in bytes.
    pub bytes: u64,
    /// Where the file stands against this binary's migrations.
    pub schema: SchemaStatus,
}

impl Inspection {
    /// Refuses a database newer than this binary: it cannot serve it (a backup of one is
    /// still a good backup, so [`inspect`] itself does not refuse it).
    pub fn require_known(&self) -> Result<(), InspectError> {
        match self.schema.opens() {
            true => Ok(()),
            false => Err(InspectError::Newer {
                path: self.path.display().to_string(),
                version: self.schema.version,
                known: self.schema.newest_known,
            }),
        }
    }
}

/// Why a file is not a database Agent OS can use, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{path}: {why}")]
    Unreadable { path: String, why: String },
    #[error("{path} is not an SQLite database ({why})")]
    NotSqlite { path: String, why: String },
    #[error("{path} is damaged; PRAGMA integrity_check: {report}")]
    Damaged { path: String, report: String },
    #[error("{path} is an SQLite database but not an Agent OS one: it has no _sqlx_migrations table")]
    NotAgentOs { path: String },
    #[error(
        "{path} is at schema version {version}, newer than this Agent OS knows (it knows up to {known}); \
         upgrade Agent OS to a release that has it"
    )]
    Newer { path: String, version: i64, known: i64 },
}

/// A read-only SQLite URL for `path` (the file must exist; nothing is created).
pub fn sqlite_read_url(path: &Path) -> String {
    format!("sqlite://{}?mode=ro", crate::sql::sqlite_path(path))
}

async fn connect(url: &str) -> Result<AnyConnection> {
    sqlx::any::install_default_drivers();
    let options = AnyConnectOptions::from_str(url)?;
    Ok(AnyConnection::connect_with(&options).await?)
}

/// Writes a snapshot of the SQLite database at `source` into `dest` (which must not exist) with
/// `VACUUM INTO`, from a read-only connection: a server using the file goes on writing, and
/// the copy holds every transaction committed before the snapshot began and none after.
pub async fn snapshot_file(source: &Path, dest: &Path) -> Result<()> {
    if !source.is_file() {
        return Err(StoreError::NotFound(format!("the database file {}", source.display())));
    }
    let mut conn = connect(&sqlite_read_url(source)).await?;
    sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut conn).await?;
    let result = vacuum_into(&mut conn, dest).await;
    let _ = conn.close().await;
    result
}

/// `VACUUM INTO dest` on a connection to an SQLite database.
pub(crate) async fn vacuum_into(conn: &mut AnyConnection, dest: &Path) -> Result<()> {
    let dest = dest.to_str().ok_or_else(|| {
        StoreError::Conflict(format!("{}: the backup's path is not valid UTF-8; choose another", dest.display()))
    })?;
    sqlx::query("VACUUM INTO $1").bind(dest.to_string()).execute(&mut *conn).await?;
    Ok(())
}

/// Opens `path` read-only and checks it: an SQLite file, whole (`PRAGMA integrity_check`),
/// with Agent OS's schema bookkeeping; [`Inspection::require_known`] adds "at a version this
/// binary can open".
pub async fn inspect(path: &Path) -> Result<Inspection, InspectError> {
    let shown = path.display().to_string();
    let bytes = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Err(InspectError::Unreadable { path: shown, why: "not a regular file".into() }),
        Err(e) => return Err(InspectError::Unreadable { path: shown, why: e.to_string() }),
    };
    let not_sqlite = |e: &dyn std::fmt::Display| InspectError::NotSqlite { path: shown.clone(), why: e.to_string() };
    let mut conn = connect(&sqlite_read_url(path)).await.map_err(|e| not_sqlite(&e))?;
    let outcome = async {
        // The first read of a file that is not a database fails here ("file is not a database");
        // a database whose pages are broken fails the check, or its reading.
        sqlx::query("SELECT COUNT(*) AS n FROM sqlite_master")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| not_sqlite(&e))?;
        let damaged = |e: &dyn std::fmt::Display| InspectError::Damaged { path: shown.clone(), report: e.to_string() };
        let rows = sqlx::query("PRAGMA integrity_check").fetch_all(&mut conn).await.map_err(|e| damaged(&e))?;
        let report: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("integrity_check").ok())
            .filter(|line| line != "ok")
            .collect();
        if !report.is_empty() || rows.is_empty() {
            let report = if report.is_empty() { "nothing".to_string() } else { report.join("; ") };
            return Err(InspectError::Damaged { path: shown.clone(), report });
        }
        let schema = schema_of(&mut conn).await.map_err(|e| damaged(&e))?;
        let Some(schema) = schema else { return Err(InspectError::NotAgentOs { path: shown.clone() }) };
        Ok(Inspection { path: path.to_path_buf(), bytes, schema })
    }
    .await;
    let _ = conn.close().await;
    outcome
}

/// The schema status of the SQLite database on `conn`; `None` when it keeps no migrations.
async fn schema_of(conn: &mut AnyConnection) -> Result<Option<SchemaStatus>> {
    match migrate::schema_status(conn, Backend::Sqlite).await {
        Ok(s) => Ok(Some(s)),
        Err(StoreError::Migration(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// How to back up and restore a PostgreSQL database, with `url`'s password left out: Agent OS
/// leaves that to PostgreSQL's own tools, which copy a live database consistently.
pub fn postgres_advice(url: &str) -> String {
    let shown = redact_url(url);
    format!(
        "the database is PostgreSQL ({shown}); back it up and restore it with PostgreSQL's own tools, which copy a \
         live database consistently:\n  \
         pg_dump --format=custom --file=agent-os.dump '{shown}'\n  \
         pg_restore --clean --if-exists --no-owner --dbname='{shown}' agent-os.dump\n\
         (put the password in PGPASSWORD or ~/.pgpass; stop every Agent OS server on the database before pg_restore)"
    )
}

/// The file an SQLite URL names (`sqlite://PATH?…` or `sqlite:PATH`, `%XX` escapes decoded),
/// the inverse of [`crate::sqlite_url`]; `None` for an in-memory database or another scheme.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(std::path::PathBuf::from(String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_url_names_its_file_back() {
        for path in ["/home/u/.agent-os/agent-os.db", "/tmp/a b/100%?#.db", "relative/x.db"] {
            assert_eq!(sqlite_path(&crate::sqlite_url(Path::new(path))).as_deref(), Some(Path::new(path)), "{path}");
        }
        assert_eq!(sqlite_path("sqlite:data.db").as_deref(), Some(Path::new("data.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }

    #[test]
    fn the_postgres_advice_names_the_tools_and_hides_the_password() {
        let advice = postgres_advice("postgres://agent:s3cret@db.internal:5432/agent_os");
        assert!(advice.contains("pg_dump --format=custom"), "{advice}");
        assert!(advice.contains("pg_restore"), "{advice}");
        assert!(advice.contains("postgres://agent:***@db.internal:5432/agent_os"), "{advice}");
        assert!(!advice.contains("s3cret"), "{advice}");
    }
}
