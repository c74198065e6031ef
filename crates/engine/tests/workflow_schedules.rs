//! Scheduled workflows with a fake clock: a slot starts one run, slots missed while Agent OS
//! was down follow `catch_up`, and a restart does not fire a slot again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_os_core::workflow::TriggerKind;
use agent_os_engine::clock::FakeClock;
use agent_os_engine::{Clock, Engine, EngineConfig};
use agent_os_store::{SqlStore, StoreOptions, sqlite_url};

fn ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

async fn engine(dir: &Path, clock: &FakeClock) -> Arc<Engine> {
    let store = SqlStore::open(&StoreOptions::new(sqlite_url(&dir.join("agent-os.db"))), clock.now_ms()).await.unwrap();
    let mut cfg = EngineConfig::new(agent_os_core::id::new_id(), "http://127.0.0.1:9".into(), dir.join("run"));
    cfg.probes_enabled = false;
    cfg.schedules_enabled = false;
    cfg.workflows_dir = Some(dir.join("workflows"));
    Engine::start(Arc::new(store), Arc::new(clock.clone()), cfg).await.unwrap()
}

/// The slots of the runs started so far, oldest first.
async fn slots(e: &Engine, within: Duration, want: usize) -> Vec<i64> {
    let deadline = std::time::Instant::now() + within;
    loop {
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
        if s.len() >= want || std::time::Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn workflow(dir: &Path, catch_up: &str) {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let text = format!(
        "name: tick\non:\n  schedule: {{ cron: \"* * * * *\", timezone: UTC, catch_up: {catch_up}, overlap: allow }}\nsteps:\n  - {{ id: say, emit: {{ type: tick.said, data: {{ slot: \"{{{{ event.data.slot }}}}\" }} }} }}\n"
    );
    std::fs::write(dir.join("workflows/tick.yaml"), text).unwrap();
}

#[tokio::test]
async fn a_slot_starts_one_run_and_missed_slots_follow_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    workflow(dir.path(), "latest");
    let clock = FakeClock::new(ms("2026-11-25T10:00:30Z"));
    let e = engine(dir.path(), &clock).await;
    assert!(e.load_workflows().await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(slots(&e, Duration::ZERO, 0).await.is_empty(), "a new schedule waits for its next slot");

    clock.advance_ms(40_000); // 10:01:10
    assert_eq!(slots(&e, Duration::from_secs(5), 1).await, [ms("2026-11-25T10:01:00Z")]);
    // The run carries its slot as its event.
    let run = &e.store().list_workflow_runs(Some("tick"), false, 1).await.unwrap()[0];
    assert!(run.event.as_deref().unwrap().contains("2026-11-25T10:01:00Z"), "{run:?}");

    // Three slots pass while "down" (the loop sees them at once): latest fires only 10:04.
    clock.advance_ms(3 * 60_000); // 10:04:10
    assert_eq!(slots(&e, Duration::from_secs(5), 2).await, [ms("2026-11-25T10:01:00Z"), ms("2026-11-25T10:04:00Z")]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(slots(&e, Duration::ZERO, 0).await.len(), 2, "nothing more");
    e.begin_shutdown();
    e.shutdown(Duration::from_secs(1)).await;

    // After a restart the last slot is read back: nothing fires again until 10:05.
    let e = engine(dir.path(), &clock).await;
    assert!(e.load_workflows().await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(slots(&e, Duration::ZERO, 0).await.len(), 2, "a restart fires no slot twice");
    clock.advance_ms(60_000); // 10:05:10
    assert_eq!(slots(&e, Duration::from_secs(5), 3).await.last(), Some(&ms("2026-11-25T10:05:00Z")));
}

#[tokio::test]
async fn catch_up_all_fires_every_missed_slot_and_skip_fires_none() {
    for (catch_up, want) in [("all", 4), ("skip", 1)] {
        let dir = tempfile::tempdir().unwrap();
        workflow(dir.path(), catch_up);
        let clock = FakeClock::new(ms("2026-11-25T10:00:30Z"));
        let e = engine(dir.path(), &clock).await;
        assert!(e.load_workflows().await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(1200)).await;
        clock.advance_ms(4 * 60_000 - 20_000); // 10:04:10: slots 10:01 … 10:04
        let got = slots(&e, Duration::from_secs(5), want).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let got_later = slots(&e, Duration::ZERO, 0).await;
        assert_eq!(got_later.len(), want, "catch_up {catch_up}: {got:?}");
        assert_eq!(got_later.last(), Some(&ms("2026-11-25T10:04:00Z")), "catch_up {catch_up}");
        e.begin_shutdown();
        e.shutdown(Duration::from_secs(1)).await;
    }
}
