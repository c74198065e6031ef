//! [`Engine`]: the running heart of Agent OS on one node.
//!
//! Where does an API call become a process? `start_run` stores a queued run and wakes the
//! dispatcher; the dispatcher claims due runs (a store transaction, so two nodes never claim
//! the same one) up to the node's free slots; `execute` runs each through its project's
//! transport, streams its log into the store, and ends the attempt — back to queued for a
//! retry, or to its final state. On start, `recover` finds attempts whose node died, kills
//! their process groups and ends them as lost.

pub mod badges;
pub mod budgets;
mod group;
pub mod health;
pub mod holds;
pub mod incidents;
pub mod links;
pub mod monitor;
pub mod notify;
pub mod pricing;
pub mod reload;
pub mod resources;
pub mod retention;
pub mod scheduler;
pub mod signing;
pub mod supervisor;
pub mod workers;
pub mod workflows;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use agent_os_core::cost::CostSource;
use agent_os_core::manifest::{
    MANIFEST_FILE, ManagedBy, Manifest, ProbeKind, ProbeStatus, ScheduleSource, Transport, check_schedule,
};
use agent_os_core::redact::{Redactor, redact_shapes};
use agent_os_core::run::{AttemptEnd, EXIT_NO_RETRY, LogStream, retry_delay};
use agent_os_core::{ManifestError, RunStatus, id::new_id};
use agent_os_store::{
    ClaimHere, FinishAttempt, NewLogChunk, NewProject, NewRun, NewSchedule, NodeRecord, ProbeResult, ProjectTransport,
    RunRecord, Store, StoreError, TokenRecord,
};

use crate::clock::Clock;
use crate::command::{AttemptVars, CommandAttempt, INTERRUPTED, Stop, run_command};
use crate::config::EngineConfig;
use crate::costs::{CostContext, CostInput, FieldError, validate};
use crate::metrics::{Histogram, RUN_BUCKETS};
use crate::plugin::{self, HttpPlugins, PROTOCOL};
use crate::process::{SIGKILL, SIGTERM, hostname, is_our_group, signal_group};
use crate::project::{LoadError, LoadedProject, load_dir};
use crate::runner::Stream;
use crate::secrets::{TokenKind, new_signing_secret, new_token, random_fraction, token_record};
use supervisor::{Loop, panic_message};

/// What callers of the engine act on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Invalid { field: Option<String>, message: String },
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    /// A rate limit says not yet.
    #[error("{0}")]
    RateLimited(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => EngineError::NotFound(format!("{what} not found")),
            StoreError::Conflict(m) => EngineError::Conflict(m),
            other => EngineError::Store(other),
        }
    }
}

impl From<LoadError> for EngineError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Invalid(m) => EngineError::Manifest(m),
            other => EngineError::Invalid { field: Some("path".into()), message: other.to_string() },
        }
    }
}

impl From<FieldError> for EngineError {
    fn from(e: FieldError) -> Self {
        EngineError::Invalid { field: Some(e.field), message: e.message }
    }
}

/// A request to run a task.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub project: String,
    pub task: String,
    /// Must be a JSON object.
    pub input: Value,
    pub trigger: String,
}

/// Slots taken and tokens made for runs about to be queued and claimed in one transaction.
pub(crate) struct Here {
    claim: ClaimHere,
    /// The tokens' plain text, in the claim's order.
    plain: Vec<String>,
    permits: Vec<OwnedSemaphorePermit>,
}

/// How an attempt ended, as whoever ran it tells: this node's runner, an HTTP plugin, or a
/// worker. [`Engine::finish_of`] turns it into what happens to the run.
#[derive(Clone, Debug)]
pub(crate) struct AttemptReport {
    pub end: AttemptEnd,
    /// The task's exit code, when it exited by itself (0 for a success).
    pub exit_code: Option<i64>,
    /// The attempt was cut short because Agent OS (or the worker running it) was stopping.
    pub interrupted: bool,
    /// What the task wrote to its outputs file (kept for a success only).
    pub outputs: Option<Value>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// The settings in force: swapped whole when `config.yaml` is applied again, so a reader
    /// holds one consistent version for as long as it keeps the `Arc` (never across a reload's
    /// lock). Read through [`Engine::cfg`].
    cfg: std::sync::RwLock<Arc<EngineConfig>>,
    /// What the config file did last (loaded, refused, what changed), and the lock that makes
    /// reloads (the file watch, SIGHUP, the API) take turns.
    config_state: reload::ConfigState,
    http: HttpPlugins,
    hostname: String,
    /// Validated manifests by project name, checked against the record's `updated_at`.
    projects: RwLock<HashMap<String, Arc<LoadedProject>>>,
    /// Wakes the dispatcher: a run was queued or a slot was freed.
    wake: Notify,
    /// Free execution slots on this node; the dispatcher claims no more runs than this.
    slots: Arc<Semaphore>,
    /// The engine itself, for the tasks a `&self` method starts.
    me: std::sync::Weak<Engine>,
    /// Stop signals of the runs executing on this node.
    running: Mutex<HashMap<String, watch::Sender<Option<Stop>>>>,
    /// Bumped whenever a run changes state (waiters and live views listen).
    runs_changed: watch::Sender<u64>,
    /// Bumped whenever log lines are stored.
    logs_changed: watch::Sender<u64>,
    /// Bumped when something a live view shows changes besides runs and logs: workflow runs and
    /// steps, incidents, costs, events, notifications.
    state_changed: watch::Sender<u64>,
    /// Set when the node stops claiming work.
    stopping: watch::Sender<bool>,
    /// Wakes the scheduler: a project (and so its schedules) was added, changed or removed.
    schedules_changed: Notify,
    /// Set with `schedules_changed`: the scheduler rebuilds its table on its next tick.
    schedules_dirty: std::sync::atomic::AtomicBool,
    /// The managed schedules, kept in memory between changes.
    schedule_table: tokio::sync::Mutex<scheduler::ScheduleTable>,
    /// Pings on their way to the store, written in groups (one transaction for all waiting).
    ping_writer: mpsc::Sender<monitor::PingJob>,
    /// Events to store, group-committed by one writer task.
    event_writer: mpsc::Sender<workflows::EventJob>,
    /// Wakes the delivery loop: a notification was stored.
    deliveries_changed: Notify,
    /// Wakes the incident sweep (a maintenance window ended early).
    alerts_changed: Notify,
    /// Loaded workflows and the plans of active runs.
    workflows: workflows::Registry,
    /// Wakes the workflow loop (an event, a new run).
    workflows_changed: Notify,
    /// The workflow files as last seen (path, modified), to notice edits.
    workflow_stamp: Mutex<Vec<(std::path::PathBuf, Option<std::time::SystemTime>)>>,
    /// Wakes lease requests: a hold was released.
    resources_changed: Notify,
    /// Wakes the check monitor: a ping arrived or checks changed.
    checks_changed: Notify,
    /// Probes currently in flight, so a slow probe is not started twice.
    probing: Mutex<HashSet<(String, ProbeKind)>>,
    /// The background loops, their supervisor and health (`supervisor`).
    loops: supervisor::Loops,
    /// The tasks of the runs executing on this node and their helpers (log writers, cancel
    /// watchers): shutdown waits on them.
    tasks: TaskTracker,
    /// When this node started (clock ms): workers are not judged lost until `workers.lost_after`
    /// has passed since, as they had no chance to reach a server that was down.
    started_at: i64,
    /// Prune passes take turns here, and the last one's figures are kept (`retention`).
    prune: retention::PruneState,
    pub run_durations: Histogram,
}

impl Engine {
    /// Registers this node, recovers work lost by dead nodes and starts the background loops.
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        cfg: EngineConfig,
    ) -> Result<Arc<Engine>, EngineError> {
        std::fs::create_dir_all(cfg.runtime_dir.join("outputs"))
            .map_err(|e| EngineError::Unavailable(format!("cannot create {}: {e}", cfg.runtime_dir.display())))?;
        let http = HttpPlugins::new()
            .map_err(|e| EngineError::Unavailable(format!("cannot set up the HTTP client for plugins: {e}")))?;
        let (ping_writer, pings) = mpsc::channel(4096);
        let (event_writer, events) = mpsc::channel(4096);
        let engine = Arc::new_cyclic(|me| Engine {
            me: me.clone(),
            ping_writer,
            event_writer,
            slots: Arc::new(Semaphore::new(cfg.max_concurrent_runs.max(1))),
            store,
            clock: clock.clone(),
            http,
            hostname: hostname(),
            projects: RwLock::new(HashMap::new()),
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            runs_changed: watch::channel(0).0,
            logs_changed: watch::channel(0).0,
            state_changed: watch::channel(0).0,
            stopping: watch::channel(false).0,
            probing: Mutex::new(HashSet::new()),
            loops: supervisor::Loops::new(),
            tasks: TaskTracker::new(),
            schedules_changed: Notify::new(),
            schedules_dirty: std::sync::atomic::AtomicBool::new(true),
            schedule_table: tokio::sync::Mutex::new(scheduler::ScheduleTable::default()),
            checks_changed: Notify::new(),
            resources_changed: Notify::new(),
            deliveries_changed: Notify::new(),
            alerts_changed: Notify::new(),
            workflows: Default::default(),
            workflows_changed: Notify::new(),
            workflow_stamp: Mutex::new(Vec::new()),
            run_durations: Histogram::new(RUN_BUCKETS),
            started_at: clock.now_ms(),
            config_state: reload::ConfigState::new(&cfg, clock.now_ms()),
            prune: Default::default(),
            cfg: std::sync::RwLock::new(Arc::new(cfg)),
        });
        engine.heartbeat().await?;
        engine.recover().await?;
        let now = engine.now();
        let budgets: Vec<_> = engine.cfg().budgets.iter().map(|b| budgets::record_of(b, now)).collect();
        engine.store.sync_config_budgets(&budgets).await?;
        // Checks follow the manifests (also for projects registered before checks existed).
        for p in engine.projects().await? {
            engine.sync_checks(&p).await?;
        }
        // Records stored without a price before config.yaml gave their model one.
        engine.price_unpriced_costs().await?;
        // On SQLite this is the only node: an attempt left in flight was cut off by a crash,
        // and is made again at once (with the same idempotency key).
        if engine.store.backend() == agent_os_store::Backend::Sqlite {
            let released = engine.store.release_deliveries().await?;
            if released > 0 {
                tracing::warn!(deliveries = released, "notification deliveries cut off by a crash are tried again");
            }
        }
        let loops = Loop::ALL.into_iter().filter(|l| match l {
            Loop::Probe => engine.cfg().probes_enabled,
            Loop::Schedule | Loop::Monitor => engine.cfg().schedules_enabled,
            Loop::Config => engine.cfg().config_file.is_some(),
            _ => true,
        });
        let inputs = supervisor::Inputs {
            pings: Arc::new(tokio::sync::Mutex::new(pings)),
            events: Arc::new(tokio::sync::Mutex::new(events)),
        };
        engine.supervise(loops.collect(), inputs);
        #[cfg(feature = "testing")]
        if let Some(l) = std::env::var("AGENT_OS_TEST_LOOP_PANIC").ok().and_then(|name| Loop::parse(&name)) {
            // The binary's tests make a loop die this way (feature `testing` only).
            engine.inject_panic(l);
        }
        Ok(engine)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The settings in force now (a reload may replace them a moment later).
    pub fn config(&self) -> Arc<EngineConfig> {
        self.cfg()
    }

    pub(crate) fn cfg(&self) -> Arc<EngineConfig> {
        self.cfg.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Runs executing on this node now.
    pub fn running_here(&self) -> usize {
        self.running.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn subscribe_runs(&self) -> watch::Receiver<u64> {
        self.runs_changed.subscribe()
    }

    pub fn subscribe_logs(&self) -> watch::Receiver<u64> {
        self.logs_changed.subscribe()
    }

    /// Changes of workflow runs, incidents, costs, events and notifications (see also
    /// [`Engine::subscribe_runs`]).
    pub fn subscribe_state(&self) -> watch::Receiver<u64> {
        self.state_changed.subscribe()
    }

    /// Tells live views that something they may show has changed.
    pub(crate) fn touch(&self) {
        self.state_changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Stops claiming runs and ends waits, so the HTTP server can drain quickly.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
        self.wake.notify_one();
    }

    /// Stops claiming runs, gives running tasks `grace` to finish, then interrupts the rest
    /// (they are retried, without using up a retry, when a node picks them up again). Waits on
    /// the runs' tasks themselves, then stops the loops and joins them.
    pub async fn shutdown(&self, grace: Duration) {
        self.begin_shutdown();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_err() {
            if let Ok(running) = self.running.lock() {
                for stop in running.values() {
                    stop.send_replace(Some(Stop::Interrupt));
                }
            }
            let kill = self.cfg().kill_grace + Duration::from_secs(2);
            if tokio::time::timeout(kill, self.tasks.wait()).await.is_err() {
                tracing::warn!(
                    tasks = self.tasks.len(),
                    "run tasks still going after their interruption; stopping anyway"
                );
            }
        }
        // The loops last: the runs that just ended still raise incidents and store events
        // through them.
        self.stop_loops(Duration::from_secs(5)).await;
    }

    // Projects ---------------------------------------------------------------------------

    /// Registers the project in a local directory (command or HTTP transport). Admin only.
    pub async fn register_path(&self, dir: &Path) -> Result<(Arc<LoadedProject>, Option<String>), EngineError> {
        let (root, text, manifest) = load_dir(dir)?;
        self.check_manifest_resources(&manifest)?;
        let root = root.display().to_string();
        let transport = match &manifest.transport {
            Transport::Http { url } => {
                ProjectTransport::Http { url: url.clone(), secret: new_signing_secret(), root: Some(root) }
            }
            Transport::Command => ProjectTransport::Command { root },
        };
        self.insert(manifest, text, transport).await
    }

    /// Registers a hosted project from its manifest text; only the HTTP transport is allowed,
    /// since a command would let an API caller run programs on this machine.
    pub async fn register_hosted(&self, text: &str) -> Result<(Arc<LoadedProject>, Option<String>), EngineError> {
        let manifest = Manifest::parse(MANIFEST_FILE, text)?;
        self.check_manifest_resources(&manifest)?;
        let Transport::Http { url } = &manifest.transport else {
            return Err(EngineError::Invalid {
                field: Some("manifest.plugin".into()),
                message: "a project registered over the API must name its HTTP endpoint (plugin: { url: … }); command tasks are only allowed for projects an admin adds from a local path (agent-os project add PATH)".into(),
            });
        };
        let transport = ProjectTransport::Http { url: url.clone(), secret: new_signing_secret(), root: None };
        self.insert(manifest, text.to_string(), transport).await
    }

    /// Stores a project; gives its signing secret (HTTP transport), shown this once.
    async fn insert(
        &self,
        manifest: Manifest,
        text: String,
        transport: ProjectTransport,
    ) -> Result<(Arc<LoadedProject>, Option<String>), EngineError> {
        let secret = match &transport {
            ProjectTransport::Http { secret, .. } => Some(secret.clone()),
            ProjectTransport::Command { .. } | ProjectTransport::Worker => None,
        };
        let new = NewProject {
            id: new_id(),
            name: manifest.name.clone(),
            description: manifest.description.clone(),
            transport,
            manifest: text,
        };
        let schedules = manifest_schedules(&manifest);
        let record = self.store.insert_project(&new, &schedules, self.now()).await?;
        let loaded = Arc::new(LoadedProject { record, manifest });
        self.cache(loaded.clone());
        self.sync_checks(&loaded).await?;
        self.refresh_plugin_schedules(&loaded).await;
        Ok((loaded, secret))
    }

    /// Re-reads a project's manifest from its directory (local projects), or replaces it with
    /// `text` (hosted projects). Runs already started keep the task definition they began with.
    pub async fn reload(&self, name: &str, text: Option<&str>) -> Result<Arc<LoadedProject>, EngineError> {
        let current = self.project(name).await?;
        if current.record.transport == ProjectTransport::Worker {
            return Err(EngineError::Invalid {
                field: Some("manifest".into()),
                message: format!(
                    "project {name:?} is served by workers: it changes when one sends its manifest (edit {MANIFEST_FILE} on the worker's machine)"
                ),
            });
        }
        let (text, manifest) = match (current.root(), text) {
            (Some(root), None) => {
                let (_, text, manifest) = load_dir(root)?;
                self.check_manifest_resources(&manifest)?;
                (text, manifest)
            }
            (None, Some(text)) => {
                let manifest = Manifest::parse(MANIFEST_FILE, text)?;
                self.check_manifest_resources(&manifest)?;
                if manifest.transport == Transport::Command {
                    return Err(EngineError::Invalid {
                        field: Some("manifest.plugin".into()),
                        message: "a hosted project must keep its HTTP endpoint (plugin: { url: … })".into(),
                    });
                }
                (text.to_string(), manifest)
            }
            (Some(_), Some(_)) => {
                return Err(EngineError::Invalid {
                    field: Some("manifest".into()),
                    message: format!(
                        "project {name:?} is read from its directory; edit its {MANIFEST_FILE} and reload without a body"
                    ),
                });
            }
            (None, None) => {
                return Err(EngineError::Invalid {
                    field: Some("manifest".into()),
                    message: format!("project {name:?} is hosted; send its manifest to reload it"),
                });
            }
        };
        if manifest.name != name {
            return Err(EngineError::Invalid {
                field: Some("name".into()),
                message: format!(
                    "the manifest now names the project {:?}; a project cannot be renamed by reloading (remove it and add it again)",
                    manifest.name
                ),
            });
        }
        if manifest.transport.kind() != current.record.transport.kind() {
            return Err(EngineError::Invalid {
                field: Some("plugin".into()),
                message: "the transport changed; remove the project and add it again".into(),
            });
        }
        // The plugin's schedules stay until its schedule probe answers again, so their checks
        // (and ping URLs) survive the reload.
        let mut schedules = manifest_schedules(&manifest);
        schedules.extend(self.plugin_schedules(name).await?);
        let record = self.store.update_project(name, &text, &manifest.description, &schedules, self.now()).await?;
        let loaded = Arc::new(LoadedProject { record, manifest });
        self.cache(loaded.clone());
        self.sync_checks(&loaded).await?;
        self.refresh_plugin_schedules(&loaded).await;
        Ok(loaded)
    }

    pub async fn remove(&self, name: &str) -> Result<(), EngineError> {
        if !self.store.delete_project(name).await? {
            return Err(EngineError::NotFound(format!("project {name:?} is not registered")));
        }
        if let Ok(mut cache) = self.projects.write() {
            cache.remove(name);
        }
        self.schedules_touched();
        Ok(())
    }

    fn cache(&self, p: Arc<LoadedProject>) {
        if let Ok(mut cache) = self.projects.write() {
            cache.insert(p.record.name.clone(), p);
        }
        self.schedules_touched();
    }

    /// A registered project with its manifest.
    pub async fn project(&self, name: &str) -> Result<Arc<LoadedProject>, EngineError> {
        let record = self
            .store
            .get_project(name)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("project {name:?} is not registered")))?;
        self.loaded(record)
    }

    fn loaded(&self, record: agent_os_store::ProjectRecord) -> Result<Arc<LoadedProject>, EngineError> {
        if let Ok(cache) = self.projects.read()
            && let Some(p) = cache.get(&record.name)
            && p.record.id == record.id
            && p.record.updated_at == record.updated_at
        {
            return Ok(p.clone());
        }
        let loaded = Arc::new(LoadedProject::from_record(record)?);
        self.cache(loaded.clone());
        Ok(loaded)
    }

    pub async fn projects(&self) -> Result<Vec<Arc<LoadedProject>>, EngineError> {
        let records = self.store.list_projects().await?;
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            match self.loaded(r) {
                Ok(p) => out.push(p),
                Err(e) => tracing::warn!(error = %e, "stored project no longer validates"),
            }
        }
        Ok(out)
    }

    async fn refresh_plugin_schedules(&self, p: &LoadedProject) {
        let Some(probe) = p.manifest.schedule_probe.clone() else { return };
        if p.record.transport == ProjectTransport::Worker {
            // Its workers ask its schedule probe (after their hello and each change).
            return;
        }
        let started = Instant::now();
        let previous = self.previous_signing_secret(p).await;
        let answer =
            plugin::ask_probe(&self.http, p, "get_schedule", &probe, &self.cfg().public_url, None, previous).await;
        let mut result = self.probe_result(p, ProbeKind::Schedule, started);
        result.duration_ms = started.elapsed().as_millis() as i64;
        self.take_schedules(p, answer, result).await;
    }

    /// Stores what a schedule probe answered (here or on a worker): the manifest's schedules
    /// and the plugin's, each checked; the result says what was wrong.
    pub(crate) async fn take_schedules(
        &self,
        p: &LoadedProject,
        answer: Result<Value, plugin::CallError>,
        mut result: ProbeResult,
    ) {
        match answer.and_then(|v| {
            serde_json::from_value::<plugin::ScheduleAnswer>(v).map_err(|e| plugin::CallError {
                message: format!("answer does not follow the protocol: {e}"),
                retryable: false,
            })
        }) {
            Ok(answer) => {
                let mut schedules = manifest_schedules(&p.manifest);
                let mut problems = Vec::new();
                // Check slugs in use: a plugin's schedule kept elsewhere is watched by a check
                // named after its task (`task`, else `task-2`, `task-3`…), never taking one of
                // the manifest's or a registered discovered schedule's.
                let mut taken: HashSet<String> = p.manifest.checks.iter().map(|c| c.slug.clone()).collect();
                if let Ok(stored) = self.store.list_schedules(Some(&p.record.name)).await {
                    taken.extend(
                        stored
                            .into_iter()
                            .filter(|s| s.source == ScheduleSource::Discovered)
                            .filter_map(|s| s.check_slug),
                    );
                }
                for (i, s) in answer.schedules.iter().enumerate() {
                    let tz = s.timezone.clone().unwrap_or_else(|| "UTC".into());
                    let by = s.managed_by.clone().unwrap_or_else(|| "agent-os".into());
                    match check_schedule(&p.manifest.tasks, &s.task, &s.cron, &tz, &by) {
                        Ok((_, _, managed_by)) => schedules.push(NewSchedule {
                            task: s.task.clone(),
                            cron: s.cron.clone(),
                            timezone: tz,
                            managed_by,
                            description: s.description.clone().unwrap_or_default(),
                            source: ScheduleSource::Plugin,
                            check_slug: (managed_by != ManagedBy::AgentOs).then(|| {
                                let slug = (1..)
                                    .map(|n| if n == 1 { s.task.clone() } else { format!("{}-{n}", s.task) })
                                    .find(|slug| !taken.contains(slug))
                                    .unwrap_or_else(|| s.task.clone());
                                taken.insert(slug.clone());
                                slug
                            }),
                        }),
                        Err(e) => problems.push(format!("schedules[{i}]: {e}")),
                    }
                }
                result.ok = problems.is_empty();
                result.error = (!problems.is_empty()).then(|| problems.join("; "));
                if let Err(e) = self
                    .store
                    .update_project(
                        &p.record.name,
                        &p.record.manifest,
                        &p.record.description,
                        &schedules,
                        p.record.updated_at,
                    )
                    .await
                {
                    tracing::warn!(project = %p.record.name, error = %e, "could not store plugin schedules");
                }
                // Their checks follow: new ones get one, ones no longer reported lose theirs.
                if let Err(e) = self.sync_checks(p).await {
                    tracing::warn!(project = %p.record.name, error = %e, "could not sync the checks of plugin schedules");
                }
                self.schedules_touched();
            }
            Err(e) => {
                result.ok = false;
                result.error = Some(e.message);
            }
        }
        let _ = self.store.insert_probe_result(&result).await;
    }

    // Runs -------------------------------------------------------------------------------

    /// Queues a run of a project's task.
    pub async fn start_run(&self, req: RunRequest) -> Result<RunRecord, EngineError> {
        if *self.stopping.borrow() {
            return Err(EngineError::Unavailable("Agent OS is shutting down; try again in a moment".into()));
        }
        let project = self.project(&req.project).await?;
        let Some(task) = project.manifest.task(&req.task) else {
            let known: Vec<&str> = project.manifest.tasks.keys().map(String::as_str).collect();
            let hint = agent_os_core::manifest::suggest(&req.task, &known)
                .map(|k| format!("; did you mean {k:?}?"))
                .unwrap_or_else(|| format!("; its tasks are: {}", known.join(", ")));
            return Err(EngineError::NotFound(format!("project {:?} has no task {:?}{hint}", req.project, req.task)));
        };
        if !req.input.is_object() {
            return Err(EngineError::Invalid {
                field: Some("input".into()),
                message: "input must be a JSON object".into(),
            });
        }
        self.check_resources(&project.record.name, task)?;
        self.refuse_if_paused(&project.record.name).await?;
        self.queue_run(task_run(&project, task, req.input.to_string(), &req.trigger, self.now())).await
    }

    /// Stores a queued run; where this node has a free slot it is claimed in the same
    /// transaction and started at once, else the dispatcher is woken for it.
    pub(crate) async fn queue_run(&self, run: NewRun) -> Result<RunRecord, EngineError> {
        let here = self.claim_here(1);
        let queued = self.store.queue_runs(std::slice::from_ref(&run), here.as_ref().map(|h| &h.claim)).await?;
        self.start_here(queued.claimed, 1, here);
        self.runs_changed.send_modify(|v| *v += 1);
        queued.runs.into_iter().next().ok_or_else(|| EngineError::Unavailable("the run was not stored".into()))
    }

    /// Slots and tokens for claiming up to `n` runs in the transaction that queues them (none
    /// while shutting down, or when every slot is taken).
    pub(crate) fn claim_here(&self, n: usize) -> Option<Here> {
        if n == 0 || *self.stopping.borrow() {
            return None;
        }
        let permits = self.free_slots(n);
        if permits.is_empty() {
            return None;
        }
        let now = self.now();
        let (plain, tokens) = run_tokens(permits.len(), now);
        Some(Here { claim: ClaimHere { node_id: self.cfg().node_id.clone(), now, tokens }, plain, permits })
    }

    /// Starts the runs a transaction claimed with `here`'s slots and tokens (the slots left
    /// over go back), and wakes the dispatcher for those of the `queued` that stayed queued.
    pub(crate) fn start_here(&self, claimed: Vec<RunRecord>, queued: usize, here: Option<Here>) {
        let left = queued.saturating_sub(claimed.len());
        if let Some(mut h) = here
            && !claimed.is_empty()
            && let Some(me) = self.me.upgrade()
        {
            me.start_claimed(claimed, h.plain, &mut h.permits);
        }
        // A run left queued (no slot, a resource, a concurrency key, a worker's project) is the
        // dispatcher's (or a worker's) to claim.
        if left > 0 {
            self.wake.notify_one();
        }
    }

    fn check_manifest_resources(&self, m: &Manifest) -> Result<(), EngineError> {
        m.tasks.values().try_for_each(|t| self.check_resources(&m.name, t))
    }

    /// Refuses a task that names a resource the config does not declare (the config may have
    /// changed since the project was registered).
    pub(crate) fn check_resources(
        &self,
        project: &str,
        task: &agent_os_core::manifest::Task,
    ) -> Result<(), EngineError> {
        for r in &task.resources {
            if !self.cfg().resources.contains_key(r) {
                let hint = self.resource_hint(r);
                return Err(EngineError::Invalid {
                    field: Some(format!("tasks.{}.resources", task.name)),
                    message: format!(
                        "task {project}.{} uses resource {r:?}, which config.yaml does not declare ({hint}); add it under `resources:`",
                        task.name
                    ),
                });
            }
        }
        Ok(())
    }

    /// Cancels a run: a queued run ends at once, a running one is stopped (its process group
    /// gets SIGTERM, then SIGKILL after the grace period).
    pub async fn cancel_run(&self, id: &str) -> Result<RunRecord, EngineError> {
        let run = self.store.request_cancel(id, self.now()).await?;
        if let Ok(running) = self.running.lock()
            && let Some(stop) = running.get(id)
        {
            stop.send_replace(Some(Stop::Cancel));
        }
        self.runs_changed.send_modify(|v| *v += 1);
        if run.status.is_terminal() && workflows::step_run_of(&run.trigger).is_some() {
            self.step_runs_changed();
        }
        Ok(run)
    }

    /// Waits until a run reaches a final state, or `timeout` passes; returns it either way.
    pub async fn wait_run(&self, id: &str, timeout: Duration) -> Result<RunRecord, EngineError> {
        let mut changes = self.runs_changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            let run =
                self.store.get_run(id).await?.ok_or_else(|| EngineError::NotFound(format!("run {id:?} not found")))?;
            let terminal = run.status.is_terminal();
            if terminal || tokio::time::Instant::now() >= deadline {
                return Ok(run);
            }
            // Other nodes do not ring our bell: look again at least once a second.
            if *self.stopping.borrow() {
                return Ok(run);
            }
            let wait = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
            let _ = tokio::time::timeout_at(wait, changes.changed()).await;
        }
    }

    /// Stores cost records reported for `project` (and `run_id`, for a run token): all or
    /// none; duplicates by idempotency key count once.
    pub async fn record_costs(
        &self,
        project: &str,
        run_id: Option<&str>,
        inputs: &[CostInput],
        batch: bool,
    ) -> Result<Counted, EngineError> {
        let p = self.project(project).await?;
        let now = self.now();
        let ctx = CostContext {
            project_id: &p.record.id,
            project: &p.record.name,
            run_id,
            source: CostSource::Api,
            now,
            prices: &self.cfg().prices,
        };
        let mut records = Vec::with_capacity(inputs.len());
        let mut runs = ProjectRuns::new(&p.record.name, run_id);
        for (i, input) in inputs.iter().enumerate() {
            let prefix = if batch { format!("records[{i}].") } else { String::new() };
            let record = validate(input, &prefix, &ctx)?;
            // A record may name its run (a client sending it late, with another token of the
            // project): the run must be the project's.
            if let Some(id) = &record.run_id
                && !runs.holds(&*self.store, id).await?
            {
                return Err(EngineError::Invalid {
                    field: Some(format!("{prefix}run_id")),
                    message: format!("no run {id:?} of project {:?}", p.record.name),
                });
            }
            records.push(record);
        }
        let (accepted, duplicates) = self.store.insert_costs(&records).await?;
        self.touch();
        self.warn_unpriced(project, &records).await?;
        self.check_budgets(project).await?;
        Ok(Counted { accepted, duplicates, unpriced: records.iter().filter(|c| c.unpriced).count() as i64 })
    }

    // The dispatcher ---------------------------------------------------------------------

    async fn dispatch_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        loop {
            if *stopping.borrow() {
                break;
            }
            // The slots are taken before the claim, so a run claimed always has one (a step
            // started by the workflow engine may take a slot meanwhile).
            let mut permits = self.free_slots(usize::MAX);
            let free = permits.len();
            let mut claimed = 0;
            if free > 0 {
                // Each claimed run gets its own token in the claim's transaction: it acts only
                // for the run's project and is revoked when the attempt ends.
                let now = self.now();
                let (plain, records) = run_tokens(free, now);
                match self.store.claim_runs(&self.cfg().node_id, now, free as i64, &records).await {
                    Ok(runs) => claimed = self.start_claimed(runs, plain, &mut permits),
                    Err(e) => {
                        tracing::error!(error = %e, "could not claim runs");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            let mut resource_wake = None;
            if claimed < free && !self.cfg().resources.is_empty() {
                let now = self.now();
                let want = free - claimed;
                let (plain, records) = run_tokens(want, now);
                match self
                    .store
                    .claim_resource_runs(&self.cfg().node_id, now, want as i64, &records, &self.cfg().resources)
                    .await
                {
                    Ok(got) => {
                        resource_wake = got.wake_at;
                        claimed += self.start_claimed(got.runs, plain, &mut permits);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not claim runs that wait for resources");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            drop(permits);
            if claimed > 0 && claimed == free {
                continue;
            }
            let mut sleep = self.cfg().poll_every;
            if let Some(at) = resource_wake {
                sleep = sleep.min(Duration::from_millis((at - self.now()).max(1) as u64));
            }
            if free > 0
                && let Ok(Some(due)) = self.store.next_due().await
            {
                let until = (due - self.now()).max(0) as u64;
                sleep = sleep.min(Duration::from_millis(until.max(1)));
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = stopping.changed() => {}
            }
        }
    }

    /// Takes up to `n` free execution slots of this node.
    pub(crate) fn free_slots(&self, n: usize) -> Vec<OwnedSemaphorePermit> {
        std::iter::from_fn(|| self.slots.clone().try_acquire_owned().ok()).take(n).collect()
    }

    /// Starts each claimed run in a slot of its own, taken from `permits`; returns how many.
    fn start_claimed(
        self: &Arc<Self>,
        runs: Vec<RunRecord>,
        tokens: Vec<String>,
        permits: &mut Vec<OwnedSemaphorePermit>,
    ) -> usize {
        let n = runs.len();
        for (run, token) in runs.into_iter().zip(tokens) {
            tracing::trace!(target: "timeline", run = %run.id, "claimed");
            // Never short: as many runs are claimed as slots were taken for them.
            let Some(permit) = permits.pop() else {
                tracing::error!(run = %run.id, "a run was claimed without a free slot");
                break;
            };
            let engine = self.clone();
            self.tasks.spawn(async move {
                // In a task of its own, so that a panic in it is noticed here and the attempt
                // ended rather than left running.
                let executing = tokio::spawn(engine.clone().execute(run.clone(), token)).await;
                if let Err(e) = executing {
                    engine.execute_died(&run, e).await;
                }
                drop(permit);
                engine.wake.notify_one();
                engine.resources_changed.notify_waiters();
            });
        }
        if n > 0 {
            self.runs_changed.send_modify(|v| *v += 1);
        }
        n
    }

    async fn execute(self: Arc<Self>, run: RunRecord, token: String) {
        let started = Instant::now();
        let (stop_tx, stop_rx) = watch::channel(None);
        if let Ok(mut running) = self.running.lock() {
            running.insert(run.id.clone(), stop_tx);
        }
        // With several nodes, a cancel may arrive through another node's API: look for the
        // flag in the store while the attempt runs.
        let watcher = (self.store.backend() == agent_os_store::Backend::Postgres)
            .then(|| AbortOnDropHandle::new(self.tasks.spawn(self.clone().watch_cancel(run.id.clone()))));
        let (end, outputs) = self.attempt(&run, &token, stop_rx).await;
        drop(watcher);
        if let Ok(mut running) = self.running.lock() {
            running.remove(&run.id);
        }
        let now = self.now();
        // An attempt cut short by a shutdown of Agent OS is not the task's failure: it is
        // retried at once, and does not use up one of the task's retries.
        let interrupted = matches!(&end, AttemptEnd::Failed { reason, .. } if reason.starts_with(INTERRUPTED));
        let exit_code = match &end {
            AttemptEnd::Succeeded => Some(0),
            AttemptEnd::Failed { reason, .. } => exit_code_of(reason),
            _ => None,
        };
        let report = AttemptReport { end, exit_code, interrupted, outputs };
        let (finish, retry) = self.finish_of(&run, report, &Redactor::new([token.clone()]), now);
        match self.record_end(&run, finish, retry).await {
            Ok(done) => {
                tracing::trace!(target: "timeline", run = %run.id, "recorded");
                if done.status.is_terminal() {
                    let total = done.finished_at.unwrap_or(now) - done.started_at.unwrap_or(now);
                    self.run_durations.observe(total.max(0) as f64 / 1000.0);
                    self.run_ended(&done).await;
                }
            }
            Err(e) => tracing::warn!(run = %run.id, error = %e, "could not record the end of an attempt"),
        }
        tracing::trace!(target: "timeline", run = %run.id, "announced");
        tracing::debug!(run = %run.id, attempt = run.attempt, elapsed_ms = started.elapsed().as_millis() as u64, "attempt ended");
        self.runs_changed.send_modify(|v| *v += 1);
        if retry {
            self.wake.notify_one();
        }
    }

    /// Stores an attempt's end as [`Engine::finish_of`] decided it. The final end of a workflow
    /// step's task run is stored together with what its workflow run does next
    /// ([`Engine::step_run_ended`]); any other end of a step's run wakes the workflow loop.
    pub(crate) async fn record_end(
        &self,
        run: &RunRecord,
        finish: FinishAttempt,
        retry: bool,
    ) -> Result<RunRecord, StoreError> {
        let workflow_run = match workflows::step_run_of(&run.trigger) {
            Some(w) if !retry => w,
            // Not a step's run, or back to the queue: the workflow has nothing to decide yet.
            _ => return self.store.finish_attempt(&finish).await,
        };
        let (recorded, advanced) = self.step_run_ended(workflow_run, run, finish).await;
        if !advanced {
            self.step_runs_changed();
        }
        recorded
    }

    /// What the end of an attempt does to its run, decided the same way wherever the attempt
    /// ran (on this node, or on a worker): the attempt's status, its exit code, its error and
    /// outputs redacted with `redactor`, and whether and when the run is tried again. A retry
    /// follows the task's policy (attempts left, its delay doubling up to
    /// `runs.max_retry_delay`); exit code 78 and a cancel requested are never retried; an
    /// interrupted attempt (Agent OS or the worker was stopping) is retried at once and does
    /// not use up an attempt. Also says whether the run goes back to the queue.
    pub(crate) fn finish_of(
        &self,
        run: &RunRecord,
        report: AttemptReport,
        redactor: &Redactor,
        now: i64,
    ) -> (FinishAttempt, bool) {
        let AttemptReport { end, exit_code, interrupted, outputs } = report;
        let no_retry = exit_code == Some(i64::from(EXIT_NO_RETRY));
        let retry =
            end.retryable() && !no_retry && (run.attempt < run.max_attempts || interrupted) && !run.cancel_requested;
        let error = match &end {
            AttemptEnd::Succeeded => None,
            AttemptEnd::Failed { reason, .. } => Some(redactor.redact(reason)),
            AttemptEnd::TimedOut => Some("timed out".into()),
            AttemptEnd::Cancelled => Some("cancelled".into()),
            AttemptEnd::Lost => Some("lost".into()),
        };
        let retry_at = retry.then(|| {
            if interrupted {
                return now;
            }
            let project = self.projects.read().ok().and_then(|c| c.get(&run.project).cloned());
            let base = project
                .and_then(|p| p.manifest.task(&run.task).map(|t| t.retry_delay))
                .unwrap_or(agent_os_core::manifest::DEFAULT_RETRY_DELAY);
            now + retry_delay(base, self.cfg().max_retry_delay, run.attempt as u32 + 1, random_fraction()).as_millis()
                as i64
        });
        // Outputs count only for a success, and are the project's text like its log.
        let outputs = match end {
            AttemptEnd::Succeeded => outputs.map(|v| redactor.redact_json(v).to_string()),
            _ => None,
        };
        let finish = FinishAttempt {
            run_id: run.id.clone(),
            attempt: run.attempt,
            attempt_status: end.status(),
            retry_at,
            exit_code,
            error,
            outputs,
            now,
            extra_attempt: interrupted && retry && run.attempt >= run.max_attempts,
        };
        (finish, retry)
    }

    /// Polls the store for a cancel requested through another node.
    async fn watch_cancel(self: Arc<Self>, run_id: String) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(Some(run)) = self.store.get_run(&run_id).await
                && run.cancel_requested
            {
                if let Ok(running) = self.running.lock()
                    && let Some(stop) = running.get(&run_id)
                {
                    stop.send_replace(Some(Stop::Cancel));
                }
                return;
            }
        }
    }

    /// Runs one attempt and says how it ended, with the outputs of a success.
    async fn attempt(
        self: &Arc<Self>,
        run: &RunRecord,
        token: &str,
        stop: watch::Receiver<Option<Stop>>,
    ) -> (AttemptEnd, Option<Value>) {
        let fail = |reason: String| (AttemptEnd::Failed { reason, retryable: false }, None);
        let project = match self.project(&run.project).await {
            Ok(p) if p.record.id == run.project_id => p,
            Ok(_) | Err(EngineError::NotFound(_)) => {
                return fail(format!("project {:?} is no longer registered", run.project));
            }
            Err(e) => {
                return (
                    AttemptEnd::Failed {
                        reason: format!("could not load project {:?}: {e}", run.project),
                        retryable: true,
                    },
                    None,
                );
            }
        };
        let Some(task) = project.manifest.task(&run.task).cloned() else {
            return fail(format!("project {:?} no longer declares task {:?}", run.project, run.task));
        };
        let timeout = task.timeout.unwrap_or(self.cfg().default_timeout);
        let grace = task.kill_grace.unwrap_or(self.cfg().kill_grace);

        // One redactor for everything the attempt produces: its log, its outputs and (in
        // `execute`) its error.
        let redactor = Redactor::new([token.to_string()]);
        let (sink, lines) = mpsc::unbounded_channel();
        let writer = self.tasks.spawn(self.clone().log_writer(run.id.clone(), lines, redactor.clone()));
        let input: Value = serde_json::from_str(&run.input).unwrap_or_else(|_| json!({}));
        if run.attempt > 1 {
            let _ = sink.send((Stream::System, format!("attempt {} of {}\n", run.attempt, run.max_attempts)));
        }

        let result = match &project.manifest.transport {
            Transport::Command => {
                let (Some(root), Some(command)) = (project.root(), task.run.as_ref()) else {
                    drop(sink);
                    let _ = writer.await;
                    return fail("the task has nothing to run".into());
                };
                let output_path =
                    self.cfg().runtime_dir.join("outputs").join(format!("{}-{}.json", run.id, run.attempt));
                let (store, tasks) = (self.store.clone(), self.tasks.clone());
                let (run_id, attempt) = (run.id.clone(), run.attempt);
                let spec = CommandAttempt {
                    root,
                    command,
                    input: &input,
                    vars: AttemptVars {
                        url: &self.cfg().public_url,
                        project: &run.project,
                        task: &run.task,
                        run_id: &run.id,
                        attempt: run.attempt,
                        token,
                    },
                    output_path,
                    timeout,
                    kill_grace: grace,
                    max_output_bytes: self.cfg().max_output_bytes,
                };
                let done = run_command(spec, sink.clone(), stop.clone(), async move |pid, start| {
                    tracing::trace!(target: "timeline", run = %run_id, "spawned");
                    // Recorded for crash recovery, off the task's critical path: if it lands
                    // after the attempt ended it only annotates a finished attempt.
                    tasks.spawn(async move {
                        if let Err(e) = store.set_attempt_process(&run_id, attempt, pid, start).await {
                            tracing::warn!(error = %e, "could not record the task's process");
                        }
                    });
                })
                .await;
                tracing::trace!(target: "timeline", run = %run.id, "exited");
                (done.end, done.outputs)
            }
            Transport::Http { url } => {
                let body = json!({"protocol": PROTOCOL, "project": run.project, "task": run.task, "run_id": run.id, "attempt": run.attempt, "input": input});
                let Some(keys) = self.signing_keys(&project).await else {
                    drop(sink);
                    let _ = writer.await;
                    return fail("the project has no signing secret; remove it and add it again".into());
                };
                let mut stop_watch = stop.clone();
                let attempt_key = format!("{}.{}", run.id, run.attempt);
                let call = self.http.run_task(url, &keys, &run.task, &body, &attempt_key, timeout);
                tokio::select! {
                    answer = call => match answer {
                        Ok(a) => {
                            if let Some(log) = &a.log {
                                for line in log.split_inclusive('\n') {
                                    let _ = sink.send((Stream::Stdout, line.to_string()));
                                }
                            }
                            // Anything but `succeeded` is a failure, as the protocol says.
                            if a.status.parse() == Ok(RunStatus::Succeeded) {
                                match a.outputs {
                                    None | Some(Value::Null) => (AttemptEnd::Succeeded, None),
                                    Some(v @ Value::Object(_)) => (AttemptEnd::Succeeded, Some(v)),
                                    Some(_) => fail("the plugin's outputs must be a JSON object".into()),
                                }
                            } else {
                                let reason = a.error.unwrap_or_else(|| format!("the plugin reported status {:?}", a.status));
                                (AttemptEnd::Failed { reason, retryable: a.retryable.unwrap_or(true) }, None)
                            }
                        }
                        Err(e) => (AttemptEnd::Failed { reason: e.message, retryable: e.retryable }, None),
                    },
                    _ = async { let _ = stop_watch.wait_for(Option::is_some).await; } => match *stop.borrow() {
                        Some(Stop::Interrupt) => (AttemptEnd::Failed { reason: INTERRUPTED.into(), retryable: true }, None),
                        _ => (AttemptEnd::Cancelled, None),
                    },
                }
            }
        };
        drop(sink);
        let _ = writer.await;
        let (end, outputs) = result;
        (end, outputs.map(|v| redactor.redact_json(v)))
    }

    /// Collects a run's output lines, redacts them, and stores them in batches.
    async fn log_writer(
        self: Arc<Self>,
        run_id: String,
        mut lines: mpsc::UnboundedReceiver<(Stream, String)>,
        redactor: Redactor,
    ) {
        const BATCH_BYTES: usize = 64 * 1024;
        let mut batch: Vec<NewLogChunk> = Vec::new();
        let mut size = 0;
        loop {
            let next = if batch.is_empty() {
                lines.recv().await
            } else {
                match tokio::time::timeout(Duration::from_millis(50), lines.recv()).await {
                    Ok(line) => line,
                    Err(_) => {
                        self.flush_log(&run_id, &mut batch).await;
                        size = 0;
                        continue;
                    }
                }
            };
            let Some((stream, line)) = next else { break };
            let data = redactor.redact(&line);
            size += data.len();
            match batch.last_mut() {
                Some(last) if last.stream == stream && last.data.len() < BATCH_BYTES => last.data.push_str(&data),
                _ => batch.push(NewLogChunk { stream, at: self.now(), data }),
            }
            if size >= BATCH_BYTES {
                self.flush_log(&run_id, &mut batch).await;
                size = 0;
            }
        }
        self.flush_log(&run_id, &mut batch).await;
    }

    async fn flush_log(&self, run_id: &str, batch: &mut Vec<NewLogChunk>) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.store.append_log(run_id, batch, self.cfg().log_max_bytes).await {
            tracing::warn!(run = %run_id, error = %e, "could not store log lines");
        }
        batch.clear();
        self.logs_changed.send_modify(|v| *v += 1);
    }

    // Liveness and recovery --------------------------------------------------------------

    async fn heartbeat(&self) -> Result<(), EngineError> {
        let now = self.now();
        self.store
            .upsert_node(&NodeRecord {
                id: self.cfg().node_id.clone(),
                hostname: self.hostname.clone(),
                pid: i64::from(std::process::id()),
                started_at: now,
                heartbeat_at: now,
            })
            .await?;
        Ok(())
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.cfg().heartbeat_every) => {}
                _ = stopping.changed() => return,
            }
            if let Err(e) = self.heartbeat().await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
            if self.store.backend() == agent_os_store::Backend::Postgres {
                // Other nodes may have died; their work is ours to recover.
                if let Err(e) = self.recover().await {
                    tracing::warn!(error = %e, "recovery pass failed");
                }
            }
            // Workers that went silent have lost what they ran; projects without one are unwell.
            if let Err(e) = self.judge_workers().await {
                tracing::warn!(error = %e, "the pass over workers failed");
            }
        }
    }

    /// Whether the node that ran an attempt is gone.
    async fn node_is_dead(&self, node_id: &str) -> Result<bool, EngineError> {
        if node_id == self.cfg().node_id {
            return Ok(false);
        }
        if self.store.backend() == agent_os_store::Backend::Sqlite {
            // One server per SQLite database (the home is locked): any other node is gone.
            return Ok(true);
        }
        let Some(node) = self.store.get_node(node_id).await? else { return Ok(true) };
        if node.hostname == self.hostname {
            // Same machine: a pid that is gone (or is now this very process) settles it at once.
            // SAFETY: signal 0 only checks that the pid exists.
            let alive = unsafe { libc::kill(node.pid as libc::pid_t, 0) } == 0;
            if !alive || node.pid == i64::from(std::process::id()) {
                return Ok(true);
            }
        }
        // Otherwise (another host, or a pid reused by some other process) the heartbeat decides.
        Ok(self.now() - node.heartbeat_at > self.cfg().node_dead_after.as_millis() as i64)
    }

    /// Ends the attempts of dead nodes as lost, killing their process groups when they run
    /// on this machine, and retries them per their policy.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        let mut recovered = 0;
        for (run, attempt) in self.store.running_attempts().await? {
            if !self.node_is_dead(&attempt.node_id).await? {
                continue;
            }
            let node = self.store.get_node(&attempt.node_id).await?;
            let local = node.as_ref().is_none_or(|n| n.hostname == self.hostname);
            let mut note = format!("lost: the Agent OS process running attempt {} stopped", attempt.attempt);
            if let (true, Some(pid)) = (local, attempt.pid)
                && is_our_group(pid, attempt.proc_start)
            {
                signal_group(pid, SIGTERM);
                tokio::time::sleep(Duration::from_millis(500)).await;
                if crate::process::group_alive(pid) {
                    signal_group(pid, SIGKILL);
                    let deadline = Instant::now() + Duration::from_secs(2);
                    while crate::process::group_alive(pid) && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                note.push_str("; its process group was still running and has been killed");
            }
            match self.end_lost(&run, attempt.attempt, note).await {
                Ok(_) => recovered += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if recovered > 0 {
            tracing::info!(recovered, "ended attempts lost by stopped Agent OS processes");
            self.runs_changed.send_modify(|v| *v += 1);
            self.wake.notify_one();
        }
        Ok(recovered)
    }

    /// Ends an attempt that will not end by itself as failed, with `note` in its log and as
    /// its error; the run is retried at once if it has attempts left.
    pub(crate) async fn end_lost(&self, run: &RunRecord, attempt: i64, note: String) -> Result<RunRecord, StoreError> {
        let now = self.now();
        let _ = self
            .store
            .append_log(
                &run.id,
                &[NewLogChunk { stream: LogStream::System, at: now, data: format!("{note}\n") }],
                self.cfg().log_max_bytes,
            )
            .await;
        let retry = run.attempt < run.max_attempts && !run.cancel_requested;
        let finish = FinishAttempt {
            run_id: run.id.clone(),
            attempt,
            attempt_status: RunStatus::Failed,
            retry_at: retry.then_some(now),
            extra_attempt: false,
            exit_code: None,
            error: Some(note),
            outputs: None,
            now,
        };
        let ended = self.store.finish_attempt(&finish).await;
        if workflows::step_run_of(&run.trigger).is_some() {
            self.step_runs_changed();
        }
        ended
    }

    /// The task executing `run` panicked: said loudly, and the attempt is ended (retried if it
    /// has attempts left) rather than left running until the next start.
    async fn execute_died(&self, run: &RunRecord, e: tokio::task::JoinError) {
        let why = if e.is_panic() { panic_message(e.into_panic()) } else { "it was cancelled".into() };
        tracing::error!(run = %run.id, attempt = run.attempt, panic = %why, "the task executing a run died");
        if let Ok(mut running) = self.running.lock() {
            running.remove(&run.id);
        }
        let note = format!("lost: Agent OS failed while running attempt {}", run.attempt);
        if let Err(e) = self.end_lost(run, run.attempt, note).await
            && !matches!(e, StoreError::Conflict(_))
        {
            tracing::warn!(run = %run.id, error = %e, "could not record the end of an attempt");
        }
        self.runs_changed.send_modify(|v| *v += 1);
    }

    // Probes -----------------------------------------------------------------------------

    fn probe_result(&self, p: &LoadedProject, kind: ProbeKind, started: Instant) -> ProbeResult {
        let now = self.now();
        ProbeResult {
            id: new_id(),
            project_id: p.record.id.clone(),
            kind,
            at: now,
            since: now,
            repeats: 1,
            ok: true,
            duration_ms: started.elapsed().as_millis() as i64,
            status: None,
            message: None,
            body: None,
            error: None,
        }
    }

    async fn probe_loop(self: Arc<Self>) {
        let mut next: HashMap<(String, ProbeKind), i64> = HashMap::new();
        let mut stopping = self.stopping.subscribe();
        // The probes in flight; those still going when the loop stops are dropped with it.
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            while let Some(done) = in_flight.try_join_next() {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(panic = %panic_message(e.into_panic()), "a probe panicked");
                }
            }
            if let Ok(projects) = self.projects().await {
                let now = self.now();
                // A worker project's probes run on its workers.
                for p in projects.into_iter().filter(|p| p.record.transport != ProjectTransport::Worker) {
                    let kinds = [
                        (ProbeKind::Status, &p.manifest.status),
                        (ProbeKind::Cost, &p.manifest.cost),
                        (ProbeKind::Schedule, &p.manifest.schedule_probe),
                    ];
                    let health_every = p.manifest.health.as_ref().map(|h| h.every);
                    let probes = kinds.into_iter().map(|(kind, probe)| (kind, probe.as_ref().map(|p| p.every)));
                    for (kind, every) in probes.chain([(ProbeKind::Health, health_every)]) {
                        let Some(every) = every else { continue };
                        let key = (p.record.id.clone(), kind);
                        // The schedule probe was just asked at registration; the others start now.
                        let first = if kind == ProbeKind::Schedule { now + every.as_millis() as i64 } else { now };
                        let due = *next.entry(key.clone()).or_insert(first);
                        if now < due {
                            continue;
                        }
                        next.insert(key.clone(), now + every.as_millis() as i64);
                        let fresh =
                            self.probing.lock().map(|mut s| s.insert((p.record.id.clone(), kind))).unwrap_or(false);
                        if fresh {
                            let engine = self.clone();
                            let p = p.clone();
                            in_flight.spawn(async move {
                                // Frees the probe's slot even if the probe task panics.
                                struct Slot(Arc<Engine>, (String, ProbeKind));
                                impl Drop for Slot {
                                    fn drop(&mut self) {
                                        if let Ok(mut s) = self.0.probing.lock() {
                                            s.remove(&self.1);
                                        }
                                    }
                                }
                                let _slot = Slot(engine.clone(), (p.record.id.clone(), kind));
                                match kind {
                                    ProbeKind::Schedule => engine.refresh_plugin_schedules(&p).await,
                                    ProbeKind::Health => {
                                        if let Some(h) = &p.manifest.health {
                                            engine.run_health_check(&p, h).await;
                                        }
                                    }
                                    ProbeKind::Status | ProbeKind::Cost => engine.run_probe(&p, kind).await,
                                }
                            });
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stopping.changed() => return,
            }
        }
    }

    /// Asks the status or cost probe of a project and stores what it said (failures included).
    pub async fn run_probe(&self, p: &LoadedProject, kind: ProbeKind) {
        let status = kind == ProbeKind::Status;
        let probe = if status { p.manifest.status.clone() } else { p.manifest.cost.clone() };
        let Some(probe) = probe else { return };
        let started = Instant::now();
        let (op, since) = match status {
            true => ("get_status", None),
            false => {
                ("report_cost", self.store.get_project(&p.record.name).await.ok().flatten().and_then(|r| r.cost_cursor))
            }
        };
        let previous = self.previous_signing_secret(p).await;
        let answer =
            plugin::ask_probe(&self.http, p, op, &probe, &self.cfg().public_url, since.as_deref(), previous).await;
        let mut result = self.probe_result(p, kind, started);
        result.duration_ms = started.elapsed().as_millis() as i64;
        self.take_probe(p, kind, since.as_deref(), answer.map_err(|e| e.message), result).await;
    }

    /// Stores what a status or cost probe answered (here or on a worker), failures included:
    /// a status goes to the project's health, costs to the ledger (and the cursor moves).
    pub(crate) async fn take_probe(
        &self,
        p: &LoadedProject,
        kind: ProbeKind,
        since: Option<&str>,
        answer: Result<Value, String>,
        mut result: ProbeResult,
    ) {
        let status = kind == ProbeKind::Status;
        match answer {
            Err(e) => {
                result.ok = false;
                result.error = Some(redact_shapes(&e));
            }
            Ok(v) => {
                // A project's answer is untrusted text like task output: redact, then bound.
                result.body = Some(truncate_chars(&redact_shapes(&v.to_string()), 64 * 1024));
                let outcome =
                    if status { self.take_status(&mut result, v) } else { self.take_costs(p, since, v).await };
                if let Err(e) = outcome {
                    result.ok = false;
                    result.error = Some(redact_shapes(&e));
                }
            }
        }
        if let Err(e) = self.store.insert_probe_result(&result).await {
            tracing::warn!(project = %p.record.name, error = %e, "could not store a probe result");
        }
        if status {
            self.probes_changed(p).await;
        }
    }

    fn take_status(&self, result: &mut ProbeResult, v: Value) -> Result<(), String> {
        let answer: plugin::StatusAnswer =
            serde_json::from_value(v).map_err(|e| format!("status answer does not follow the protocol: {e}"))?;
        let status: ProbeStatus = answer
            .status
            .parse()
            .map_err(|_| format!("status must be ok, degraded or down, not {:?}", answer.status))?;
        result.status = Some(status);
        result.message = answer.message.map(|m| truncate_chars(&redact_shapes(&m), 500));
        Ok(())
    }

    async fn take_costs(&self, p: &LoadedProject, since: Option<&str>, v: Value) -> Result<(), String> {
        let answer: plugin::CostAnswer =
            serde_json::from_value(v).map_err(|e| format!("cost answer does not follow the protocol: {e}"))?;
        if answer.cursor.as_ref().is_some_and(|c| c.len() > 1024) {
            return Err("the cursor is longer than 1024 characters".into());
        }
        let ctx = CostContext {
            project_id: &p.record.id,
            project: &p.record.name,
            run_id: None,
            source: CostSource::Probe,
            now: self.now(),
            prices: &self.cfg().prices,
        };
        let mut records = Vec::with_capacity(answer.records.len());
        let mut runs = ProjectRuns::new(&p.record.name, None);
        for (i, input) in answer.records.iter().enumerate() {
            let mut input = input.clone();
            if input.idempotency_key.is_none() {
                // Without a key, the same record reported twice must still count once.
                let canonical = json!([
                    since,
                    i,
                    input.service,
                    input.key_name,
                    input.amount,
                    input.currency,
                    input.model,
                    input.at,
                    input.tokens_in,
                    input.tokens_out
                ]);
                input.idempotency_key = Some(format!("probe:{}", crate::secrets::hash_token(&canonical.to_string())));
            }
            let mut record =
                validate(&input, &format!("records[{i}]."), &ctx).map_err(|e| format!("{}: {}", e.field, e.message))?;
            // A run the project's log names is kept when it is the project's; the record
            // counts either way.
            if let Some(id) = &record.run_id
                && !runs.holds(&*self.store, id).await.map_err(|e| e.to_string())?
            {
                record.run_id = None;
            }
            records.push(record);
        }
        self.store.insert_costs(&records).await.map_err(|e| e.to_string())?;
        self.warn_unpriced(&p.record.name, &records).await.map_err(|e| e.to_string())?;
        self.check_budgets(&p.record.name).await.map_err(|e| e.to_string())?;
        // No cursor in the answer keeps the previous one.
        if let Some(cursor) = answer.cursor.as_deref().filter(|c| Some(*c) != since) {
            self.store.set_cost_cursor(&p.record.id, Some(cursor)).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Which run ids are runs of one project, each looked up once per batch of cost records (a
/// task's batch names its own run in every record).
struct ProjectRuns<'a> {
    project: &'a str,
    known: std::collections::HashMap<String, bool>,
}

impl<'a> ProjectRuns<'a> {
    /// `own`: the run the caller's run token is for, known to be the project's.
    fn new(project: &'a str, own: Option<&str>) -> Self {
        ProjectRuns { project, known: own.map(|r| (r.to_string(), true)).into_iter().collect() }
    }

    async fn holds(&mut self, store: &dyn Store, id: &str) -> Result<bool, EngineError> {
        if let Some(known) = self.known.get(id) {
            return Ok(*known);
        }
        let holds = store.get_run(id).await?.is_some_and(|r| r.project == self.project);
        self.known.insert(id.to_string(), holds);
        Ok(holds)
    }
}

/// What storing a batch of cost records did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    /// Records stored now.
    pub accepted: i64,
    /// Records whose idempotency key was already stored.
    pub duplicates: i64,
    /// Records of the batch whose model has no price.
    pub unpriced: i64,
}

/// A run of `task` as its manifest says (retries, resources, priority), due at `now`.
pub(crate) fn task_run(
    p: &LoadedProject,
    task: &agent_os_core::manifest::Task,
    input: String,
    trigger: &str,
    now: i64,
) -> NewRun {
    NewRun {
        id: new_id(),
        project_id: p.record.id.clone(),
        project: p.record.name.clone(),
        task: task.name.clone(),
        input,
        max_attempts: i64::from(task.retries) + 1,
        trigger: trigger.into(),
        concurrency_key: None,
        scheduled_for: None,
        resources: task.resources.clone(),
        priority: task.priority,
        now,
    }
}

/// `n` fresh run tokens: the plain values for the tasks, and the records the claim stores (each
/// acts only for its run's project and is revoked when the attempt ends).
fn run_tokens(n: usize, now: i64) -> (Vec<String>, Vec<TokenRecord>) {
    (0..n)
        .map(|_| {
            let (token, hash) = new_token(TokenKind::Run);
            (token, token_record(TokenKind::Run, "run token", hash, None, now))
        })
        .unzip()
}

impl Engine {
    /// The schedules a project's plugin reported, as stored.
    pub(crate) async fn plugin_schedules(&self, project: &str) -> Result<Vec<NewSchedule>, EngineError> {
        Ok(self
            .store
            .list_schedules(Some(project))
            .await?
            .into_iter()
            .filter(|s| s.source == ScheduleSource::Plugin)
            .map(|s| NewSchedule {
                task: s.task,
                cron: s.cron,
                timezone: s.timezone,
                managed_by: s.managed_by,
                description: s.description,
                source: s.source,
                check_slug: s.check_slug,
            })
            .collect())
    }
}

fn manifest_schedules(m: &Manifest) -> Vec<NewSchedule> {
    m.schedules
        .iter()
        .map(|s| NewSchedule {
            task: s.task.clone(),
            cron: s.cron.source().to_string(),
            timezone: s.timezone.name().to_string(),
            managed_by: s.managed_by,
            description: s.description.clone(),
            source: ScheduleSource::Manifest,
            check_slug: s.check.clone(),
        })
        .collect()
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate_chars(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn exit_code_of(reason: &str) -> Option<i64> {
    reason.strip_prefix("exit status ").and_then(|r| r.split_whitespace().next()).and_then(|c| c.parse().ok())
}
