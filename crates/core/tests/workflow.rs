//! Workflow files: the documented example, the errors users get for broken ones (every problem
//! at once, each with its place, field path and a hint), the example files, and that no input
//! makes the parser panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use agent_os_core::alerting::Severity;
use agent_os_core::cron::{Cron, Zone};
use agent_os_core::manifest::{CatchUp, Manifest, Overlap};
use agent_os_core::workflow::{
    Action, Backoff, Catalog, InputType, OnLimit, Retry, StaticCatalog, Trigger, Wait, WorkflowRunStatus, parse,
};
use proptest::prelude::*;
use serde_json::json;

/// Two projects and one other workflow, as the broken-file table below expects.
struct TestCatalog;

impl Catalog for TestCatalog {
    fn tasks(&self, project: &str) -> Option<Vec<String>> {
        match project {
            "trading" => Some(vec!["scan_market".into(), "rebalance".into()]),
            "cortana" => Some(vec!["query_memories".into(), "summarize".into()]),
            _ => None,
        }
    }
    fn projects(&self) -> Vec<String> {
        vec!["trading".into(), "cortana".into()]
    }
    fn workflows(&self) -> Vec<String> {
        vec!["nightly-backup".into()]
    }
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn example_catalog(workflows: &[&str]) -> StaticCatalog {
    let mut tasks = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("examples/projects")).unwrap() {
        let path = entry.unwrap().path().join("agent-os.yaml");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let m = Manifest::parse(&path.display().to_string(), &text).unwrap();
            tasks.insert(m.name.clone(), m.tasks.keys().cloned().collect());
        }
    }
    StaticCatalog { tasks, workflows: workflows.iter().map(|w| w.to_string()).collect() }
}

/// The DSL as first specified, every feature once.
const SPECIFIED: &str = r#"name: volatility-to-memories
description: Recall what is known about a symbol when its volatility spikes
on:
  event: { type: trading.volatility_spike, if: "event.data.magnitude > 2" }
  schedule: { cron: "*/15 * * * *", timezone: Europe/Berlin, catch_up: latest, overlap: skip }
  webhook: { secret_env: TRADINGVIEW_WEBHOOK_SECRET }
  manual: { inputs: { symbol: { type: string, required: true, default: ETH, description: Ticker } } }
  workflow: { name: nightly-backup, status: [failed] }
concurrency: { key: "{{ event.data.symbol }}", limit: 1, on_limit: queue }
timeout: 1h
steps:
  - id: recall
    run: cortana.query_memories
    with: { query: "{{ event.data.symbol }} volatility" }
    timeout: 5m
    retry: { attempts: 3, backoff: exponential, delay: 5s }
  - id: summarize
    needs: [recall]
    if: "steps.recall.outputs.count > 0"
    run: cortana.summarize
    with: { memories: "{{ steps.recall.outputs.items }}" }
    continue_on_error: true
  - id: per_symbol
    for_each: "event.data.symbols"
    run: trading.scan_market
    with: { symbols: ["{{ item }}"] }
  - id: pause
    wait: 10m
  - id: child
    workflow: nightly-backup
  - id: tell
    needs: [summarize]
    emit: { type: agent-os.summary_ready, data: { text: "{{ steps.summarize.outputs.text }}" } }
  - id: ping
    notify: { title: "Spike on {{ event.data.symbol }}", body: "See the summary", severity: warning, tags: [eth] }
outputs: { summary: "{{ steps.summarize.outputs.text }}" }
"#;

#[test]
fn the_specified_example_parses() {
    let w = parse("workflows/volatility-to-memories.yaml", SPECIFIED, &TestCatalog).unwrap();
    assert_eq!(w.name, "volatility-to-memories");
    assert_eq!(w.triggers.len(), 5);
    let Trigger::Event { pattern, filter } = &w.triggers[0] else { panic!("{:?}", w.triggers[0]) };
    assert_eq!(pattern, "trading.volatility_spike");
    let filter = filter.as_ref().unwrap();
    assert!(filter.is_true(&json!({ "event": { "data": { "magnitude": 2.5 } } })).unwrap());
    assert!(!filter.is_true(&json!({ "event": { "data": { "magnitude": 1 } } })).unwrap());
    assert_eq!(
        w.triggers[1],
        Trigger::Schedule {
            cron: Cron::parse("*/15 * * * *").unwrap(),
            timezone: Zone::parse("Europe/Berlin").unwrap(),
            catch_up: CatchUp::Latest,
            overlap: Overlap::Skip
        }
    );
    assert_eq!(w.triggers[2], Trigger::Webhook { secret_env: "TRADINGVIEW_WEBHOOK_SECRET".into() });
    assert_eq!(w.triggers[3], Trigger::Manual);
    assert_eq!(
        w.triggers[4],
        Trigger::Workflow { name: "nightly-backup".into(), statuses: vec![WorkflowRunStatus::Failed] }
    );
    assert!(w.manual());
    let symbol = &w.inputs["symbol"];
    assert_eq!((symbol.kind, symbol.required), (InputType::String, true));
    assert_eq!(symbol.default, Some(json!("ETH")));
    let concurrency = w.concurrency.as_ref().unwrap();
    assert_eq!((concurrency.limit, concurrency.on_limit), (1, OnLimit::Queue));
    assert_eq!(concurrency.key.render(&json!({ "event": { "data": { "symbol": "ETH" } } })).unwrap(), json!("ETH"));
    assert_eq!(w.timeout, Some(Duration::from_secs(3600)));

    let ids: Vec<&str> = w.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["recall", "summarize", "per_symbol", "pause", "child", "tell", "ping"]);
    let recall = w.step("recall").unwrap();
    assert_eq!(
        recall.action,
        Action::Run {
            project: "cortana".into(),
            task: "query_memories".into(),
            with: json!({ "query": "{{ event.data.symbol }} volatility" })
        }
    );
    assert_eq!(recall.timeout, Some(Duration::from_secs(300)));
    assert_eq!(recall.retry, Retry { attempts: 3, backoff: Backoff::Exponential, delay: Duration::from_secs(5) });
    let summarize = w.step("summarize").unwrap();
    assert_eq!(summarize.needs, ["recall"]);
    assert!(summarize.continue_on_error);
    assert!(summarize.condition.is_some());
    let fan = w.step("per_symbol").unwrap().for_each.as_ref().unwrap();
    assert_eq!(fan.max_parallel, 10);
    assert_eq!(fan.items.eval(&json!({ "event": { "data": { "symbols": ["BTC"] } } })).unwrap(), json!(["BTC"]));
    assert_eq!(w.step("pause").unwrap().action, Action::Wait(Wait::Duration(Duration::from_secs(600))));
    assert_eq!(w.step("child").unwrap().action, Action::Workflow { name: "nightly-backup".into(), inputs: json!({}) });
    assert_eq!(
        w.step("tell").unwrap().action,
        Action::Emit {
            event_type: "agent-os.summary_ready".into(),
            data: json!({ "text": "{{ steps.summarize.outputs.text }}" })
        }
    );
    assert_eq!(
        w.step("ping").unwrap().action,
        Action::Notify {
            title: "Spike on {{ event.data.symbol }}".into(),
            body: "See the summary".into(),
            severity: Severity::Warning,
            tags: vec!["eth".into()]
        }
    );
    let summary = &w.outputs["summary"];
    let ctx = json!({ "steps": { "summarize": { "outputs": { "text": "calm" } } } });
    assert_eq!(summary.render(&ctx).unwrap(), json!("calm"));
    let order: Vec<&str> = w.topological_order().iter().map(|s| s.id.as_str()).collect();
    assert_eq!(order, ids, "file order already respects needs");
}

#[test]
fn what_is_left_out_gets_its_default() {
    let text = r#"name: defaults
on:
  schedule: { cron: "@daily" }
  workflow: { name: nightly-backup }
  manual:
steps:
  - id: fan
    for_each: { items: "[1, 2]" }
    run: trading.rebalance
  - id: wait
    wait: { event: { type: "*" } }
  - id: ping
    needs: fan
    notify: { title: Done }
    retry: { attempts: 2 }
"#;
    let w = parse("wf.yaml", text, &TestCatalog).unwrap();
    assert_eq!(
        w.triggers,
        [
            Trigger::Schedule {
                cron: Cron::parse("@daily").unwrap(),
                timezone: Zone::parse("UTC").unwrap(),
                catch_up: CatchUp::Latest,
                overlap: Overlap::Skip
            },
            Trigger::Workflow { name: "nightly-backup".into(), statuses: vec![WorkflowRunStatus::Succeeded] },
            Trigger::Manual,
        ]
    );
    assert!(w.inputs.is_empty() && w.outputs.is_empty());
    assert_eq!((w.description.as_str(), w.concurrency.is_none(), w.timeout), ("", true, None));
    let fan = w.step("fan").unwrap();
    assert_eq!(fan.for_each.as_ref().unwrap().max_parallel, 10);
    assert_eq!(fan.action, Action::Run { project: "trading".into(), task: "rebalance".into(), with: json!({}) });
    assert_eq!((fan.retry.clone(), fan.timeout, fan.continue_on_error), (Retry::default(), None, false));
    assert_eq!(
        w.step("wait").unwrap().action,
        Action::Wait(Wait::Event { pattern: "*".into(), filter: None, timeout: None })
    );
    let ping = w.step("ping").unwrap();
    assert_eq!(ping.needs, ["fan"]);
    assert_eq!(
        ping.action,
        Action::Notify { title: "Done".into(), body: String::new(), severity: Severity::Info, tags: Vec::new() }
    );
    assert_eq!(ping.retry, Retry { attempts: 2, backoff: Backoff::Fixed, delay: Duration::from_secs(5) });
}

/// Broken files and the exact errors they get: (what is wrong, the file, the rendered errors).
const BROKEN: &[(&str, &str, &str)] = &[
    (
        "misspelt step field",
        r#"name: demo
on: { manual: {} }
steps:
  - id: recall
    run: cortana.query_memories
    timout: 5m
"#,
        r#"wf.yaml:6:5: steps[0].timout: unknown field `timout`
  hint: did you mean `timeout`?"#,
    ),
    (
        "misspelt top level field",
        r#"name: demo
on: { manual: {} }
step:
  - { id: recall, run: cortana.query_memories }
"#,
        r#"wf.yaml:1:1: missing field `steps`
  hint: a workflow does at least one thing; add steps:
wf.yaml:3:1: step: unknown field `step`
  hint: did you mean `steps`?"#,
    ),
    (
        "unknown trigger",
        r#"name: demo
on: { cron: "0 * * * *" }
steps:
  - { id: recall, run: cortana.query_memories, with: { query: "{{ event.data.symbol }}" } }
"#,
        r#"wf.yaml:2:7: on.cron: unknown field `cron`
  hint: remove it; the known fields are: event, schedule, webhook, manual, workflow"#,
    ),
    (
        "two actions",
        r#"name: demo
on: { manual: {} }
steps:
  - id: recall
    run: cortana.query_memories
    notify: { title: Recalled }
"#,
        r#"wf.yaml:6:5: steps[0]: a step has one action; this one has `run` and `notify`
  hint: split it into steps; the later one lists the earlier one under needs"#,
    ),
    (
        "no action",
        r#"name: demo
on: { manual: {} }
steps:
  - id: recall
    timeout: 5m
"#,
        r#"wf.yaml:4:5: steps[0]: the step has no action
  hint: give it one of: run, emit, wait, workflow, notify, approval"#,
    ),
    (
        "duplicate step id",
        r#"name: demo
on: { manual: {} }
steps:
  - id: recall
    run: cortana.query_memories
  - id: recall
    run: cortana.summarize
"#,
        r#"wf.yaml:6:9: steps[1].id: two steps have the id "recall"
  hint: step ids are unique; steps[0] already has it"#,
    ),
    (
        "needs unknown step",
        r#"name: demo
on: { manual: {} }
steps:
  - id: recall
    run: cortana.query_memories
  - id: summarize
    needs: [recal]
    run: cortana.summarize
"#,
        r#"wf.yaml:7:13: steps[1].needs[0]: unknown step "recal"
  hint: did you mean "recall"?"#,
    ),
    (
        "needs itself",
        r#"name: demo
on: { manual: {} }
steps:
  - id: summarize
    needs: summarize
    run: cortana.summarize
"#,
        r#"wf.yaml:5:12: steps[0].needs: a step cannot need itself
  hint: remove "summarize" from needs"#,
    ),
    (
        "cycle",
        r#"name: demo
on: { manual: {} }
steps:
  - id: recall
    needs: [summarize]
    run: cortana.query_memories
  - id: summarize
    needs: [recall]
    run: cortana.summarize
"#,
        r#"wf.yaml:5:5: steps[0].needs: the steps need each other in a cycle: recall → summarize → recall
  hint: each arrow reads "needs"; remove one of these needs"#,
    ),
    (
        "no trigger no steps",
        r#"name: demo
on: {}
steps: []
"#,
        r#"wf.yaml:2:5: on: the workflow has no trigger
  hint: give at least one of: event, schedule, webhook, manual, workflow
wf.yaml:3:8: steps: the workflow has no steps
  hint: e.g. steps: [{ id: recall, run: cortana.query_memories }]"#,
    ),
    (
        "expression syntax",
        r#"name: demo
on:
  event: { type: trading.volatility_spike, if: "event.data.magnitude >" }
steps:
  - { id: recall, run: cortana.query_memories }
"#,
        r#"wf.yaml:3:71: on.event.if: expected a value after '>', found end of expression"#,
    ),
    (
        "template never closed",
        r#"name: demo
on: { event: { type: trading.volatility_spike } }
steps:
  - id: recall
    run: cortana.query_memories
    with:
      query: "Notes on {{ event.data.symbol"
      limit: "{{ 5 + }}"
"#,
        r#"wf.yaml:7:24: steps[0].with.query: '{{' at offset 9 is never closed
  hint: close it with '}}'; a literal '{{' is written {{ "{{" }}
wf.yaml:8:22: steps[0].with.limit: expected a value after '+', found '}}'"#,
    ),
    (
        "names not available",
        r#"name: demo
on:
  event: { type: "trading.*", if: "inputs.symbol == 'ETH'" }
  manual: { inputs: { symbol: { type: string } } }
concurrency: { key: "{{ steps.recall.outputs.count }}" }
steps:
  - id: recall
    if: "evnt.data.magnitude > 2"
    run: cortana.query_memories
"#,
        r#"wf.yaml:3:36: on.event.if: unknown name 'inputs'
  hint: the names available here are event
wf.yaml:5:25: concurrency.key: unknown name 'steps'
  hint: the names available here are event, inputs
wf.yaml:8:10: steps[0].if: unknown name 'evnt'
  hint: did you mean 'event'?"#,
    ),
    (
        "item outside for each",
        r#"name: demo
on: { event: { type: trading.volatility_spike } }
steps:
  - id: scan
    if: "item != null"
    for_each: event.data.symbols
    run: trading.scan_market
    with: { symbols: ["{{ item }}"] }
  - id: rebalance
    run: trading.rebalance
    with: { position: "{{ index }}" }
"#,
        r#"wf.yaml:5:10: steps[0].if: unknown name 'item'
  hint: `item` and `index` exist only in the action of a step with for_each (not in its `if` or `for_each`)
wf.yaml:11:27: steps[1].with.position: unknown name 'index'
  hint: `item` and `index` exist only in the action of a step with for_each (not in its `if` or `for_each`)"#,
    ),
    (
        "output not finished",
        r#"name: demo
on: { event: { type: trading.volatility_spike } }
steps:
  - id: recall
    run: cortana.query_memories
    with: { query: "{{ event.data.symbol }}" }
  - id: summarize
    if: "steps.recall.outputs.count > 0"
    run: cortana.summarize
    with: { memories: "{{ steps.recall.outputs.items }}" }
"#,
        r#"wf.yaml:8:10: steps[1].if: steps.recall is not finished when this step runs; add it to needs
  hint: needs: [recall]
wf.yaml:10:27: steps[1].with.memories: steps.recall is not finished when this step runs; add it to needs
  hint: needs: [recall]"#,
    ),
    (
        "output of a later step",
        r#"name: demo
on: { manual: {} }
steps:
  - id: recall
    run: cortana.query_memories
    with: { query: "{{ steps.summarize.outputs.text }}", again: "{{ steps.recall.outputs.count }}" }
  - id: summarize
    needs: [recall]
    run: cortana.summarize
"#,
        r#"wf.yaml:6:24: steps[0].with.query: steps.summarize is not finished when this step runs
  hint: summarize needs this step, so it runs after it; read its outputs in a later step
wf.yaml:6:69: steps[0].with.again: a step cannot read its own outputs
  hint: its outputs exist once it has finished; read them in a step that needs it"#,
    ),
    (
        "event without event trigger",
        r#"name: demo
on:
  manual: { inputs: { symbol: { type: string, default: ETH } } }
steps:
  - id: recall
    run: cortana.query_memories
    with: { query: "{{ event.data.symbol }} volatility" }
"#,
        r#"wf.yaml:7:24: steps[0].with.query: `event` is not available: no trigger of this workflow brings an event
  hint: manual runs have `inputs` instead (declare them under on.manual.inputs); events come with an event, schedule, webhook or workflow trigger"#,
    ),
    (
        "unknown input",
        r#"name: demo
on: { manual: { inputs: { symbol: { type: string, required: true } } } }
steps:
  - id: recall
    run: cortana.query_memories
    with: { query: "{{ inputs.symbl }} volatility", limit: "{{ inputs.limit }}" }
"#,
        r#"wf.yaml:6:24: steps[0].with.query: unknown input "symbl"
  hint: did you mean "symbol"?
wf.yaml:6:64: steps[0].with.limit: unknown input "limit"
  hint: the declared inputs are: symbol"#,
    ),
    (
        "unknown project and task",
        r#"name: demo
on: { manual: {} }
steps:
  - { id: recall, run: cortan.query_memories }
  - { id: summarize, run: cortana.sumarize }
  - { id: scan, run: trading }
"#,
        r#"wf.yaml:4:24: steps[0].run: unknown project "cortan"
  hint: did you mean "cortana"?
wf.yaml:5:35: steps[1].run: project "cortana" has no task "sumarize"
  hint: did you mean "summarize"?
wf.yaml:6:22: steps[2].run: `run` names a task as PROJECT.TASK, got "trading"
  hint: e.g. run: cortana.query_memories"#,
    ),
    (
        "unknown workflow",
        r#"name: demo
on:
  workflow: { name: nightly-bakup, status: [failed, crashed] }
steps:
  - id: again
    workflow: demo
  - id: backup
    workflow: { name: nightly-backups, inputs: { keep: 5 } }
"#,
        r#"wf.yaml:3:21: on.workflow.name: unknown workflow "nightly-bakup"
  hint: did you mean "nightly-backup"?
wf.yaml:3:53: on.workflow.status[1]: unknown status "crashed"
  hint: one of: succeeded, failed, cancelled, timed_out
wf.yaml:6:15: steps[0].workflow: a workflow cannot call itself
  hint: a workflow that runs itself never ends; call another workflow
wf.yaml:8:23: steps[1].workflow.name: unknown workflow "nightly-backups"
  hint: did you mean "nightly-backup"?"#,
    ),
    (
        "yaml syntax",
        r#"name: demo
on: { manual: {}
steps:
  - { id: recall, run: cortana.query_memories }
"#,
        r#"wf.yaml:3:1: steps: while parsing a flow mapping, did not find expected ',' or '}'
  hint: check the YAML syntax at this place"#,
    ),
    (
        "duplicate key",
        r#"name: demo
on: { manual: {} }
steps:
  - id: recall
    run: cortana.query_memories
    run: cortana.summarize
"#,
        r#"wf.yaml:6:5: steps[0].run: duplicate key `run`
  hint: a key may appear only once in a mapping"#,
    ),
    (
        "schedule",
        r#"name: demo
on:
  schedule: { cron: "61 * * * *", timezone: Mars/Olympus, catch_up: some }
steps:
  - { id: scan, run: trading.scan_market }
"#,
        r#"wf.yaml:3:21: on.schedule.cron: minute field: bad token "61": 61 is out of range 0-59
  hint: five fields: minute hour day-of-month month day-of-week, e.g. "0 22 * * *", or @daily
wf.yaml:3:45: on.schedule.timezone: unknown time zone "Mars/Olympus"; use an IANA name such as America/Los_Angeles, Europe/Berlin or UTC
wf.yaml:3:69: on.schedule.catch_up: unknown catch_up "some"
  hint: one of: skip, latest, all"#,
    ),
    (
        "webhook secret value",
        r#"name: demo
on:
  webhook: { secret_env: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
steps:
  - { id: scan, run: trading.scan_market, with: { symbols: "{{ event.data.symbols }}" } }
"#,
        r#"wf.yaml:3:26: on.webhook.secret_env: `secret_env` takes the name of an environment variable, and this is not one
  hint: give the name of the variable that holds the secret in Agent OS's environment, e.g. TRADINGVIEW_WEBHOOK_SECRET; never the secret itself"#,
    ),
    (
        "manual inputs",
        r#"name: demo
on:
  manual:
    inputs:
      limit: { type: integer, default: 2.5 }
      dry_run: { type: boolean, required: yes }
      max-items: { type: int }
steps:
  - { id: rebalance, run: trading.rebalance }
"#,
        r#"wf.yaml:5:40: on.manual.inputs.limit.default: the default is a number with a fraction, but the input is declared as integer
  hint: give a default of type integer, or change `type`
wf.yaml:6:43: on.manual.inputs.dry_run.required: expected true or false, found "yes"
  hint: write true or false; "yes" is text in YAML 1.2
wf.yaml:7:7: on.manual.inputs.max-items: input name "max-items" is not a plain name
  hint: use letters, digits and '_', starting with a letter (at most 63), e.g. symbol or max_items
wf.yaml:7:26: on.manual.inputs.max-items.type: unknown input type "int"
  hint: one of: string, number, integer, boolean, object, array"#,
    ),
    (
        "retry and durations",
        r#"name: demo
on: { manual: {} }
timeout: 30
steps:
  - id: rebalance
    run: trading.rebalance
    timeout: 0s
    retry: { attempts: 21, backoff: linear, delay: 5 sec }
"#,
        r#"wf.yaml:3:10: timeout: bad duration "30": a number needs a unit (ms, s, m, h or d), e.g. 30s
  hint: write e.g. 30s, 5m or 1h30m
wf.yaml:7:14: steps[0].timeout: duration must be more than zero
  hint: write e.g. 30s, 5m or 1h30m
wf.yaml:8:24: steps[0].retry.attempts: 21 is out of range; allowed are 1 to 20
  hint: attempts count the first one: 1 means no retry
wf.yaml:8:37: steps[0].retry.backoff: unknown backoff "linear"
  hint: one of: fixed, exponential"#,
    ),
    (
        "emit",
        r#"name: demo
on: { manual: {} }
steps:
  - id: tell
    emit: { type: SummaryReady }
    with: { text: done }
  - id: tell-all
    emit: { type: "agent-os.*" }
"#,
        r#"wf.yaml:5:19: steps[0].emit.type: event type "SummaryReady" contains 'S'
  hint: use lower-case letters, digits, '-' and '_' between the dots
wf.yaml:6:11: steps[0].with: `with` is the input of a `run` step
  hint: an event's data goes in emit: { type: …, data: {…} }
wf.yaml:8:19: steps[1].emit.type: an emitted event has one type; "agent-os.*" contains `*`
  hint: e.g. trading.volatility_spike"#,
    ),
    (
        "if as template",
        r#"name: demo
on: { event: { type: trading.volatility_spike } }
steps:
  - id: scan
    if: "{{ event.data.magnitude > 2 }}"
    run: trading.scan_market
"#,
        r#"wf.yaml:5:9: steps[0].if: `if` is an expression; write it without {{ }}
  hint: write if: "event.data.magnitude > 2"; {{ }} marks the expressions inside text values"#,
    ),
    (
        "concurrency and fan out",
        r#"name: demo
on: { event: { type: trading.volatility_spike } }
concurrency: { key: "{{ event.data.symbol }}", limit: 0, on_limit: cancel }
steps:
  - id: scan
    for_each: { items: event.data.symbols, max_parallel: 500 }
    run: trading.scan_market
"#,
        r#"wf.yaml:3:55: concurrency.limit: 0 is out of range; allowed are 1 to 1000
  hint: how many runs with the same key may go at once
wf.yaml:3:68: concurrency.on_limit: unknown on_limit "cancel"
  hint: one of: queue, skip, cancel_running
wf.yaml:6:58: steps[0].for_each.max_parallel: 500 is out of range; allowed are 1 to 100
  hint: how many items run at once"#,
    ),
    (
        "outputs",
        r#"name: demo
on: { manual: {} }
steps:
  - { id: summarize, run: cortana.summarize }
outputs:
  summary: "{{ steps.sumarize.outputs.text }}"
  word-count: 5
"#,
        r#"wf.yaml:6:16: outputs.summary: unknown step "sumarize"
  hint: did you mean "summarize"?
wf.yaml:7:3: outputs.word-count: output name "word-count" is not a plain name
  hint: use letters, digits and '_', starting with a letter (at most 63), e.g. symbol or max_items
wf.yaml:7:15: outputs.word-count: expected a string, found a number
  hint: quote it, e.g. "{{ steps.summarize.outputs.text }}""#,
    ),
    (
        "wait",
        r#"name: demo
on: { manual: {} }
steps:
  - id: pause
    wait: soon
  - id: approval
    wait: { event: { type: "approval*" }, timeout: 1h }
  - id: other
    wait: { timeout: 1h }
"#,
        r#"wf.yaml:5:11: steps[0].wait: bad duration "soon": expected a number at "soon"
  hint: write e.g. 30s, 5m or 1h30m
wf.yaml:7:28: steps[1].wait.event.type: "approval*": `*` stands only for a whole type or for everything after a dot
  hint: use trading.* for every type under trading, or * for all
wf.yaml:9:11: steps[2].wait: missing field `event`
  hint: for a fixed pause write wait: 10m"#,
    ),
    (
        "notify",
        r#"name: demo
on: { manual: {} }
steps:
  - id: ping
    notify: { body: "{{ inputs }}", severity: urgent, tags: ["{{ inputs.tag }}"] }
"#,
        r#"wf.yaml:5:13: steps[0].notify: missing field `title`
  hint: give the notification a title
wf.yaml:5:47: steps[0].notify.severity: unknown severity "urgent"
  hint: one of: info, warning, critical
wf.yaml:5:62: steps[0].notify.tags[0]: a tag is not a template
  hint: tags are plain words; put the changing part in the title or the body"#,
    ),
    (
        "bad names",
        r#"name: Volatility Alerts
on: { manual: {} }
steps:
  - { id: Recall, run: cortana.query_memories }
  - { id: _scan, run: trading.scan_market }
"#,
        r#"wf.yaml:1:7: name: workflow name "Volatility Alerts" contains 'V'
  hint: use lower-case letters, digits, '-' and '_', starting with a letter or a digit (at most 63)
wf.yaml:4:11: steps[0].id: step id "Recall" contains 'R'
  hint: use lower-case letters, digits, '-' and '_', starting with a letter or a digit (at most 63)
wf.yaml:5:11: steps[1].id: step id "_scan" must start with a letter or a digit
  hint: use lower-case letters, digits, '-' and '_', starting with a letter or a digit (at most 63)"#,
    ),
    (
        "empty file",
        r#""#,
        r#"wf.yaml:1:1: the workflow file is empty
  hint: a workflow needs name:, on: and steps:; docs/workflows.md shows a complete file"#,
    ),
    (
        "workflow triggers itself",
        r#"name: demo
on: { workflow: { name: demo } }
steps:
  - { id: scan, run: trading.scan_market }
"#,
        r#"wf.yaml:2:25: on.workflow.name: a workflow cannot start itself
  hint: a run that starts the next run of itself never ends; use a schedule instead"#,
    ),
];

#[test]
fn broken_files_get_these_errors() {
    let mut wrong = Vec::new();
    for (what, text, expected) in BROKEN {
        let got = match parse("wf.yaml", text, &TestCatalog) {
            Ok(_) => "(accepted)".to_string(),
            Err(e) => e.to_string(),
        };
        if got != *expected {
            wrong.push(format!("--- {what}\nexpected:\n{expected}\ngot:\n{got}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} cases differ:\n{}", wrong.len(), BROKEN.len(), wrong.join("\n"));
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = r#"name: Demo
on: { schedule: { cron: "0 25 * * *" } }
timeout: forever
steps:
  - id: recall
    run: cortana.query
    retry: { attempts: 0 }
  - id: summarize
    needs: [recal]
    run: cortana.summarize
    with: { memories: "{{ steps.recall.outputs.items }}" }
outputs: { text: "{{ inputs.text }}" }
"#;
    let err = parse("wf.yaml", text, &TestCatalog).unwrap_err();
    let places: Vec<(u64, &str)> = err.0.iter().map(|e| (e.line, e.path.as_str())).collect();
    assert_eq!(
        places,
        [
            (1, "name"),
            (2, "on.schedule.cron"),
            (3, "timeout"),
            (6, "steps[0].run"),
            (7, "steps[0].retry.attempts"),
            (9, "steps[1].needs[0]"),
            (12, "outputs.text"),
        ],
        "{err}"
    );
}

#[test]
fn yaml_1_1_words_stay_text() {
    // `on` is a key, not `true`; `yes` in a task's input is the string "yes".
    let text = r#"name: demo
on: { manual: {} }
steps:
  - { id: a, run: trading.rebalance, with: { dry_run: yes, n: 1.5 } }
"#;
    let w = parse("wf.yaml", text, &TestCatalog).unwrap();
    assert_eq!(
        w.steps[0].action,
        Action::Run {
            project: "trading".into(),
            task: "rebalance".into(),
            with: json!({ "dry_run": "yes", "n": 1.5 })
        }
    );
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    let deep = format!(
        "name: demo\non: {{ manual: {{}} }}\nsteps:\n  - {{ id: a, run: trading.rebalance, with: {{ x: {}{} }} }}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(parse("wf.yaml", &deep, &TestCatalog).is_err());
    let fine = format!(
        "name: demo\non: {{ manual: {{}} }}\nsteps:\n  - {{ id: a, run: trading.rebalance, with: {{ x: {}{} }} }}\n",
        "[".repeat(50),
        "]".repeat(50)
    );
    assert!(parse("wf.yaml", &fine, &TestCatalog).is_ok());
}

#[test]
fn the_example_workflows_use_the_example_projects_real_tasks() {
    let dir = repo().join("examples/workflows");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    let names: Vec<String> = files.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let catalog = example_catalog(&names);
    assert!(!files.is_empty());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let w = parse(&path.display().to_string(), &text, &catalog).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Some(w.name.as_str()), path.file_stem().and_then(|s| s.to_str()), "name matches the file");
    }
}

#[test]
fn the_documented_workflows_parse() {
    let doc = std::fs::read_to_string(repo().join("docs/workflows.md")).unwrap();
    let catalog = example_catalog(&["nightly-backup", "volatility-to-memories", "spike-report", "approve-rebalance"]);
    let mut checked = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap();
        if let Some(rest) = block.strip_prefix("# workflows/") {
            let file = rest.lines().next().unwrap();
            parse(file, block, &catalog).unwrap_or_else(|e| panic!("docs/workflows.md, {file}:\n{e}"));
            checked += 1;
        }
    }
    assert!(checked >= 3, "found {checked} complete examples");
}

/// Pieces that make YAML and expressions interesting, for mutating a valid file.
const PIECES: &[&str] = &[
    "{{",
    "}}",
    "{",
    "}",
    "[",
    "]",
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "\"",
    "'",
    "*",
    "&a ",
    "*a",
    "!!str ",
    "#",
    ",",
    "steps.",
    "needs: [",
    "if: ",
    "event.",
    "item",
    "for_each: ",
    "é",
    "\t",
    "~",
    "<<: ",
    "---\n",
    "0",
    "-1",
    ".*",
];

fn mutated() -> impl Strategy<Value = String> {
    prop::collection::vec((0usize..SPECIFIED.len(), 0usize..8, prop::sample::select(PIECES)), 1..6).prop_map(|edits| {
        let mut text = SPECIFIED.to_string();
        for (at, cut, piece) in edits {
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + cut).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(at..end, piece);
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn parse_never_panics_on_any_text(text in any::<String>()) {
        let _ = parse("wf.yaml", &text, &TestCatalog);
    }

    #[test]
    fn parse_never_panics_on_a_damaged_workflow(text in mutated()) {
        if let Err(e) = parse("wf.yaml", &text, &TestCatalog) {
            prop_assert!(!e.0.is_empty());
            for err in &e.0 {
                prop_assert!(err.line >= 1 && err.column >= 1);
            }
        }
    }
}

#[test]
fn the_documented_errors_are_what_users_get() {
    let doc = std::fs::read_to_string(repo().join("docs/workflows.md")).unwrap();
    let (_, errors) = doc.split_once("## Errors").unwrap();
    let file = errors.split("```yaml\n").nth(1).unwrap().split("```").next().unwrap();
    let shown = errors.split("```text\n").nth(1).unwrap().split("```").next().unwrap();
    let got = parse("workflows/demo.yaml", file, &example_catalog(&[])).unwrap_err().to_string();
    assert_eq!(got, shown.trim_end());
}

#[test]
fn an_approval_step_parses_with_its_form() {
    use agent_os_core::workflow::{Decision, FormType};
    let text = r#"name: deploy
on: { manual: { inputs: { version: { type: string } } } }
steps:
  - id: go_live
    approval:
      message: "Deploy {{ inputs.version }}?"
      timeout: 24h
      on_timeout: approve
      inputs:
        reason: { type: string, required: true, description: Why now }
        size: { type: number, default: 2 }
        mode: { type: choice, options: [fast, safe], default: safe }
      notify: { severity: critical, tags: [deploy] }
  - id: after
    needs: go_live
    emit: { type: deploy.done, data: { why: "{{ steps.go_live.outputs.inputs.reason }}" } }
"#;
    let w = parse("wf.yaml", text, &TestCatalog).unwrap();
    let Action::Approval(a) = &w.steps[0].action else { panic!("{:?}", w.steps[0].action) };
    assert_eq!(a.message, "Deploy {{ inputs.version }}?");
    assert_eq!(a.timeout, Some(Duration::from_secs(24 * 3600)));
    assert_eq!(a.on_timeout, Decision::Approved);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.tags, ["deploy"]);
    assert_eq!(a.inputs["reason"].kind, FormType::String);
    assert!(a.inputs["reason"].required);
    assert_eq!(a.inputs["size"].default, Some(json!(2)));
    assert_eq!(a.inputs["mode"].options, ["fast", "safe"]);
    assert_eq!(a.inputs["mode"].default, Some(json!("safe")));

    // The defaults: reject on timeout, a warning, no form.
    let text = "name: d\non: { manual: {} }\nsteps:\n  - { id: ok, approval: { message: Go? } }\n";
    let w = parse("wf.yaml", text, &TestCatalog).unwrap();
    let Action::Approval(a) = &w.steps[0].action else { panic!() };
    assert_eq!((a.timeout, a.on_timeout, a.severity), (None, Decision::Rejected, Severity::Warning));
    assert!(a.inputs.is_empty());
}

#[test]
fn approval_mistakes_are_named_where_they_are() {
    let cases: &[(&str, &str)] = &[
        ("approval: { timeout: 1h }", "wf.yaml:5:15: steps[0].approval: missing field `message`"),
        (
            "approval: { message: Go?, on_timeout: approve }",
            "steps[0].approval.on_timeout: on_timeout without a timeout never applies",
        ),
        (
            "approval: { message: Go?, on_timeout: later, timeout: 1h }",
            "steps[0].approval.on_timeout: unknown on_timeout \"later\"",
        ),
        (
            "approval: { message: Go?, inputs: { n: { type: float } } }",
            "steps[0].approval.inputs.n.type: unknown form field type \"float\"",
        ),
        ("approval: { message: Go?, inputs: { m: { type: choice } } }", "a choice field needs its options"),
        (
            "approval: { message: Go?, inputs: { m: { type: string, options: [a] } } }",
            "only a choice field has options",
        ),
        (
            "approval: { message: Go?, inputs: { m: { type: choice, options: [a, b], default: c } } }",
            "steps[0].approval.inputs.m.default: the default must be one of: a, b",
        ),
        (
            "approval: { message: Go?, inputs: { n: { type: integer, default: 1.5 } } }",
            "the default must be a whole number",
        ),
        (
            "approval: { message: Go?, inputs: { my-field: { type: string } } }",
            "form field name \"my-field\" is not a plain name",
        ),
        ("approval: { message: Go?, colour: red }", "steps[0].approval.colour: unknown field `colour`"),
        ("approval: { message: \"{{ nope.x }}\" }", "steps[0].approval.message"),
        ("approval: { message: Go? }\n    retry: { attempts: 2 }", "steps[0].retry: an approval step takes no `retry`"),
        ("approval: { message: Go? }\n    timeout: 1h", "steps[0].timeout: an approval step takes no `timeout`"),
        (
            "approval: { message: Go? }\n    for_each: \"[1, 2]\"",
            "steps[0].for_each: an approval step takes no `for_each`",
        ),
    ];
    let mut wrong = Vec::new();
    for (step, want) in cases {
        let text = format!("name: demo\non: {{ manual: {{}} }}\nsteps:\n  - id: ask\n    {step}\n");
        let got = match parse("wf.yaml", &text, &TestCatalog) {
            Ok(_) => "(accepted)".to_string(),
            Err(e) => e.to_string(),
        };
        if !got.contains(want) || !got.starts_with("wf.yaml:") {
            wrong.push(format!("{step}\nwant: {want}\ngot: {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n---\n"));
}
