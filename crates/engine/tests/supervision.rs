//! The engine's loops under supervision, with a panic injected into a loop: it is started
//! again after a backoff and its work goes on; one that keeps dying, or the heartbeat, stops
//! the engine; shutdown joins the runs' tasks and the loops. Time is held (`testing`), so
//! the backoffs pass when the test says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use agent_os_core::run::RunStatus;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_os_engine::testing::{eventually, hold_time, store_options};
use agent_os_engine::{Engine, EngineConfig, EngineError, Loop, LoopHealth, RunRequest, TokioClock};
use agent_os_store::{SqlStore, sqlite_url};
use serde_json::json;

const START: i64 = 1_795_000_000_000;
const REAL: Duration = Duration::from_secs(15);

async fn engine(dir: &Path) -> Arc<Engine> {
    let store = SqlStore::open(&store_options(sqlite_url(&dir.join("agent-os.db"))), START).await.unwrap();
    let mut cfg = EngineConfig::new(agent_os_core::id::new_id(), "http://127.0.0.1:9".into(), dir.join("run"));
    cfg.probes_enabled = false;
    cfg.schedules_enabled = false;
    let e = Engine::start(Arc::new(store), Arc::new(TokioClock::starting_at(START)), cfg).await.unwrap();
    let root = dir.join("proj");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("agent-os.yaml"), "name: proj\ntasks:\n  ok: { run: \"true\" }\n").unwrap();
    e.register_path(&root).await.unwrap();
    e
}

fn health(e: &Engine, l: Loop) -> LoopHealth {
    e.loop_health().into_iter().find(|h| h.name == l.name()).unwrap()
}

/// Waits until loop `l` has died `deaths` times in all (restarted or not).
async fn died(e: &Engine, l: Loop, restarts: u64) -> LoopHealth {
    eventually(&format!("the {} loop should die", l.name()), REAL, async || {
        let h = health(e, l);
        (!h.running && h.last_death.is_some() && h.restarts == restarts).then_some(h)
    })
    .await
}

async fn run_ok(e: &Engine) -> String {
    let req = RunRequest { project: "proj".into(), task: "ok".into(), input: json!({}), trigger: "manual".into() };
    let run = e.start_run(req).await.unwrap();
    eventually("the run should succeed", REAL, async || {
        let run = e.store().get_run(&run.id).await.unwrap().unwrap();
        (run.status == RunStatus::Succeeded).then_some(run.id)
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_loop_that_panics_is_started_again_after_a_backoff_and_its_work_goes_on() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path()).await;
    assert!(e.loop_health().iter().all(|h| h.running && h.restarts == 0), "{:?}", e.loop_health());
    run_ok(&e).await;

    e.inject_panic(Loop::Dispatch);
    let dead = died(&e, Loop::Dispatch, 0).await;
    assert_eq!(dead.last_death.as_deref(), Some("panicked: fault injected into the dispatch loop"));
    assert!(e.failure().is_none(), "one death does not stop the engine");
    let others = e.loop_health().into_iter().filter(|h| h.name != "dispatch");
    assert!(others.into_iter().all(|h| h.running), "the other loops go on");

    // A run queued while the dispatcher is down waits for it: started again after 1 s.
    let req = RunRequest { project: "proj".into(), task: "ok".into(), input: json!({}), trigger: "manual".into() };
    let waiting = e.start_run(req).await.unwrap();
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(!health(&e, Loop::Dispatch).running, "the backoff is 1 s");
    tokio::time::advance(Duration::from_millis(1)).await;
    let back = eventually("the dispatcher should be started again", REAL, async || {
        let h = health(&e, Loop::Dispatch);
        h.running.then_some(h)
    })
    .await;
    assert_eq!(back.restarts, 1);
    eventually("the waiting run should succeed", REAL, async || {
        let run = e.store().get_run(&waiting.id).await.unwrap().unwrap();
        (run.status == RunStatus::Succeeded).then_some(())
    })
    .await;
    run_ok(&e).await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_writer_goes_on_with_what_was_queued() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path()).await;
    e.inject_panic(Loop::Event);
    died(&e, Loop::Event, 0).await;
    let emitting = tokio::spawn({
        let e = e.clone();
        async move { e.emit_event(Some("proj"), "proj.said", json!({"n": 1}), None).await }
    });
    // Time is held: the writer cannot be back before its backoff has passed.
    agent_os_engine::testing::nap(Duration::from_millis(100)).await;
    assert!(!emitting.is_finished(), "the event waits in the queue");
    tokio::time::advance(Duration::from_secs(1)).await;
    eventually("the event should be written", REAL, async || emitting.is_finished().then_some(())).await;
    let (event, fresh) = emitting.await.unwrap().unwrap();
    assert!(fresh);
    let stored = e.store().list_events(Some("proj."), None, None, 10).await.unwrap();
    assert!(stored.iter().any(|s| s.id == event.id), "{stored:?}");
    assert_eq!(health(&e, Loop::Event).restarts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_loop_that_keeps_dying_stops_the_engine() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path()).await;
    for (death, backoff) in [1u64, 2, 4, 8].into_iter().enumerate() {
        e.inject_panic(Loop::Dispatch);
        died(&e, Loop::Dispatch, death as u64).await;
        assert!(e.failure().is_none());
        tokio::time::advance(Duration::from_secs(backoff)).await;
        eventually("the dispatcher should be started again", REAL, async || {
            health(&e, Loop::Dispatch).running.then_some(())
        })
        .await;
    }
    e.inject_panic(Loop::Dispatch);
    let why = tokio::time::timeout(REAL, e.failed()).await.expect("the engine should stop");
    assert_eq!(
        why,
        "the dispatch loop died 5 times within 10 minutes, last panicked: fault injected into the dispatch loop"
    );
    assert_eq!(e.failure().as_deref(), Some(why.as_str()));
    let h = health(&e, Loop::Dispatch);
    assert_eq!((h.running, h.restarts), (false, 4), "not started a fifth time");
    let req = RunRequest { project: "proj".into(), task: "ok".into(), input: json!({}), trigger: "manual".into() };
    assert!(matches!(e.start_run(req).await, Err(EngineError::Unavailable(_))), "no more work is taken");
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_that_dies_stops_the_engine_at_once() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path()).await;
    e.inject_panic(Loop::Heartbeat);
    let why = tokio::time::timeout(REAL, e.failed()).await.expect("the engine should stop");
    assert_eq!(why, "the heartbeat loop panicked: fault injected into the heartbeat loop");
    let h = health(&e, Loop::Heartbeat);
    assert_eq!((h.running, h.restarts), (false, 0), "the heartbeat is not started again");
    e.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_joins_the_runs_and_the_loops() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path()).await;
    run_ok(&e).await;
    e.shutdown(Duration::from_secs(1)).await;
    assert!(e.loop_health().iter().all(|h| !h.running), "{:?}", e.loop_health());
    assert!(e.failure().is_none(), "a shutdown is not a failure");
    // Every loop and task held the engine; all of them have ended.
    assert_eq!(Arc::strong_count(&e), 1);
}
