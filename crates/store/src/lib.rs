//! Agent OS storage: the [`Store`] trait every other layer uses, and its implementation on
//! SQLite (the embedded default) and PostgreSQL (for several nodes).
//!
//! Both backends share one implementation, [`SqlStore`], built on sqlx's `Any` driver: queries
//! are written once with `$N` placeholders (both engines accept them) and only the statements
//! whose dialects differ (claiming runs, transaction start) are chosen per backend. Each
//! backend has its own migrations directory; released migrations are never edited. The store
//! never reads the clock: callers pass `now` (milliseconds since the Unix epoch, UTC).

mod migrate;
mod model;
mod sessions;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;
mod workflows;

pub use model::*;
pub use sql::{Backend, Durability, SqlStore, StoreOptions, WAL_LIMIT_BYTES, redact_url, sqlite_url};

use async_trait::async_trait;

/// What went wrong in the store; callers act on `NotFound` and `Conflict`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migration(String),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The database refused what was asked (a constraint, a value it cannot store), as
    /// opposed to being unreachable: asking again without the offending part can succeed.
    pub fn is_refusal(&self) -> bool {
        match self {
            StoreError::Conflict(_) => true,
            StoreError::Database(e) => matches!(e, sqlx::Error::Database(_) | sqlx::Error::Encode(_)),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything Agent OS persists. Every method commits before it returns.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for logs and `/healthz`.
    fn backend(&self) -> Backend;

    // Projects -----------------------------------------------------------------------------
    async fn insert_project(&self, p: &NewProject, schedules: &[NewSchedule], now: i64) -> Result<ProjectRecord>;
    /// Replaces the manifest (and schedules) of an existing project.
    async fn update_project(
        &self,
        name: &str,
        manifest: &str,
        description: &str,
        schedules: &[NewSchedule],
        now: i64,
    ) -> Result<ProjectRecord>;
    async fn get_project(&self, name: &str) -> Result<Option<ProjectRecord>>;
    /// Replaces the signing secret of an HTTP plugin project (a rotation).
    async fn set_signing_secret(&self, name: &str, secret: &str, now: i64) -> Result<ProjectRecord>;
    async fn get_project_by_id(&self, id: &str) -> Result<Option<ProjectRecord>>;
    async fn list_projects(&self) -> Result<Vec<ProjectRecord>>;
    /// Removes a project with its schedules, probes and tokens. Its runs and costs stay as
    /// history. Returns false when there was no such project.
    async fn delete_project(&self, name: &str) -> Result<bool>;
    async fn list_schedules(&self, project: Option<&str>) -> Result<Vec<ScheduleRecord>>;
    async fn set_cost_cursor(&self, project_id: &str, cursor: Option<&str>) -> Result<()>;

    // Runs ---------------------------------------------------------------------------------
    async fn insert_run(&self, run: &NewRun) -> Result<RunRecord>;
    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>>;
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;
    async fn list_attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>>;
    /// Moves up to `limit` due queued runs to running for `node_id`, opening their next
    /// attempt. Two nodes never claim the same run. The i-th claimed run (in the returned
    /// order) gets `run_tokens[i]`, with its run and project filled in, in the same transaction.
    async fn claim_runs(
        &self,
        node_id: &str,
        now: i64,
        limit: i64,
        run_tokens: &[TokenRecord],
    ) -> Result<Vec<RunRecord>>;
    /// Records the process of a running attempt, so it can be killed after a crash.
    async fn set_attempt_process(&self, run_id: &str, attempt: i64, pid: i64, proc_start: Option<i64>) -> Result<()>;
    /// Ends an attempt and moves the run on: back to queued (a retry) or to its final state.
    async fn finish_attempt(&self, f: &FinishAttempt) -> Result<RunRecord>;
    /// Cancels a queued run at once, or flags a running one for its runner.
    async fn request_cancel(&self, run_id: &str, now: i64) -> Result<RunRecord>;
    /// Claims up to `limit` due runs that need resources, deciding who goes with
    /// `core::resource::allocate` inside the claim's transaction (PostgreSQL nodes take turns),
    /// so the limits hold across nodes. Also says when to look again.
    async fn claim_resource_runs(
        &self,
        node_id: &str,
        now: i64,
        limit: i64,
        run_tokens: &[TokenRecord],
        limits: &std::collections::HashMap<String, agent_os_core::resource::Limits>,
    ) -> Result<ResourceClaim>;
    /// One attempt to take a lease: joins the line (or keeps its place), and takes the lease if
    /// its turn has come and the resource has room.
    async fn acquire_lease(
        &self,
        req: &LeaseRequest,
        limits: &std::collections::HashMap<String, agent_os_core::resource::Limits>,
        now: i64,
    ) -> Result<LeaseAttempt>;
    /// Leaves the line (a lease request that gave up).
    async fn drop_lease_waiter(&self, id: &str) -> Result<()>;
    /// Extends lease `id` on `resource`, if it has not expired and `scope` owns it, by `ttl_ms`
    /// (default: the lease's own) from `now`; `None` otherwise (expired, never was, another's).
    async fn renew_lease(
        &self,
        id: &str,
        resource: &str,
        scope: &agent_os_core::resource::ResourceScope,
        ttl_ms: Option<i64>,
        now: i64,
    ) -> Result<Option<HoldRecord>>;
    /// Ends lease `id` on `resource` if it has not expired and `scope` owns it; `false` otherwise.
    async fn release_lease(
        &self,
        id: &str,
        resource: &str,
        scope: &agent_os_core::resource::ResourceScope,
        now: i64,
    ) -> Result<bool>;
    async fn resource_snapshot(&self, now: i64) -> Result<ResourceSnapshot>;
    /// Attempts still marked running (for crash recovery).
    async fn running_attempts(&self) -> Result<Vec<(RunRecord, AttemptRecord)>>;
    /// Runs per status, for metrics.
    async fn count_runs_by_status(&self) -> Result<Vec<(agent_os_core::run::RunStatus, i64)>>;
    /// The earliest `not_before` of queued runs, so the dispatcher knows when to wake.
    async fn next_due(&self) -> Result<Option<i64>>;

    // Logs ---------------------------------------------------------------------------------
    /// Appends output to a run's log, keeping at most `cap_bytes` (the oldest chunks go).
    async fn append_log(&self, run_id: &str, chunks: &[NewLogChunk], cap_bytes: i64) -> Result<()>;
    /// Log chunks after `after_seq`, oldest first.
    async fn read_log(&self, run_id: &str, after_seq: i64, limit: i64) -> Result<Vec<LogChunk>>;

    // Tokens -------------------------------------------------------------------------------
    async fn insert_token(&self, t: &TokenRecord) -> Result<()>;
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>>;
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    async fn revoke_token(&self, id: &str, now: i64) -> Result<bool>;
    async fn revoke_run_tokens(&self, run_id: &str, now: i64) -> Result<()>;
    /// Revokes every admin token but `keep_id` (when the admin token is set from outside).
    async fn revoke_admin_tokens_except(&self, keep_id: &str, now: i64) -> Result<()>;
    async fn count_admin_tokens(&self) -> Result<i64>;
    /// At start, with `AGENT_OS_ADMIN_TOKEN`: stores `t` unless its hash is already there, and
    /// revokes every other admin token. Servers starting together take turns, so the second
    /// finds what the first stored. `Conflict` when the hash is a revoked or non-admin token's.
    async fn set_admin_token(&self, t: &TokenRecord, now: i64) -> Result<()>;
    /// At start, without `AGENT_OS_ADMIN_TOKEN`: stores `t` only when no admin token is live
    /// (false when one is). Servers starting together take turns, so one token is made.
    async fn insert_first_admin_token(&self, t: &TokenRecord) -> Result<bool>;

    // Probes -------------------------------------------------------------------------------
    async fn insert_probe_result(&self, r: &ProbeResult) -> Result<()>;
    /// The newest result of each probe kind of a project.
    async fn latest_probe_results(&self, project_id: &str) -> Result<Vec<ProbeResult>>;
    /// Results of the given probe kinds, newest first (a project's health history).
    async fn probe_history(
        &self,
        project_id: &str,
        kinds: &[agent_os_core::manifest::ProbeKind],
        limit: i64,
    ) -> Result<Vec<ProbeResult>>;

    // Costs --------------------------------------------------------------------------------
    /// Stores all records or none; a record whose idempotency key is already stored for its
    /// project is skipped. Returns (accepted, duplicates).
    async fn insert_costs(&self, records: &[NewCost]) -> Result<(i64, i64)>;
    async fn list_costs(&self, filter: &CostFilter) -> Result<Vec<CostRecord>>;
    /// One page of the records spent in `[from, to)` (ms), oldest first by (`at`, `id`), after
    /// the record `after` names (its `at` and `id`): a keyset cursor, so an export reads a month
    /// of records a page at a time without ever skipping or repeating one.
    async fn cost_page(
        &self,
        project: Option<&str>,
        from: i64,
        to: i64,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<CostRecord>>;
    /// Exact totals per group and currency, summed by the database.
    async fn cost_totals(&self, filter: &CostTotalsFilter, by: CostGroup) -> Result<Vec<CostTotal>>;

    // Budgets and pauses -----------------------------------------------------------------
    /// Creates or replaces the budget of its (project, service, period).
    async fn upsert_budget(&self, b: &BudgetRecord) -> Result<BudgetRecord>;
    /// Makes the budgets from config.yaml exactly `budgets` (API-made ones are kept).
    async fn sync_config_budgets(&self, budgets: &[BudgetRecord]) -> Result<()>;
    async fn list_budgets(&self, project: Option<&str>) -> Result<Vec<BudgetRecord>>;
    async fn delete_budget(&self, id: &str) -> Result<bool>;
    /// Records that a budget crossed each of `thresholds` (ascending) in the period starting at
    /// `period_start`. The event (and the pause) belong to the highest, the last: they are stored
    /// and true returned only when that one is new, so one cost that crosses several thresholds
    /// is told once, at the highest.
    async fn mark_budget(
        &self,
        budget_id: &str,
        period_start: i64,
        thresholds: &[i64],
        event: &NewEvent,
        pause: Option<&PauseRecord>,
    ) -> Result<bool>;
    async fn get_pause(&self, project: &str) -> Result<Option<PauseRecord>>;
    async fn list_pauses(&self) -> Result<Vec<PauseRecord>>;
    /// Lifts a project's pause; false when it had none.
    async fn clear_pause(&self, project: &str) -> Result<bool>;

    // Managed schedules ------------------------------------------------------------------
    /// Claims each slot of a schedule once ever, in one transaction: the slot record, its run
    /// (if any) and the schedule's last slot moved forward. Says which slots were claimed here
    /// (false, with nothing written, when this node or another already had).
    async fn fire_slots(&self, fires: &[SlotFire], now: i64) -> Result<Vec<bool>>;
    /// The id and status of the run started by the schedule's most recent fired slot, if any.
    async fn last_schedule_run(&self, key: &str) -> Result<Option<(String, agent_os_core::run::RunStatus)>>;
    /// Every schedule the scheduler has seen, with its newest run.
    async fn schedule_states(&self) -> Result<Vec<ScheduleState>>;
    /// Records that new schedules start counting from `slot` (existing ones are not moved).
    async fn init_schedules(&self, keys: &[String], slot: i64) -> Result<()>;
    /// Pauses or resumes a schedule. Resuming moves its last slot to `now`: slots that passed
    /// while it was paused are not caught up.
    async fn set_schedule_paused(&self, key: &str, paused: bool, now: i64) -> Result<()>;
    /// Adds schedules found by discovery to a project (replacing ones of the same name). They
    /// survive manifest reloads.
    async fn add_discovered_schedules(&self, project_id: &str, schedules: &[NewSchedule]) -> Result<()>;
    async fn remove_discovered_schedule(&self, project_id: &str, name: &str) -> Result<bool>;

    // Checks, pings and events ------------------------------------------------------------
    /// The project's ping key (for slug ping URLs), set to `candidate` if it has none.
    async fn ensure_ping_key(&self, project_id: &str, candidate: &str) -> Result<String>;
    /// Makes the project's checks exactly `checks`: existing ones (by slug) keep their id,
    /// state and pings; others are added; checks no longer declared are removed.
    async fn sync_checks(&self, project_id: &str, checks: &[NewCheck], now: i64) -> Result<()>;
    async fn list_checks(&self, project: Option<&str>) -> Result<Vec<CheckRecord>>;
    async fn get_check(&self, id: &str) -> Result<Option<CheckRecord>>;
    async fn find_check_by_slug(&self, ping_key: &str, slug: &str) -> Result<Option<CheckRecord>>;
    /// When the newest `start` ping with this run id arrived (pairs start and finish).
    async fn start_ping_at(&self, check_id: &str, rid: &str) -> Result<Option<i64>>;
    /// Stores several pings, in order, in one transaction (a group commit).
    async fn record_pings(&self, pings: &[PingUpdate]) -> Result<()>;
    /// Moves a check to `state` (with its event) unless it is already there.
    async fn set_check_state(
        &self,
        check_id: &str,
        state: agent_os_core::check::CheckState,
        event: &NewEvent,
    ) -> Result<bool>;
    /// Newest first; `project` keeps that project's events only. `before` (an event's id) is a
    /// keyset cursor: only events older than that one come back (none for an unknown id).
    async fn list_events(
        &self,
        kind_prefix: Option<&str>,
        project: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventRecord>>;
    /// Stores an event on its own.
    async fn insert_event(&self, e: &NewEvent) -> Result<()>;

    // Notifications ------------------------------------------------------------------------
    /// The newest notification of `project` with `dedup_key` created at or after `since`.
    async fn find_recent_notification(
        &self,
        project: Option<&str>,
        dedup_key: &str,
        since: i64,
    ) -> Result<Option<NotificationRecord>>;
    /// Stores a notification with its deliveries (pending, or held for a digest), in one
    /// transaction.
    async fn insert_notification(
        &self,
        n: &NotificationRecord,
        deliveries: &[PlannedDelivery],
    ) -> Result<Vec<DeliveryRecord>>;
    /// How many deliveries to `channel` of notifications created after `since` were not held,
    /// and when the oldest of them was created (for a channel's throttle).
    async fn channel_sends_since(&self, channel: &str, since: i64) -> Result<(i64, Option<i64>)>;
    async fn list_notifications(&self, project: Option<&str>, limit: i64) -> Result<Vec<NotificationRecord>>;
    async fn get_notification(&self, id: &str) -> Result<Option<NotificationRecord>>;
    async fn list_deliveries(&self, notification_id: Option<&str>, limit: i64) -> Result<Vec<DeliveryRecord>>;
    /// Takes up to `limit` pending or held deliveries due at `now`, counting the attempt and holding
    /// them until `lease_until` so no other node takes them meanwhile.
    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<DeliveryRecord>>;
    async fn finish_delivery(&self, outcome: &DeliveryOutcome) -> Result<()>;
    /// Lets go of every delivery attempt in flight (at startup, when no other node can be
    /// making them: on SQLite); returns how many.
    async fn release_deliveries(&self) -> Result<u64>;
    /// When the earliest pending or held delivery is due; one whose attempt is in flight at
    /// `now` counts when its hold ends.
    async fn next_delivery_due(&self, now: i64) -> Result<Option<i64>>;

    // Incidents and maintenance ------------------------------------------------------------
    /// Opens `new` unless an incident for its source and subject is open (then updates its
    /// reason, and its severity when higher) or was resolved at or after `reopen_since` (then
    /// opens that one again, counting the change; it is flapping from `flap_changes` changes).
    async fn raise_incident(
        &self,
        new: &IncidentRecord,
        reopen_since: i64,
        flap_changes: i64,
    ) -> Result<IncidentChange>;
    /// Resolves the open incident of `source` and `subject`, if there is one.
    async fn resolve_incident(
        &self,
        source: agent_os_core::alerting::IncidentSource,
        subject: &str,
        reason: &str,
        at: i64,
    ) -> Result<Option<IncidentRecord>>;
    /// Marks an incident acknowledged (once; the first acknowledgement stays).
    async fn ack_incident(&self, id: &str, by: &str, at: i64) -> Result<Option<IncidentRecord>>;
    async fn get_incident(&self, id: &str) -> Result<Option<IncidentRecord>>;
    /// Newest first; `open_only` leaves resolved ones out.
    async fn list_incidents(&self, open_only: bool, project: Option<&str>, limit: i64) -> Result<Vec<IncidentRecord>>;
    async fn set_incident_notified(&self, id: &str, notified: bool) -> Result<()>;
    /// The channels the notifications about an incident went (or are going) to.
    async fn incident_channels(&self, incident_id: &str) -> Result<Vec<String>>;
    async fn insert_maintenance(&self, m: &MaintenanceRecord) -> Result<()>;
    /// Windows that have not ended at `now`.
    async fn list_maintenance(&self, now: i64) -> Result<Vec<MaintenanceRecord>>;
    /// Ends a window at `at` (if it had not ended); returns it.
    async fn end_maintenance(&self, id: &str, at: i64) -> Result<Option<MaintenanceRecord>>;

    // Events and workflows -----------------------------------------------------------------
    /// Stores events; one whose idempotency key was seen before is not stored again, and the
    /// earlier one is returned with `false`.
    async fn emit_events(&self, events: &[(NewEvent, Option<String>)]) -> Result<Vec<(EventRecord, bool)>>;
    /// Events the workflow router has not looked at yet, oldest first.
    async fn unrouted_events(&self, limit: i64) -> Result<Vec<EventRecord>>;
    async fn mark_routed(&self, ids: &[String], at: i64) -> Result<()>;
    /// Events at or after `since`, oldest first (for steps waiting for one).
    /// Events whose type starts with `type_prefix` (any, without one) stored at or after `since`,
    /// oldest first (for steps waiting for one).
    async fn events_since(&self, since: i64, type_prefix: Option<&str>, limit: i64) -> Result<Vec<EventRecord>>;
    /// Stores a workflow run, unless one of the workflow has the same trigger key: then that
    /// one is returned with `false`.
    async fn insert_workflow_run(&self, r: &WorkflowRunRecord) -> Result<(WorkflowRunRecord, bool)>;
    async fn get_workflow_run(&self, id: &str) -> Result<Option<WorkflowRunRecord>>;
    /// Newest first; `active_only`: queued and running.
    async fn list_workflow_runs(
        &self,
        workflow: Option<&str>,
        active_only: bool,
        limit: i64,
    ) -> Result<Vec<WorkflowRunRecord>>;
    /// Stores a run's status, outputs, error and times, unless it has already ended (a run
    /// ends once); false when it had.
    async fn update_workflow_run(&self, r: &WorkflowRunRecord) -> Result<bool>;
    async fn workflow_steps(&self, run_id: &str) -> Result<Vec<StepRecord>>;
    /// Stores step states (insert or replace), in one transaction.
    async fn put_steps(&self, steps: &[StepRecord]) -> Result<()>;
    /// Queues a step's task run and records it on the step in one transaction, so a crash
    /// cannot leave a run the step does not know (and start it twice).
    async fn start_step_task(&self, step: &StepRecord, run: &NewRun) -> Result<RunRecord>;

    // Nodes and settings -------------------------------------------------------------------
    async fn upsert_node(&self, node: &NodeRecord) -> Result<()>;
    async fn get_node(&self, id: &str) -> Result<Option<NodeRecord>>;
    // Dashboard sessions. Revoking an admin token ends the sessions it logged in.
    async fn insert_session(&self, s: &SessionRecord) -> Result<()>;
    /// The session with this id hash, unless it has expired.
    async fn find_session(&self, id: &str, now: i64) -> Result<Option<SessionRecord>>;
    async fn delete_session(&self, id: &str) -> Result<bool>;
    /// Ends every session that logged in this way (`token`, `password`), or all of them.
    async fn delete_sessions(&self, via: Option<agent_os_core::token::LoginVia>) -> Result<u64>;

    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    async fn set_setting(&self, key: &str, value: &str) -> Result<()>;
    /// Stores `value` unless `key` has one already; returns the value kept (the first writer's).
    async fn init_setting(&self, key: &str, value: &str) -> Result<String>;

    /// Lets go of the database, the last call of a stopping node. SQLite truncates its
    /// write-ahead log first, so the next start has nothing to read back.
    async fn close(&self);
}
