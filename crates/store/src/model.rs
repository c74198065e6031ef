//! Records as stored. Plain data; the engine and server turn them into their own views.
//!
//! Every closed set of values a record holds is one of core's enums (statuses, kinds,
//! sources…), read and bound as TEXT through their `sqlx` impls: a row is decoded once, here
//! at the database edge, and a row holding an unknown text is an error naming it.

use agent_os_core::alerting::{
    DeliveryStatus, HoldReason, IncidentSource, IncidentStatus, NotificationSource, Severity,
};
use agent_os_core::budget::{BudgetSource, OnExceed, Period};
use agent_os_core::check::{CheckKind, CheckState, PingKind};
use agent_os_core::cost::CostSource;
use agent_os_core::manifest::{ManagedBy, ProbeKind, ProbeStatus, ScheduleSource, TransportKind};
use agent_os_core::resource::HolderKind;
use agent_os_core::run::{LogStream, RunStatus};
use agent_os_core::token::{LoginVia, TokenKind};
use agent_os_core::workflow::{StepStatus, TriggerKind, WorkflowRunStatus};

/// How Agent OS reaches a project's plugin. An HTTP project always has its signing secret, and
/// a command project its directory: neither can be stored or loaded without them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectTransport {
    /// Programs in the project's directory (canonical root).
    Command { root: String },
    /// The project's own endpoint; every request is signed with `secret` (Standard Webhooks,
    /// `whsec_…`). `root` is the directory it was registered from, if it was (admin only).
    Http { url: String, secret: String, root: Option<String> },
}

impl ProjectTransport {
    pub fn kind(&self) -> TransportKind {
        match self {
            ProjectTransport::Command { .. } => TransportKind::Command,
            ProjectTransport::Http { .. } => TransportKind::Http,
        }
    }

    /// The directory the project was registered from.
    pub fn root(&self) -> Option<&str> {
        match self {
            ProjectTransport::Command { root } => Some(root),
            ProjectTransport::Http { root, .. } => root.as_deref(),
        }
    }

    /// The columns `transport`, `root`, `plugin_url` and `signing_secret`: the one place this
    /// type meets its stored form.
    pub fn columns(&self) -> (TransportKind, Option<&str>, Option<&str>, Option<&str>) {
        match self {
            ProjectTransport::Command { root } => (TransportKind::Command, Some(root), None, None),
            ProjectTransport::Http { url, secret, root } => {
                (TransportKind::Http, root.as_deref(), Some(url), Some(secret))
            }
        }
    }

    /// Reads the transport from a project row (by column name).
    pub(crate) fn from_row(r: &sqlx::any::AnyRow) -> Result<ProjectTransport, sqlx::Error> {
        use sqlx::Row;
        ProjectTransport::from_columns(
            r.try_get("transport")?,
            r.try_get("root")?,
            r.try_get("plugin_url")?,
            r.try_get("signing_secret")?,
        )
        .map_err(|e| sqlx::Error::ColumnDecode { index: "transport".into(), source: e.into() })
    }

    /// Back from those columns; a row that breaks the rule (an HTTP project without its URL or
    /// secret, a command project without its directory) is an error, not a project.
    pub fn from_columns(
        kind: TransportKind,
        root: Option<String>,
        url: Option<String>,
        secret: Option<String>,
    ) -> Result<ProjectTransport, String> {
        match (kind, root, url, secret) {
            (TransportKind::Command, Some(root), _, _) => Ok(ProjectTransport::Command { root }),
            (TransportKind::Command, None, _, _) => Err("a command project is stored without its directory".into()),
            (TransportKind::Http, root, Some(url), Some(secret)) if !secret.is_empty() => {
                Ok(ProjectTransport::Http { url, secret, root })
            }
            (TransportKind::Http, _, None, _) => Err("an HTTP project is stored without its plugin URL".into()),
            (TransportKind::Http, _, _, _) => Err("an HTTP project is stored without its signing secret".into()),
        }
    }
}

/// A project to register.
#[derive(Clone, Debug)]
pub struct NewProject {
    pub id: String,
    pub name: String,
    pub description: String,
    pub transport: ProjectTransport,
    /// The manifest text as registered; re-validated when loaded.
    pub manifest: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProjectRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    pub transport: ProjectTransport,
    pub manifest: String,
    pub cost_cursor: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A schedule declared by a project (manifest or plugin `get_schedule`).
#[derive(Clone, Debug, PartialEq)]
pub struct NewSchedule {
    pub task: String,
    pub cron: String,
    pub timezone: String,
    pub managed_by: ManagedBy,
    pub description: String,
    pub source: ScheduleSource,
    /// The check watching a schedule kept elsewhere (its slug).
    pub check_slug: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleRecord {
    pub id: String,
    pub project_id: String,
    pub project: String,
    pub task: String,
    pub cron: String,
    pub timezone: String,
    pub managed_by: ManagedBy,
    pub description: String,
    pub source: ScheduleSource,
    pub check_slug: Option<String>,
}

/// What the scheduler remembers of a managed schedule, with its latest fired run.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleState {
    pub key: String,
    pub last_slot: i64,
    pub paused: bool,
    pub paused_at: Option<i64>,
    /// The run of the newest slot that started one.
    pub last_run: Option<SlotRun>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SlotRun {
    pub slot: i64,
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

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

/// An API credential; only its SHA-256 hash is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub kind: TokenKind,
    pub name: String,
    pub project_id: Option<String>,
    pub run_id: Option<String>,
    pub hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A dashboard login; `id` is the SHA-256 of the cookie value.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    pub csrf: String,
    pub via: LoginVia,
    /// The admin token a token login used.
    pub token_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// One observation of a status, cost or schedule probe.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    pub id: String,
    pub project_id: String,
    pub kind: ProbeKind,
    pub at: i64,
    pub ok: bool,
    pub duration_ms: i64,
    /// For status probes: `ok`, `degraded` or `down`; for health checks `ok` or `down`.
    pub status: Option<ProbeStatus>,
    pub message: Option<String>,
    /// The probe's JSON answer, as received (bounded).
    pub body: Option<String>,
    pub error: Option<String>,
}

/// A cost record to store; amounts are exact nano-units.
#[derive(Clone, Debug)]
pub struct NewCost {
    pub id: String,
    pub project_id: String,
    pub project: String,
    pub run_id: Option<String>,
    pub service: String,
    pub key_name: Option<String>,
    pub amount_nanos: i64,
    pub currency: String,
    pub tokens_in: Option<i64>,
    pub tokens_out: Option<i64>,
    pub model: Option<String>,
    pub at: i64,
    pub idempotency_key: String,
    pub source: CostSource,
    pub metadata: Option<String>,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CostRecord {
    pub id: String,
    pub project: String,
    pub run_id: Option<String>,
    pub service: String,
    pub key_name: Option<String>,
    pub amount_nanos: i64,
    pub currency: String,
    pub tokens_in: Option<i64>,
    pub tokens_out: Option<i64>,
    pub model: Option<String>,
    pub at: i64,
    pub idempotency_key: String,
    pub source: CostSource,
    pub metadata: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct CostFilter {
    pub project: Option<String>,
    pub run_id: Option<String>,
    pub limit: i64,
}

/// A running Agent OS process, for telling live work from lost work.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRecord {
    pub id: String,
    pub hostname: String,
    pub pid: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

/// A check as declared (synced from the manifest).
#[derive(Clone, Debug, PartialEq)]
pub struct NewCheck {
    pub slug: String,
    pub kind: CheckKind,
    pub period_ms: Option<i64>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub grace_ms: i64,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckRecord {
    /// Also the secret part of its ping URL.
    pub id: String,
    pub project_id: String,
    pub project: String,
    pub ping_key: Option<String>,
    pub slug: String,
    pub kind: CheckKind,
    pub period_ms: Option<i64>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub grace_ms: i64,
    pub description: String,
    pub state: CheckState,
    pub last_finish_at: Option<i64>,
    pub last_failed: bool,
    pub running_since: Option<i64>,
    pub last_ping_at: Option<i64>,
    pub last_duration_ms: Option<i64>,
    pub state_changed_at: Option<i64>,
    pub created_at: i64,
}

/// A ping to store, with the check's fields after it.
#[derive(Clone, Debug)]
pub struct PingUpdate {
    pub id: String,
    pub check_id: String,
    pub at: i64,
    pub kind: PingKind,
    pub rid: Option<String>,
    pub duration_ms: Option<i64>,
    pub body: Option<String>,
    pub remote: Option<String>,
    pub last_finish_at: Option<i64>,
    pub last_failed: bool,
    pub running_since: Option<i64>,
    pub state: CheckState,
    /// Set when the state changed.
    pub event: Option<NewEvent>,
}

/// Something that happened (`check.down`, `run.failed`, …), stored for alerting and workflows.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub id: String,
    pub kind: String,
    pub project: Option<String>,
    pub subject: Option<String>,
    /// A JSON object.
    pub data: String,
    pub at: i64,
}

pub type EventRecord = NewEvent;

/// A request for a lease on a resource, from a job Agent OS does not run.
#[derive(Clone, Debug)]
pub struct LeaseRequest {
    pub id: String,
    pub resource: String,
    /// The project of the token that asked, if any.
    pub project: Option<String>,
    pub label: String,
    pub priority: i64,
    pub ttl_ms: i64,
    /// When it started waiting (kept across attempts, so it keeps its place).
    pub since: i64,
}

/// Why a waiter cannot go yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// Every slot is held.
    Concurrency,
    /// The rate bucket is empty.
    Rate,
    /// Others who came first (or rank higher) wait for it.
    Queue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LeaseAttempt {
    Granted(HoldRecord),
    Waiting { blocked_by: Blocked, retry_at: Option<i64> },
}

/// One holder of one resource: a run or a lease.
#[derive(Clone, Debug, PartialEq)]
pub struct HoldRecord {
    /// The run id or the lease id.
    pub holder: String,
    pub resource: String,
    pub kind: HolderKind,
    pub project: Option<String>,
    /// `project.task` for a run; the caller's label for a lease.
    pub label: String,
    pub priority: i64,
    pub acquired_at: i64,
    /// Leases only: reclaimed at this time unless renewed.
    pub expires_at: Option<i64>,
    /// Leases only: how far a renewal extends it.
    pub ttl_ms: Option<i64>,
}

/// A run or a lease request waiting for resources.
#[derive(Clone, Debug, PartialEq)]
pub struct WaiterRecord {
    pub id: String,
    pub kind: HolderKind,
    pub resources: Vec<String>,
    pub project: Option<String>,
    pub label: String,
    pub priority: i64,
    pub since: i64,
}

impl WaiterRecord {
    /// The waiter as `core::resource::allocate` sees it.
    pub fn waiter(&self) -> agent_os_core::resource::Waiter {
        agent_os_core::resource::Waiter {
            id: self.id.clone(),
            resources: self.resources.clone(),
            priority: self.priority,
            since: self.since,
        }
    }
}

/// What is in use: holders per resource, and the bucket levels.
pub fn usage_of(
    holds: &[HoldRecord],
    buckets: std::collections::HashMap<String, agent_os_core::resource::Bucket>,
) -> agent_os_core::resource::Usage {
    let mut held: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    for h in holds {
        *held.entry(h.resource.clone()).or_insert(0) += 1;
    }
    agent_os_core::resource::Usage { held, buckets }
}

impl ResourceSnapshot {
    pub fn usage(&self) -> agent_os_core::resource::Usage {
        usage_of(&self.holds, self.buckets.clone())
    }

    pub fn waiters(&self) -> Vec<agent_os_core::resource::Waiter> {
        self.waiters.iter().map(WaiterRecord::waiter).collect()
    }
}

/// Holders, waiters and bucket levels of every resource.
#[derive(Clone, Debug, Default)]
pub struct ResourceSnapshot {
    pub holds: Vec<HoldRecord>,
    pub waiters: Vec<WaiterRecord>,
    pub buckets: std::collections::HashMap<String, agent_os_core::resource::Bucket>,
}

/// What a resource claim took, and when to look again (a rate refills, a retry comes due).
#[derive(Clone, Debug, Default)]
pub struct ResourceClaim {
    pub runs: Vec<RunRecord>,
    pub wake_at: Option<i64>,
}

/// What cost totals are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CostGroup {
    Project,
    Service,
    Key,
    Model,
    /// UTC calendar day (the group is the day's start, ms).
    Day,
}

#[derive(Clone, Debug, Default)]
pub struct CostTotalsFilter {
    pub project: Option<String>,
    pub service: Option<String>,
    /// Inclusive, ms.
    pub from: Option<i64>,
    /// Exclusive, ms.
    pub to: Option<i64>,
}

/// One group's exact total, per currency (amounts in different currencies are never added).
#[derive(Clone, Debug, PartialEq)]
pub struct CostTotal {
    /// The project, service, key name, model (`""` when none) or day start (ms, as text).
    pub group: String,
    pub currency: String,
    pub amount_nanos: i64,
    pub records: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
}

/// A spending limit.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetRecord {
    pub id: String,
    pub project: String,
    /// `""` for every service of the project.
    pub service: String,
    pub period: Period,
    pub amount_nanos: i64,
    pub currency: String,
    /// Percentages, ascending.
    pub thresholds: Vec<i64>,
    pub on_exceed: OnExceed,
    pub source: BudgetSource,
    pub created_at: i64,
}

/// A project that may not spend: its runs, schedules and leases are refused.
#[derive(Clone, Debug, PartialEq)]
pub struct PauseRecord {
    pub project: String,
    pub reason: String,
    pub budget_id: Option<String>,
    pub since: i64,
    /// When it ends by itself (the budget period's end); `None` until resumed.
    pub until: Option<i64>,
}

/// One slot of a managed schedule, as the scheduler decided it: fired with a run, or recorded
/// as skipped or missed.
#[derive(Clone, Debug)]
pub struct SlotFire {
    pub key: String,
    pub slot: i64,
    pub run: Option<NewRun>,
    pub outcome: String,
}

/// A notification, from a project or from Agent OS itself.
#[derive(Clone, Debug, PartialEq)]
pub struct NotificationRecord {
    pub id: String,
    pub project: Option<String>,
    pub title: String,
    pub body: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    pub dedup_key: Option<String>,
    pub created_at: i64,
    pub source: Option<NotificationSource>,
    /// The incident it tells about.
    pub incident_id: Option<String>,
    /// Why it was kept back from every channel (a maintenance window).
    pub suppressed: Option<String>,
}

/// Where a new notification goes, and whether it waits (quiet hours, throttle) for a digest.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedDelivery {
    pub channel: String,
    /// `(until, why)`: held for a digest sent at `until`.
    pub held: Option<(i64, HoldReason)>,
}

/// One notification on its way to one channel.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRecord {
    /// Also the idempotency key the receiver sees, the same on every attempt.
    pub id: String,
    pub notification_id: String,
    pub channel: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_at: i64,
    /// The receiver's last HTTP status.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    /// Why it was held for a digest, if it was.
    pub held: Option<HoldReason>,
}

/// What an attempt came to.
#[derive(Clone, Debug)]
pub struct DeliveryOutcome {
    pub id: String,
    pub status: DeliveryStatus,
    pub next_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

/// Something broken, open until it recovers; one open incident per `(source, subject)`.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentRecord {
    pub id: String,
    pub source: IncidentSource,
    /// What it is about within the source, e.g. `trading/rebalance`.
    pub subject: String,
    pub project: Option<String>,
    pub severity: Severity,
    pub title: String,
    /// The latest reason given.
    pub reason: String,
    pub status: IncidentStatus,
    pub opened_at: i64,
    pub resolved_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub acked_by: Option<String>,
    /// State changes (opened, resolved, opened again…) while it kept coming back.
    pub changes: i64,
    /// Changing too often to alert about each change.
    pub flapping: bool,
    /// Whether its opening was told to the channels.
    pub notified: bool,
    pub updated_at: i64,
}

/// A maintenance window set over the API or the CLI.
#[derive(Clone, Debug, PartialEq)]
pub struct MaintenanceRecord {
    pub id: String,
    pub project: Option<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub reason: Option<String>,
    pub created_at: i64,
}

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
