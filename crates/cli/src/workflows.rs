//! `agent-os event emit` and `agent-os workflow …`: emit events, and list, inspect, start,
//! follow, cancel, reload and validate workflows through the HTTP API.

use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Client, ServerError};
use crate::commands::{print_json, print_list, query};
use crate::table::{duration_ms, render, short_time};
use agent_os_core::url::encode_component as enc;
use agent_os_core::workflow::WorkflowRunStatus;
use agent_os_server::{
    EmittedEvent, WorkflowDetail, WorkflowRunDetail, WorkflowRunView, WorkflowStepView, WorkflowValid, WorkflowView,
    WorkflowsReloaded,
};

#[derive(Subcommand)]
pub enum EventCmd {
    /// Emit an event; the workflows it triggers start. A project's token may only emit types
    /// starting with its project's name and a dot.
    Emit {
        /// Dotted lower-case words, e.g. trading.volatility_spike.
        #[arg(value_name = "TYPE")]
        kind: String,
        /// The event's data, a JSON object.
        #[arg(long, value_name = "JSON")]
        data: Option<String>,
        /// The same key (from the same token's project, or the admin) stores the event once.
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// How a person decides an `approval` step.
#[derive(Args)]
pub struct DecideArgs {
    /// The workflow run's id.
    run: String,
    /// The approval step's id.
    step: String,
    /// An answer to the step's form, NAME=VALUE (repeat for each field).
    #[arg(long = "input", value_name = "NAME=VALUE")]
    inputs: Vec<String>,
    /// Why, recorded on the step.
    #[arg(long)]
    comment: Option<String>,
    /// Who decides, recorded on the step (default: the kind of token used).
    #[arg(long)]
    by: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum WorkflowCmd {
    /// The loaded workflows with their triggers.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One workflow: triggers, inputs, steps (with --json, also the file's text).
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Start a run of a workflow with a manual trigger; prints the run's id.
    Run {
        name: String,
        /// The workflow's inputs, a JSON object.
        #[arg(long, value_name = "JSON")]
        input: Option<String>,
        /// Wait for the run to end and print its steps; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// Workflow runs, newest first (of one workflow when NAME is given).
    Runs {
        name: Option<String>,
        /// How many (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One workflow run with its steps.
    RunStatus {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a workflow run: its running task runs are cancelled, the rest does not start.
    Cancel {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve a waiting `approval` step of a run; the run goes on.
    Approve(DecideArgs),
    /// Reject a waiting `approval` step of a run; the step fails.
    Reject(DecideArgs),
    /// Re-read the workflow files now (edits are also picked up within seconds); exit 1 when
    /// a file could not be loaded.
    Reload {
        #[arg(long)]
        json: bool,
    },
    /// Check workflow files against the server's projects and workflows without loading them;
    /// prints every error, exit 1 when a file is invalid.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

/// A JSON object from a flag, or the message for exit status 2.
fn object_flag(flag: &str, text: Option<&str>) -> Result<Value, String> {
    match text {
        None => Ok(json!({})),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(format!("{flag} must be a JSON object, e.g. {flag} '{{\"symbol\": \"BTC\"}}'")),
            Err(e) => Err(format!("{flag} is not valid JSON: {e}")),
        },
    }
}

/// `--input NAME=VALUE` flags as a JSON object of strings (the server reads each as its
/// field's type), or the message for exit status 2.
fn answer_flags(flags: &[String]) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    for f in flags {
        let Some((name, value)) = f.split_once('=').filter(|(n, _)| !n.trim().is_empty()) else {
            return Err(format!("--input takes NAME=VALUE, got {f:?}; e.g. --input reason=\"hotfix\""));
        };
        if out.insert(name.trim().to_string(), Value::String(value.to_string())).is_some() {
            return Err(format!("--input {} is given twice", name.trim()));
        }
    }
    Ok(Value::Object(out))
}

pub async fn event(c: &Client, cmd: &EventCmd) -> Result<u8> {
    let EventCmd::Emit { kind, data, idempotency_key, json } = cmd;
    let data = match object_flag("--data", data.as_deref()) {
        Ok(v) => v,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Ok(2);
        }
    };
    let body = json!({"type": kind, "data": data, "idempotency_key": idempotency_key});
    let e: EmittedEvent = c.post("/api/v1/events", &body).await?;
    if *json {
        print_json(&e)?;
    } else if e.duplicate {
        println!("already emitted as {} at {} UTC (same idempotency key)", e.event.id, short_time(&e.event.at));
    } else {
        println!("event {} emitted: {}", e.event.id, e.event.kind);
    }
    Ok(0)
}

pub async fn workflow(c: &Client, cmd: &WorkflowCmd) -> Result<u8> {
    match cmd {
        WorkflowCmd::List { json } => {
            let list: Vec<WorkflowView> = c.get("/api/v1/workflows").await?;
            print_list(
                *json,
                &list,
                "no workflows loaded: put NAME.yaml files in the home's workflows/ directory",
                &["NAME", "TRIGGERS", "STEPS", "DESCRIPTION"],
                |w| vec![w.name.clone(), w.triggers.join("; "), w.step_count.to_string(), w.description.clone()],
            )?;
            Ok(0)
        }
        WorkflowCmd::Show { name, json } => {
            let w: WorkflowDetail = c.get(&format!("/api/v1/workflows/{}", enc(name))).await?;
            if *json {
                print_json(&w)?;
            } else {
                print_workflow(c, &w);
            }
            Ok(0)
        }
        WorkflowCmd::Run { name, input, wait, json } => {
            let inputs = match object_flag("--input", input.as_deref()) {
                Ok(v) => v,
                Err(msg) => {
                    eprintln!("error: {msg}");
                    return Ok(2);
                }
            };
            let run: WorkflowRunView =
                c.post(&format!("/api/v1/workflows/{}/runs", enc(name)), &json!({"inputs": inputs})).await?;
            if !*wait {
                if *json {
                    print_json(&run)?;
                } else {
                    println!("{}", run.id);
                }
                return Ok(0);
            }
            // The server answers as soon as the run ends (or after a minute, and we ask again).
            let path = format!("/api/v1/workflows/runs/{}/wait?timeout=60s", enc(&run.id));
            let run = loop {
                let r: WorkflowRunDetail =
                    c.call_with_timeout(reqwest::Method::GET, &path, None, Duration::from_secs(90)).await?;
                if r.run.status.is_terminal() {
                    break r;
                }
            };
            if *json {
                print_json(&run)?;
            } else {
                print_run(&run);
            }
            Ok(if run.run.status == WorkflowRunStatus::Succeeded { 0 } else { 1 })
        }
        WorkflowCmd::Runs { name, limit, json } => {
            let q = query(&[("workflow", name.clone()), ("limit", Some(limit.to_string()))]);
            let list: Vec<WorkflowRunView> = c.get(&format!("/api/v1/workflows/runs{q}")).await?;
            print_list(
                *json,
                &list,
                "no workflow runs yet",
                &["ID", "WORKFLOW", "STATUS", "TRIGGER", "CREATED (UTC)", "TOOK", "ERROR"],
                |r| {
                    vec![
                        r.id.clone(),
                        r.workflow.clone(),
                        r.status.to_string(),
                        r.trigger.to_string(),
                        short_time(&r.created_at),
                        duration_ms(took(r.started_at.as_deref(), r.finished_at.as_deref())),
                        r.error.clone().unwrap_or_default(),
                    ]
                },
            )?;
            Ok(0)
        }
        WorkflowCmd::RunStatus { id, json } => {
            let run: WorkflowRunDetail = c.get(&format!("/api/v1/workflows/runs/{}", enc(id))).await?;
            if *json {
                print_json(&run)?;
            } else {
                print_run(&run);
            }
            Ok(0)
        }
        WorkflowCmd::Cancel { id, json } => {
            let run: WorkflowRunDetail =
                c.post(&format!("/api/v1/workflows/runs/{}/cancel", enc(id)), &json!({})).await?;
            if *json {
                print_json(&run)?;
            } else {
                println!("workflow run {} ({}): {}", run.run.id, run.run.workflow, run.run.status);
            }
            Ok(0)
        }
        WorkflowCmd::Approve(DecideArgs { run, step, inputs, comment, by, json })
        | WorkflowCmd::Reject(DecideArgs { run, step, inputs, comment, by, json }) => {
            let verb = if matches!(cmd, WorkflowCmd::Approve(_)) { "approve" } else { "reject" };
            let answers = match answer_flags(inputs) {
                Ok(a) => a,
                Err(msg) => {
                    eprintln!("error: {msg}");
                    return Ok(2);
                }
            };
            let mut body = json!({"comment": comment, "inputs": answers});
            if let Some(by) = by {
                body["by"] = json!(by);
            }
            let path = format!("/api/v1/workflows/runs/{}/steps/{}/{verb}", enc(run), enc(step));
            let d: WorkflowRunDetail = c.post(&path, &body).await?;
            if *json {
                print_json(&d)?;
            } else {
                print_run(&d);
            }
            Ok(0)
        }
        WorkflowCmd::Reload { json } => {
            let r: WorkflowsReloaded = c.post("/api/v1/workflows/reload", &json!({})).await?;
            if *json {
                print_json(&r)?;
            } else {
                match r.workflows.len() {
                    0 => println!("no workflows loaded"),
                    n => println!("{n} workflow(s) loaded: {}", r.workflows.join(", ")),
                }
                for e in &r.errors {
                    println!("not loaded: {}", e.message);
                }
            }
            Ok(if r.errors.is_empty() { 0 } else { 1 })
        }
        WorkflowCmd::Validate { files, json } => validate(c, files, *json).await,
    }
}

/// Sends each file's text to the server. Any error answer about a file (the 422 of an invalid
/// one, a file over the body limit) is that file's verdict; an unreachable server stops all.
async fn validate(c: &Client, files: &[String], json: bool) -> Result<u8> {
    let mut verdicts = Vec::new();
    for file in files {
        let verdict = match std::fs::read_to_string(file) {
            Err(e) => json!({"file": file, "valid": false, "errors": format!("{file}: cannot read: {e}")}),
            Ok(text) => {
                match c.post::<WorkflowValid>("/api/v1/workflows/validate", &json!({"file": file, "text": text})).await
                {
                    Ok(v) => json!({"file": file, "valid": true, "workflow": v.workflow}),
                    Err(e) => match e.downcast_ref::<ServerError>() {
                        Some(refused) => json!({"file": file, "valid": false, "errors": refused.message}),
                        None => return Err(e),
                    },
                }
            }
        };
        if !json {
            match verdict["errors"].as_str() {
                None => println!("{file}: valid (workflow {})", verdict["workflow"].as_str().unwrap_or("")),
                Some(errors) => println!("{file}: invalid\n{}", indent(errors)),
            }
        }
        verdicts.push(verdict);
    }
    if json {
        print_json(&verdicts)?;
    }
    Ok(if verdicts.iter().all(|v| v["valid"] == true) { 0 } else { 1 })
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

/// Milliseconds between two RFC 3339 times, when both are known.
fn took(start: Option<&str>, end: Option<&str>) -> Option<i64> {
    let parse = |t: Option<&str>| t.and_then(|t| t.parse::<jiff::Timestamp>().ok());
    Some((parse(end)?.as_millisecond() - parse(start)?.as_millisecond()).max(0))
}

fn print_workflow(c: &Client, w: &WorkflowDetail) {
    let v = &w.workflow;
    println!(
        "workflow {}{}",
        v.name,
        if v.description.is_empty() { String::new() } else { format!(": {}", v.description) }
    );
    println!("  file: {}", v.file);
    println!("  triggers: {}", if v.triggers.is_empty() { "none".into() } else { v.triggers.join("; ") });
    if let Some(path) = &w.webhook_path {
        println!("  webhook: POST {}{path}", c.base);
    }
    if !w.inputs.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = w
            .inputs
            .iter()
            .map(|i| {
                vec![
                    i.name.clone(),
                    i.kind.to_string(),
                    if i.required { "yes".into() } else { "no".into() },
                    i.default.as_ref().map(Value::to_string).unwrap_or_default(),
                    i.description.clone(),
                ]
            })
            .collect();
        print!("{}", render(&["INPUT", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION"], &rows));
    }
    println!();
    let rows: Vec<Vec<String>> = w
        .steps
        .iter()
        .map(|s| {
            let for_each = match (&s.for_each, s.max_parallel) {
                (Some(items), Some(n)) => format!("{items} (max {n})"),
                (Some(items), None) => items.clone(),
                (None, _) => String::new(),
            };
            vec![
                s.id.clone(),
                s.kind.to_string(),
                s.target.clone(),
                s.needs.join(", "),
                s.condition.clone().unwrap_or_default(),
                for_each,
            ]
        })
        .collect();
    print!("{}", render(&["STEP", "KIND", "TARGET", "NEEDS", "IF", "FOR EACH"], &rows));
}

/// What a step row says beyond its status: its error, else what it started, else its outputs.
fn step_detail(s: &WorkflowStepView) -> String {
    if let Some(a) = &s.approval {
        let mut said = format!("{} by {} at {}", a.decision, a.decided_by, short_time(&a.decided_at));
        if let Some(c) = &a.comment {
            said.push_str(&format!(": {c}"));
        }
        if a.inputs.as_object().is_some_and(|o| !o.is_empty()) {
            said.push_str(&format!(" {}", a.inputs));
        }
        return said;
    }
    if s.status == agent_os_core::workflow::StepStatus::Waiting
        && let Some(m) = s.outputs.get("message").and_then(Value::as_str)
    {
        return format!("waiting for approval: {m}");
    }
    if let Some(e) = &s.error {
        return e.clone();
    }
    if let Some(r) = &s.task_run_id {
        return format!("task run {r}");
    }
    if let Some(r) = &s.child_run_id {
        return format!("workflow run {r}");
    }
    if s.outputs.is_null() {
        return String::new();
    }
    let text = s.outputs.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn print_run(d: &WorkflowRunDetail) {
    let r = &d.run;
    println!("workflow run {}  {}  {}", r.id, r.workflow, r.status);
    println!(
        "  trigger: {}   created: {}   took: {}",
        r.trigger,
        short_time(&r.created_at),
        duration_ms(took(r.started_at.as_deref(), r.finished_at.as_deref()))
    );
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
    if r.inputs.as_object().is_some_and(|o| !o.is_empty()) {
        println!("  inputs: {}", r.inputs);
    }
    if !r.outputs.is_null() && r.outputs != json!({}) {
        println!("  outputs: {}", r.outputs);
    }
    if d.steps.is_empty() {
        println!("  no step has begun");
        return;
    }
    println!();
    let rows: Vec<Vec<String>> = d
        .steps
        .iter()
        .map(|s| {
            vec![
                s.step_id.clone(),
                s.item.map(|i| i.to_string()).unwrap_or_default(),
                s.status.to_string(),
                s.attempt.to_string(),
                duration_ms(took(s.started_at.as_deref(), s.finished_at.as_deref())),
                step_detail(s),
            ]
        })
        .collect();
    print!("{}", render(&["STEP", "ITEM", "STATUS", "ATTEMPT", "TOOK", "DETAIL"], &rows));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_json_objects_only() {
        assert_eq!(object_flag("--data", None).unwrap(), json!({}));
        assert_eq!(object_flag("--data", Some(r#"{"n": 1}"#)).unwrap(), json!({"n": 1}));
        assert!(object_flag("--data", Some("[1]")).unwrap_err().contains("must be a JSON object"));
        assert!(object_flag("--input", Some("{")).unwrap_err().starts_with("--input is not valid JSON"));
    }

    #[test]
    fn answers_are_name_value_pairs() {
        let got = answer_flags(&["reason=a=b".into(), "size=3".into()]).unwrap();
        assert_eq!(got, json!({"reason": "a=b", "size": "3"}));
        assert!(answer_flags(&["reason".into()]).unwrap_err().contains("NAME=VALUE"));
        assert!(answer_flags(&["=x".into()]).unwrap_err().contains("NAME=VALUE"));
        assert!(answer_flags(&["a=1".into(), "a=2".into()]).unwrap_err().contains("twice"));
    }

    #[test]
    fn durations_between_times() {
        assert_eq!(took(Some("2026-01-01T00:00:00.000Z"), Some("2026-01-01T00:00:01.500Z")), Some(1500));
        assert_eq!(took(Some("2026-01-01T00:00:00.000Z"), None), None);
    }
}
