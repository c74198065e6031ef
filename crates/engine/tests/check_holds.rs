//! What keeps a late or down check from paging, on held time: a check it `depends_on` that is
//! late or down (it is listed under that check's incident, and pages on its own once that one
//! recovers), a snooze of the check or of its project (it pages when the snooze ends, if still
//! late or down), and the checks schedules a plugin reports get. The engine's clock follows
//! tokio's, which only `tokio::time::advance` moves; the tests call `check_tick` themselves.
//! Told on SQLite always and on PostgreSQL when `AGENT_OS_TEST_POSTGRES_URL` names a server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_os_core::check::{CheckState, PingKind};
use agent_os_engine::engine::monitor::PingTarget;
use agent_os_engine::testing::{hold_time, store_options};
use agent_os_engine::{Clock, Engine, EngineConfig, EngineError, TokioClock};
use agent_os_store::testing::PgDatabase;
use agent_os_store::{CheckRecord, SqlStore, sqlite_url};

const MIN: u64 = 60_000;
const START: i64 = 1_800_000_000_000;

async fn engine(url: &str, dir: &Path, clock: &TokioClock) -> Arc<Engine> {
    let store = SqlStore::open(&store_options(url), clock.now_ms()).await.unwrap();
    let mut cfg = EngineConfig::new(agent_os_core::id::new_id(), "http://127.0.0.1:9".into(), dir.join("run"));
    cfg.probes_enabled = false;
    cfg.schedules_enabled = false;
    Engine::start(Arc::new(store), Arc::new(*clock), cfg).await.unwrap()
}

/// Registers project `name` whose manifest is `name: NAME` followed by `rest`.
async fn add(e: &Engine, dir: &Path, name: &str, rest: &str) {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), format!("name: {name}\n{rest}")).unwrap();
    e.register_path(&root).await.unwrap();
}

async fn advance(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
}

async fn check(e: &Engine, name: &str) -> CheckRecord {
    e.find_check(name).await.unwrap()
}

async fn ping(e: &Engine, name: &str, kind: PingKind) -> CheckRecord {
    let id = check(e, name).await.id;
    e.ping(PingTarget::Id(&id), kind, None, None, None, None).await.unwrap()
}

/// Subjects of the open check incidents, sorted.
async fn open(e: &Engine) -> Vec<String> {
    let mut open: Vec<String> = e
        .store()
        .list_incidents(true, None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.source == agent_os_core::alerting::IncidentSource::Check)
        .map(|i| i.subject)
        .collect();
    open.sort();
    open
}

async fn reason(e: &Engine, subject: &str) -> String {
    let open = e.store().list_incidents(true, None, 100).await.unwrap();
    open.into_iter().find(|i| i.subject == subject).map(|i| i.reason).unwrap_or_default()
}

async fn dependencies(url: &str, dir: &Path) {
    let clock = TokioClock::starting_at(START);
    let e = engine(url, dir, &clock).await;
    add(
        &e,
        dir,
        "proj",
        "checks:\n  - { slug: db, every: 1h, grace: 5m }\n  - { slug: report, every: 1h, grace: 5m, depends_on: [db] }\n",
    )
    .await;
    // Another project's check may name this one as project/slug.
    add(&e, dir, "other", "checks:\n  - { slug: feed, every: 1h, grace: 5m, depends_on: [proj/db] }\n").await;
    assert_eq!(check(&e, "proj/report").await.depends_on, ["db"]);
    for c in ["proj/db", "proj/report", "other/feed"] {
        ping(&e, c, PingKind::Success).await;
    }

    // All three go late in one tick ("other/feed" is looked at first): only the upstream pages.
    advance(60 * MIN + 1).await;
    e.check_tick().await.unwrap();
    for c in ["proj/db", "proj/report", "other/feed"] {
        assert_eq!(check(&e, c).await.state, CheckState::Late, "{c} is late, paged or not");
    }
    assert_eq!(open(&e).await, ["proj/db"], "the downstream checks are no second page");
    assert_eq!(check(&e, "proj/report").await.held_by.as_deref(), Some("proj/db"));
    assert_eq!(check(&e, "other/feed").await.held_by.as_deref(), Some("proj/db"));
    assert_eq!(e.also_affected("proj/db").await.unwrap(), ["other/feed", "proj/report"]);
    let incident = e.store().find_open_incident(agent_os_core::alerting::IncidentSource::Check, "proj/db").await;
    let incident = incident.unwrap().unwrap();
    let held = e.store().list_events(Some("check.held"), None, None, 10).await.unwrap();
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.iter().all(|h| h.data.contains(&incident.id)), "each names the incident it is listed under: {held:?}");

    // Down too, still under the one incident.
    advance(5 * MIN).await;
    e.check_tick().await.unwrap();
    assert_eq!(check(&e, "proj/report").await.state, CheckState::Down);
    assert_eq!(open(&e).await, ["proj/db"]);
    assert_eq!(e.store().list_events(Some("check.held"), None, None, 10).await.unwrap().len(), 2, "held once");

    // The upstream recovers; the downstream ones, still down, are now their own problem.
    assert_eq!(ping(&e, "proj/db", PingKind::Success).await.state, CheckState::Up);
    assert_eq!(open(&e).await, Vec::<String>::new());
    e.check_tick().await.unwrap();
    assert_eq!(open(&e).await, ["other/feed", "proj/report"]);
    let why = reason(&e, "proj/report").await;
    assert!(why.contains("after proj/db, which held it, recovered"), "{why}");
    assert_eq!(check(&e, "proj/report").await.held_by, None);
    assert!(e.also_affected("proj/db").await.unwrap().is_empty());
    ping(&e, "proj/report", PingKind::Success).await;
    assert_eq!(open(&e).await, ["other/feed"]);

    // A downstream going down while its upstream is up pages at once, as any check.
    ping(&e, "other/feed", PingKind::Success).await;
    ping(&e, "proj/report", PingKind::Fail).await;
    assert_eq!(open(&e).await, ["proj/report"]);
    e.shutdown(Duration::from_secs(1)).await;
}

async fn snoozes(url: &str, dir: &Path) {
    let clock = TokioClock::starting_at(START);
    let e = engine(url, dir, &clock).await;
    add(
        &e,
        dir,
        "proj",
        "checks:\n  - { slug: job, every: 1h, grace: 5m }\n  - { slug: other, every: 1h, grace: 5m }\n",
    )
    .await;

    // What a snooze may ask for.
    for (bad, says) in [
        ("soon", "neither a duration"),
        ("2020-01-01T00:00:00Z", "not in the future"),
        ("91d", "more than 90d away"),
        ("2099-01-01T00:00:00Z", "more than 90d away"),
    ] {
        match e.snooze_until(bad) {
            Err(EngineError::Invalid { field, message }) => {
                assert_eq!(field.as_deref(), Some("until"));
                assert!(message.contains(says), "{bad}: {message}");
            }
            other => panic!("{bad} should be refused: {other:?}"),
        }
    }
    let in_2h = e.snooze_until("2h").unwrap();
    assert_eq!(in_2h, START + 120 * MIN as i64);
    assert_eq!(e.snooze_until("2027-01-15T10:00:00Z").unwrap(), START + 120 * MIN as i64);
    assert!(e.snooze_check("proj/nope", in_2h, None, None).await.is_err());

    for c in ["proj/job", "proj/other"] {
        ping(&e, c, PingKind::Success).await;
    }
    let c = e.snooze_check("proj/job", in_2h, Some("moving the server".into()), Some("admin".into())).await.unwrap();
    assert_eq!(c.snooze.as_ref().map(|s| (s.until, s.reason.as_deref())), Some((in_2h, Some("moving the server"))));

    // Late, then down: recorded and shown, but no incident.
    advance(60 * MIN + 1).await;
    e.check_tick().await.unwrap();
    advance(5 * MIN).await;
    let next = e.check_tick().await.unwrap();
    let job = check(&e, "proj/job").await;
    assert_eq!((job.state, job.held_by.as_deref()), (CheckState::Down, Some("snooze")));
    assert_eq!(open(&e).await, ["proj/other"], "the snoozed one opens nothing; the other pages");
    let events = e.store().list_events(Some("check."), None, None, 20).await.unwrap();
    assert!(events.iter().any(|x| x.kind == "check.down" && x.subject.as_deref() == Some("job")), "{events:?}");
    // The monitor wakes at the snooze's end.
    assert_eq!(next, Some(in_2h));

    // Still down at the end of the snooze: it pages then, not a millisecond before.
    advance((in_2h - clock.now_ms() - 1) as u64).await;
    e.check_tick().await.unwrap();
    assert_eq!(open(&e).await, ["proj/other"]);
    advance(1).await;
    e.check_tick().await.unwrap();
    assert_eq!(open(&e).await, ["proj/job", "proj/other"]);
    assert!(reason(&e, "proj/job").await.contains("still down when its snooze ended"));
    assert_eq!(check(&e, "proj/job").await.held_by, None);

    // Unsnoozing a held check pages it at once.
    ping(&e, "proj/other", PingKind::Success).await;
    e.snooze_check("proj/other", clock.now_ms() + 600 * MIN as i64, None, None).await.unwrap();
    ping(&e, "proj/other", PingKind::Fail).await;
    assert_eq!(open(&e).await, ["proj/job"]);
    assert_eq!(e.unsnooze_check("proj/other").await.unwrap().snooze, None);
    e.check_tick().await.unwrap();
    assert_eq!(open(&e).await, ["proj/job", "proj/other"]);

    // A project snooze quiets all its checks, until it ends or is lifted.
    for c in ["proj/job", "proj/other"] {
        ping(&e, c, PingKind::Success).await;
    }
    assert!(open(&e).await.is_empty());
    let until = clock.now_ms() + 1440 * MIN as i64;
    e.snooze_project("proj", until, Some("holiday".into()), None).await.unwrap();
    assert!(e.snooze_project("nope", until, None, None).await.is_err());
    assert_eq!(e.project_snoozes().await.unwrap()["proj"].until, until);
    ping(&e, "proj/job", PingKind::Fail).await;
    advance(65 * MIN + 1).await;
    assert_eq!(e.check_tick().await.unwrap(), Some(until));
    assert_eq!(check(&e, "proj/other").await.state, CheckState::Down);
    assert!(open(&e).await.is_empty(), "nothing of the project pages");
    e.unsnooze_project("proj").await.unwrap();
    assert!(e.project_snoozes().await.unwrap().is_empty());
    e.check_tick().await.unwrap();
    assert_eq!(open(&e).await, ["proj/job", "proj/other"]);
    e.shutdown(Duration::from_secs(1)).await;
}

async fn plugin_schedules(url: &str, dir: &Path) {
    let clock = TokioClock::starting_at(START);
    let e = engine(url, dir, &clock).await;
    let root = dir.join("hosted");
    std::fs::create_dir_all(&root).unwrap();
    let answer = |schedules: &str| format!("cat > /dev/null; echo '{{\"schedules\": [{schedules}]}}'\n");
    let both = "{\"task\": \"sync\", \"cron\": \"0 * * * *\", \"managed_by\": \"railway\"}, \
                {\"task\": \"sync\", \"cron\": \"30 2 * * *\", \"managed_by\": \"railway\"}";
    std::fs::write(root.join("schedule.sh"), answer(both)).unwrap();
    std::fs::write(
        root.join("agent-os.yaml"),
        "name: hosted\ntasks:\n  sync: { run: sync.sh }\nschedule: { run: [sh, schedule.sh] }\nchecks:\n  - { slug: sync, every: 1d }\n",
    )
    .unwrap();
    e.register_path(&root).await.unwrap();
    // Named after the task, never taking a manifest check's slug.
    let mut slugs: Vec<String> =
        e.store().list_checks(Some("hosted")).await.unwrap().into_iter().map(|c| c.slug).collect();
    slugs.sort();
    assert_eq!(slugs, ["sync", "sync-2", "sync-3"]);
    let hourly = check(&e, "hosted/sync-2").await;
    assert_eq!((hourly.cron.as_deref(), hourly.state), (Some("0 * * * *"), CheckState::New));
    let schedules = e.store().list_schedules(Some("hosted")).await.unwrap();
    assert!(schedules.iter().all(|s| s.check_slug.is_some()), "{schedules:?}");

    // It goes late like any check: due on the hour, late past it, down after the grace time.
    ping(&e, "hosted/sync-2", PingKind::Success).await;
    advance(60 * MIN + 1).await;
    e.check_tick().await.unwrap();
    assert_eq!(check(&e, "hosted/sync-2").await.state, CheckState::Late);
    assert_eq!(open(&e).await, ["hosted/sync-2"]);

    // A reload keeps its id (its ping URL); a schedule the plugin stops reporting loses its check.
    e.reload("hosted", None).await.unwrap();
    assert_eq!(check(&e, "hosted/sync-2").await.id, hourly.id);
    std::fs::write(
        root.join("schedule.sh"),
        answer("{\"task\": \"sync\", \"cron\": \"0 * * * *\", \"managed_by\": \"railway\"}"),
    )
    .unwrap();
    e.reload("hosted", None).await.unwrap();
    let mut slugs: Vec<String> =
        e.store().list_checks(Some("hosted")).await.unwrap().into_iter().map(|c| c.slug).collect();
    slugs.sort();
    assert_eq!(slugs, ["sync", "sync-2"]);
    assert_eq!(check(&e, "hosted/sync-2").await.id, hourly.id);
    e.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_check_whose_upstream_is_down_is_listed_under_it_on_sqlite_and_postgres() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    dependencies(&sqlite_url(&dir.path().join("agent-os.db")), dir.path()).await;
    if let Some(db) = PgDatabase::create().await {
        let pg = tempfile::tempdir().unwrap();
        dependencies(&db.url, pg.path()).await;
        db.drop_it().await;
    }
}

#[tokio::test(start_paused = true)]
async fn snoozed_checks_and_projects_page_when_the_snooze_ends_on_sqlite_and_postgres() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    snoozes(&sqlite_url(&dir.path().join("agent-os.db")), dir.path()).await;
    if let Some(db) = PgDatabase::create().await {
        let pg = tempfile::tempdir().unwrap();
        snoozes(&db.url, pg.path()).await;
        db.drop_it().await;
    }
}

#[tokio::test(start_paused = true)]
async fn schedules_a_plugin_reports_get_checks_on_sqlite_and_postgres() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    plugin_schedules(&sqlite_url(&dir.path().join("agent-os.db")), dir.path()).await;
    if let Some(db) = PgDatabase::create().await {
        let pg = tempfile::tempdir().unwrap();
        plugin_schedules(&db.url, pg.path()).await;
        db.drop_it().await;
    }
}
