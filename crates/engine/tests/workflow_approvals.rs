//! The `approval` step on held time: a run waits at the step until a person decides (here
//! through the engine's own call, which the API, the CLI, the dashboard and signed links all
//! reach), or until its timeout decides for `on_timeout`. Approved, the form's answers reach a
//! later step's template; rejected, the step fails and the steps after it are skipped. A wrong
//! answer records nothing; a second decision is refused with who decided; a restart while the
//! step waits keeps it waiting, and its timeout still fires.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_os_core::workflow::{Decision, StepStatus, TriggerKind, WorkflowRunStatus};
use agent_os_engine::engine::workflows::StartWorkflow;
use agent_os_engine::engine::workflows::approvals::Decide;
use agent_os_engine::testing::{eventually, hold_time, store_options};
use agent_os_engine::{Engine, EngineConfig, EngineError, TokioClock};
use agent_os_store::{SqlStore, StepRecord, WorkflowRunRecord, sqlite_url};
use serde_json::{Value, json};

const DEPLOY: &str = r#"name: deploy
on:
  manual:
    inputs:
      version: { type: string, required: true }
steps:
  - id: go_live
    approval:
      message: "Deploy {{ inputs.version }} to production?"
      timeout: 24h
      on_timeout: ON_TIMEOUT
      inputs:
        reason: { type: string, required: true }
        size: { type: number }
        mode: { type: choice, options: [fast, safe], default: safe }
      notify: { severity: warning, tags: [deploy] }
  - id: announce
    needs: go_live
    emit:
      type: deploy.started
      data: { reason: "{{ steps.go_live.outputs.inputs.reason }}", mode: "{{ steps.go_live.outputs.inputs.mode }}", by: "{{ steps.go_live.outputs.decided_by }}" }
"#;

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
    let e = Engine::start(Arc::new(store), Arc::new(clock), cfg).await.unwrap();
    assert!(e.load_workflows().await.unwrap().is_empty());
    e
}

fn write(dir: &Path, on_timeout: &str) {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(dir.join("workflows/deploy.yaml"), DEPLOY.replace("ON_TIMEOUT", on_timeout)).unwrap();
}

async fn start(e: &Engine) -> String {
    let start = StartWorkflow {
        trigger: TriggerKind::Manual,
        trigger_key: None,
        event: None,
        inputs: json!({"version": "1.4.2"}),
        parent: None,
    };
    e.start_workflow("deploy", start).await.unwrap().id
}

async fn step(e: &Engine, run: &str, id: &str) -> Option<StepRecord> {
    e.store().workflow_steps(run).await.unwrap().into_iter().find(|s| s.step_id == id)
}

/// The approval step once it waits.
async fn waiting(e: &Engine, run: &str) -> StepRecord {
    eventually("the approval step should wait", Duration::from_secs(15), async || {
        step(e, run, "go_live").await.filter(|s| s.status == StepStatus::Waiting)
    })
    .await
}

async fn ended(e: &Engine, run: &str) -> WorkflowRunRecord {
    eventually("the run should end", Duration::from_secs(15), async || {
        e.store().get_workflow_run(run).await.unwrap().filter(|r| r.status.is_terminal())
    })
    .await
}

fn outputs(s: &StepRecord) -> Value {
    serde_json::from_str(s.outputs.as_deref().unwrap()).unwrap()
}

fn decide(decision: Decision, by: &str, comment: Option<&str>, inputs: Value) -> Decide {
    Decide { decision, by: by.into(), comment: comment.map(str::to_string), inputs }
}

#[tokio::test(start_paused = true)]
async fn an_approval_waits_and_its_answers_reach_the_next_step() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "reject");
    let e = engine(dir.path(), TokioClock::starting_at(ms("2026-12-01T10:00:00Z"))).await;
    let run = start(&e).await;
    let s = waiting(&e, &run).await;
    assert_eq!(outputs(&s)["message"], "Deploy 1.4.2 to production?", "the message is rendered when it waits");
    assert_eq!(s.wake_at, Some(ms("2026-12-02T10:00:00Z")), "the timeout is its wake time");
    assert!(step(&e, &run, "announce").await.is_none(), "nothing after it starts while it waits");
    // The channels hear that a decision is wanted.
    let told = e.store().list_notifications(None, 10).await.unwrap();
    assert!(told.iter().any(|n| n.title == "Approval wanted: Deploy 1.4.2 to production?"), "{told:?}");

    // A wrong answer is refused naming its field, and records nothing.
    let bad = [
        (json!({"size": 2}), "inputs.reason"),
        (json!({"reason": "x", "size": "big"}), "inputs.size"),
        (json!({"reason": "x", "mode": "slow"}), "inputs.mode"),
        (json!({"reason": "x", "colour": "red"}), "inputs.colour"),
    ];
    for (inputs, field) in bad {
        match e.decide_approval(&run, "go_live", decide(Decision::Approved, "ana", None, inputs.clone())).await {
            Err(EngineError::Invalid { field: Some(f), .. }) => assert_eq!(f, field, "{inputs}"),
            other => panic!("{inputs}: {other:?}"),
        }
    }
    assert!(e.store().workflow_approvals(&run).await.unwrap().is_empty(), "a refused answer is not recorded");
    assert_eq!(step(&e, &run, "go_live").await.unwrap().status, StepStatus::Waiting);
    // A step that is not an approval is not decided.
    assert!(matches!(
        e.decide_approval(&run, "announce", decide(Decision::Approved, "ana", None, Value::Null)).await,
        Err(EngineError::Invalid { .. })
    ));

    let d = decide(Decision::Approved, "ana", Some("hotfix"), json!({"reason": "CVE fix", "size": "2.5"}));
    let decided = e.decide_approval(&run, "go_live", d).await.unwrap();
    assert_eq!(decided.decided_at, ms("2026-12-01T10:00:00Z"));
    // Settled by the call itself: the step has its outputs at once.
    let s = step(&e, &run, "go_live").await.unwrap();
    assert_eq!(s.status, StepStatus::Succeeded);
    let out = outputs(&s);
    assert_eq!(out["approved"], true);
    assert_eq!(out["decided_by"], "ana");
    assert_eq!(out["comment"], "hotfix");
    assert_eq!(out["decided_at"], "2026-12-01T10:00:00Z");
    assert_eq!(out["inputs"], json!({"reason": "CVE fix", "size": 2.5, "mode": "safe"}));

    let r = ended(&e, &run).await;
    assert_eq!(r.status, WorkflowRunStatus::Succeeded, "{r:?}");
    let announce = outputs(&step(&e, &run, "announce").await.unwrap());
    assert_eq!(announce["data"], json!({"reason": "CVE fix", "mode": "safe", "by": "ana"}), "{announce}");

    // Decided once: a second decision is refused with who decided.
    match e.decide_approval(&run, "go_live", decide(Decision::Rejected, "bo", None, Value::Null)).await {
        Err(EngineError::Conflict(m)) => assert!(m.contains("already approved by ana"), "{m}"),
        other => panic!("{other:?}"),
    }
    let stored = e.store().workflow_approvals(&run).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].decision, stored[0].decided_by.as_str()), (Decision::Approved, "ana"));
    e.begin_shutdown();
    e.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_rejection_fails_the_step_and_skips_what_needs_it() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "reject");
    let e = engine(dir.path(), TokioClock::starting_at(ms("2026-12-01T10:00:00Z"))).await;
    let run = start(&e).await;
    waiting(&e, &run).await;
    // A rejection needs no required answer.
    let d = decide(Decision::Rejected, "bo", Some("not on a Friday"), json!({}));
    e.decide_approval(&run, "go_live", d).await.unwrap();
    let r = ended(&e, &run).await;
    assert_eq!(r.status, WorkflowRunStatus::Failed);
    assert_eq!(r.error.as_deref(), Some("step go_live failed: rejected by bo: not on a Friday"));
    let s = step(&e, &run, "go_live").await.unwrap();
    assert_eq!(s.status, StepStatus::Failed);
    assert_eq!(outputs(&s)["approved"], false);
    let announce = step(&e, &run, "announce").await.unwrap();
    assert_eq!(announce.status, StepStatus::Skipped, "{announce:?}");
    e.begin_shutdown();
    e.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn the_timeout_decides_for_on_timeout_both_ways() {
    let _time = hold_time();
    for (on_timeout, want, status) in [
        ("reject", Decision::Rejected, WorkflowRunStatus::Failed),
        ("approve", Decision::Approved, WorkflowRunStatus::Succeeded),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), on_timeout);
        let e = engine(dir.path(), TokioClock::starting_at(ms("2026-12-01T10:00:00Z"))).await;
        let run = start(&e).await;
        waiting(&e, &run).await;
        tokio::time::advance(Duration::from_secs(24 * 3600 - 60)).await;
        assert!(e.store().workflow_approvals(&run).await.unwrap().is_empty(), "{on_timeout}: not before its time");
        tokio::time::advance(Duration::from_secs(61)).await;
        let r = ended(&e, &run).await;
        assert_eq!(r.status, status, "{on_timeout}: {r:?}");
        let d = &e.store().workflow_approvals(&run).await.unwrap()[0];
        assert_eq!((d.decision, d.decided_by.as_str()), (want, "timeout"), "{on_timeout}");
        let out = outputs(&step(&e, &run, "go_live").await.unwrap());
        assert_eq!(out["decided_by"], "timeout");
        assert_eq!(out["inputs"], json!({"mode": "safe"}), "a timeout answers with the defaults");
        if want == Decision::Rejected {
            assert_eq!(r.error.as_deref(), Some("step go_live failed: rejected by timeout"));
        }
        // Too late for a person.
        let late = e.decide_approval(&run, "go_live", decide(Decision::Approved, "ana", None, json!({"reason": "x"})));
        match late.await {
            Err(EngineError::Conflict(m)) => assert!(m.contains("by timeout"), "{m}"),
            other => panic!("{other:?}"),
        }
        e.begin_shutdown();
        e.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_restart_keeps_the_step_waiting_and_its_timeout_still_fires() {
    let _time = hold_time();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "reject");
    let clock = TokioClock::starting_at(ms("2026-12-01T10:00:00Z"));
    let e = engine(dir.path(), clock).await;
    let run = start(&e).await;
    waiting(&e, &run).await;
    e.begin_shutdown();
    e.shutdown(Duration::from_secs(1)).await;
    drop(e);

    // Down for two hours; the step is still waiting afterwards, and can still be decided.
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    let e = engine(dir.path(), clock).await;
    tokio::time::advance(Duration::from_millis(1500)).await;
    let s = step(&e, &run, "go_live").await.unwrap();
    assert_eq!(s.status, StepStatus::Waiting, "{s:?}");
    assert_eq!(e.store().get_workflow_run(&run).await.unwrap().unwrap().status, WorkflowRunStatus::Running);

    // Its timeout, counted from when it began waiting, fires on the new engine.
    tokio::time::advance(Duration::from_secs(22 * 3600)).await;
    let r = ended(&e, &run).await;
    assert_eq!(r.status, WorkflowRunStatus::Failed);
    let d = &e.store().workflow_approvals(&run).await.unwrap()[0];
    assert_eq!(d.decided_by, "timeout");
    assert!(d.decided_at >= ms("2026-12-02T10:00:00Z"), "not before 24 h after it began waiting");
    e.begin_shutdown();
    e.shutdown(Duration::from_secs(1)).await;
}
