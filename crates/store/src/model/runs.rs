//! Runs, their attempts and their logs.

use agent_os_core::run::{LogStream, RunStatus};

/// A run to enqueue.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub id: String,
    pub project_id: String,
    pub project: String,
    pub task: String,
    /// JSON object text.
    pub input: String,
    pub max_attempts: i64,
    /// Who started it: `api`, `cli`, `schedule`, `workflow`, ….
    pub trigger: String,
    /// Runs sharing a key start one at a time, oldest first.
    pub concurrency_key: Option<String>,
    /// The schedule slot (ms) the run was fired for.
    pub scheduled_for: Option<i64>,
    /// Named resources the run holds while it runs (sorted, no repeats).
    pub resources: Vec<String>,
    /// 0 to 100: who goes first among runs waiting for a resource.
    pub priority: i64,
    /// When it may start (ms); also its queue time unless it is later than now.
    pub now: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub project_id: String,
    pub project: String,
    pub task: String,
    pub status: RunStatus,
    pub input: String,
    pub outputs: Option<String>,
    /// Number of the current (or last) attempt; 0 before the first starts.
    pub attempt: i64,
    pub max_attempts: i64,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub trigger: String,
    pub cancel_requested: bool,
    pub queued_at: i64,
    pub not_before: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub log_bytes: i64,
    pub log_dropped: i64,
    pub concurrency_key: Option<String>,
    pub scheduled_for: Option<i64>,
    pub resources: Vec<String>,
    pub priority: i64,
    /// When retention pruned its log lines (`retention.logs`); the run itself stays.
    pub logs_pruned_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    pub run_id: String,
    pub attempt: i64,
    pub status: RunStatus,
    pub node_id: String,
    pub pid: Option<i64>,
    /// Start time of the process (clock ticks since boot), to tell it from a later process
    /// that reused its pid.
    pub proc_start: Option<i64>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    /// The worker running it, for an attempt of a worker project (none: a node of the server
    /// runs it).
    pub worker_id: Option<String>,
    /// When its worker last said it was running it (or sent its log).
    pub seen_at: Option<i64>,
    /// The highest log sequence number its worker sent and the store kept (0: none).
    pub worker_seq: i64,
}

/// How an attempt ended and where the run goes next.
#[derive(Clone, Debug)]
pub struct FinishAttempt {
    pub run_id: String,
    pub attempt: i64,
    /// Final status of the attempt.
    pub attempt_status: RunStatus,
    /// `Some(t)`: the run goes back to queued, due at `t`. `None`: the run ends with
    /// `attempt_status`.
    pub retry_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub outputs: Option<String>,
    pub now: i64,
    /// With a retry: the attempt did not count against the run's retries (it was interrupted
    /// by a shutdown of Agent OS, not failed by the task), so one more attempt is allowed.
    pub extra_attempt: bool,
}

/// Claims runs for a node in the transaction that queues them, so a run started where a slot
/// is free goes straight to running without waiting for the dispatcher's next claim.
#[derive(Clone, Debug)]
pub struct ClaimHere {
    pub node_id: String,
    pub now: i64,
    /// One per run that may be claimed (its run and project are filled in as it is).
    pub tokens: Vec<super::tokens::TokenRecord>,
}

/// Runs queued by [`crate::RunStore::queue_runs`]: each as stored, in the order given, and
/// those claimed on the spot (also among `runs`), the i-th holding the claim's i-th token.
#[derive(Clone, Debug, Default)]
pub struct Queued {
    pub runs: Vec<RunRecord>,
    pub claimed: Vec<RunRecord>,
}

#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub project: Option<String>,
    pub task: Option<String>,
    pub status: Option<RunStatus>,
    /// Only runs with an id below this one (the previous page's last id).
    pub before: Option<String>,
    pub limit: i64,
}

#[derive(Clone, Debug)]
pub struct NewLogChunk {
    pub stream: LogStream,
    pub at: i64,
    pub data: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogChunk {
    pub seq: i64,
    pub stream: LogStream,
    pub at: i64,
    pub data: String,
}
