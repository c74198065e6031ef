//! Scheduled workflows on held time: a slot starts one run, slots missed while Agent OS was
//! down follow `catch_up`, and a restart does not fire a slot again. The engine's clock follows
//! tokio's, which only `tokio::time::advance` moves (`agent_os_engine::testing`), so the
//! workflow loop wakes for a slot exactly when the test says the slot has come.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_os_core::workflow::TriggerKind;
use agent_os_engine::testing::{eventually, hold_time, store_options};
use agent_os_engine::{Engine, EngineConfig, TokioClock};
use agent_os_store::{SqlStore, sqlite_url};

fn ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

async fn engine(dir: &Path, clock: TokioClock) -> Arc<Engine> {
    use agent_os_engine::Clock;
    let store = SqlStore::open(&store_options(sqlite_url(&dir.join("agent-os.db"))), clock.now_ms()).await.unwrap();
    let mut cfg = EngineConfig::new(agent_os_core::id::new_id(), "http://127.0.0.1:9".into(), dir.join("run"));
    cfg.probes_enabled = false;
    cfg.schedules_enabled = false;
    cfg.workflows_dir = Some(dir.join("workflows"));
    Engine::start(Arc::new(store), Arc::new(clock), cfg).await.unwrap()
}

/// The slots of the runs started so far, oldest first.
async fn slots(e: &Engine) -> Vec<i64> {
    let mut s: Vec<i64> = e
        .store()
        .list_workflow_runs(Some("tick"), false, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r.trigger, TriggerKind::Schedule);
            r.trigger_key.as_deref().unwrap().strip_prefix("schedule:").unwrap().parse().unwrap()
        })
        .collect();
    s.sort();
    s
}

/// The slots once the workflow loop has started `want` runs (it wakes by itself for a slot).
async fn fired(e: &Engine, want: usize) -> Vec<i64> {
    eventually(&format!("the workflow loop should have started {want} runs"), Duration::from_secs(15), async || {
        let s = slots(e).await;
        (s.len() >= want).then_some(s)
    })
    .await
}

/// The slots after one more pass over the schedules at the current time: what the loop's next
/// pass would fire, fired here, so "nothing more" needs no waiting.
async fn settled(e: &Engine) -> Vec<i64> {
    e.fire_workflow_schedules().await.unwrap();
    slots(e).await
}

fn workflow(dir: &Path, catch_up: &str) {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let text = format!(
        "name: tick\non:\n  schedule: {{ cron: \"* * * * *\", timezone: UTC, catch_up: {catch_up}, overlap: allow }}\nsteps:\n  - {{ id: say, emit: {{ type: tick.said, data: {{ slot: \"{{{{ event.data.slot }}}}\" }} }} }}\n"
    );
    std::fs::write(dir.join("workflows/tick.yaml"), text).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_slot_starts_one_run_and_missed_slots_follow_catch_up() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    workflow(dir.path(), "latest");
    let clock = TokioClock::starting_at(ms("2026-11-25T10:00:30Z"));
    let e = engine(dir.path(), clock).await;
    assert!(e.load_workflows().await.unwrap().is_empty());
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert!(settled(&e).await.is_empty(), "a new schedule waits for its next slot");

    tokio::time::advance(Duration::from_millis(38_500)).await; // 10:01:10
    assert_eq!(fired(&e, 1).await, [ms("2026-11-25T10:01:00Z")]);
    // The run carries its slot as its event.
    let run = &e.store().list_workflow_runs(Some("tick"), false, 1).await.unwrap()[0];
    assert!(run.event.as_deref().unwrap().contains("2026-11-25T10:01:00Z"), "{run:?}");

    // Three slots pass while "down" (the loop sees them at once): latest fires only 10:04.
    tokio::time::advance(Duration::from_secs(3 * 60)).await; // 10:04:10
    assert_eq!(fired(&e, 2).await, [ms("2026-11-25T10:01:00Z"), ms("2026-11-25T10:04:00Z")]);
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_eq!(settled(&e).await.len(), 2, "nothing more");
    e.begin_shutdown();
    e.shutdown(Duration::from_secs(1)).await;

    // After a restart the last slot is read back: nothing fires again until 10:05.
    let e = engine(dir.path(), clock).await;
    assert!(e.load_workflows().await.unwrap().is_empty());
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_eq!(settled(&e).await.len(), 2, "a restart fires no slot twice");
    tokio::time::advance(Duration::from_millis(58_500)).await; // 10:05:10
    assert_eq!(fired(&e, 3).await.last(), Some(&ms("2026-11-25T10:05:00Z")));
}

#[tokio::test(start_paused = true)]
async fn catch_up_all_fires_every_missed_slot_and_skip_fires_none() {
    let _time = hold_time();
    for (catch_up, want) in [("all", 4), ("skip", 1)] {
        let dir = tempfile::tempdir().unwrap();
        workflow(dir.path(), catch_up);
        let e = engine(dir.path(), TokioClock::starting_at(ms("2026-11-25T10:00:30Z"))).await;
        assert!(e.load_workflows().await.unwrap().is_empty());
        tokio::time::advance(Duration::from_millis(1200)).await;
        assert!(settled(&e).await.is_empty(), "catch_up {catch_up}: the schedule starts now");
        tokio::time::advance(Duration::from_secs(4 * 60 - 20)).await; // 10:04:11: slots 10:01 … 10:04
        let got = fired(&e, want).await;
        tokio::time::advance(Duration::from_millis(1200)).await;
        let got_later = settled(&e).await;
        assert_eq!(got_later.len(), want, "catch_up {catch_up}: {got:?}");
        assert_eq!(got_later.last(), Some(&ms("2026-11-25T10:04:00Z")), "catch_up {catch_up}");
        e.begin_shutdown();
        e.shutdown(Duration::from_secs(1)).await;
    }
}
