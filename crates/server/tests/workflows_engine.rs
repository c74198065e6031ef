//! The workflow executor's behaviour end to end: workflow files in a temporary directory, a
//! fixture project whose tasks are real processes that log what they were given and when, and
//! runs started, fed events, cancelled and watched through the HTTP API only. Each test proves
//! one part of "How a run goes" in docs/workflows.md.
//!
//! These tests keep real time (not `start_held`): the fixture's tasks are processes that sleep
//! and log wall-clock times (`time.time()`), and the tests compare those with the engine's
//! retry delays, waits and timeouts, which held time would move without them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The fixture project. `record` logs a `start` and an `end` line (its run id, attempt, input
/// and the time) to `log.jsonl`, sleeps `input.sleep` seconds in between, fails when
/// `input.fail` is true or while its call count (per `input.step`) is below `input.fail_until`,
/// and otherwise writes `input.out` (or `{"got": input}`) as its outputs. `nap` appends its run
/// id to `naps.log` and sleeps 30 s. `stdin` keeps the exact bytes it got on stdin.
const ENG: &str = r#"name: eng
description: tasks that record what they were given and when
tasks:
  record:
    run: [python3, record.py]
  nap:
    run: "echo \"$AGENT_OS_RUN_ID\" >> naps.log; sleep 30"
  stdin:
    run: "cat > stdin.json"
"#;

const RECORD_PY: &str = r#"import json, os, sys, time
inp = json.loads(sys.stdin.read() or "{}")
run = os.environ["AGENT_OS_RUN_ID"]
attempt = int(os.environ["AGENT_OS_ATTEMPT"])

def log(kind, **more):
    line = {"kind": kind, "run": run, "attempt": attempt, "step": inp.get("step"), "input": inp, "t": time.time()}
    line.update(more)
    fd = os.open("log.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (json.dumps(line) + "\n").encode())
    os.close(fd)

n = None
if "fail_until" in inp:
    path = "count-" + inp["step"]
    n = int(open(path).read()) + 1 if os.path.exists(path) else 1
    open(path, "w").write(str(n))
log("start", n=n)
time.sleep(float(inp.get("sleep", 0)))
log("end", n=n)
if inp.get("fail") is True or (n is not None and n < inp["fail_until"]):
    print("failing on purpose", flush=True)
    sys.exit(1)
with open(os.environ["AGENT_OS_OUTPUT"], "w") as f:
    json.dump(inp.get("out", {"got": inp}), f)
"#;

/// A server with the fixture project registered and `workflows` (name, text) loaded.
struct Setup {
    s: TestServer,
    project: PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup(workflows: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let wf_dir = dir.path().join("workflows");
    std::fs::create_dir(&wf_dir).unwrap();
    let s = start_with(|cfg| cfg.workflows_dir = Some(wf_dir.clone())).await;
    let project = dir.path().join("eng");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("agent-os.yaml"), ENG).unwrap();
    std::fs::write(project.join("record.py"), RECORD_PY).unwrap();
    s.add(&project).await;
    for (name, text) in workflows {
        std::fs::write(wf_dir.join(format!("{name}.yaml")), text).unwrap();
    }
    let (st, r) = s.post("/api/v1/workflows/reload", json!({})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["errors"], json!([]), "{r:#}");
    for (name, _) in workflows {
        assert!(r["workflows"].as_array().unwrap().contains(&json!(name)), "{name} loaded: {r}");
    }
    Setup { s, project, _dir: dir }
}

/// Starts a manual run; returns its id.
async fn start(s: &TestServer, workflow: &str, inputs: Value) -> String {
    let (st, run) = s.post(&format!("/api/v1/workflows/{workflow}/runs"), json!({ "inputs": inputs })).await;
    assert_eq!(st, 201, "{run}");
    run["id"].as_str().unwrap().to_string()
}

/// Emits an event as the admin; returns the stored event.
async fn emit(s: &TestServer, kind: &str, data: Value) -> Value {
    let (st, e) = s.post("/api/v1/events", json!({ "type": kind, "data": data })).await;
    assert_eq!(st, 201, "{e}");
    e
}

async fn detail(s: &TestServer, id: &str) -> Value {
    let (st, run) = s.get(&format!("/api/v1/workflows/runs/{id}")).await;
    assert_eq!(st, 200, "{run}");
    run
}

fn ended(run: &Value) -> bool {
    !matches!(run["status"].as_str(), Some("queued" | "running"))
}

/// Waits (at most 20 s) for a workflow run to end.
async fn finished(s: &TestServer, id: &str) -> Value {
    until(&format!("workflow run {id} should end"), Duration::from_secs(20), async || {
        let run = detail(s, id).await;
        ended(&run).then_some(run)
    })
    .await
}

async fn runs_of(s: &TestServer, workflow: &str) -> Vec<Value> {
    let (st, list) = s.get(&format!("/api/v1/workflows/runs?workflow={workflow}")).await;
    assert_eq!(st, 200, "{list}");
    list.as_array().unwrap().clone()
}

/// A task run as the API shows it.
async fn task_run(s: &TestServer, id: &str) -> Value {
    let (st, run) = s.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(st, 200, "{run}");
    run
}

/// Polls `probe` every 50 ms until it gives something, for at most `within`.
async fn until<T>(what: &str, within: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The row of a step itself (not one of its for_each items).
fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step_id"] == id && s["item"].is_null())
        .unwrap_or_else(|| panic!("no step {id}: {run:#}"))
}

fn has_step(run: &Value, id: &str) -> bool {
    run["steps"].as_array().unwrap().iter().any(|s| s["step_id"] == id)
}

fn time(v: &Value) -> jiff::Timestamp {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().unwrap()
}

/// How long a step (or run) took, from its `started_at` to its `finished_at`.
fn took(row: &Value) -> Duration {
    let span = time(&row["finished_at"]).duration_since(time(&row["started_at"]));
    Duration::try_from(span).unwrap()
}

/// Every line `record` logged, in order.
fn log(project: &Path) -> Vec<Value> {
    match std::fs::read_to_string(project.join("log.jsonl")) {
        Ok(text) => text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The lines of one kind (`start` or `end`) logged by the `record` calls labelled `step`.
fn logged(project: &Path, kind: &str, step: &str) -> Vec<Value> {
    log(project).into_iter().filter(|l| l["kind"] == kind && l["step"] == step).collect()
}

fn t(line: &Value) -> f64 {
    line["t"].as_f64().unwrap()
}

// 1. for_each --------------------------------------------------------------------------------

const FANOUT: &str = r#"name: fanout
on:
  manual:
    inputs:
      items: { type: array, required: true }
steps:
  - id: each
    for_each: { items: inputs.items, max_parallel: 2 }
    run: eng.record
    with:
      step: fanout-each
      sleep: 0.4
      out: { item: "{{ item }}", index: "{{ index }}", label: "{{ item }}#{{ index }}" }
  - id: after
    needs: [each]
    run: eng.record
    with:
      step: fanout-after
      out:
        all: "{{ steps.each.outputs }}"
        last: "{{ steps.each.outputs[-1].label }}"
        count: "{{ len(steps.each.outputs) }}"
outputs:
  each: "{{ steps.each.outputs }}"
"#;

#[tokio::test]
async fn for_each_runs_every_item_once_at_most_max_parallel_at_a_time_and_collects_outputs_in_order() {
    let e = setup(&[("fanout", FANOUT)]).await;
    let items = ["a", "b", "c", "d", "e"];
    let id = start(&e.s, "fanout", json!({ "items": items })).await;
    let run = finished(&e.s, &id).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");

    let expected: Vec<Value> =
        items.iter().enumerate().map(|(i, x)| json!({"item": x, "index": i, "label": format!("{x}#{i}")})).collect();
    assert_eq!(step(&run, "each")["outputs"], json!(expected), "the outputs of the items, in order");
    assert_eq!(run["outputs"]["each"], json!(expected));

    // One item row per item, each with its own task run, started by this run's step.
    let rows: Vec<&Value> =
        run["steps"].as_array().unwrap().iter().filter(|s| s["step_id"] == "each" && !s["item"].is_null()).collect();
    assert_eq!(rows.len(), items.len(), "{run:#}");
    for (i, x) in items.iter().enumerate() {
        let row = rows.iter().find(|r| r["item"] == i).unwrap_or_else(|| panic!("no item {i}: {run:#}"));
        assert_eq!(row["status"], "succeeded");
        assert_eq!(row["outputs"], expected[i]);
        let task = task_run(&e.s, row["task_run_id"].as_str().unwrap()).await;
        assert_eq!(task["trigger"], format!("workflow:{id}/each[{i}]"));
        assert_eq!(task["input"]["out"]["item"], *x);
    }

    // Every item ran exactly once, with its own item and index.
    let starts = logged(&e.project, "start", "fanout-each");
    let mut seen: Vec<(String, u64)> = starts
        .iter()
        .map(|l| {
            (l["input"]["out"]["item"].as_str().unwrap().to_string(), l["input"]["out"]["index"].as_u64().unwrap())
        })
        .collect();
    seen.sort();
    let want: Vec<(String, u64)> = items.iter().enumerate().map(|(i, x)| (x.to_string(), i as u64)).collect();
    assert_eq!(seen, want, "{starts:#?}");

    // Never more than two at once, and really two at once (not one after the other).
    let ends = logged(&e.project, "end", "fanout-each");
    let spans: Vec<(f64, f64)> = starts
        .iter()
        .map(|s| (t(s), t(ends.iter().find(|e| e["run"] == s["run"]).expect("every item ended"))))
        .collect();
    let most = spans.iter().map(|&(at, _)| spans.iter().filter(|&&(a, b)| a <= at && at < b).count()).max();
    assert_eq!(most, Some(2), "at most max_parallel items at a time, and that many: {spans:?}");

    // The next step starts after the last item and reads the list.
    let after = logged(&e.project, "start", "fanout-after");
    assert_eq!(after.len(), 1);
    assert!(spans.iter().all(|&(_, end)| end <= t(&after[0])), "after starts once every item ended");
    let out = &step(&run, "after")["outputs"];
    assert_eq!(out["all"], json!(expected));
    assert_eq!(out["last"], "e#4");
    assert_eq!(out["count"].as_f64(), Some(5.0));
}

// 2. wait --------------------------------------------------------------------------------------

const PAUSE: &str = r#"name: pause
on: { manual: {} }
steps:
  - id: before
    run: eng.record
    with: { step: pause-before }
  - id: nap
    needs: [before]
    wait: 1s
  - id: after
    needs: [nap]
    run: eng.record
    with: { step: pause-after }
"#;

const APPROVAL: &str = r#"name: approval
on: { manual: {} }
steps:
  - id: ready
    wait:
      event: { type: x.ready, if: "event.data.ok == true" }
      timeout: 5s
  - id: use
    needs: [ready]
    run: eng.record
    with: { step: approval-use, out: { n: "{{ steps.ready.outputs.data.n }}" } }
outputs:
  awaited: "{{ steps.ready.outputs }}"
"#;

const IMPATIENT: &str = r#"name: impatient
on: { manual: {} }
steps:
  - id: ready
    wait: { event: { type: x.never }, timeout: 1s }
  - id: use
    needs: [ready]
    run: eng.record
    with: { step: impatient-use }
"#;

#[tokio::test]
async fn waits_pause_for_a_duration_or_until_a_matching_event_and_fail_when_none_comes_in_time() {
    let e = setup(&[("pause", PAUSE), ("approval", APPROVAL), ("impatient", IMPATIENT)]).await;
    let pause = start(&e.s, "pause", json!({})).await;
    let approval = start(&e.s, "approval", json!({})).await;
    let impatient = start(&e.s, "impatient", json!({})).await;

    until("the approval step should wait", Duration::from_secs(5), async || {
        let run = detail(&e.s, &approval).await;
        (has_step(&run, "ready") && step(&run, "ready")["status"] == "waiting").then_some(())
    })
    .await;
    // Neither an event that fails the filter nor one of another type completes the wait.
    emit(&e.s, "x.ready", json!({"ok": false, "n": 1})).await;
    emit(&e.s, "x.other", json!({"ok": true, "n": 9})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let run = detail(&e.s, &approval).await;
    assert_eq!(run["status"], "running", "{run:#}");
    assert_eq!(step(&run, "ready")["status"], "waiting", "{run:#}");
    assert!(!has_step(&run, "use"), "{run:#}");
    let matching = emit(&e.s, "x.ready", json!({"ok": true, "n": 2})).await;

    let run = finished(&e.s, &approval).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let awaited = &step(&run, "ready")["outputs"];
    assert_eq!(awaited["id"], matching["id"], "the matching event is the step's outputs: {run:#}");
    assert_eq!(awaited["type"], "x.ready");
    assert_eq!(awaited["data"], json!({"ok": true, "n": 2}));
    assert_eq!(run["outputs"]["awaited"], *awaited);
    assert_eq!(step(&run, "use")["outputs"], json!({"n": 2}));

    let run = finished(&e.s, &pause).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let before = logged(&e.project, "end", "pause-before");
    let after = logged(&e.project, "start", "pause-after");
    assert_eq!((before.len(), after.len()), (1, 1));
    let gap = t(&after[0]) - t(&before[0]);
    assert!(gap >= 1.0, "the step after a 1s wait starts at least 1 s after the one before it: {gap} s");
    assert!(took(step(&run, "nap")) >= Duration::from_secs(1), "{run:#}");

    let run = finished(&e.s, &impatient).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let ready = step(&run, "ready");
    assert_eq!(ready["status"], "failed");
    assert!(ready["error"].as_str().unwrap().contains("no x.never event came in time"), "{run:#}");
    assert!(run["error"].as_str().unwrap().contains("no x.never event came in time"), "{run:#}");
    assert!(took(ready) >= Duration::from_secs(1), "{run:#}");
    assert_eq!(step(&run, "use")["status"], "skipped");
    assert!(logged(&e.project, "start", "impatient-use").is_empty());
}

// 3. workflow steps and workflow triggers -------------------------------------------------------

const CHILD: &str = r#"name: child
on:
  manual:
    inputs:
      n: { type: integer, required: true }
steps:
  - id: double
    run: eng.record
    with: { step: child-double, out: { doubled: "{{ inputs.n * 2 }}" } }
outputs:
  result: "{{ steps.double.outputs.doubled }}"
"#;

const PARENT: &str = r#"name: parent
on:
  manual:
    inputs:
      n: { type: integer, required: true }
steps:
  - id: call
    workflow: { name: child, inputs: { n: "{{ inputs.n }}" } }
  - id: use
    needs: [call]
    run: eng.record
    with: { step: parent-use, out: { got: "{{ steps.call.outputs.result }}" } }
outputs:
  got: "{{ steps.use.outputs.got }}"
"#;

const FLOP: &str = r#"name: flop
on:
  manual:
    inputs:
      fail: { type: boolean, default: false }
steps:
  - id: work
    run: eng.record
    with: { step: flop-work, fail: "{{ inputs.fail }}" }
"#;

const ON_FLOP_FAILED: &str = r#"name: on-flop-failed
on:
  workflow: { name: flop, status: [failed] }
steps:
  - id: note
    emit: { type: flop.noted, data: { run: "{{ event.data.run }}", status: "{{ event.data.status }}" } }
"#;

#[tokio::test]
async fn a_workflow_step_runs_another_workflow_for_its_outputs_and_a_workflow_trigger_follows_failures() {
    let e = setup(&[("child", CHILD), ("parent", PARENT), ("flop", FLOP), ("on-flop-failed", ON_FLOP_FAILED)]).await;
    let parent = start(&e.s, "parent", json!({"n": 21})).await;
    let run = finished(&e.s, &parent).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["outputs"]["got"].as_f64(), Some(42.0), "{run:#}");
    let call = step(&run, "call");
    assert_eq!(call["outputs"]["result"].as_f64(), Some(42.0), "the child's outputs are the step's: {run:#}");
    let child_id = call["child_run_id"].as_str().expect("the step names its child run");
    let child = detail(&e.s, child_id).await;
    assert_eq!(child["workflow"], "child");
    assert_eq!(child["status"], "succeeded", "{child:#}");
    assert_eq!(child["trigger"], "workflow");
    assert_eq!(child["parent_run_id"], parent);
    assert_eq!(child["parent_step"], "call");
    assert_eq!(child["inputs"], json!({"n": 21}));
    assert_eq!(logged(&e.project, "start", "child-double").len(), 1);
    assert_eq!(runs_of(&e.s, "child").await.len(), 1);

    // A success first, then a failure: only the failure starts the follower. Events are routed
    // in the order they were stored, so once the failure's follower exists the success has been
    // routed too.
    let ok = start(&e.s, "flop", json!({})).await;
    assert_eq!(finished(&e.s, &ok).await["status"], "succeeded");
    let bad = start(&e.s, "flop", json!({"fail": true})).await;
    assert_eq!(finished(&e.s, &bad).await["status"], "failed");
    let follower = until("the failure should start on-flop-failed", Duration::from_secs(10), async || {
        runs_of(&e.s, "on-flop-failed").await.into_iter().next()
    })
    .await;
    let follower = finished(&e.s, follower["id"].as_str().unwrap()).await;
    assert_eq!(follower["status"], "succeeded", "{follower:#}");
    assert_eq!(follower["trigger"], "workflow");
    assert_eq!(follower["event"]["type"], "workflow.failed");
    assert_eq!(follower["event"]["data"]["run"], bad);
    assert_eq!(step(&follower, "note")["outputs"]["data"], json!({"run": bad, "status": "failed"}));
    let all = runs_of(&e.s, "on-flop-failed").await;
    assert_eq!(all.len(), 1, "the successful run started nothing: {all:#?}");
}

// 4. continue_on_error -------------------------------------------------------------------------

const TOLERANT: &str = r#"name: tolerant
on: { manual: {} }
steps:
  - id: bad
    run: eng.record
    with: { step: tolerant-bad, fail: true }
    continue_on_error: true
  - id: after
    needs: [bad]
    if: 'steps.bad.status == "failed"'
    run: eng.record
    with: { step: tolerant-after, out: { saw: "{{ steps.bad.status }}" } }
"#;

const STRICT: &str = r#"name: strict
on: { manual: {} }
steps:
  - id: bad
    run: eng.record
    with: { step: strict-bad, fail: true }
  - id: after
    needs: [bad]
    run: eng.record
    with: { step: strict-after }
  - id: free
    run: eng.record
    with: { step: strict-free }
"#;

#[tokio::test]
async fn continue_on_error_lets_dependents_run_and_without_it_the_run_fails_and_skips_them() {
    let e = setup(&[("tolerant", TOLERANT), ("strict", STRICT)]).await;
    let tolerant = start(&e.s, "tolerant", json!({})).await;
    let strict = start(&e.s, "strict", json!({})).await;

    let run = finished(&e.s, &tolerant).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(step(&run, "bad")["status"], "failed", "{run:#}");
    assert_eq!(step(&run, "after")["status"], "succeeded", "{run:#}");
    assert_eq!(step(&run, "after")["outputs"], json!({"saw": "failed"}));
    assert_eq!(logged(&e.project, "start", "tolerant-bad").len(), 1);
    assert_eq!(logged(&e.project, "start", "tolerant-after").len(), 1);

    let run = finished(&e.s, &strict).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    assert!(run["error"].as_str().unwrap().starts_with("step bad failed"), "{run:#}");
    assert_eq!(step(&run, "bad")["status"], "failed");
    assert_eq!(step(&run, "after")["status"], "skipped", "{run:#}");
    assert_eq!(step(&run, "after")["error"], "skipped because bad failed");
    assert_eq!(step(&run, "free")["status"], "succeeded", "a step that needs nothing still runs");
    assert!(logged(&e.project, "start", "strict-after").is_empty(), "the dependent's task never ran");
    assert_eq!(logged(&e.project, "start", "strict-free").len(), 1);
}

const CHAIN: &str = r#"name: chain
on: { manual: {} }
steps:
  - id: bad
    run: eng.record
    with: { step: chain-bad, fail: true }
  - id: after
    needs: [bad]
    run: eng.record
    with: { step: chain-after }
  - id: later
    needs: [after]
    run: eng.record
    with: { step: chain-later }
"#;

#[tokio::test]
async fn a_step_after_a_dependent_skipped_by_a_failure_is_skipped_too() {
    let e = setup(&[("chain", CHAIN)]).await;
    let id = start(&e.s, "chain", json!({})).await;
    let run = finished(&e.s, &id).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    assert_eq!(step(&run, "after")["status"], "skipped", "{run:#}");
    assert_eq!(step(&run, "later")["status"], "skipped", "{run:#}");
    assert!(logged(&e.project, "start", "chain-later").is_empty(), "the task after the skipped step never runs");
}

// 5. retries and timeouts ----------------------------------------------------------------------

const RETRYING: &str = r#"name: retrying
on: { manual: {} }
steps:
  - id: flaky
    run: eng.record
    with: { step: retrying-flaky, fail_until: 3, out: { ok: true } }
    retry: { attempts: 3, delay: 1s }
"#;

#[tokio::test]
async fn a_step_retry_starts_a_new_task_run_per_attempt_after_its_delay() {
    let e = setup(&[("retrying", RETRYING)]).await;
    let id = start(&e.s, "retrying", json!({})).await;
    let run = finished(&e.s, &id).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let flaky = step(&run, "flaky");
    assert_eq!(flaky["status"], "succeeded");
    assert_eq!(flaky["attempt"], 3);
    assert_eq!(flaky["outputs"], json!({"ok": true}));

    let starts = logged(&e.project, "start", "retrying-flaky");
    let ends = logged(&e.project, "end", "retrying-flaky");
    assert_eq!(starts.len(), 3, "{starts:#?}");
    assert_eq!(starts.iter().map(|l| l["n"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    let mut runs: Vec<&str> = starts.iter().map(|l| l["run"].as_str().unwrap()).collect();
    assert!(starts.iter().all(|l| l["attempt"] == 1), "each step attempt is a new task run: {starts:#?}");
    assert_eq!(flaky["task_run_id"], runs[2], "the step ends with the run that succeeded");
    for (i, r) in runs.iter().enumerate() {
        let task = task_run(&e.s, r).await;
        assert_eq!(task["status"], if i < 2 { "failed" } else { "succeeded" }, "{task:#}");
        assert_eq!(task["trigger"], format!("workflow:{id}/flaky"));
    }
    for i in 1..3 {
        let pause = t(&starts[i]) - t(&ends[i - 1]);
        assert!(pause >= 1.0, "retry {i} waits the 1s delay: {pause} s");
    }
    runs.sort();
    runs.dedup();
    assert_eq!(runs.len(), 3, "three distinct task runs");
}

const STEP_TIMEOUT: &str = r#"name: step-timeout
on: { manual: {} }
steps:
  - id: nap
    run: eng.nap
    timeout: 1s
  - id: after
    needs: [nap]
    run: eng.record
    with: { step: step-timeout-after }
"#;

#[tokio::test]
async fn a_step_timeout_cancels_its_task_run_and_fails_the_step() {
    let e = setup(&[("step-timeout", STEP_TIMEOUT)]).await;
    let id = start(&e.s, "step-timeout", json!({})).await;
    let run = finished(&e.s, &id).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let nap = step(&run, "nap");
    assert_eq!(nap["status"], "failed");
    assert_eq!(nap["attempt"], 1, "no retry was asked for");
    assert!(nap["error"].as_str().unwrap().contains("timed out after 1s"), "{run:#}");
    let took = took(nap);
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(10), "{took:?}");
    let task = e.s.wait(nap["task_run_id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "cancelled", "{task:#}");
    let naps = std::fs::read_to_string(e.project.join("naps.log")).unwrap();
    assert_eq!(naps.lines().collect::<Vec<_>>(), [task["id"].as_str().unwrap()], "one task run, started once");
    assert_eq!(step(&run, "after")["status"], "skipped");
    assert!(logged(&e.project, "start", "step-timeout-after").is_empty());
}

const RUN_TIMEOUT: &str = r#"name: run-timeout
on: { manual: {} }
timeout: 2s
steps:
  - id: nap
    run: eng.nap
  - id: after
    needs: [nap]
    run: eng.record
    with: { step: run-timeout-after }
"#;

#[tokio::test]
async fn a_workflow_timeout_ends_the_run_timed_out_and_cancels_its_running_task() {
    let e = setup(&[("run-timeout", RUN_TIMEOUT)]).await;
    let id = start(&e.s, "run-timeout", json!({})).await;
    let run = finished(&e.s, &id).await;
    assert_eq!(run["status"], "timed_out", "{run:#}");
    assert_eq!(run["error"], "timed out after 2s");
    let took = took(&run);
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(10), "{took:?}");
    let nap = step(&run, "nap");
    assert_eq!(nap["status"], "cancelled", "{run:#}");
    let task = e.s.wait(nap["task_run_id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "cancelled", "{task:#}");
    assert!(!has_step(&run, "after"), "{run:#}");
    let (_, events) = e.s.get("/api/v1/events?type=workflow.timed_out").await;
    assert!(events.as_array().unwrap().iter().any(|ev| ev["data"]["run"] == id), "the end is announced: {events:#}");
}

// 6. event triggers ----------------------------------------------------------------------------

const ON_TRADING: &str = r#"name: on-trading
on:
  event: { type: "trading.*", if: "event.data.n > 1" }
steps:
  - id: note
    run: eng.record
    with: { step: on-trading, out: { n: "{{ event.data.n }}" } }
"#;

const ON_TRADING_END: &str = r#"name: on-trading-end
on:
  event: { type: workflow.succeeded, if: 'event.data.workflow == "on-trading"' }
steps:
  - id: note
    emit: { type: seen.end, data: { run: "{{ event.data.run }}" } }
"#;

#[tokio::test]
async fn event_triggers_match_type_and_filter_once_per_event_and_see_agent_os_events() {
    let e = setup(&[("on-trading", ON_TRADING), ("on-trading-end", ON_TRADING_END)]).await;
    emit(&e.s, "trading.x", json!({"n": 1})).await;
    emit(&e.s, "other.x", json!({"n": 5})).await;
    let two = emit(&e.s, "trading.x", json!({"n": 2})).await;
    let body = json!({"type": "trading.deep.x", "data": {"n": 3}, "idempotency_key": "once"});
    let (st, deep) = e.s.post("/api/v1/events", body.clone()).await;
    assert_eq!(st, 201, "{deep}");
    let (st, again) = e.s.post("/api/v1/events", body).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!((again["duplicate"].clone(), again["id"].clone()), (json!(true), deep["id"].clone()));

    // Events are routed in order: once the last one has started its run, all have been routed.
    let key = format!("event:{}", deep["id"].as_str().unwrap());
    until("the last event should start a run", Duration::from_secs(10), async || {
        runs_of(&e.s, "on-trading").await.iter().any(|r| r["trigger_key"] == key).then_some(())
    })
    .await;
    let runs = runs_of(&e.s, "on-trading").await;
    let mut started_by: Vec<&str> = runs.iter().map(|r| r["event"]["id"].as_str().unwrap()).collect();
    started_by.sort();
    let mut want = vec![two["id"].as_str().unwrap(), deep["id"].as_str().unwrap()];
    want.sort();
    assert_eq!(started_by, want, "n > 1 under trading.* only, and the repeated event once: {runs:#?}");
    let mut ids = Vec::new();
    for r in &runs {
        assert_eq!(r["trigger"], "event");
        let done = finished(&e.s, r["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        assert_eq!(step(&done, "note")["outputs"]["n"], done["event"]["data"]["n"]);
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    assert_eq!(logged(&e.project, "start", "on-trading").len(), 2);

    // Agent OS's own workflow.succeeded events start a workflow like any other event.
    let followers = until("each success should start on-trading-end", Duration::from_secs(10), async || {
        let list = runs_of(&e.s, "on-trading-end").await;
        (list.len() >= 2 && list.iter().all(ended)).then_some(list)
    })
    .await;
    let mut followed: Vec<String> =
        followers.iter().map(|r| r["event"]["data"]["run"].as_str().unwrap().to_string()).collect();
    followed.sort();
    ids.sort();
    assert_eq!(followed, ids, "{followers:#?}");
    for f in &followers {
        assert_eq!(f["status"], "succeeded", "{f:#}");
        assert_eq!(f["event"]["type"], "workflow.succeeded");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runs_of(&e.s, "on-trading-end").await.len(), 2, "its own ends do not match its filter");
}

// 7. concurrency -------------------------------------------------------------------------------

const PER_SYMBOL_SKIP: &str = r#"name: per-symbol-skip
on:
  event: { type: conc.skip }
concurrency: { key: "{{ event.data.symbol }}", limit: 1, on_limit: skip }
steps:
  - id: work
    run: eng.record
    with: { step: skip-work, sleep: 1, tag: "{{ event.data.tag }}" }
"#;

const PER_SYMBOL_QUEUE: &str = r#"name: per-symbol-queue
on:
  event: { type: conc.queue }
concurrency: { key: "{{ event.data.symbol }}", limit: 1, on_limit: queue }
steps:
  - id: work
    run: eng.record
    with: { step: queue-work, sleep: 1, tag: "{{ event.data.tag }}" }
"#;

/// The `record` line of one kind logged by the run tagged `tag`.
fn tagged(project: &Path, kind: &str, tag: &str) -> Option<Value> {
    log(project).into_iter().find(|l| l["kind"] == kind && l["input"]["tag"] == tag)
}

/// The run of `workflow` started by the event tagged `tag`.
async fn run_tagged(s: &TestServer, workflow: &str, tag: &str) -> Value {
    let runs = runs_of(s, workflow).await;
    runs.into_iter().find(|r| r["event"]["data"]["tag"] == tag).unwrap_or_else(|| panic!("no {workflow} run {tag}"))
}

#[tokio::test]
async fn a_concurrency_key_skips_or_queues_runs_beyond_its_limit_and_other_keys_run_at_once() {
    let e = setup(&[("per-symbol-skip", PER_SYMBOL_SKIP), ("per-symbol-queue", PER_SYMBOL_QUEUE)]).await;
    emit(&e.s, "conc.skip", json!({"symbol": "BTC", "tag": "s1"})).await;
    emit(&e.s, "conc.queue", json!({"symbol": "BTC", "tag": "q1"})).await;
    until("the first runs' tasks should start", Duration::from_secs(10), async || {
        (tagged(&e.project, "start", "s1").is_some() && tagged(&e.project, "start", "q1").is_some()).then_some(())
    })
    .await;
    emit(&e.s, "conc.skip", json!({"symbol": "BTC", "tag": "s2"})).await;
    emit(&e.s, "conc.queue", json!({"symbol": "BTC", "tag": "q2"})).await;
    emit(&e.s, "conc.queue", json!({"symbol": "ETH", "tag": "q3"})).await;

    let s2 = until("the second BTC run should end", Duration::from_secs(10), async || {
        let runs = runs_of(&e.s, "per-symbol-skip").await;
        runs.into_iter().find(|r| r["event"]["data"]["tag"] == "s2" && ended(r))
    })
    .await;
    assert_eq!(s2["status"], "skipped", "{s2:#}");
    assert_eq!(s2["concurrency_key"], "BTC");
    assert!(s2["error"].as_str().unwrap().contains("\"BTC\""), "{s2:#}");
    let s1 = run_tagged(&e.s, "per-symbol-skip", "s1").await;
    assert_eq!(finished(&e.s, s1["id"].as_str().unwrap()).await["status"], "succeeded");
    assert!(tagged(&e.project, "start", "s2").is_none(), "a skipped run runs nothing");

    for tag in ["q1", "q2", "q3"] {
        let run = run_tagged(&e.s, "per-symbol-queue", tag).await;
        assert_eq!(finished(&e.s, run["id"].as_str().unwrap()).await["status"], "succeeded", "{tag}");
    }
    let q1_end = t(&tagged(&e.project, "end", "q1").unwrap());
    let q2_start = t(&tagged(&e.project, "start", "q2").unwrap());
    let q3_start = t(&tagged(&e.project, "start", "q3").unwrap());
    assert!(q2_start >= q1_end, "the queued BTC run starts after the first ends: {q2_start} < {q1_end}");
    assert!(q3_start < q1_end, "the ETH run does not wait for BTC: {q3_start} >= {q1_end}");
    assert_eq!(run_tagged(&e.s, "per-symbol-queue", "q3").await["concurrency_key"], "ETH");
}

// 8. cancel ------------------------------------------------------------------------------------

const CANCELLABLE: &str = r#"name: cancellable
on: { manual: {} }
steps:
  - id: first
    run: eng.record
    with: { step: cancel-first }
  - id: nap
    needs: [first]
    run: eng.nap
  - id: later
    needs: [nap]
    run: eng.record
    with: { step: cancel-later }
"#;

#[tokio::test]
async fn cancelling_a_run_cancels_its_task_and_starts_nothing_more() {
    let e = setup(&[("cancellable", CANCELLABLE)]).await;
    let id = start(&e.s, "cancellable", json!({})).await;
    let task = until("the nap task should be running", Duration::from_secs(10), async || {
        let run = detail(&e.s, &id).await;
        let task = has_step(&run, "nap").then(|| step(&run, "nap")["task_run_id"].as_str().map(str::to_string))??;
        let naps = std::fs::read_to_string(e.project.join("naps.log")).unwrap_or_default();
        naps.lines().any(|l| l == task).then_some(task)
    })
    .await;

    let (st, run) = e.s.post(&format!("/api/v1/workflows/runs/{id}/cancel"), json!({})).await;
    assert_eq!(st, 200, "{run}");
    assert_eq!(run["status"], "cancelled", "{run:#}");
    assert_eq!(step(&run, "nap")["status"], "cancelled", "{run:#}");
    let ran = e.s.wait(&task).await;
    assert_eq!(ran["status"], "cancelled", "{ran:#}");

    let until_then = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until_then {
        let run = detail(&e.s, &id).await;
        assert_eq!(run["status"], "cancelled", "{run:#}");
        assert_eq!(step(&run, "nap")["status"], "cancelled", "{run:#}");
        assert!(!has_step(&run, "later"), "{run:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logged(&e.project, "start", "cancel-later").is_empty(), "no later step ever started");
    assert_eq!(logged(&e.project, "start", "cancel-first").len(), 1);
}

// 9. templates reach tasks as JSON input ------------------------------------------------------

const INJECT: &str = r#"name: inject
on:
  event: { type: inject.text }
steps:
  - id: take
    run: eng.stdin
    with: { text: "{{ event.data.s }}", more: "{{ event.data.more }}" }
"#;

#[tokio::test]
async fn template_values_reach_the_task_as_json_on_stdin_byte_for_byte() {
    let e = setup(&[("inject", INJECT)]).await;
    let s = "\"; rm -rf / #";
    let more = "$(touch pwned) `touch pwned` ' \\ \n\t ü 🙂 {{ event.data.s }}";
    let ev = emit(&e.s, "inject.text", json!({"s": s, "more": more})).await;
    let run = until("the event should start inject", Duration::from_secs(10), async || {
        runs_of(&e.s, "inject").await.into_iter().next()
    })
    .await;
    let run = finished(&e.s, run["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["event"]["id"], ev["id"]);

    let raw = std::fs::read(e.project.join("stdin.json")).unwrap();
    let got: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(got, json!({"text": s, "more": more}), "{}", String::from_utf8_lossy(&raw));
    assert_eq!(got["text"].as_str().unwrap().as_bytes(), s.as_bytes());
    assert_eq!(got["more"].as_str().unwrap().as_bytes(), more.as_bytes(), "a value is never rendered twice");
    assert!(!e.project.join("pwned").exists(), "nothing in the input was run by a shell");
    let task = task_run(&e.s, step(&run, "take")["task_run_id"].as_str().unwrap()).await;
    assert_eq!(task["input"], got);
}

// Timeouts of the other actions, and long waits ------------------------------------------------

const BOUNDED_WAIT: &str = r#"name: bounded-wait
on: { manual: {} }
steps:
  - id: ready
    wait: { event: { type: x.never } }
    timeout: 1s
"#;

#[tokio::test]
async fn a_step_timeout_bounds_a_wait_for_an_event() {
    let e = setup(&[("bounded-wait", BOUNDED_WAIT)]).await;
    let id = start(&e.s, "bounded-wait", json!({})).await;
    let run = until("the step's 1s timeout should end the wait", Duration::from_secs(5), async || {
        let run = detail(&e.s, &id).await;
        ended(&run).then_some(run)
    })
    .await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let ready = step(&run, "ready");
    assert_eq!(ready["status"], "failed", "{run:#}");
    assert!(ready["error"].as_str().unwrap().contains("timed out after 1s"), "{run:#}");
}

const SLOW_CHILD: &str = r#"name: slow-child
on: { manual: {} }
steps:
  - id: nap
    run: eng.nap
"#;

const BOUNDED_CALL: &str = r#"name: bounded-call
on: { manual: {} }
steps:
  - id: call
    workflow: slow-child
    timeout: 1s
"#;

#[tokio::test]
async fn a_step_timeout_bounds_a_called_workflow() {
    let e = setup(&[("slow-child", SLOW_CHILD), ("bounded-call", BOUNDED_CALL)]).await;
    let id = start(&e.s, "bounded-call", json!({})).await;
    let run = until("the step's 1s timeout should end the call", Duration::from_secs(5), async || {
        let run = detail(&e.s, &id).await;
        ended(&run).then_some(run)
    })
    .await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let call = step(&run, "call");
    assert_eq!(call["status"], "failed", "{run:#}");
    assert!(call["error"].as_str().unwrap().contains("timed out after 1s"), "{run:#}");
    // As a timed-out `run` step's task run is cancelled, so is the called workflow's run.
    let child = finished(&e.s, call["child_run_id"].as_str().unwrap()).await;
    assert_eq!(child["status"], "cancelled", "{child:#}");
}

const PATIENT: &str = r#"name: patient
on: { manual: {} }
steps:
  - id: ready
    wait: { event: { type: x.go }, timeout: 30s }
"#;

#[tokio::test]
async fn a_wait_for_an_event_finds_it_behind_a_thousand_others() {
    let e = setup(&[("patient", PATIENT)]).await;
    let id = start(&e.s, "patient", json!({})).await;
    until("the step should wait", Duration::from_secs(5), async || {
        let run = detail(&e.s, &id).await;
        (has_step(&run, "ready") && step(&run, "ready")["status"] == "waiting").then_some(())
    })
    .await;
    // A busy Agent OS stores many events while a step waits (workflow ends, checks, projects').
    for chunk in 0..20 {
        let posts = (0..50).map(|i| emit(&e.s, "x.noise", json!({"n": chunk * 50 + i})));
        futures_util::future::join_all(posts).await;
    }
    let go = emit(&e.s, "x.go", json!({})).await;
    let run = until("the x.go event should end the wait", Duration::from_secs(5), async || {
        let run = detail(&e.s, &id).await;
        ended(&run).then_some(run)
    })
    .await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(step(&run, "ready")["outputs"]["id"], go["id"]);
}
