//! Managed schedules on held time: each slot fires once (also across a restart), missed slots
//! follow `catch_up`, a busy schedule follows `overlap`, and jitter delays the run. The engine's
//! clock follows tokio's, which only `tokio::time::advance` moves (`agent_os_engine::testing`);
//! the tests call `schedule_tick` themselves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_os_core::run::RunStatus;
use agent_os_engine::testing::{eventually, hold_time, store_options};
use agent_os_engine::{Clock, Engine, EngineConfig, TokioClock};
use agent_os_store::{RunFilter, SqlStore, sqlite_url};

fn ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

async fn engine(dir: &Path, clock: &TokioClock) -> Arc<Engine> {
    let store = SqlStore::open(&store_options(sqlite_url(&dir.join("agent-os.db"))), clock.now_ms()).await.unwrap();
    let mut cfg = EngineConfig::new(agent_os_core::id::new_id(), "http://127.0.0.1:9".into(), dir.join("run"));
    cfg.probes_enabled = false;
    cfg.schedules_enabled = false;
    Engine::start(Arc::new(store), Arc::new(*clock), cfg).await.unwrap()
}

/// Moves the engine's clock (and every timer) on by `ms`.
async fn advance_ms(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
}

fn project(dir: &Path, schedules: &str) -> std::path::PathBuf {
    let root = dir.join("proj");
    std::fs::create_dir_all(&root).unwrap();
    let manifest = format!(
        "name: proj\ntasks:\n  a: {{ run: \"true\" }}\n  b: {{ run: \"true\" }}\n  c: {{ run: \"true\" }}\n  d: {{ run: \"true\" }}\n  busy: {{ run: \"sleep 30\" }}\nschedules:\n{schedules}"
    );
    std::fs::write(root.join("agent-os.yaml"), manifest).unwrap();
    root
}

async fn count(e: &Engine, task: &str) -> usize {
    let runs =
        e.store().list_runs(&RunFilter { task: Some(task.into()), limit: 1000, ..Default::default() }).await.unwrap();
    assert!(runs.iter().all(|r| r.trigger == "schedule"));
    runs.len()
}

#[tokio::test(start_paused = true)]
async fn each_slot_fires_once_even_across_a_restart() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let clock = TokioClock::starting_at(ms("2026-11-25T10:00:30Z"));
    let e = engine(dir.path(), &clock).await;
    e.register_path(&project(dir.path(), "  - { task: a, cron: \"* * * * *\", catch_up: all, overlap: allow }\n"))
        .await
        .unwrap();
    let next = e.schedule_tick().await.unwrap();
    assert_eq!(next, Some(ms("2026-11-25T10:01:00Z")), "a new schedule starts now and sleeps until its next slot");
    assert_eq!(count(&e, "a").await, 0);

    advance_ms(60_000).await;
    e.schedule_tick().await.unwrap();
    e.schedule_tick().await.unwrap();
    assert_eq!(count(&e, "a").await, 1, "the 10:01 slot fired once");

    // A second engine on the same database (a restart, or another node) fires nothing again.
    let again = engine(dir.path(), &clock).await;
    again.schedule_tick().await.unwrap();
    assert_eq!(count(&again, "a").await, 1);

    advance_ms(4 * 60_000).await;
    again.schedule_tick().await.unwrap();
    e.schedule_tick().await.unwrap();
    assert_eq!(count(&again, "a").await, 5, "10:02 to 10:05, each once, whichever engine got there first");
}

#[tokio::test(start_paused = true)]
async fn missed_slots_follow_catch_up() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let clock = TokioClock::starting_at(ms("2026-11-25T10:00:30Z"));
    let e = engine(dir.path(), &clock).await;
    let schedules = "  - { task: a, cron: \"* * * * *\", catch_up: all, overlap: allow }\n  - { task: b, cron: \"* * * * *\", catch_up: latest }\n  - { task: c, cron: \"* * * * *\", catch_up: skip }\n  - { task: d, cron: \"0 * * * *\", catch_up: skip }\n";
    e.register_path(&project(dir.path(), schedules)).await.unwrap();
    e.schedule_tick().await.unwrap();
    advance_ms(10 * 60_000).await; // down from 10:00:30 to 10:10:30
    e.schedule_tick().await.unwrap();
    assert_eq!(count(&e, "a").await, 10, "all (with overlap: allow): every missed slot");
    assert_eq!(count(&e, "b").await, 1, "latest: the newest missed slot once");
    assert_eq!(count(&e, "c").await, 1, "skip: only the slot that is on time (10:10)");

    advance_ms(2 * 3_600_000).await; // 12:10:30: 11:00 and 12:00 are long gone
    e.schedule_tick().await.unwrap();
    assert_eq!(count(&e, "d").await, 0, "skip drops slots missed while down");
    advance_ms(50 * 60_000).await; // 13:00:30
    e.schedule_tick().await.unwrap();
    assert_eq!(count(&e, "d").await, 1);
}

#[tokio::test(start_paused = true)]
async fn a_busy_schedule_skips_its_slot_and_jitter_delays_runs() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let clock = TokioClock::starting_at(ms("2026-11-25T10:00:30Z"));
    let e = engine(dir.path(), &clock).await;
    let schedules = "  - { task: busy, cron: \"* * * * *\", overlap: skip }\n  - { task: a, cron: \"* * * * *\", jitter: 30s, overlap: allow }\n";
    e.register_path(&project(dir.path(), schedules)).await.unwrap();
    e.schedule_tick().await.unwrap();
    advance_ms(60_000).await;
    e.schedule_tick().await.unwrap();
    assert_eq!(count(&e, "busy").await, 1);
    advance_ms(60_000).await;
    e.schedule_tick().await.unwrap();
    assert_eq!(count(&e, "busy").await, 1, "the 10:02 slot was skipped: the 10:01 run still goes");

    let runs =
        e.store().list_runs(&RunFilter { task: Some("a".into()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(runs.len(), 2);
    for r in &runs {
        assert!(
            r.not_before >= r.queued_at && r.not_before <= r.queued_at + 30_000,
            "jitter delays the run by at most 30 s: {r:?}"
        );
    }
    for r in
        e.store().list_runs(&RunFilter { task: Some("busy".into()), limit: 10, ..Default::default() }).await.unwrap()
    {
        let _ = e.cancel_run(&r.id).await;
    }
}

async fn runs_of(e: &Engine, task: &str) -> Vec<agent_os_store::RunRecord> {
    let mut runs =
        e.store().list_runs(&RunFilter { task: Some(task.into()), limit: 100, ..Default::default() }).await.unwrap();
    runs.reverse();
    runs
}

/// Waits (real time) until the run's process has started (its pid is recorded). Before that
/// its attempt is still reading the database, and moving time on by a minute then would run
/// out the pool's 30 s wait for a connection, failing the attempt; "running" alone is set
/// when the run is claimed, before all that.
async fn wait_executing(e: &Engine, id: &str) -> agent_os_store::RunRecord {
    eventually(&format!("run {id} never started its process"), Duration::from_secs(15), async || {
        let attempts = e.store().running_attempts().await.unwrap();
        attempts.into_iter().find(|(r, a)| r.id == id && a.pid.is_some()).map(|(r, _)| r)
    })
    .await
}

/// Waits (real time) until the run has `status`.
async fn wait_status(e: &Engine, id: &str, status: RunStatus) -> agent_os_store::RunRecord {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let run = e.store().get_run(id).await.unwrap().unwrap();
        if run.status == status {
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "run {id} never became {status}: {run:?}");
        agent_os_engine::testing::nap(Duration::from_millis(20)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_queued_slot_waits_for_the_previous_run_and_the_queue_holds_one() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let clock = TokioClock::starting_at(ms("2026-11-25T10:00:30Z"));
    let e = engine(dir.path(), &clock).await;
    e.register_path(&project(dir.path(), "  - { task: busy, cron: \"* * * * *\", overlap: queue }\n")).await.unwrap();
    e.schedule_tick().await.unwrap();
    advance_ms(60_000).await;
    e.schedule_tick().await.unwrap();
    let first = runs_of(&e, "busy").await.remove(0);
    assert_eq!(first.scheduled_for, Some(ms("2026-11-25T10:01:00Z")));
    wait_executing(&e, &first.id).await;

    advance_ms(60_000).await;
    e.schedule_tick().await.unwrap();
    advance_ms(60_000).await;
    e.schedule_tick().await.unwrap();
    let runs = runs_of(&e, "busy").await;
    assert_eq!(runs.len(), 2, "10:02 queued a run; 10:03 found one already waiting and was skipped");
    let second = runs[1].clone();
    assert_eq!(second.scheduled_for, Some(ms("2026-11-25T10:02:00Z")));
    // The dispatcher's own claim, made here: the second run cannot be had while the first runs.
    let (_, hash) = agent_os_engine::secrets::new_token(agent_os_engine::secrets::TokenKind::Run);
    let token = agent_os_engine::secrets::token_record(
        agent_os_engine::secrets::TokenKind::Run,
        "run token",
        hash,
        None,
        e.now(),
    );
    let claimed = e.store().claim_runs("another-node", e.now(), 1, &[token]).await.unwrap();
    assert!(claimed.is_empty(), "it waits: {claimed:?} {:?}", runs_of(&e, "busy").await);
    assert_eq!(e.store().get_run(&second.id).await.unwrap().unwrap().status, RunStatus::Queued, "it waits");

    e.cancel_run(&first.id).await.unwrap();
    wait_status(&e, &first.id, RunStatus::Cancelled).await;
    wait_executing(&e, &second.id).await;
    e.cancel_run(&second.id).await.unwrap();
    wait_status(&e, &second.id, RunStatus::Cancelled).await;
}

#[tokio::test(start_paused = true)]
async fn a_replacing_slot_cancels_the_previous_run() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let clock = TokioClock::starting_at(ms("2026-11-25T10:00:30Z"));
    let e = engine(dir.path(), &clock).await;
    e.register_path(&project(dir.path(), "  - { task: busy, cron: \"* * * * *\", overlap: replace }\n")).await.unwrap();
    e.schedule_tick().await.unwrap();
    advance_ms(60_000).await;
    e.schedule_tick().await.unwrap();
    let first = runs_of(&e, "busy").await.remove(0);
    wait_executing(&e, &first.id).await;
    advance_ms(60_000).await;
    e.schedule_tick().await.unwrap();
    let second = runs_of(&e, "busy").await.remove(1);
    wait_status(&e, &first.id, RunStatus::Cancelled).await;
    let second = wait_executing(&e, &second.id).await;
    let first = e.store().get_run(&first.id).await.unwrap().unwrap();
    assert!(second.started_at >= first.finished_at, "the new run starts once the old one has ended");
    e.cancel_run(&second.id).await.unwrap();
    wait_status(&e, &second.id, RunStatus::Cancelled).await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_schedule_fires_nothing_and_resumes_without_catching_up() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let clock = TokioClock::starting_at(ms("2026-11-25T10:00:30Z"));
    let e = engine(dir.path(), &clock).await;
    let schedules =
        "  - { task: a, cron: \"* * * * *\", catch_up: all, overlap: allow }\n  - { task: b, cron: \"*/5 * * * *\" }\n";
    e.register_path(&project(dir.path(), schedules)).await.unwrap();
    e.schedule_tick().await.unwrap();

    let paused = e.pause_schedule("proj/a", true).await.unwrap();
    assert_eq!(e.find_schedule(&paused.id).await.unwrap().key, paused.key, "the id finds it too");
    let next = e.schedule_tick().await.unwrap();
    assert_eq!(next, Some(ms("2026-11-25T10:05:00Z")), "a paused schedule does not wake the scheduler");
    advance_ms(3 * 60_000).await;
    e.schedule_tick().await.unwrap();
    assert_eq!(count(&e, "a").await, 0, "paused: 10:01 to 10:03 do not fire");

    e.pause_schedule(&paused.id, false).await.unwrap();
    e.schedule_tick().await.unwrap();
    assert_eq!(count(&e, "a").await, 0, "resuming does not catch up the paused slots, even with catch_up: all");
    advance_ms(60_000).await;
    e.schedule_tick().await.unwrap();
    assert_eq!(count(&e, "a").await, 1, "10:04 fires");

    // "Run now" starts the task at once and uses up no slot.
    let run = e.run_schedule_now("proj/b", "manual").await.unwrap();
    assert_eq!((run.task.as_str(), run.trigger.as_str(), run.scheduled_for), ("b", "manual", None));
    advance_ms(60_000).await;
    e.schedule_tick().await.unwrap();
    let b = runs_of(&e, "b").await;
    assert_eq!(b.len(), 2, "the 10:05 slot still fires");
    assert_eq!(b[1].scheduled_for, Some(ms("2026-11-25T10:05:00Z")));

    let ambiguous = e.find_schedule("proj/nope").await.err().unwrap().to_string();
    assert!(ambiguous.contains("no schedule \"proj/nope\""), "{ambiguous}");
}

#[tokio::test(start_paused = true)]
async fn an_edited_manifest_reaches_the_scheduler_at_once() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let clock = TokioClock::starting_at(ms("2026-11-25T10:00:30Z"));
    let e = engine(dir.path(), &clock).await;
    let root = project(dir.path(), "  - { task: a, cron: \"0 12 * * *\" }\n");
    e.register_path(&root).await.unwrap();
    assert_eq!(e.schedule_tick().await.unwrap(), Some(ms("2026-11-25T12:00:00Z")));
    project(dir.path(), "  - { task: a, cron: \"30 10 * * *\" }\n");
    e.reload("proj", None).await.unwrap();
    assert_eq!(e.schedule_tick().await.unwrap(), Some(ms("2026-11-25T10:30:00Z")));
    e.remove("proj").await.unwrap();
    assert_eq!(e.schedule_tick().await.unwrap(), None, "a removed project's schedules are gone");
}

#[tokio::test(start_paused = true)]
async fn a_project_paused_by_its_budget_skips_its_slots_until_resumed() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let clock = TokioClock::starting_at(ms("2026-11-25T10:00:30Z"));
    let e = engine(dir.path(), &clock).await;
    e.register_path(&project(dir.path(), "  - { task: a, cron: \"* * * * *\" }\n")).await.unwrap();
    e.schedule_tick().await.unwrap();
    e.set_budget(agent_os_engine::BudgetInput {
        project: "proj".into(),
        service: None,
        period: "daily".into(),
        amount: "1".into(),
        currency: None,
        thresholds: Some(vec![100]),
        on_exceed: Some("pause".into()),
    })
    .await
    .unwrap();
    let cost: agent_os_engine::costs::CostInput =
        serde_json::from_value(serde_json::json!({"service": "openai", "amount": "1.5"})).unwrap();
    e.record_costs("proj", None, &[cost], false).await.unwrap();
    assert!(e.pause_of("proj").await.unwrap().is_some());

    advance_ms(60_000).await;
    e.schedule_tick().await.unwrap();
    assert_eq!(count(&e, "a").await, 0, "the 10:01 slot is skipped while the project is paused");
    e.resume_project("proj").await.unwrap();
    advance_ms(60_000).await;
    e.schedule_tick().await.unwrap();
    assert_eq!(count(&e, "a").await, 1, "10:02 fires after the resume");

    // Spending on in the same period does not pause it again.
    e.record_costs(
        "proj",
        None,
        &[serde_json::from_value(serde_json::json!({"service": "openai", "amount": "0.1"})).unwrap()],
        false,
    )
    .await
    .unwrap();
    assert!(e.pause_of("proj").await.unwrap().is_none(), "no second pause in the same period");

    // A new day is a new period: over the limit again, paused again, and the pause ends by
    // itself when that day does.
    advance_ms(24 * 3_600_000).await;
    e.record_costs(
        "proj",
        None,
        &[serde_json::from_value(serde_json::json!({"service": "openai", "amount": "2"})).unwrap()],
        false,
    )
    .await
    .unwrap();
    assert!(e.pause_of("proj").await.unwrap().is_some());
    advance_ms(24 * 3_600_000).await;
    assert!(e.pause_of("proj").await.unwrap().is_none(), "the period ended");
}
