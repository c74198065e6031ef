//! Workflows: YAML files in the home's `workflows/` directory that connect projects. A trigger
//! (an event, a schedule, a signed webhook, a manual start, another workflow's end) starts a
//! run; its steps form a DAG (`needs`) of actions: run a project's task through its plugin,
//! emit an event, wait, call another workflow, notify. Conditions, templates and filters are
//! `expr` expressions over data only. This module holds the validated plan (`Workflow`); the
//! engine executes it durably.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::cron::{Cron, Zone};
use crate::expr::{Expr, Template};
use crate::manifest::{CatchUp, Overlap};
use crate::text::text_enum;

mod approval;
mod parse;
pub use approval::{AnswerError, Approval, Decision, FormField, FormType, MAX_ANSWER, MAX_COMMENT};
pub use parse::{Catalog, parse};

/// A validated workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    pub name: String,
    pub description: String,
    pub triggers: Vec<Trigger>,
    /// Typed inputs of a manual start (and of a call from another workflow).
    pub inputs: BTreeMap<String, InputDecl>,
    pub concurrency: Option<Concurrency>,
    /// The longest a run may take, end to end.
    pub timeout: Option<Duration>,
    /// In file order; `topological_order` gives an order that respects `needs`.
    pub steps: Vec<Step>,
    /// The run's outputs, rendered when it succeeds.
    pub outputs: BTreeMap<String, Template>,
}

/// What starts a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// An event whose type matches `pattern` (`trading.volatility_spike`, `trading.*`, `*`)
    /// and, when given, whose `filter` is true (roots: `event`).
    Event { pattern: String, filter: Option<Expr> },
    /// A managed schedule, with the scheduling policies of project schedules.
    Schedule { cron: Cron, timezone: Zone, catch_up: CatchUp, overlap: Overlap },
    /// `POST /hooks/<workflow>`, signed per Standard Webhooks with the secret in Agent OS's own
    /// environment variable `secret_env`; the body becomes `event.data`.
    Webhook { secret_env: String },
    /// Started by a user (CLI, API), with `Workflow::inputs`.
    Manual,
    /// Another workflow's run ending with one of `statuses` (`succeeded`, `failed`, …).
    Workflow { name: String, statuses: Vec<WorkflowRunStatus> },
}

impl Trigger {
    pub fn kind(&self) -> TriggerKind {
        match self {
            Trigger::Event { .. } => TriggerKind::Event,
            Trigger::Schedule { .. } => TriggerKind::Schedule,
            Trigger::Webhook { .. } => TriggerKind::Webhook,
            Trigger::Manual => TriggerKind::Manual,
            Trigger::Workflow { .. } => TriggerKind::Workflow,
        }
    }
}

text_enum! {
    /// What started a workflow run.
    pub enum TriggerKind("trigger") {
        Event = "event",
        Schedule = "schedule",
        Webhook = "webhook",
        Manual = "manual",
        Workflow = "workflow",
    }
}

text_enum! {
    /// The state of a workflow run.
    pub enum WorkflowRunStatus("workflow run status") {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        TimedOut = "timed_out",
        /// Never started (its concurrency limit said so).
        Skipped = "skipped",
    }
}

impl WorkflowRunStatus {
    /// The statuses a `workflow:` trigger may wait for: how a run that started can end.
    pub const ENDINGS: [WorkflowRunStatus; 4] = [
        WorkflowRunStatus::Succeeded,
        WorkflowRunStatus::Failed,
        WorkflowRunStatus::Cancelled,
        WorkflowRunStatus::TimedOut,
    ];

    /// True for states a run never leaves.
    pub fn is_terminal(self) -> bool {
        !matches!(self, WorkflowRunStatus::Queued | WorkflowRunStatus::Running)
    }

    /// True while the run waits or goes.
    pub fn is_active(self) -> bool {
        !self.is_terminal()
    }
}

text_enum! {
    /// The state of one step (or one item of a `for_each`) of a workflow run.
    pub enum StepStatus("step status") {
        Running = "running",
        /// Waiting for something outside (an event, a time, a child run).
        Waiting = "waiting",
        /// Failed, with another attempt due at its wake time.
        Retrying = "retrying",
        Succeeded = "succeeded",
        Failed = "failed",
        Skipped = "skipped",
        Cancelled = "cancelled",
    }
}

impl StepStatus {
    /// True for states a step never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, StepStatus::Succeeded | StepStatus::Failed | StepStatus::Skipped | StepStatus::Cancelled)
    }
}

text_enum! {
    /// The type of a manual input.
    pub enum InputType("input type") {
        String = "string",
        Number = "number",
        Integer = "integer",
        Boolean = "boolean",
        Object = "object",
        Array = "array",
    }
}

impl InputType {
    /// Whether a JSON value has this type.
    pub fn admits(self, v: &Value) -> bool {
        match self {
            InputType::String => v.is_string(),
            InputType::Number => v.is_number(),
            InputType::Integer => v.is_i64() || v.is_u64(),
            InputType::Boolean => v.is_boolean(),
            InputType::Object => v.is_object(),
            InputType::Array => v.is_array(),
        }
    }
}

/// A catalog held in memory: projects with their task names, and workflow names.
#[derive(Clone, Debug, Default)]
pub struct StaticCatalog {
    pub tasks: BTreeMap<String, Vec<String>>,
    pub workflows: Vec<String>,
}

impl Catalog for StaticCatalog {
    fn tasks(&self, project: &str) -> Option<Vec<String>> {
        self.tasks.get(project).cloned()
    }
    fn projects(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }
    fn workflows(&self) -> Vec<String> {
        self.workflows.clone()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct InputDecl {
    pub kind: InputType,
    pub required: bool,
    pub default: Option<Value>,
    pub description: String,
}

/// What happens when a run would exceed its concurrency limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnLimit {
    /// Wait until a run with the same key ends.
    Queue,
    /// Do not start it (recorded as skipped).
    Skip,
    /// Cancel the running one(s) with the same key and start.
    CancelRunning,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Concurrency {
    /// Rendered from the trigger's data (roots: `event`, `inputs`); runs with the same key count
    /// against one limit.
    pub key: Template,
    pub limit: u32,
    pub on_limit: OnLimit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    Fixed,
    Exponential,
}

/// How often a failed step is tried (in all, counting the first attempt) and the pause before
/// each further attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Backoff,
    pub delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 1, backoff: Backoff::Fixed, delay: Duration::from_secs(5) }
    }
}

/// Fan-out: the step runs once per item of the list `items` evaluates to (roots as the step's
/// `if`), at most `max_parallel` at a time; each item is `item` (and `index`) in its templates.
#[derive(Clone, Debug, PartialEq)]
pub struct ForEach {
    pub items: Expr,
    pub max_parallel: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Wait {
    Duration(Duration),
    /// Until an event matching `pattern` and `filter` (roots: `event`, `steps`, `inputs`)
    /// arrives after the step starts; it fails after `timeout` if one is given.
    Event {
        pattern: String,
        filter: Option<Expr>,
        timeout: Option<Duration>,
    },
}

/// What a step does. Every template is rendered with `core::expr::render_value` against the
/// run's context (`event`, `inputs`, `steps.<id>.outputs`, and `item`/`index` in a for_each).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Runs `project.task` through the project's plugin; `with` becomes the task's JSON input.
    Run {
        project: String,
        task: String,
        with: Value,
    },
    /// Emits an event of `event_type` with `data`.
    Emit {
        event_type: String,
        data: Value,
    },
    Wait(Wait),
    /// Runs another workflow with `inputs` and waits for its outputs.
    Workflow {
        name: String,
        inputs: Value,
    },
    /// Sends a notification through Agent OS's channels; `title`, `body` are templates.
    Notify {
        title: String,
        body: String,
        severity: crate::alerting::Severity,
        tags: Vec<String>,
    },
    /// Waits for a person to approve or reject (the API, the CLI, the dashboard or a signed
    /// link), or for its timeout.
    Approval(Approval),
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Run { .. } => ActionKind::Run,
            Action::Emit { .. } => ActionKind::Emit,
            Action::Wait(_) => ActionKind::Wait,
            Action::Workflow { .. } => ActionKind::Workflow,
            Action::Notify { .. } => ActionKind::Notify,
            Action::Approval(_) => ActionKind::Approval,
        }
    }
}

text_enum! {
    /// What a step does: the key of its action in the file.
    pub enum ActionKind("action") {
        Run = "run",
        Emit = "emit",
        Wait = "wait",
        Workflow = "workflow",
        Notify = "notify",
        Approval = "approval",
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub id: String,
    pub needs: Vec<String>,
    /// `if:`: the step is skipped when false (roots: `event`, `inputs`, `steps`).
    pub condition: Option<Expr>,
    pub action: Action,
    pub timeout: Option<Duration>,
    pub retry: Retry,
    /// A failure of this step does not fail the run; the steps that need it still run.
    pub continue_on_error: bool,
    pub for_each: Option<ForEach>,
}

impl Workflow {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The steps in an order where each comes after every step it needs (file order among
    /// equals). Validation guarantees there is no cycle.
    pub fn topological_order(&self) -> Vec<&Step> {
        let mut done: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        while out.len() < self.steps.len() {
            let before = out.len();
            for s in &self.steps {
                if !done.contains(&s.id.as_str()) && s.needs.iter().all(|n| done.contains(&n.as_str())) {
                    done.push(&s.id);
                    out.push(s);
                }
            }
            if out.len() == before {
                break;
            }
        }
        out
    }

    pub fn manual(&self) -> bool {
        self.triggers.iter().any(|t| matches!(t, Trigger::Manual))
    }
}

/// Whether an event type matches a trigger's pattern: exact, `*` for any, or a prefix ending
/// in `.*` (`trading.*` matches `trading.volatility_spike` and `trading.a.b`, not `trading`).
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        None => pattern == event_type,
        Some("") => true,
        Some(prefix) => prefix.ends_with('.') && event_type.starts_with(prefix) && event_type.len() > prefix.len(),
    }
}

/// The pause before attempt `attempt` (2 for the first retry) of a step.
pub fn retry_pause(retry: &Retry, attempt: u32) -> Duration {
    match retry.backoff {
        Backoff::Fixed => retry.delay,
        Backoff::Exponential => retry.delay.saturating_mul(1u32 << attempt.saturating_sub(2).min(16)),
    }
    .min(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_match_exactly_or_by_prefix() {
        assert!(type_matches("trading.volatility_spike", "trading.volatility_spike"));
        assert!(type_matches("trading.*", "trading.volatility_spike"));
        assert!(type_matches("*", "run.failed"));
        assert!(!type_matches("trading.*", "trading"));
        assert!(!type_matches("trading.*", "tradingx.spike"));
        assert!(!type_matches("trading*", "trading.spike"), "a star only after a dot");
    }

    #[test]
    fn exponential_backoff_doubles_and_is_capped() {
        let r = Retry { attempts: 5, backoff: Backoff::Exponential, delay: Duration::from_secs(5) };
        let pauses: Vec<u64> = (2..=5).map(|a| retry_pause(&r, a).as_secs()).collect();
        assert_eq!(pauses, [5, 10, 20, 40]);
        assert_eq!(retry_pause(&r, 40), Duration::from_secs(3600));
    }
}
