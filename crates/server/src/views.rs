//! What the API returns: records turned into JSON views with RFC 3339 times. These types are
//! the wire format of `/api/v1`; the CLI reads them back.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use std::collections::HashMap;

use agent_os_core::check::CheckState;
use agent_os_core::cost::CostSource;
use agent_os_core::cron::Cron;
use agent_os_core::manifest::{
    Command, ManagedBy, ProbeKind, ProbeStatus, ScheduleSource, ScheduleStatus, TransportKind,
};
use agent_os_core::redact::redact_shapes;
use agent_os_core::resource::HolderKind;
use agent_os_core::run::{LogStream, RunStatus};
use agent_os_core::token::TokenKind;
use agent_os_engine::schedule_ident;
use agent_os_engine::{Engine, LoadedProject};
use agent_os_store::{
    AttemptRecord, CheckRecord, CostRecord, LogChunk, ProbeResult, ProjectTransport, RunRecord, ScheduleRecord,
    ScheduleState, Snooze, TokenRecord,
};

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| format!("{t:.3}")).unwrap_or_default()
}

fn opt_time(ms: Option<i64>) -> Option<String> {
    ms.map(time)
}

fn json_or_null(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null)
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct KeyView {
    pub variable: String,
    pub service: String,
    pub key_name: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct TaskView {
    pub name: String,
    pub description: String,
    /// The command line or argv (joined by spaces), secret-shaped text redacted; absent for
    /// HTTP plugins.
    pub run: Option<String>,
    /// Timeout in milliseconds (absent: the server default applies).
    pub timeout_ms: Option<u64>,
    pub retries: u32,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ScheduleView {
    /// Stable id (from project, task, expression and zone) for pause, resume and run now.
    pub id: String,
    pub project: String,
    pub task: String,
    pub cron: String,
    pub timezone: String,
    /// `agent-os`, `railway`, `launchd`, `cron`, `systemd` or `github`.
    #[schema(value_type = String)]
    pub managed_by: ManagedBy,
    pub description: String,
    /// `manifest`, `plugin` or `discovered`.
    #[schema(value_type = String)]
    pub source: ScheduleSource,
    /// The next fire times (RFC 3339 with the zone's offset), by Debian cron's rules.
    pub next: Vec<String>,
    pub paused: bool,
    /// Schedules Agent OS fires: `new` (no run yet), `queued`, `running`, `ok`, `failing`,
    /// `cancelled` or `paused`. Schedules kept elsewhere: their check's `new`, `up`, `late` or
    /// `down`, or `unwatched` when no check watches them.
    #[schema(value_type = String)]
    pub state: ScheduleStatus,
    /// A slot passed without its run (managed: the scheduler is more than a minute behind;
    /// elsewhere: the check is late).
    pub late: bool,
    /// The last run failed (managed) or the check is down (elsewhere).
    pub down: bool,
    /// The run of the newest slot that started one (managed schedules).
    pub last_run: Option<ScheduleRunView>,
    /// The check watching a schedule kept elsewhere.
    pub check: Option<ScheduleCheckView>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ScheduleRunView {
    pub id: String,
    #[schema(value_type = String)]
    pub status: RunStatus,
    /// The slot it was fired for.
    pub slot: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ScheduleCheckView {
    pub id: String,
    pub slug: String,
    #[schema(value_type = String)]
    pub state: CheckState,
    pub ping_url: String,
    pub last_ping_at: Option<String>,
    pub last_duration_ms: Option<i64>,
    /// Its alerts are quiet until then (its own snooze or its project's, whichever ends later).
    pub snoozed_until: Option<String>,
    /// Why its late/down alert is held: `PROJECT/SLUG` of a late or down upstream, or `snooze`.
    pub held_by: Option<String>,
}

/// What the schedule views need besides the schedules: the scheduler's state and the checks.
#[derive(Default)]
pub struct ScheduleContext {
    states: HashMap<String, ScheduleState>,
    checks: HashMap<(String, String), CheckRecord>,
    base_url: String,
    /// Project snoozes in force, by project name.
    pub project_snoozes: HashMap<String, Snooze>,
    now: i64,
}

/// A check's snooze in force at `now`: its own or its project's, whichever ends later.
pub fn check_snooze<'a>(c: &'a CheckRecord, projects: &'a HashMap<String, Snooze>, now: i64) -> Option<&'a Snooze> {
    let own = agent_os_engine::engine::holds::active(c.snooze.as_ref(), now);
    let project = projects.get(&c.project).filter(|s| s.until > now);
    match (own, project) {
        (Some(a), Some(b)) => Some(if a.until >= b.until { a } else { b }),
        (a, b) => a.or(b),
    }
}

impl ScheduleContext {
    pub async fn load(engine: &Engine, project: Option<&str>) -> Result<Self, agent_os_store::StoreError> {
        let store = engine.store();
        let states = store.schedule_states().await?.into_iter().map(|s| (s.key.clone(), s)).collect();
        let checks =
            store.list_checks(project).await?.into_iter().map(|c| ((c.project.clone(), c.slug.clone()), c)).collect();
        let project_snoozes = engine.project_snoozes().await.map_err(|e| match e {
            agent_os_engine::EngineError::Store(e) => e,
            other => agent_os_store::StoreError::Conflict(other.to_string()),
        })?;
        Ok(ScheduleContext {
            states,
            checks,
            base_url: engine.config().public_url.trim_end_matches('/').to_string(),
            project_snoozes,
            now: engine.now(),
        })
    }
}

/// Fire times after `after` (ms) as RFC 3339 with the zone's offset.
fn next_fires(parsed: Option<&(Cron, jiff::tz::TimeZone)>, after: i64, count: usize) -> Vec<String> {
    let (Some((c, tz)), Ok(after)) = (parsed, jiff::Timestamp::from_millisecond(after)) else { return Vec::new() };
    c.upcoming(tz, after, count)
        .into_iter()
        .map(|t| t.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
        .collect()
}

/// How long past a slot the scheduler may be before its schedule counts as late.
const SCHEDULER_SLACK: i64 = 60_000;

impl ScheduleView {
    /// The view of a stored schedule with its next `count` fire times after `now` (ms).
    pub fn new(s: ScheduleRecord, ctx: &ScheduleContext, now: i64, count: usize) -> Self {
        let (key, id) = schedule_ident(&s);
        // The stored text, read once for this view.
        let parsed = Cron::parse(&s.cron).ok().zip(agent_os_core::cron::zone(&s.timezone).ok());
        let next = next_fires(parsed.as_ref(), now, count);
        let managed = s.managed_by == ManagedBy::AgentOs;
        let stored = ctx.states.get(&key);
        let paused = managed && stored.is_some_and(|st| st.paused);
        let last_run = stored.and_then(|st| st.last_run.as_ref()).map(|r| ScheduleRunView {
            id: r.run_id.clone(),
            status: r.status,
            slot: time(r.slot),
            started_at: opt_time(r.started_at),
            finished_at: opt_time(r.finished_at),
        });
        let check = s.check_slug.as_ref().and_then(|slug| ctx.checks.get(&(s.project.clone(), slug.clone())));
        let (state, late, down) = if managed {
            let behind = stored.filter(|st| !st.paused).zip(parsed.as_ref()).is_some_and(|(st, (cron, tz))| {
                jiff::Timestamp::from_millisecond(st.last_slot)
                    .ok()
                    .and_then(|t| cron.next_after(tz, t))
                    .is_some_and(|due| due.as_millisecond() + SCHEDULER_SLACK < now)
            });
            let state = match (paused, last_run.as_ref().map(|r| r.status)) {
                (true, _) => ScheduleStatus::Paused,
                (false, None) => ScheduleStatus::New,
                (false, Some(RunStatus::Succeeded)) => ScheduleStatus::Ok,
                (false, Some(RunStatus::Queued)) => ScheduleStatus::Queued,
                (false, Some(RunStatus::Running)) => ScheduleStatus::Running,
                (false, Some(RunStatus::Cancelled)) => ScheduleStatus::Cancelled,
                (false, Some(RunStatus::Failed | RunStatus::TimedOut)) => ScheduleStatus::Failing,
            };
            (state, behind, state == ScheduleStatus::Failing)
        } else {
            match check {
                Some(c) => (c.state.into(), c.state == CheckState::Late, c.state == CheckState::Down),
                None => (ScheduleStatus::Unwatched, false, false),
            }
        };
        ScheduleView {
            id,
            project: s.project,
            task: s.task,
            cron: s.cron,
            timezone: s.timezone,
            managed_by: s.managed_by,
            description: s.description,
            source: s.source,
            next,
            paused,
            state,
            late,
            down,
            last_run,
            check: check.map(|c| ScheduleCheckView {
                id: c.id.clone(),
                slug: c.slug.clone(),
                state: c.state,
                ping_url: format!("{}/ping/{}", ctx.base_url, c.id),
                last_ping_at: opt_time(c.last_ping_at),
                last_duration_ms: c.last_duration_ms,
                snoozed_until: check_snooze(c, &ctx.project_snoozes, ctx.now).map(|s| time(s.until)),
                held_by: c.held_by.clone(),
            }),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ProbeView {
    /// `status`, `cost` or `schedule`.
    #[schema(value_type = String)]
    pub kind: ProbeKind,
    pub at: String,
    pub ok: bool,
    pub duration_ms: i64,
    /// For status probes: `ok`, `degraded` or `down`.
    #[schema(value_type = Option<String>)]
    pub status: Option<ProbeStatus>,
    pub message: Option<String>,
    pub error: Option<String>,
    /// When the probe began answering this way (`at` is its latest answer).
    pub since: String,
    /// How many answers in a row were the same, up to `at`.
    pub repeats: i64,
}

impl From<ProbeResult> for ProbeView {
    fn from(p: ProbeResult) -> Self {
        ProbeView {
            kind: p.kind,
            at: time(p.at),
            ok: p.ok,
            duration_ms: p.duration_ms,
            status: p.status,
            message: p.message,
            error: p.error,
            since: time(p.since),
            repeats: p.repeats,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ProjectView {
    pub name: String,
    pub description: String,
    /// `command`, `http` or `worker` (served by `agent-os worker` processes).
    #[schema(value_type = String)]
    pub transport: TransportKind,
    /// The project's directory (local projects).
    pub root: Option<String>,
    /// The plugin endpoint (hosted projects).
    pub plugin_url: Option<String>,
    /// Path of the project's own env file; Agent OS never reads its values.
    pub env_file: Option<String>,
    pub keys: Vec<KeyView>,
    pub tasks: Vec<TaskView>,
    pub schedules: Vec<ScheduleView>,
    /// Latest probe results.
    pub probes: Vec<ProbeView>,
    pub created_at: String,
    pub updated_at: String,
    /// The alerts of all its checks are quiet until then.
    pub snoozed_until: Option<String>,
    pub snooze_reason: Option<String>,
    pub snoozed_by: Option<String>,
}

impl ProjectView {
    pub fn new(
        p: &LoadedProject,
        schedules: Vec<ScheduleRecord>,
        ctx: &ScheduleContext,
        probes: Vec<ProbeResult>,
        now: i64,
    ) -> Self {
        let m = &p.manifest;
        let snooze = ctx.project_snoozes.get(&p.record.name).filter(|s| s.until > now);
        ProjectView {
            name: p.record.name.clone(),
            description: p.record.description.clone(),
            transport: p.record.transport.kind(),
            root: p.record.transport.root().map(str::to_string),
            plugin_url: match &p.record.transport {
                ProjectTransport::Http { url, .. } => Some(url.clone()),
                ProjectTransport::Command { .. } | ProjectTransport::Worker => None,
            },
            env_file: m.env_file.clone(),
            keys: m
                .keys
                .iter()
                .map(|k| KeyView {
                    variable: k.variable.clone(),
                    service: k.service.clone(),
                    key_name: k.key_name.clone(),
                })
                .collect(),
            tasks: m
                .tasks
                .values()
                .map(|t| TaskView {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    // A command line may carry a secret (`psql postgres://u:PASS@h`): shown
                    // redacted, like everything else a project wrote.
                    run: t.run.as_ref().map(|c| match c {
                        Command::Shell(s) => redact_shapes(s),
                        Command::Argv(v) => redact_shapes(&v.join(" ")),
                    }),
                    timeout_ms: t.timeout.map(|d| d.as_millis() as u64),
                    retries: t.retries,
                })
                .collect(),
            schedules: schedules.into_iter().map(|s| ScheduleView::new(s, ctx, now, 3)).collect(),
            probes: probes.into_iter().map(ProbeView::from).collect(),
            created_at: time(p.record.created_at),
            updated_at: time(p.record.updated_at),
            snoozed_until: snooze.map(|s| time(s.until)),
            snooze_reason: snooze.and_then(|s| s.reason.clone()),
            snoozed_by: snooze.and_then(|s| s.by.clone()),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct AttemptView {
    pub attempt: i64,
    #[schema(value_type = String)]
    pub status: RunStatus,
    pub node: String,
    /// The id of the worker that ran it (attempts of worker projects; see `GET /api/v1/workers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub pid: Option<i64>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> Self {
        AttemptView {
            attempt: a.attempt,
            status: a.status,
            node: a.node_id,
            worker: a.worker_id,
            pid: a.pid,
            started_at: time(a.started_at),
            finished_at: opt_time(a.finished_at),
            exit_code: a.exit_code,
            error: a.error,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct RunView {
    pub id: String,
    pub project: String,
    pub task: String,
    /// `queued`, `running`, `succeeded`, `failed`, `timed_out` or `cancelled`.
    #[schema(value_type = String)]
    pub status: RunStatus,
    /// Number of the current or last attempt (0 before the first starts).
    pub attempt: i64,
    pub max_attempts: i64,
    #[schema(value_type = Object)]
    pub input: Value,
    /// The JSON object the task wrote to `AGENT_OS_OUTPUT`, or null.
    #[schema(value_type = Option<Object>)]
    pub outputs: Value,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    /// Who started it: `api`, `cli`, ….
    pub trigger: String,
    pub cancel_requested: bool,
    pub queued_at: String,
    /// When a queued retry (or a jittered scheduled run) becomes due.
    pub not_before: Option<String>,
    /// The schedule slot this run was fired for (scheduled runs only).
    pub scheduled_for: Option<String>,
    /// Named resources the run holds while it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// 0 to 100: who goes first when runs wait for a resource.
    pub priority: i64,
    /// Why a queued run has not started, e.g. "waiting for openai: 1/1 held by trading.rebalance".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// Why a queued run of a worker project waits: "no worker serving cortana is connected
    /// (last seen 2026-12-06T10:00:00Z)", or that none ever connected; null otherwise.
    #[serde(default)]
    pub waiting: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// From the first start to the end, in milliseconds.
    pub duration_ms: Option<i64>,
    pub log_bytes: i64,
    /// Bytes of the oldest output dropped to keep the log under its cap.
    pub log_dropped_bytes: i64,
    /// When retention pruned the run's log lines (`retention.logs`); its log reads empty since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_pruned_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptView>,
}

impl From<RunRecord> for RunView {
    fn from(r: RunRecord) -> Self {
        let duration_ms = match (r.started_at, r.finished_at) {
            (Some(s), Some(f)) => Some((f - s).max(0)),
            _ => None,
        };
        RunView {
            not_before: (r.status == RunStatus::Queued && (r.attempt > 0 || r.not_before > r.queued_at))
                .then(|| time(r.not_before)),
            scheduled_for: opt_time(r.scheduled_for),
            resources: r.resources,
            priority: r.priority,
            waiting_for: None,
            waiting: None,
            id: r.id,
            project: r.project,
            task: r.task,
            status: r.status,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            input: json_or_null(Some(&r.input)),
            outputs: json_or_null(r.outputs.as_deref()),
            exit_code: r.exit_code,
            error: r.error,
            trigger: r.trigger,
            cancel_requested: r.cancel_requested,
            queued_at: time(r.queued_at),
            started_at: opt_time(r.started_at),
            finished_at: opt_time(r.finished_at),
            duration_ms,
            log_bytes: r.log_bytes,
            log_dropped_bytes: r.log_dropped,
            logs_pruned_at: opt_time(r.logs_pruned_at),
            attempts: Vec::new(),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct RunList {
    pub runs: Vec<RunView>,
    /// Pass as `before` to get the next (older) page; null on the last page.
    pub next: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct LogChunkView {
    pub seq: i64,
    /// `stdout`, `stderr` or `system`.
    #[schema(value_type = String)]
    pub stream: LogStream,
    pub at: String,
    pub data: String,
}

impl From<LogChunk> for LogChunkView {
    fn from(c: LogChunk) -> Self {
        LogChunkView { seq: c.seq, stream: c.stream, at: time(c.at), data: c.data }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct LogView {
    pub run_id: String,
    pub chunks: Vec<LogChunkView>,
    /// Bytes of the oldest output dropped to keep the log under its cap.
    pub dropped_bytes: i64,
    /// Pass as `after` to read on.
    pub next_after: i64,
    /// True when the run has ended (no more output will come).
    pub finished: bool,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct TokenView {
    pub id: String,
    /// `admin`, `project` or `worker`.
    #[schema(value_type = String)]
    pub kind: TokenKind,
    pub name: String,
    pub project: Option<String>,
    /// The projects a worker token may serve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<String>,
    pub created_at: String,
    /// When it stops working on its own; none: never.
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl TokenView {
    pub fn new(t: TokenRecord, project: Option<String>) -> Self {
        TokenView {
            id: t.id,
            kind: t.kind,
            name: t.name,
            project,
            projects: Vec::new(),
            created_at: time(t.created_at),
            expires_at: opt_time(t.expires_at),
            revoked_at: opt_time(t.revoked_at),
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct CostView {
    pub id: String,
    pub project: String,
    pub run_id: Option<String>,
    pub service: String,
    pub key_name: Option<String>,
    /// Exact decimal; null when the record is unpriced (its model has no price).
    pub amount: Option<String>,
    pub currency: String,
    pub tokens_in: Option<i64>,
    pub tokens_out: Option<i64>,
    /// Of `tokens_in`, those read from the provider's cache.
    pub tokens_cached_in: Option<i64>,
    pub model: Option<String>,
    pub at: String,
    pub idempotency_key: String,
    /// `api` or `probe`.
    #[schema(value_type = String)]
    pub source: CostSource,
    /// The price Agent OS used when it priced the tokens itself: `model` (as the table lists
    /// it), `input`, `cached_input`, `output` (per `per`, in `currency`) and `source`
    /// (`built-in DATE` or `config`). Null when the project gave the amount, or none is known.
    #[schema(value_type = Option<Object>)]
    pub price: Option<Value>,
    /// True when the model has no price: the tokens are kept, the amount is unknown and counts
    /// in no total or budget until `prices:` in config.yaml gives the model one.
    pub unpriced: bool,
    /// The JSON object the project sent with the record, if any.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

impl From<CostRecord> for CostView {
    fn from(c: CostRecord) -> Self {
        CostView {
            id: c.id,
            project: c.project,
            run_id: c.run_id,
            service: c.service,
            key_name: c.key_name,
            amount: (!c.unpriced).then(|| agent_os_core::cost::format_amount(c.amount_nanos)),
            currency: c.currency,
            tokens_in: c.tokens_in,
            tokens_out: c.tokens_out,
            tokens_cached_in: c.tokens_cached_in,
            model: c.model,
            at: time(c.at),
            idempotency_key: c.idempotency_key,
            source: c.source,
            price: c.price.as_deref().and_then(|p| serde_json::from_str(p).ok()),
            unpriced: c.unpriced,
            metadata: c.metadata.as_deref().and_then(|m| serde_json::from_str(m).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(super::time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct ResourceView {
    pub name: String,
    /// Most holders at once (null: unlimited).
    pub concurrency: Option<u32>,
    /// e.g. `60/min` (null: no rate limit).
    pub rate: Option<String>,
    pub burst: Option<u32>,
    /// Tokens in the rate bucket now (null without a rate).
    pub tokens: Option<f64>,
    pub holders: Vec<HolderView>,
    /// In the order they will be served.
    pub waiters: Vec<WaiterView>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct HolderView {
    /// The run id or the lease id (null when it is not the caller's: see `project`).
    pub id: Option<String>,
    /// `run` or `lease`.
    #[schema(value_type = String)]
    pub kind: HolderKind,
    /// The holder's project (null for an admin lease). A project's token sees id, project and
    /// label of its own project's holders only; the others show null.
    pub project: Option<String>,
    pub label: Option<String>,
    pub priority: i64,
    pub since: String,
    pub expires_at: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct WaiterView {
    /// Null when it is not the caller's, as for holders.
    pub id: Option<String>,
    #[schema(value_type = String)]
    pub kind: HolderKind,
    pub project: Option<String>,
    pub label: Option<String>,
    pub priority: i64,
    pub since: String,
}

#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct LeaseView {
    /// Renew and release with this id.
    pub id: String,
    pub resource: String,
    pub project: Option<String>,
    pub label: String,
    pub priority: i64,
    pub acquired_at: String,
    pub expires_at: String,
    pub ttl_ms: i64,
}

impl From<agent_os_store::HoldRecord> for LeaseView {
    fn from(h: agent_os_store::HoldRecord) -> Self {
        LeaseView {
            id: h.holder,
            resource: h.resource,
            project: h.project,
            label: h.label,
            priority: h.priority,
            acquired_at: time(h.acquired_at),
            expires_at: opt_time(h.expires_at).unwrap_or_default(),
            ttl_ms: h.ttl_ms.unwrap_or(0),
        }
    }
}

impl ResourceView {
    /// Every declared resource with its holders and waiters (in serving order) at `now`, as
    /// `scope` may see them: another's id (which would let it renew or release a lease), project
    /// and label are left out.
    pub fn all(
        limits: &HashMap<String, agent_os_core::resource::Limits>,
        snap: &agent_os_store::ResourceSnapshot,
        now: i64,
        scope: &agent_os_core::resource::ResourceScope,
    ) -> Vec<ResourceView> {
        let shown = |project: &Option<String>, value: &String| scope.owns(project.as_deref()).then(|| value.clone());
        let mut names: Vec<&String> = limits.keys().collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let l = &limits[name];
                let mut waiters: Vec<&agent_os_store::WaiterRecord> =
                    snap.waiters.iter().filter(|w| w.resources.contains(name)).collect();
                waiters.sort_by(|a, b| {
                    agent_os_core::resource::turn_order((a.priority, a.since, &a.id), (b.priority, b.since, &b.id), now)
                });
                ResourceView {
                    name: name.clone(),
                    concurrency: l.concurrency,
                    rate: l.rate.as_ref().map(|r| r.describe()),
                    burst: l.rate.as_ref().map(|r| r.burst),
                    tokens: l.rate.as_ref().map(|r| {
                        let level = snap.buckets.get(name).map_or(f64::from(r.burst), |b| b.level(r, now));
                        (level * 100.0).floor() / 100.0
                    }),
                    holders: snap
                        .holds
                        .iter()
                        .filter(|h| &h.resource == name)
                        .map(|h| HolderView {
                            id: shown(&h.project, &h.holder),
                            kind: h.kind,
                            project: h.project.as_ref().and_then(|p| shown(&h.project, p)),
                            label: shown(&h.project, &h.label),
                            priority: h.priority,
                            since: time(h.acquired_at),
                            expires_at: opt_time(h.expires_at),
                        })
                        .collect(),
                    waiters: waiters
                        .into_iter()
                        .map(|w| WaiterView {
                            id: shown(&w.project, &w.id),
                            kind: w.kind,
                            project: w.project.as_ref().and_then(|p| shown(&w.project, p)),
                            label: shown(&w.project, &w.label),
                            priority: w.priority,
                            since: time(w.since),
                        })
                        .collect(),
                }
            })
            .collect()
    }
}
