//! Retention: every kind of history prunes what is old and keeps what is still referenced
//! (the latest run of a task, a run an active workflow waits on, an open incident, a pending
//! delivery, …); a repeated probe answer extends its stretch instead of adding a row; SQLite
//! gives the freed pages back. Told on SQLite always and on PostgreSQL when
//! `AGENT_OS_TEST_POSTGRES_URL` names a server (with `CI=true` and no URL it fails).
//!
//! The old history is written with plain SQL, as years of use would have left it: the store's
//! own writers stamp records with the time they are called at, and this story needs records
//! from months ago next to fresh ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use agent_os_core::manifest::{ProbeKind, ProbeStatus};
use agent_os_core::retention::PruneKind;
use agent_os_store::*;
use sqlx::{AnyPool, Row};

mod common;
use common::PgDatabase;

const NOW: i64 = 1_764_000_000_000;
const DAY: i64 = 86_400_000;
/// Everything before this is due in the story; "old" records are 200 days old.
const CUTOFF: i64 = NOW - 100 * DAY;
const OLD: i64 = NOW - 200 * DAY;
const RECENT: i64 = NOW - DAY;

async fn exec(db: &AnyPool, sql: &str, args: &[Arg<'_>]) {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
    for a in args {
        q = match a {
            Arg::T(t) => q.bind(t.to_string()),
            Arg::N(n) => q.bind(*n),
            Arg::Null => q.bind(None::<i64>),
            Arg::NoText => q.bind(None::<String>),
        };
    }
    q.execute(db).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

enum Arg<'a> {
    T(&'a str),
    N(i64),
    /// A NULL number.
    Null,
    /// A NULL text (PostgreSQL wants the type of a NULL to match its column).
    NoText,
}
use Arg::{N, NoText, Null, T};

async fn count(db: &AnyPool, sql: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(db).await.unwrap().try_get::<i64, _>(0).unwrap()
}

async fn ids(db: &AnyPool, sql: &str) -> Vec<String> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(db).await.unwrap();
    rows.iter().map(|r| r.try_get::<String, _>(0).unwrap()).collect()
}

async fn run(db: &AnyPool, id: &str, task: &str, status: &str, finished: Option<i64>) {
    exec(
        db,
        "INSERT INTO runs (id, project_id, project, task, status, input, max_attempts, trigger, queued_at, not_before, finished_at)
         VALUES ($1, 'p1', 'trading', $2, $3, '{}', 1, 'manual', $4, $4, $5)",
        &[T(id), T(task), T(status), N(OLD - DAY), finished.map_or(Null, N)],
    )
    .await;
    exec(
        db,
        "INSERT INTO run_attempts (run_id, attempt, status, node_id, started_at) VALUES ($1, 1, $2, 'n', $3)",
        &[T(id), T(status), N(OLD - DAY)],
    )
    .await;
    // A log of a few dozen KB, so that pruning it frees pages.
    let line = "x".repeat(4000);
    for seq in 1..=10 {
        exec(
            db,
            "INSERT INTO run_logs (run_id, seq, stream, at, bytes, data) VALUES ($1, $2, 'stdout', $3, 4000, $4)",
            &[T(id), N(seq), N(OLD), T(&line)],
        )
        .await;
    }
}

async fn seed(db: &AnyPool) {
    exec(
        db,
        "INSERT INTO projects (id, name, transport, manifest, created_at, updated_at) VALUES ('p1', 'trading', 'command', '', $1, $1)",
        &[N(OLD)],
    )
    .await;

    // Workflow runs: the finished old ones go, the latest of a workflow, an active one and the
    // finished child of an active one stay.
    for (id, workflow, status, created, finished, parent) in [
        ("w1", "daily", "succeeded", OLD, Some(OLD), None),
        ("w2", "daily", "failed", OLD + 1, Some(OLD + 1), None),
        ("w3", "weekly", "succeeded", OLD, Some(OLD), None),
        ("w4", "weekly", "running", OLD + 5, None, None),
        ("w5", "child", "succeeded", OLD + 6, Some(OLD + 6), Some("w4")),
        ("w6", "child", "succeeded", RECENT, Some(RECENT), None),
    ] {
        exec(
            db,
            "INSERT INTO workflow_runs (id, workflow, definition, status, trigger, inputs, created_at, finished_at, parent_run_id)
             VALUES ($1, $2, '{}', $3, 'manual', '{}', $4, $5, $6)",
            &[T(id), T(workflow), T(status), N(created), finished.map_or(Null, N), parent.map_or(NoText, T)],
        )
        .await;
    }
    exec(
        db,
        "INSERT INTO workflow_steps (run_id, step_id, item, status, task_run_id) VALUES ('w1', 's', 0, 'succeeded', 'r01')",
        &[],
    )
    .await;
    exec(
        db,
        "INSERT INTO workflow_steps (run_id, step_id, item, status, task_run_id) VALUES ('w4', 's', 0, 'succeeded', 'r05')",
        &[],
    )
    .await;

    // Runs (ids sort by age, as the store's time-ordered ids do).
    run(db, "r01", "sync", "succeeded", Some(OLD)).await; // goes
    run(db, "r02", "sync", "failed", Some(OLD)).await; // goes
    run(db, "r03", "sync", "succeeded", Some(OLD)).await; // the latest run of sync: stays
    run(db, "r04", "report", "queued", None).await; // queued: stays
    run(db, "r05", "fetch", "succeeded", Some(OLD)).await; // a step of active w4 points at it
    run(db, "r06", "fetch", "succeeded", Some(RECENT)).await; // recent
    run(db, "r07", "clean", "running", None).await; // running: stays

    // Schedule slots: the latest slot of a schedule stays however old.
    for (key, slot, fired) in [("k1", 1, OLD), ("k1", 2, OLD), ("k1", 3, OLD), ("k2", 1, RECENT), ("k2", 0, OLD)] {
        exec(
            db,
            "INSERT INTO schedule_slots (schedule_key, slot, outcome, fired_at) VALUES ($1, $2, 'fired', $3)",
            &[T(key), N(slot), N(fired)],
        )
        .await;
    }

    // Events: an unrouted one stays, however old.
    for (id, at, routed) in [("e1", OLD, Some(OLD)), ("e2", OLD, None), ("e3", RECENT, Some(RECENT))] {
        exec(
            db,
            "INSERT INTO events (id, type, data, at, routed_at) VALUES ($1, 'check.down', '{}', $2, $3)",
            &[T(id), N(at), routed.map_or(Null, N)],
        )
        .await;
    }

    // Pings.
    exec(
        db,
        "INSERT INTO checks (id, project_id, slug, kind, grace_ms, created_at) VALUES ('c1', 'p1', 'backup', 'period', 60000, $1)",
        &[N(OLD)],
    )
    .await;
    for (id, at) in [("g1", OLD), ("g2", OLD + 1), ("g3", RECENT)] {
        exec(db, "INSERT INTO pings (id, check_id, at, kind) VALUES ($1, 'c1', $2, 'success')", &[T(id), N(at)]).await;
    }

    // Notifications: one with a delivery pending, one held, stay.
    for (id, created, delivery) in [
        ("n1", OLD, Some("delivered")),
        ("n2", OLD, Some("pending")),
        ("n3", OLD, Some("held")),
        ("n4", OLD, None),
        ("n5", RECENT, Some("delivered")),
    ] {
        exec(
            db,
            "INSERT INTO notifications (id, title, body, severity, tags, created_at) VALUES ($1, 't', 'b', 'info', '[]', $2)",
            &[T(id), N(created)],
        )
        .await;
        if let Some(status) = delivery {
            exec(
                db,
                "INSERT INTO deliveries (id, notification_id, channel, status, next_at) VALUES ($1, $2, 'team', $3, $4)",
                &[T(&format!("d-{id}")), T(id), T(status), N(created)],
            )
            .await;
        }
    }

    // Incidents: an open one stays however old; resolved ones go by when they were resolved.
    for (id, subject, status, opened, resolved) in [
        ("i1", "a", "resolved", OLD, Some(OLD)),
        ("i2", "b", "open", OLD, None),
        ("i3", "c", "resolved", OLD, Some(RECENT)),
    ] {
        exec(
            db,
            "INSERT INTO incidents (id, source, subject, severity, title, reason, status, opened_at, resolved_at, updated_at)
             VALUES ($1, 'check', $2, 'warning', 't', 'r', $3, $4, $5, $4)",
            &[T(id), T(subject), T(status), N(opened), resolved.map_or(Null, N)],
        )
        .await;
    }

    // Tokens: run tokens go a while after they expired or were revoked; no other kind goes.
    for (id, kind, expires, revoked) in [
        ("t1", "run", Some(OLD), None),
        ("t2", "run", Some(NOW + DAY), Some(OLD)),
        ("t3", "run", Some(NOW + DAY), None),
        ("t4", "admin", None, Some(OLD)),
        ("t5", "project", Some(OLD), None),
        ("t6", "worker", None, Some(OLD)),
    ] {
        exec(
            db,
            "INSERT INTO tokens (id, kind, hash, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[T(id), T(kind), T(&format!("hash-{id}")), N(OLD - DAY), expires.map_or(Null, N), revoked.map_or(Null, N)],
        )
        .await;
    }
    for (id, expires) in [("s1", OLD), ("s2", NOW + DAY)] {
        exec(
            db,
            "INSERT INTO dashboard_sessions (id, csrf, via, created_at, expires_at) VALUES ($1, 'c', 'password', $2, $3)",
            &[T(id), N(OLD - DAY), N(expires)],
        )
        .await;
    }

    // Costs and their daily rollup.
    for (id, at) in [("k-old", OLD), ("k-new", RECENT)] {
        exec(
            db,
            "INSERT INTO cost_records (id, project_id, project, service, amount_nanos, currency, at, idempotency_key, source, created_at)
             VALUES ($1, 'p1', 'trading', 'openai', 1000, 'USD', $2, $1, 'api', $2)",
            &[T(id), N(at)],
        )
        .await;
    }
    exec(
        db,
        "INSERT INTO cost_daily (project, service, day, currency, amount_nanos, records, tokens_in, tokens_out)
         VALUES ('trading', 'openai', $1, 'USD', 1000, 1, 0, 0)",
        &[N(OLD - OLD % DAY)],
    )
    .await;
}

fn probe(kind: ProbeKind, at: i64, status: ProbeStatus, message: &str) -> ProbeResult {
    ProbeResult {
        id: agent_os_core::id::new_id(),
        project_id: "p1".into(),
        kind,
        at,
        since: at,
        repeats: 1,
        ok: true,
        duration_ms: at % 100,
        status: Some(status),
        message: Some(message.into()),
        body: Some(format!("{{\"at\":{at}}}")),
        error: None,
    }
}

/// Probe results: the same answer again extends the latest row; a change starts a new one.
async fn probes(store: &SqlStore) {
    let status = ProbeKind::Status;
    store.insert_probe_result(&probe(status, OLD, ProbeStatus::Ok, "fine")).await.unwrap();
    store.insert_probe_result(&probe(status, OLD + 30_000, ProbeStatus::Ok, "fine")).await.unwrap();
    store.insert_probe_result(&probe(status, OLD + 60_000, ProbeStatus::Ok, "fine")).await.unwrap();
    store.insert_probe_result(&probe(status, OLD + 90_000, ProbeStatus::Down, "db gone")).await.unwrap();
    store.insert_probe_result(&probe(status, RECENT, ProbeStatus::Ok, "fine")).await.unwrap();
    store.insert_probe_result(&probe(ProbeKind::Health, OLD, ProbeStatus::Ok, "200")).await.unwrap();
    let history = store.probe_history("p1", &[status], 10).await.unwrap();
    let seen: Vec<(i64, i64, i64, Option<ProbeStatus>)> =
        history.iter().map(|r| (r.since, r.at, r.repeats, r.status)).collect();
    assert_eq!(
        seen,
        [
            (RECENT, RECENT, 1, Some(ProbeStatus::Ok)),
            (OLD + 90_000, OLD + 90_000, 1, Some(ProbeStatus::Down)),
            (OLD, OLD + 60_000, 3, Some(ProbeStatus::Ok)),
        ],
        "three answers of `fine` in a row are one stretch; a change starts another"
    );
    let stretch = &history[2];
    assert_eq!(stretch.body.as_deref(), Some(format!("{{\"at\":{}}}", OLD + 60_000).as_str()), "the latest body");
    assert_eq!(stretch.duration_ms, (OLD + 60_000) % 100, "the latest duration");
}

/// Prunes `kind` in batches of 2 until one comes back short, after a dry run that must count
/// the same; answers how many went.
async fn prune_all(store: &SqlStore, kind: PruneKind) -> u64 {
    let would = store.prune(kind, CUTOFF, NOW, 2, true).await.unwrap();
    let mut total = 0;
    for _ in 0..100 {
        let n = store.prune(kind, CUTOFF, NOW, 2, false).await.unwrap();
        total += n;
        if n < 2 {
            assert_eq!(total, would, "{kind}: the dry run counted what the pass pruned");
            return total;
        }
    }
    panic!("{kind}: batches never came back short");
}

async fn story(store: &SqlStore, db: &AnyPool) {
    seed(db).await;
    probes(store).await;
    let before_logs = count(db, "SELECT COUNT(*) FROM run_logs").await;
    assert_eq!(before_logs, 70);

    let mut pruned = Vec::new();
    for &kind in PruneKind::ALL {
        pruned.push((kind, prune_all(store, kind).await));
    }
    let expect = [
        (PruneKind::WorkflowRuns, 2),
        (PruneKind::Runs, 2),
        (PruneKind::ScheduleSlots, 3),
        (PruneKind::Logs, 1),
        (PruneKind::Events, 1),
        (PruneKind::Pings, 2),
        (PruneKind::Health, 2),
        (PruneKind::Notifications, 2),
        (PruneKind::Incidents, 1),
        (PruneKind::Tokens, 2),
        (PruneKind::Sessions, 1),
        (PruneKind::Costs, 1),
    ];
    assert_eq!(pruned, expect);

    let all = |table: &str, key: &str| format!("SELECT {key} FROM {table} ORDER BY {key}");
    assert_eq!(ids(db, &all("workflow_runs", "id")).await, ["w2", "w4", "w5", "w6"]);
    assert_eq!(
        count(db, "SELECT COUNT(*) FROM workflow_steps WHERE run_id = 'w1'").await,
        0,
        "steps go with their run"
    );
    assert_eq!(ids(db, &all("runs", "id")).await, ["r03", "r04", "r05", "r06", "r07"]);
    assert_eq!(count(db, "SELECT COUNT(*) FROM run_attempts WHERE run_id IN ('r01', 'r02')").await, 0);
    assert_eq!(
        ids(db, "SELECT DISTINCT run_id FROM run_logs ORDER BY run_id").await,
        ["r03", "r04", "r06", "r07"],
        "the logs of pruned runs went with them; r05's were pruned by age; the latest run keeps its log"
    );
    let r05 = store.get_run("r05").await.unwrap().expect("r05 stays");
    assert_eq!(r05.logs_pruned_at, Some(NOW), "the run says when its log went");
    assert!(store.read_log("r05", 0, 100).await.unwrap().is_empty());
    assert_eq!(store.get_run("r03").await.unwrap().unwrap().logs_pruned_at, None);
    assert_eq!(
        ids(db, "SELECT schedule_key || ':' || CAST(slot AS TEXT) FROM schedule_slots ORDER BY 1").await,
        ["k1:3", "k2:1"]
    );
    assert_eq!(ids(db, &all("events", "id")).await, ["e2", "e3"]);
    assert_eq!(ids(db, &all("pings", "id")).await, ["g3"]);
    let left = store.probe_history("p1", &[ProbeKind::Status, ProbeKind::Health], 10).await.unwrap();
    let left: Vec<(ProbeKind, i64)> = left.iter().map(|r| (r.kind, r.at)).collect();
    assert_eq!(left, [(ProbeKind::Status, RECENT), (ProbeKind::Health, OLD)], "the latest of each kind stays");
    assert_eq!(ids(db, &all("notifications", "id")).await, ["n2", "n3", "n5"]);
    assert_eq!(ids(db, &all("deliveries", "id")).await, ["d-n2", "d-n3", "d-n5"]);
    assert_eq!(ids(db, &all("incidents", "id")).await, ["i2", "i3"]);
    assert_eq!(ids(db, &all("tokens", "id")).await, ["t3", "t4", "t5", "t6"]);
    assert_eq!(ids(db, &all("dashboard_sessions", "id")).await, ["s2"]);
    assert_eq!(ids(db, &all("cost_records", "id")).await, ["k-new"]);
    assert_eq!(count(db, "SELECT COUNT(*) FROM cost_daily").await, 1, "the daily rollup is never pruned");

    // A second pass finds nothing more.
    for &kind in PruneKind::ALL {
        assert_eq!(store.prune(kind, CUTOFF, NOW, 2, false).await.unwrap(), 0, "{kind}");
    }
}

#[tokio::test]
async fn retention_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent-os.db");
    let url = sqlite_url(&path);
    let store = SqlStore::open(&StoreOptions::new(&url), 1_000).await.expect("open sqlite");
    let db = AnyPool::connect(&url).await.unwrap();
    assert_eq!(count(&db, "PRAGMA auto_vacuum").await, 2, "a new database gives space back (INCREMENTAL)");
    story(&store, &db).await;
    let free = count(&db, "PRAGMA freelist_count").await;
    assert!(free > 0, "pruning 50 log chunks of 4 KB freed pages");
    let mut given_back = 0;
    for _ in 0..100 {
        let n = store.reclaim_space(4).await.unwrap();
        given_back += n;
        if n < 4 {
            break;
        }
    }
    assert_eq!(given_back as i64, free, "every free page went back, 4 at a time");
    assert_eq!(count(&db, "PRAGMA freelist_count").await, 0);
    assert_eq!(store.reclaim_space(4).await.unwrap(), 0, "nothing left to give back");
    db.close().await;
    store.close().await;
}

#[tokio::test]
async fn an_old_small_sqlite_database_is_converted_to_give_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir.path().join("old.db"));
    sqlx::any::install_default_drivers();
    // A database as earlier versions made it: auto_vacuum NONE, tables already there.
    let db = AnyPool::connect(&url).await.unwrap();
    exec(&db, "CREATE TABLE leftover (x INTEGER)", &[]).await;
    assert_eq!(count(&db, "PRAGMA auto_vacuum").await, 0);
    db.close().await;
    let store = SqlStore::open(&StoreOptions::new(&url), 1_000).await.expect("open sqlite");
    let db = AnyPool::connect(&url).await.unwrap();
    assert_eq!(count(&db, "PRAGMA auto_vacuum").await, 2, "converted as it opened");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM leftover").await, 0, "its tables are still there");
    db.close().await;
    store.close().await;
}

#[tokio::test]
async fn retention_on_postgres() {
    let Some(pg) = PgDatabase::create().await else { return };
    let store = SqlStore::open(&StoreOptions::new(&pg.url), 1_000).await.expect("open postgres");
    let db = AnyPool::connect(&pg.url).await.unwrap();
    story(&store, &db).await;
    assert_eq!(store.reclaim_space(4).await.unwrap(), 0, "PostgreSQL's autovacuum keeps the space");
    db.close().await;
    store.close().await;
    pg.drop_it().await;
}
