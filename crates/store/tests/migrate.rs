//! Databases made before sqlx's migrator kept the schema's versions (`schema_migrations`, with
//! their own checksums) still open and keep working; edited migrations and databases newer than
//! this binary are refused in either bookkeeping; and a database the migrator keeps is refused
//! by an Agent OS from before it. Told on SQLite always and on PostgreSQL when
//! `AGENT_OS_TEST_POSTGRES_URL` names a server (with `CI=true` and no URL it fails).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;

use agent_os_store::*;
use sqlx::{AnyPool, Row};

mod common;
use common::PgDatabase;

/// The checksum `schema_migrations` kept (FNV-1a over the file's text).
fn legacy_checksum(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// `(version, name, text)` of each migration file of `backend`, in order.
fn migration_files(backend: &str) -> Vec<(i64, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
            let (version, name) = stem.split_once('_').unwrap();
            (version.parse().unwrap(), name.to_string(), std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn backend_of(url: &str) -> &'static str {
    if url.starts_with("sqlite:") { "sqlite" } else { "postgres" }
}

async fn pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

/// A database as the migrations of the time left it: every file applied, each version in
/// `schema_migrations` with its checksum, and a project registered.
async fn old_database(url: &str) {
    let pool = pool(url).await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    for (version, name, text) in migration_files(backend_of(url)) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(text.clone())).execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
            .bind(version)
            .bind(name)
            .bind(legacy_checksum(&text))
            .bind(500_i64)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO projects (id, name, description, transport, root, plugin_url, manifest, signing_secret, created_at, updated_at) \
         VALUES ('p1', 'cortana', 'memory', 'command', '/home/u/cortana', NULL, 'name: cortana\n', NULL, 600, 600)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    pool.close().await;
}

async fn refusal(url: &str) -> String {
    match SqlStore::open(&StoreOptions::new(url), 2_000).await {
        Ok(store) => {
            store.close().await;
            panic!("the database opened")
        }
        Err(e) => e.to_string(),
    }
}

/// Versions in each bookkeeping table.
async fn versions(url: &str) -> (Vec<i64>, Vec<i64>) {
    let pool = pool(url).await;
    let read = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql)
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<i64, _>("version").unwrap())
                .collect::<Vec<i64>>()
        }
    };
    let legacy = read("SELECT version FROM schema_migrations ORDER BY version").await;
    let migrator = read("SELECT version FROM _sqlx_migrations ORDER BY version").await;
    pool.close().await;
    (legacy, migrator)
}

async fn run_sql(url: &str, sql: &'static str, bytes: Option<Vec<u8>>) {
    let pool = pool(url).await;
    let mut q = sqlx::query(sql);
    if let Some(b) = bytes {
        q = q.bind(b);
    }
    q.execute(&pool).await.unwrap();
    pool.close().await;
}

/// An old database opens with its data, is recorded the migrator's way once, and an older Agent
/// OS (which refuses a schema version above its newest) would refuse it from then on.
async fn old_database_opens(url: &str) {
    old_database(url).await;
    let files = migration_files(backend_of(url));
    let store = SqlStore::open(&StoreOptions::new(url), 1_000).await.expect("an old database opens");
    let p = store.get_project("cortana").await.unwrap().expect("its data is kept");
    let run = NewRun {
        id: agent_os_core::id::new_id(),
        project_id: p.id.clone(),
        project: p.name.clone(),
        task: "daily_update".into(),
        input: "{}".into(),
        max_attempts: 1,
        trigger: "api".into(),
        concurrency_key: None,
        scheduled_for: None,
        resources: Vec::new(),
        priority: 50,
        now: 1_000,
    };
    store.insert_run(&run).await.unwrap();
    assert_eq!(store.claim_runs("node", 1_000, 10, &[]).await.unwrap().len(), 1, "and it keeps working");
    store.close().await;

    let (legacy, migrator) = versions(url).await;
    assert_eq!(migrator, files.iter().map(|f| f.0).collect::<Vec<_>>(), "every version adopted");
    assert_eq!(legacy.len(), 1, "schema_migrations holds only the note: {legacy:?}");
    assert!(legacy[0] > files.last().unwrap().0, "an Agent OS from before the migrator refuses it as newer");

    // Adopted once: opening again changes nothing and works.
    let again = SqlStore::open(&StoreOptions::new(url), 3_000).await.expect("it opens again");
    assert_eq!(again.list_runs(&RunFilter { limit: 10, ..Default::default() }).await.unwrap().len(), 1);
    again.close().await;
    assert_eq!(versions(url).await, (legacy, migrator));

    // A version this binary does not know (a newer Agent OS ran here) is refused.
    run_sql(
        url,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99, 'later', TRUE, $1, 0)",
        Some(vec![0]),
    )
    .await;
    let e = refusal(url).await;
    assert!(e.contains("schema version 99, newer than this Agent OS knows"), "{e}");
}

/// An old database whose recorded checksum does not match its file, or that records a version
/// this binary does not know, is refused as before; so is an edited migration the migrator
/// recorded.
async fn refusals(dir: &Path) {
    let url = sqlite_url(&dir.join("edited.db"));
    old_database(&url).await;
    run_sql(&url, "UPDATE schema_migrations SET checksum = 'x' WHERE version = 3", None).await;
    let e = refusal(&url).await;
    assert!(e.contains("migration 3 (checks) differs from the one applied to this database"), "{e}");

    let url = sqlite_url(&dir.join("newer.db"));
    old_database(&url).await;
    run_sql(
        &url,
        "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (999, 'later', '', 1)",
        None,
    )
    .await;
    let e = refusal(&url).await;
    assert!(e.contains("schema version 999, newer than this Agent OS knows"), "{e}");

    let url = sqlite_url(&dir.join("recorded.db"));
    SqlStore::open(&StoreOptions::new(&url), 1_000).await.unwrap().close().await;
    run_sql(&url, "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = 2", Some(vec![1, 2, 3])).await;
    let e = refusal(&url).await;
    assert!(e.contains("migration 2 (schedule slots) differs from the one applied to this database"), "{e}");
}

#[tokio::test]
async fn an_old_database_opens_and_keeps_working_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    old_database_opens(&sqlite_url(&dir.path().join("agent-os.db"))).await;
}

#[tokio::test]
async fn an_old_database_opens_and_keeps_working_on_postgres() {
    let Some(db) = PgDatabase::create().await else { return };
    old_database_opens(&db.url).await;
    db.drop_it().await;
}

#[tokio::test]
async fn edited_and_newer_schemas_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    refusals(dir.path()).await;
}

async fn status(url: &str) -> Result<SchemaStatus, StoreError> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
    let s = schema_status(&mut c, backend).await;
    c.close().await.unwrap();
    s
}

/// `schema_status` reads the version in either bookkeeping without migrating, says whether this
/// binary opens the database, and calls a database with neither table not Agent OS's.
async fn schema_status_story(url: &str) {
    let e = status(url).await.unwrap_err().to_string();
    assert!(e.contains("not an Agent OS database"), "{e}");
    old_database(url).await;
    let newest = migration_files(backend_of(url)).last().unwrap().0;
    let before = status(url).await.unwrap();
    assert_eq!((before.version, before.newest_known, before.opens()), (newest, newest, true));
    let p = pool(url).await;
    let migrator_table = sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations").fetch_one(&p).await;
    p.close().await;
    assert!(migrator_table.is_err(), "reading the status migrated nothing (no _sqlx_migrations yet)");
    SqlStore::open(&StoreOptions::new(url), 1_000).await.unwrap().close().await;
    assert_eq!(status(url).await.unwrap(), before, "the same once the migrator keeps the versions");
    run_sql(
        url,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (77, 'later', TRUE, $1, 0)",
        Some(vec![0]),
    )
    .await;
    let after = status(url).await.unwrap();
    assert_eq!((after.version, after.opens()), (77, false));
}

#[tokio::test]
async fn the_schema_status_is_read_without_migrating_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    schema_status_story(&sqlite_url(&dir.path().join("status.db"))).await;
}

#[tokio::test]
async fn the_schema_status_is_read_without_migrating_on_postgres() {
    let Some(db) = PgDatabase::create().await else { return };
    schema_status_story(&db.url).await;
    db.drop_it().await;
}
