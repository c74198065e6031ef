//! Workflow runs and their steps.

use agent_os_core::workflow::{Decision, StepStatus, TriggerKind, WorkflowRunStatus};

use super::runs::{ClaimHere, FinishAttempt, NewRun, Queued, RunRecord};

/// One run of a workflow, with the definition it started with.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowRunRecord {
    pub id: String,
    pub workflow: String,
    /// The workflow file's text when the run was started: a run keeps it to the end.
    pub definition: String,
    pub status: WorkflowRunStatus,
    pub trigger: TriggerKind,
    /// What started it (an event id, a webhook id, a parent step): one run per key.
    pub trigger_key: Option<String>,
    /// The triggering event as JSON (`type`, `data`, …).
    pub event: Option<String>,
    /// A JSON object.
    pub inputs: String,
    pub outputs: Option<String>,
    pub error: Option<String>,
    pub concurrency_key: Option<String>,
    pub parent_run_id: Option<String>,
    pub parent_step: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub deadline_at: Option<i64>,
}

/// The state of one step of a workflow run (`item` ≥ 0: one item of a for_each; -1 the step).
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    pub run_id: String,
    pub step_id: String,
    pub item: i64,
    pub status: StepStatus,
    pub attempt: i64,
    pub task_run_id: Option<String>,
    pub child_run_id: Option<String>,
    /// A JSON value.
    pub outputs: Option<String>,
    pub error: Option<String>,
    /// When a waiting or retrying step is looked at again.
    pub wake_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// What one pass over a workflow run decided, stored in one transaction: the ends of the step
/// task-run attempts that prompted it (first; a conflict there stores nothing), the task runs it
/// queues (claimed here as far as `claim` allows), and its step rows (each naming its run).
#[derive(Clone, Debug, Default)]
pub struct StepCommit {
    pub finish: Vec<FinishAttempt>,
    pub runs: Vec<NewRun>,
    pub steps: Vec<StepRecord>,
    pub claim: Option<ClaimHere>,
}

/// What a [`StepCommit`] stored: the run whose attempt it ended, and its queued runs.
#[derive(Clone, Debug, Default)]
pub struct StepCommitted {
    /// In the order of [`StepCommit::finish`].
    pub finished: Vec<RunRecord>,
    pub queued: Queued,
}

/// The decision on an approval step, stored once per (run, step).
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRecord {
    pub run_id: String,
    pub step_id: String,
    pub decision: Decision,
    /// The API token's name, the dashboard's user, `signed link` or `timeout`.
    pub decided_by: String,
    pub decided_at: i64,
    pub comment: Option<String>,
    /// The form's answers, a JSON object.
    pub inputs: String,
}
