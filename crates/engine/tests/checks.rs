//! The timing rules of heartbeat checks on held time: `min_duration` and `max_duration` from the
//! start ping, `start_grace` for a start that does not come, and `max_pings` for too many. The engine's clock follows
//! tokio's, which only `tokio::time::advance` moves (`agent_os_engine::testing`); the tests call
//! `check_tick` themselves. Told on SQLite always and on PostgreSQL when
//! `AGENT_OS_TEST_POSTGRES_URL` names a server (with `CI=true` and no URL it fails).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_os_core::check::{CheckState, PingKind};
use agent_os_engine::engine::monitor::PingTarget;
use agent_os_engine::testing::{hold_time, store_options};
use agent_os_engine::{Clock, Engine, EngineConfig, TokioClock};
use agent_os_store::testing::PgDatabase;
use agent_os_store::{CheckRecord, SqlStore, sqlite_url};

const MIN: u64 = 60_000;

async fn engine(url: &str, dir: &Path, clock: &TokioClock) -> Arc<Engine> {
    let store = SqlStore::open(&store_options(url), clock.now_ms()).await.unwrap();
    let mut cfg = EngineConfig::new(agent_os_core::id::new_id(), "http://127.0.0.1:9".into(), dir.join("run"));
    cfg.probes_enabled = false;
    cfg.schedules_enabled = false;
    Engine::start(Arc::new(store), Arc::new(*clock), cfg).await.unwrap()
}

fn project(dir: &Path, checks: &str) -> std::path::PathBuf {
    let root = dir.join("proj");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), format!("name: proj\nchecks:\n{checks}")).unwrap();
    root
}

async fn advance(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
}

async fn check(e: &Engine, slug: &str) -> CheckRecord {
    e.store().list_checks(Some("proj")).await.unwrap().into_iter().find(|c| c.slug == slug).unwrap()
}

async fn ping(e: &Engine, slug: &str, kind: PingKind) -> CheckRecord {
    let id = check(e, slug).await.id;
    e.ping(PingTarget::Id(&id), kind, None, None, None, None).await.unwrap()
}

/// The reason of the open incident of `proj/<slug>`, if one is open.
async fn open_reason(e: &Engine, slug: &str) -> Option<String> {
    let subject = format!("proj/{slug}");
    let open = e.store().list_incidents(true, Some("proj"), 50).await.unwrap();
    open.into_iter().find(|i| i.subject == subject).map(|i| i.reason)
}

/// After a tick, the check's state and the reason its open incident gives.
async fn tick(e: &Engine, slug: &str) -> (CheckState, Option<String>) {
    e.check_tick().await.unwrap();
    (check(e, slug).await.state, open_reason(e, slug).await)
}

async fn durations(url: &str, dir: &Path) {
    let clock = TokioClock::starting_at(1_800_000_000_000);
    let e = engine(url, dir, &clock).await;
    e.register_path(&project(
        dir,
        "  - { slug: job, every: 1h, grace: 5m, min_duration: 1m, max_duration: 10m }\n  - { slug: plain, every: 1h, grace: 5m }\n",
    ))
    .await
    .unwrap();
    let c = check(&e, "job").await;
    assert_eq!(
        (c.min_duration_ms, c.max_duration_ms, c.start_grace_ms),
        (Some(MIN as i64), Some(10 * MIN as i64), None)
    );

    // A success 30 s after its start is too fast: down, with the reason.
    ping(&e, "job", PingKind::Start).await;
    advance(30_000).await;
    let done = ping(&e, "job", PingKind::Success).await;
    assert_eq!((done.state, done.last_failed), (CheckState::Down, true));
    let reason = open_reason(&e, "job").await.expect("an incident for the run that finished too fast");
    assert!(reason.contains("finished too fast: 30s after its start, under min_duration 1m"), "{reason}");
    // The same on a check without min_duration is a success.
    ping(&e, "plain", PingKind::Start).await;
    advance(1_000).await;
    assert_eq!(ping(&e, "plain", PingKind::Success).await.state, CheckState::Up);

    // A run in its time is up again, and resolves the incident.
    ping(&e, "job", PingKind::Start).await;
    advance(2 * MIN).await;
    assert_eq!(ping(&e, "job", PingKind::Success).await.state, CheckState::Up);
    assert_eq!(open_reason(&e, "job").await, None);
    // A success ping without a start has no duration: min_duration does not apply.
    advance(MIN).await;
    assert_eq!(ping(&e, "job", PingKind::Success).await.state, CheckState::Up);

    // A run still going at max_duration is late, then down after the grace time.
    ping(&e, "job", PingKind::Start).await;
    advance(10 * MIN).await;
    assert_eq!(tick(&e, "job").await.0, CheckState::Up, "exactly max_duration is still in time");
    advance(1).await;
    let (state, reason) = tick(&e, "job").await;
    assert_eq!(state, CheckState::Late);
    assert!(reason.unwrap().contains("still running past max_duration"));
    advance(5 * MIN).await;
    let (state, reason) = tick(&e, "job").await;
    assert_eq!(state, CheckState::Down);
    assert!(reason.unwrap().contains("did not finish in its time"));
    e.shutdown(Duration::from_secs(1)).await;
}

async fn start_grace(url: &str, dir: &Path) {
    let clock = TokioClock::starting_at(1_800_000_000_000);
    let e = engine(url, dir, &clock).await;
    e.register_path(&project(dir, "  - { slug: nightly, every: 1h, grace: 10m, start_grace: 2m }\n")).await.unwrap();
    assert_eq!(ping(&e, "nightly", PingKind::Success).await.state, CheckState::Up);
    // Due in an hour; a start may come up to 2 minutes after.
    advance(61 * MIN).await;
    assert_eq!(tick(&e, "nightly").await, (CheckState::Up, None));
    advance(MIN + 1).await;
    let (state, reason) = tick(&e, "nightly").await;
    assert_eq!(state, CheckState::Late);
    assert!(reason.unwrap().contains("no start signal"));
    // The finish grace counts from there: down 10 minutes later, still for the missing start.
    advance(10 * MIN).await;
    let (state, reason) = tick(&e, "nightly").await;
    assert_eq!(state, CheckState::Down);
    assert!(reason.unwrap().contains("no start signal"));
    // The start comes: up while it runs.
    assert_eq!(ping(&e, "nightly", PingKind::Start).await.state, CheckState::Up);
    advance(MIN).await;
    assert_eq!(ping(&e, "nightly", PingKind::Success).await.state, CheckState::Up);
    // The next start on time keeps it up through the window.
    advance(60 * MIN + 30_000).await;
    ping(&e, "nightly", PingKind::Start).await;
    advance(5 * MIN).await;
    assert_eq!(tick(&e, "nightly").await, (CheckState::Up, None));
    e.shutdown(Duration::from_secs(1)).await;
}

async fn too_often(url: &str, dir: &Path) {
    let clock = TokioClock::starting_at(1_800_000_000_000);
    let e = engine(url, dir, &clock).await;
    e.register_path(&project(dir, "  - { slug: sync, every: 1h, max_pings: { count: 2, within: 10m } }\n"))
        .await
        .unwrap();
    assert_eq!(check(&e, "sync").await.max_pings, Some((2, 10 * MIN as i64)));
    ping(&e, "sync", PingKind::Success).await;
    advance(MIN).await;
    ping(&e, "sync", PingKind::Exit(0)).await;
    // A start, a failure and a log line are not success pings.
    ping(&e, "sync", PingKind::Start).await;
    ping(&e, "sync", PingKind::Log).await;
    assert_eq!(open_reason(&e, "sync:too-often").await, None, "two within 10 minutes are allowed");
    advance(MIN).await;
    let third = ping(&e, "sync", PingKind::Success).await;
    assert_eq!(third.state, CheckState::Up, "the check's own state is not touched");
    let open = e.store().list_incidents(true, Some("proj"), 50).await.unwrap();
    let warning = open.iter().find(|i| i.subject == "proj/sync:too-often").expect("a too-often incident");
    assert_eq!(warning.severity, agent_os_core::alerting::Severity::Warning);
    assert!(warning.reason.contains("3 success pings within 10m; max_pings allows 2"), "{}", warning.reason);
    assert_eq!(open_reason(&e, "sync").await, None, "no late/down incident");
    // Once the window holds two again, the next success resolves it.
    advance(9 * MIN).await;
    ping(&e, "sync", PingKind::Success).await;
    assert_eq!(open_reason(&e, "sync:too-often").await, None);
    e.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn too_many_pings_within_a_window_on_sqlite_and_postgres() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    too_often(&sqlite_url(&dir.path().join("agent-os.db")), dir.path()).await;
    if let Some(db) = PgDatabase::create().await {
        let pg = tempfile::tempdir().unwrap();
        too_often(&db.url, pg.path()).await;
        db.drop_it().await;
    }
}

#[tokio::test(start_paused = true)]
async fn durations_from_the_start_ping_on_sqlite_and_postgres() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    durations(&sqlite_url(&dir.path().join("agent-os.db")), dir.path()).await;
    if let Some(db) = PgDatabase::create().await {
        let pg = tempfile::tempdir().unwrap();
        durations(&db.url, pg.path()).await;
        db.drop_it().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_missing_start_signal_on_sqlite_and_postgres() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    start_grace(&sqlite_url(&dir.path().join("agent-os.db")), dir.path()).await;
    if let Some(db) = PgDatabase::create().await {
        let pg = tempfile::tempdir().unwrap();
        start_grace(&db.url, pg.path()).await;
        db.drop_it().await;
    }
}

/// A check's incidents, late and too often, carry its tags to the channels, so an alert route
/// can send `match: { tags: [nightly] }` elsewhere.
async fn tagged(url: &str, dir: &Path) {
    let clock = TokioClock::starting_at(1_800_000_000_000);
    let e = engine(url, dir, &clock).await;
    let checks =
        "  - { slug: sync, every: 10m, grace: 1m, tags: [nightly, trading], max_pings: { count: 1, within: 1h } }\n";
    e.register_path(&project(dir, checks)).await.unwrap();
    ping(&e, "sync", PingKind::Success).await;
    ping(&e, "sync", PingKind::Success).await;
    advance(10 * MIN + MIN / 2).await;
    assert_eq!(tick(&e, "sync").await.0, CheckState::Late, "past its period, within its grace");
    let told = e.store().list_notifications(Some("proj"), 50).await.unwrap();
    let tags_of = |subject_title: &str| {
        told.iter().find(|n| n.title.starts_with(subject_title)).map(|n| n.tags.clone()).unwrap_or_default()
    };
    assert!(tags_of("proj/sync is late").iter().any(|t| t == "nightly"), "{told:?}");
    assert!(tags_of("proj/sync is late").iter().any(|t| t == "trading"), "{told:?}");
    assert!(tags_of("proj/sync is pinged too often").iter().any(|t| t == "nightly"), "{told:?}");
    e.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_check_alert_carries_its_tags_on_sqlite_and_postgres() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    tagged(&sqlite_url(&dir.path().join("agent-os.db")), dir.path()).await;
    if let Some(db) = PgDatabase::create().await {
        let pg = tempfile::tempdir().unwrap();
        tagged(&db.url, pg.path()).await;
        db.drop_it().await;
    }
}

/// A snoozed check's "pinged too often" warning stays quiet; once woken, the next ping over the
/// limit opens it.
async fn too_often_snoozed(url: &str, dir: &Path) {
    let clock = TokioClock::starting_at(1_800_000_000_000);
    let e = engine(url, dir, &clock).await;
    e.register_path(&project(dir, "  - { slug: sync, every: 1h, max_pings: { count: 1, within: 1h } }\n"))
        .await
        .unwrap();
    let until = e.snooze_until("2h").unwrap();
    e.snooze_check("proj/sync", until, Some("backfill".into()), None).await.unwrap();
    for _ in 0..3 {
        ping(&e, "sync", PingKind::Success).await;
    }
    assert_eq!(open_reason(&e, "sync:too-often").await, None, "snoozed: no warning");
    e.unsnooze_check("proj/sync").await.unwrap();
    ping(&e, "sync", PingKind::Success).await;
    let reason = open_reason(&e, "sync:too-often").await.expect("woken: the warning opens");
    assert!(reason.contains("max_pings allows 1"), "{reason}");
    e.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_snooze_quiets_too_many_pings_on_sqlite_and_postgres() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    too_often_snoozed(&sqlite_url(&dir.path().join("agent-os.db")), dir.path()).await;
    if let Some(db) = PgDatabase::create().await {
        let pg = tempfile::tempdir().unwrap();
        too_often_snoozed(&db.url, pg.path()).await;
        db.drop_it().await;
    }
}
