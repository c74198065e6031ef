//! `agent-os backup` and `agent-os restore` with the real binary and a real server: backups
//! taken while cost records and runs keep being written are whole and are consistent prefixes
//! of the database; one restored into a fresh home serves exactly what it holds; restore
//! refuses a home a server uses, a damaged file and a database newer than the binary; the
//! HTTP download needs the admin token; on PostgreSQL both commands and the endpoint explain
//! the pg_dump way (when `AGENT_OS_TEST_POSTGRES_URL` names a server; with `CI=true` and none,
//! that test fails).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use agent_os_store::testing::PgDatabase;
use serde_json::json;
use sqlx::{Connection, Row};

use common::{Api, Server, agent_os, project, register, text};

/// A read-only connection to an SQLite file (a live server's database or a backup).
async fn open(path: &Path) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&format!("sqlite://{}?mode=ro", path.display())).await.unwrap()
}

async fn count(path: &Path, table: &str) -> i64 {
    let mut c = open(path).await;
    let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}")))
        .fetch_one(&mut c)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    c.close().await.unwrap();
    n
}

async fn ids(path: &Path, table: &str) -> BTreeSet<String> {
    let mut c = open(path).await;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT id FROM {table}"))).fetch_all(&mut c).await.unwrap();
    c.close().await.unwrap();
    rows.iter().map(|r| r.try_get::<String, _>("id").unwrap()).collect()
}

async fn integrity(path: &Path) -> String {
    let mut c = open(path).await;
    let r: String =
        sqlx::query("PRAGMA integrity_check").fetch_one(&mut c).await.unwrap().try_get("integrity_check").unwrap();
    c.close().await.unwrap();
    r
}

/// Keeps writing until told to stop: a cost record at a time, and every tenth time a run.
/// Stops by itself at 900 records, so the API's one-page list (1000) holds them all.
fn writer(api: Api, stop: Arc<AtomicBool>, written: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i: u64 = 0;
        while !stop.load(Ordering::SeqCst) && i < 900 {
            let record =
                json!({"project": "load", "service": "openai", "amount": "0.001", "idempotency_key": format!("k{i}")});
            let (status, v) = api.post("/api/v1/costs", record).await;
            assert_eq!(status, 201, "cost {i}: {v}");
            if i.is_multiple_of(10) {
                let (status, v) = api.post("/api/v1/runs", json!({"project": "load", "task": "hello"})).await;
                assert_eq!(status, 201, "run {i}: {v}");
            }
            i += 1;
            written.store(i, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_under_write_load_are_whole_consistent_prefixes_that_restore_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let db = home.join("agent-os.db");
    let server = Server::start(&home, None).await;
    let api = server.api();
    register(&api, &project(dir.path(), "load")).await;

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let load = writer(api.clone(), stop.clone(), written.clone());
    while written.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Several backups while the writer goes on; the last one through the API.
    let mut backups = Vec::new();
    for i in 0..4 {
        let file = dir.path().join(format!("backup-{i}.db"));
        let before = (count(&db, "cost_records").await, count(&db, "runs").await);
        let mut args = vec!["backup", file.to_str().unwrap()];
        if i == 3 {
            args.extend(["--from-server", "--url", &server.base, "--token", common::ADMIN]);
        }
        let home_arg = if i == 3 { None } else { Some(home.as_path()) };
        let out = tokio::task::spawn_blocking({
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let home_arg = home_arg.map(Path::to_path_buf);
            move || agent_os(home_arg.as_deref(), &args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap();
        let after = (count(&db, "cost_records").await, count(&db, "runs").await);
        assert!(out.status.success(), "backup {i}: {}{}", text(&out.stdout), text(&out.stderr));
        let said = text(&out.stdout);
        assert!(said.contains("integrity check ok") && said.contains("schema version"), "{said}");
        assert!(said.contains(&format!("{} bytes", std::fs::metadata(&file).unwrap().len())), "{said}");
        assert_eq!(integrity(&file).await, "ok");
        let held = (count(&file, "cost_records").await, count(&file, "runs").await);
        assert!(before.0 <= held.0 && held.0 <= after.0, "backup {i}: cost records {before:?} ≤ {held:?} ≤ {after:?}");
        assert!(before.1 <= held.1 && held.1 <= after.1, "backup {i}: runs {before:?} ≤ {held:?} ≤ {after:?}");
        eprintln!("backup {i}: cost records and runs before {before:?}, held {held:?}, after {after:?}");
        backups.push(file);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A backup is taken while writes go on: they did not all happen before the first one.
    let first = count(&backups[0], "cost_records").await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let total = written.load(Ordering::SeqCst) as i64;
    assert!(first < total, "the first backup holds {first} of {total} records: the writes should go on past it");

    // Every record in a backup is in the database afterwards, and later backups hold more.
    let source_costs = ids(&db, "cost_records").await;
    let source_runs = ids(&db, "runs").await;
    let mut last = 0;
    for file in &backups {
        let costs = ids(file, "cost_records").await;
        assert!(costs.is_subset(&source_costs), "{} holds cost records the database lacks", file.display());
        assert!(ids(file, "runs").await.is_subset(&source_runs), "{} holds runs the database lacks", file.display());
        assert!(costs.len() >= last, "backups are taken in order, so each holds at least what the one before did");
        last = costs.len();
    }

    // An existing file is kept unless --force.
    let out = agent_os(Some(&home), &["backup", backups[0].to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--force"), "{}", text(&out.stderr));

    // Restore refuses while the server runs in the home, names it, and loses nothing.
    let records_now = count(&db, "cost_records").await;
    let out = agent_os(Some(&home), &["restore", backups[1].to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("stop it first") && err.contains(&server.pid().to_string()), "{err}");
    assert_eq!(count(&db, "cost_records").await, records_now);
    assert!(
        std::fs::read_dir(&home).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("before-restore"))
    );
    assert_eq!(api.get("/healthz").await["status"], "ok");
    server.stop();

    // The backup restored into a fresh home serves exactly what it holds.
    let chosen = &backups[2];
    let fresh = dir.path().join("fresh");
    let out = agent_os(Some(&fresh), &["restore", chosen.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("there was no database there before"), "{}", text(&out.stdout));
    let server = Server::start(&fresh, None).await;
    let api = server.api();
    let listed: BTreeSet<String> = api
        .get("/api/v1/costs?limit=1000")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ids(chosen, "cost_records").await, "the restored server lists the backup's cost records");
    let runs: BTreeSet<String> = api.all_runs().await.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(runs, ids(chosen, "runs").await, "the restored server lists the backup's runs");
    let projects = api.get("/api/v1/projects").await;
    assert!(projects.as_array().unwrap().iter().any(|p| p["name"] == "load"), "{projects}");
    server.stop();

    // Restoring over a database keeps the one it replaces, with its name said.
    let out = agent_os(Some(&fresh), &["restore", backups[3].to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let kept: Vec<_> = std::fs::read_dir(&fresh)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("agent-os.db.before-restore-"))
        .filter(|p| !p.to_string_lossy().ends_with("-wal") && !p.to_string_lossy().ends_with("-shm"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(text(&out.stdout).contains(&kept[0].display().to_string()), "{}", text(&out.stdout));
    assert_eq!(
        ids(&kept[0], "cost_records").await,
        ids(chosen, "cost_records").await,
        "the replaced database is kept whole"
    );
    assert_eq!(ids(&fresh.join("agent-os.db"), "cost_records").await, ids(&backups[3], "cost_records").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_a_damaged_file_and_a_newer_database_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let server = Server::start(&home, None).await;
    register(&server.api(), &project(dir.path(), "kept")).await;
    let good = dir.path().join("good.db");
    let out = agent_os(Some(&home), &["backup", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.stop();
    // With no server running the copy is taken the same way.
    let idle = dir.path().join("idle.db");
    let out = agent_os(Some(&home), &["backup", idle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(integrity(&idle).await, "ok");
    assert_eq!(ids(&idle, "projects").await.len(), 1);
    let target = dir.path().join("target");
    let out = agent_os(Some(&target), &["restore", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = std::fs::read(target.join("agent-os.db")).unwrap();

    // Not a database at all.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database, only words, long enough to look like a file").unwrap();
    let out = agent_os(Some(&target), &["restore", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("is not an SQLite database") && err.contains("nothing was restored"), "{err}");

    // A database whose pages are broken: the header is whole, a page in the middle is not.
    let damaged = dir.path().join("damaged.db");
    let mut bytes = std::fs::read(&good).unwrap();
    let page = 4096;
    assert!(bytes.len() > 8 * page, "the backup has pages to break");
    for b in &mut bytes[3 * page..6 * page] {
        *b = 0xA5;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let out = agent_os(Some(&target), &["restore", damaged.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("is damaged") && err.contains("nothing was restored"), "{err}");

    // A database from a newer Agent OS.
    let newer = dir.path().join("newer.db");
    std::fs::copy(&good, &newer).unwrap();
    {
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&format!("sqlite://{}", newer.display())).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
             VALUES (9999, 'from the future', '2030-01-01 00:00:00', 1, x'00', 0)",
        )
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
    }
    let out = agent_os(Some(&target), &["restore", newer.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("schema version 9999") && err.contains("upgrade Agent OS"), "{err}");

    assert_eq!(std::fs::read(target.join("agent-os.db")).unwrap(), before, "a refused restore changes nothing");
    let names: Vec<String> =
        std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.contains("before-restore") && !n.contains("restoring")), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_backup_needs_the_admin_token_and_is_a_whole_database() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let server = Server::start(&home, None).await;
    let api = server.api();
    register(&api, &project(dir.path(), "web")).await;
    let run = api.run_and_wait("web", "hello").await;
    assert_eq!(run["status"], "succeeded", "{run}");

    let (status, token) = api.post("/api/v1/tokens", json!({"project": "web", "name": "web"})).await;
    assert_eq!(status, 201, "{token}");
    let project_token = token["token"].as_str().unwrap();
    let resp = api.http.get(format!("{}/api/v1/backup", server.base)).bearer_auth(project_token).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let resp = api.http.get(format!("{}/api/v1/backup", server.base)).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    let resp = api.http.get(format!("{}/api/v1/backup", server.base)).bearer_auth(common::ADMIN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/vnd.sqlite3");
    assert!(resp.headers()["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"agent-os-"));
    let version: i64 = resp.headers()["x-agent-os-schema-version"].to_str().unwrap().parse().unwrap();
    assert_eq!(version, agent_os_store::newest_known(agent_os_store::Backend::Sqlite));
    let bytes = resp.bytes().await.unwrap();
    let file = dir.path().join("download.db");
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(integrity(&file).await, "ok");
    assert!(ids(&file, "runs").await.contains(run["id"].as_str().unwrap()), "the download holds the finished run");
    // The temporary snapshot under run/ is gone once the answer is sent.
    let left: Vec<_> = std::fs::read_dir(home.join("run"))
        .map(|d| d.map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with("backup-")).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // The API document describes it.
    let doc = api.get("/api/openapi.json").await;
    assert!(doc["paths"]["/api/v1/backup"]["get"].is_object(), "the OpenAPI document has GET /api/v1/backup");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_backup_and_restore_explain_pg_dump_and_do_nothing() {
    let Some(pg) = PgDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    for args in [["backup", "out.db"], ["restore", "out.db"]] {
        let file = dir.path().join(args[1]);
        if args[0] == "restore" {
            std::fs::write(&file, b"").unwrap();
        }
        let out = agent_os(Some(&home), &[args[0], file.to_str().unwrap(), "--database-url", &pg.url]);
        assert!(!out.status.success(), "{} on PostgreSQL must fail", args[0]);
        let err = text(&out.stderr);
        assert!(err.contains("pg_dump --format=custom") && err.contains("pg_restore"), "{err}");
        if args[0] == "backup" {
            assert!(!file.exists(), "nothing is written");
        }
    }
    let server = Server::start(&home, Some(&pg.url)).await;
    let (status, v) = server.api().call(reqwest::Method::GET, "/api/v1/backup", None).await;
    assert_eq!(status, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("pg_dump"), "{v}");
    server.stop();
    pg.drop_it().await;
}
