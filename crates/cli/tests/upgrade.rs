//! Upgrades: databases made by released versions (tests/fixtures/upgrade, one SQLite file and
//! one PostgreSQL dump per release, made by scripts/make-upgrade-fixtures.sh) are served by this
//! binary, which migrates them to its newest schema; the API then lists what the release
//! stored, and new runs start and finish. A database newer than the binary stops `serve` with
//! a message saying to upgrade. PostgreSQL when `AGENT_OS_TEST_POSTGRES_URL` names a server
//! (with `CI=true` and none, that test fails).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_os_store::testing::PgDatabase;
use agent_os_store::{Backend, newest_known};
use serde_json::Value;
use sqlx::{Connection, Row};

use common::{Api, Server, project, register};

/// The fixtures of every release, whose names end with `suffix`, oldest first.
fn fixtures(suffix: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no {suffix} fixture in {}", dir.display());
    found
}

/// The records of each kind a database holds (their ids), read straight from it.
#[derive(Debug, Default, PartialEq)]
struct Held {
    projects: BTreeSet<String>,
    runs: BTreeSet<String>,
    costs: BTreeSet<String>,
    incidents: BTreeSet<String>,
    workflow_runs: BTreeSet<String>,
    checks: i64,
    pings: i64,
    schema: i64,
}

async fn count(c: &mut sqlx::AnyConnection, table: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}")))
        .fetch_one(c)
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

async fn ids(c: &mut sqlx::AnyConnection, table: &str, column: &str) -> BTreeSet<String> {
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {column} AS v FROM {table}")))
        .fetch_all(c)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String, _>("v").unwrap())
        .collect()
}

async fn held(url: &str) -> Held {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    let out = Held {
        projects: ids(&mut c, "projects", "name").await,
        runs: ids(&mut c, "runs", "id").await,
        costs: ids(&mut c, "cost_records", "id").await,
        incidents: ids(&mut c, "incidents", "id").await,
        workflow_runs: ids(&mut c, "workflow_runs", "id").await,
        checks: count(&mut c, "checks").await,
        pings: count(&mut c, "pings").await,
        // `schema_migrations` may hold a marker version past every real one; not this table.
        schema: sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations")
            .fetch_one(&mut c)
            .await
            .unwrap()
            .try_get("v")
            .unwrap(),
    };
    c.close().await.unwrap();
    out
}

/// The `key` of each item of a JSON list.
fn listed(list: &Value, key: &str) -> BTreeSet<String> {
    list.as_array().unwrap().iter().map(|v| v[key].as_str().unwrap().to_string()).collect()
}

/// Asserts that everything the fixture held of a kind is listed. The served release may add
/// records of its own as it starts (a probe of a project whose directory is gone opens an
/// incident; a schedule catches up), so the list may hold more.
fn all_listed(kind: &str, fixture: &BTreeSet<String>, listed: &BTreeSet<String>, label: &str) {
    assert!(!fixture.is_empty(), "{label}: the fixture holds no {kind}");
    let missing: Vec<&String> = fixture.difference(listed).collect();
    assert!(missing.is_empty(), "{label}: {kind} of the fixture not listed: {missing:?}");
}

/// What the served API lists against what the fixture holds, and a new run.
async fn check_served(api: &Api, fixture: &Held, work: &Path, label: &str) {
    let projects = api.get("/api/v1/projects").await;
    let names = listed(&projects, "name");
    assert_eq!(names, fixture.projects, "{label}: projects");
    for name in ["trading", "cortana", "nightly", "remote"] {
        assert!(names.contains(name), "{label}: project {name} is listed ({names:?})");
    }

    let runs = api.all_runs().await;
    let run_ids: BTreeSet<String> = runs.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    all_listed("runs", &fixture.runs, &run_ids, label);
    let finished =
        runs.iter().find(|r| r["status"] == "succeeded" && r["project"] == "nightly").expect("a run of nightly");
    let id = finished["id"].as_str().unwrap();
    let logs = api.get(&format!("/api/v1/runs/{id}/logs")).await;
    let text: String = logs["chunks"].as_array().unwrap().iter().map(|c| c["data"].as_str().unwrap_or("")).collect();
    assert!(text.contains("hello from the fixture"), "{label}: the run's log is kept: {logs}");
    assert!(runs.iter().any(|r| r["status"] == "failed"), "{label}: the failed run is listed");

    let costs = api.get("/api/v1/costs?limit=1000").await;
    all_listed("cost records", &fixture.costs, &listed(&costs, "id"), label);
    let summary = api.get("/api/v1/costs/summary").await;
    assert!(summary.is_object(), "{label}: {summary}");

    let checks = api.get("/api/v1/checks").await;
    let checks = checks.as_array().unwrap();
    assert!(!checks.is_empty() && checks.len() as i64 <= fixture.checks, "{label}: checks {checks:?}");
    assert!(fixture.pings > 0 && checks.iter().any(|c| !c["last_ping_at"].is_null()), "{label}: the pinged check");

    let incidents = api.get("/api/v1/incidents?limit=500").await;
    all_listed("incidents", &fixture.incidents, &listed(&incidents, "id"), label);
    let workflow_runs = api.get("/api/v1/workflows/runs?limit=500").await;
    all_listed("workflow runs", &fixture.workflow_runs, &listed(&workflow_runs, "id"), label);
    let wr = fixture.workflow_runs.first().unwrap();
    let detail = api.get(&format!("/api/v1/workflows/runs/{wr}")).await;
    assert!(detail["steps"].as_array().is_some_and(|s| !s.is_empty()), "{label}: its steps: {detail}");

    // Work goes on: a project registered now runs to the end.
    register(api, &project(work, "after-upgrade")).await;
    let run: Value = api.run_and_wait("after-upgrade", "hello").await;
    assert_eq!(run["status"], "succeeded", "{label}: {run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_databases_of_released_versions_are_migrated_and_served() {
    for fixture in fixtures(".sqlite.db") {
        let label = fixture.file_name().unwrap().to_string_lossy().into_owned();
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let db = home.join("agent-os.db");
        // Put in place the way a user would: `agent-os restore` checks it and accepts it.
        let out = common::agent_os(Some(&home), &["restore", fixture.to_str().unwrap()]);
        let said = common::text(&out.stdout);
        assert!(out.status.success(), "{label}: {said}{}", common::text(&out.stderr));
        let before = held(&format!("sqlite://{}?mode=ro", db.display())).await;
        assert!(before.schema <= newest_known(Backend::Sqlite), "{label}");
        if before.schema < newest_known(Backend::Sqlite) {
            assert!(said.contains("the next `agent-os serve` migrates it"), "{label}: {said}");
        }

        let server = Server::start(&home, None).await;
        check_served(&server.api(), &before, dir.path(), &label).await;
        server.stop();
        let after = held(&format!("sqlite://{}?mode=ro", db.display())).await;
        assert_eq!(after.schema, newest_known(Backend::Sqlite), "{label}: migrated to the newest schema");
        assert!(before.costs.is_subset(&after.costs), "{label}: no cost record lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dumps_of_released_versions_are_migrated_and_served() {
    for fixture in fixtures(".postgres.sql") {
        let Some(pg) = PgDatabase::create().await else { return };
        let label = fixture.file_name().unwrap().to_string_lossy().into_owned();
        {
            sqlx::any::install_default_drivers();
            let mut c = sqlx::AnyConnection::connect(&pg.url).await.unwrap();
            let dump = std::fs::read_to_string(&fixture).unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(dump)).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
        let before = held(&pg.url).await;
        assert!(!before.runs.is_empty() && before.schema <= newest_known(Backend::Postgres), "{label}: {before:?}");

        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("home"), Some(&pg.url)).await;
        check_served(&server.api(), &before, dir.path(), &label).await;
        server.stop();
        let after = held(&pg.url).await;
        assert_eq!(after.schema, newest_known(Backend::Postgres), "{label}: migrated to the newest schema");
        pg.drop_it().await;
    }
}

#[test]
fn serve_refuses_a_database_newer_than_it_and_says_to_upgrade() {
    let fixture = fixtures(".sqlite.db").pop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let db = home.join("agent-os.db");
    std::fs::copy(&fixture, &db).unwrap();
    let future = newest_known(Backend::Sqlite) + 1;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
             VALUES ($1, 'from a newer release', '2030-01-01 00:00:00', 1, x'00', 0)",
        )
        .bind(future)
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
    });
    let url = format!("sqlite://{}?mode=ro", db.display());
    let before = rt.block_on(held(&url));
    assert_eq!(before.schema, future);

    let err = dir.path().join("serve.err");
    let mut child = Command::new(common::BIN)
        .args(["serve", "--home", home.to_str().unwrap(), "--bind", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .env_remove("AGENT_OS_DATABASE_URL")
        .env("AGENT_OS_ADMIN_TOKEN", common::ADMIN)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running on a database newer than it");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(&err).unwrap();
    assert!(!status.success(), "{said}");
    assert!(
        said.contains(&format!("schema version {future}")) && said.contains("upgrade Agent OS"),
        "the refusal says the version and to upgrade: {said}"
    );
    // Nothing was migrated or written (opening it only switched the file to WAL mode).
    assert_eq!(rt.block_on(held(&url)), before, "the newer database is left as it was");
}
