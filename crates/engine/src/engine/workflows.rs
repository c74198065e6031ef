//! Workflows, executed durably. The workflow files in the home's `workflows/` directory are
//! loaded (and reloaded) into a registry; events are routed to the workflows they trigger; and
//! `workflow_loop` advances every active run from what the store says: each step's state is a
//! row, a step's task run is queued in the same transaction that records it on the step, and
//! every decision is made again from the rows after a restart. So a completed step never runs
//! again, a running step's task run is the one it started (retried by the runner's own
//! policy), and waits and timers resume where they were.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agent_os_core::alerting::NotificationSource;
use agent_os_core::expr::{Expr, render_value};
use agent_os_core::id::new_id;
use agent_os_core::manifest::{CatchUp, Overlap};
use agent_os_core::redact::Redactor;
use agent_os_core::run::RunStatus;
use agent_os_core::workflow::{
    self, Action, OnLimit, StaticCatalog, Step, StepStatus, Trigger, TriggerKind, Wait, Workflow, WorkflowRunStatus,
};
use agent_os_store::{
    EventRecord, FinishAttempt, NewEvent, NewRun, RunRecord, StepCommit, StepRecord, StoreError, WorkflowRunRecord,
};
use serde_json::{Map, Value, json};

use super::notify::NotifyInput;
use super::{Engine, EngineError};

pub mod approvals;

/// How a step skipped because a step before it failed says so (and passes it on).
const SKIPPED_BY_FAILURE: &str = "skipped because ";

/// The whole step, as opposed to one item of a for_each.
const WHOLE: i64 = -1;
/// The longest the loop sleeps without looking again.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The end of a step's task run, waiting to be stored with its workflow run's next pass.
struct EndedRun {
    run: RunRecord,
    finish: FinishAttempt,
    /// Where the pass that stores it says how that went (unless it is the caller's own).
    tell: tokio::sync::oneshot::Sender<(Result<RunRecord, StoreError>, bool)>,
}

/// What one pass over a workflow run has decided and not stored yet, and what it knows without
/// reading it: [`Engine::flush`] stores it in one transaction. Everything in it but `finish`
/// is decided again from the rows if it is lost, so a crash before the flush repeats nothing.
#[derive(Default)]
struct Pass {
    /// The ends of attempts of step task runs that ended on this node (stored first).
    finish: Vec<FinishAttempt>,
    /// Those runs as they stand once their ends are stored; not empty in a pass that a task
    /// run's end started.
    ended: Vec<RunRecord>,
    /// Task runs to queue, each named by its step's row in `steps`.
    runs: Vec<NewRun>,
    /// Step rows to store, the last state of each.
    steps: Vec<StepRecord>,
}

impl Pass {
    fn put(&mut self, s: &StepRecord) {
        match self.steps.iter_mut().find(|x| x.step_id == s.step_id && x.item == s.item) {
            Some(x) => *x = s.clone(),
            None => self.steps.push(s.clone()),
        }
    }
}

/// A workflow file as loaded.
#[derive(Debug)]
pub struct LoadedWorkflow {
    pub def: Workflow,
    /// The file's text: a run keeps the text it started with.
    pub source: String,
    pub path: PathBuf,
}

/// The workflows of this node, by name.
#[derive(Default)]
pub struct Registry {
    by_name: RwLock<BTreeMap<String, Arc<LoadedWorkflow>>>,
    /// Parsed definitions of active runs, by run id.
    plans: RwLock<HashMap<String, Arc<Workflow>>>,
    /// The last slot each scheduled workflow fired (ms), by workflow and cron.
    slots: std::sync::Mutex<HashMap<(String, String), i64>>,
    /// Held while a run is advanced or cancelled.
    advancing: tokio::sync::Mutex<()>,
    /// Counts the workflow runs this node has ended, for those who wait for one.
    runs_ended: tokio::sync::watch::Sender<u64>,
    /// Ends of step task runs waiting for their workflow run's next pass, by workflow run.
    ended: std::sync::Mutex<HashMap<String, Vec<EndedRun>>>,
    /// Rung when a step's task run ended without advancing its workflow run (on a worker, by a
    /// cancel, as lost), and when a run advanced outside the loop has a timer: the loop looks.
    step_runs: tokio::sync::Notify,
}

/// Dies on the spot, as a kill -9 would leave it, when `AGENT_OS_TEST_CRASH_AT` names this
/// point (feature `testing` only: the binary's crash tests stop it between a step's hand-off
/// decisions and their commit, and between the commit and the next step's start).
fn crash_point(_name: &str) {
    #[cfg(feature = "testing")]
    if std::env::var("AGENT_OS_TEST_CRASH_AT").is_ok_and(|at| at == _name) {
        std::process::abort();
    }
}

/// The workflow run a task run was started for, from its trigger (`workflow:RUN/STEP…`).
pub(super) fn step_run_of(trigger: &str) -> Option<&str> {
    trigger.strip_prefix("workflow:")?.split_once('/').map(|(run, _)| run)
}

/// Most missed slots `catch_up: all` fires after downtime (as for project schedules).
const MAX_CATCH_UP: usize = 100;

/// A workflow file that could not be loaded, with every error in it.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub path: PathBuf,
    pub message: String,
}

/// An event to store, and where to say what became of it.
pub(crate) type EventJob =
    ((NewEvent, Option<String>), tokio::sync::oneshot::Sender<Result<(EventRecord, bool), String>>);

/// Most events one transaction carries.
const EVENT_GROUP: usize = 256;

/// How a run is started.
#[derive(Debug, Clone)]
pub struct StartWorkflow {
    pub trigger: TriggerKind,
    /// One run per key and workflow (an event id, a webhook id, a parent step).
    pub trigger_key: Option<String>,
    pub event: Option<Value>,
    pub inputs: Value,
    pub parent: Option<(String, String)>,
}

fn event_json(e: &EventRecord) -> Value {
    json!({
        "id": e.id,
        "type": e.kind,
        "project": e.project,
        "subject": e.subject,
        "data": serde_json::from_str::<Value>(&e.data).unwrap_or(Value::Null),
        "at": jiff::Timestamp::from_millisecond(e.at).map(|t| t.to_string()).unwrap_or_default(),
    })
}

impl Engine {
    async fn catalog(&self, workflow_names: Vec<String>) -> StaticCatalog {
        let mut tasks = BTreeMap::new();
        if let Ok(projects) = self.projects().await {
            for p in projects {
                tasks.insert(p.record.name.clone(), p.manifest.tasks.keys().cloned().collect());
            }
        }
        StaticCatalog { tasks, workflows: workflow_names }
    }

    /// Reads every `*.yaml` in the workflows directory. Valid files replace the registry; a file
    /// with errors is reported and keeps the previous version of its workflow (if any) loaded.
    /// Runs already started keep the definition they started with.
    pub async fn load_workflows(&self) -> Result<Vec<LoadError>, EngineError> {
        let Some(dir) = self.cfg().workflows_dir.clone() else { return Ok(Vec::new()) };
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    match std::fs::read_to_string(&path) {
                        Ok(text) => files.push((path, text)),
                        Err(err) => tracing::warn!(path = %path.display(), error = %err, "workflow file not read"),
                    }
                }
            }
        }
        files.sort();
        let names: Vec<String> =
            files.iter().filter_map(|(p, _)| p.file_stem().map(|s| s.to_string_lossy().into_owned())).collect();
        let catalog = self.catalog(names).await;
        let mut errors = Vec::new();
        let mut loaded = BTreeMap::new();
        for (path, text) in files {
            let file = path.display().to_string();
            match workflow::parse(&file, &text, &catalog) {
                Ok(def) => {
                    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                    if def.name != stem {
                        errors.push(LoadError {
                            path: path.clone(),
                            message: format!("{file}: declares name {:?}; name the file {}.yaml", def.name, def.name),
                        });
                        continue;
                    }
                    loaded.insert(def.name.clone(), Arc::new(LoadedWorkflow { def, source: text, path }));
                }
                Err(e) => errors.push(LoadError { path, message: e.to_string() }),
            }
        }
        if let Ok(mut reg) = self.workflows.by_name.write() {
            for e in &errors {
                // A broken edit keeps the last good version running.
                let stem = e.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                if let Some(old) = reg.get(&stem) {
                    loaded.entry(stem).or_insert_with(|| old.clone());
                }
            }
            *reg = loaded;
        }
        Ok(errors)
    }

    pub fn workflow_list(&self) -> Vec<Arc<LoadedWorkflow>> {
        self.workflows.by_name.read().map(|r| r.values().cloned().collect()).unwrap_or_default()
    }

    pub fn workflow(&self, name: &str) -> Result<Arc<LoadedWorkflow>, EngineError> {
        let reg = self.workflows.by_name.read().map_err(|_| EngineError::Unavailable("registry poisoned".into()))?;
        reg.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = reg.keys().map(String::as_str).collect();
            let hint = agent_os_core::manifest::suggest(name, &known)
                .map(|k| format!("; did you mean {k:?}?"))
                .unwrap_or_else(|| {
                    if known.is_empty() { String::new() } else { format!("; known: {}", known.join(", ")) }
                });
            EngineError::NotFound(format!("no workflow {name:?}{hint}"))
        })
    }

    /// Validates one file against the registered projects and the loaded workflows.
    pub async fn validate_workflow(&self, file: &str, text: &str) -> Result<Workflow, String> {
        let mut names: Vec<String> = self.workflow_list().iter().map(|w| w.def.name.clone()).collect();
        if let Some(stem) = Path::new(file).file_stem() {
            names.push(stem.to_string_lossy().into_owned());
        }
        let catalog = self.catalog(names).await;
        workflow::parse(file, text, &catalog).map_err(|e| e.to_string())
    }

    /// Stores an event (once per idempotency key) and wakes the workflow router.
    pub async fn emit_event(
        &self,
        project: Option<&str>,
        kind: &str,
        data: Value,
        idempotency_key: Option<String>,
    ) -> Result<(EventRecord, bool), EngineError> {
        let invalid = |field: &str, message: String| EngineError::Invalid { field: Some(field.into()), message };
        if kind.len() > 128
            || kind.split('.').count() < 2
            || !kind.split('.').all(|p| {
                p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            })
        {
            return Err(invalid(
                "type",
                format!("{kind:?} is not an event type; dotted lowercase words, e.g. trading.volatility_spike"),
            ));
        }
        if !data.is_object() {
            return Err(invalid("data", "data must be a JSON object".into()));
        }
        // Event data is stored, shown and handed to workflows: redacted like task output.
        let text = Redactor::default().redact_json(data).to_string();
        if text.len() > 256 * 1024 {
            return Err(invalid("data", "at most 256 KiB".into()));
        }
        // The API's key is up to 100 characters (400 bytes) behind its caller's prefix
        // (`project:NAME:`, at most 72 bytes); this bound is only a backstop.
        if idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 512) {
            return Err(invalid("idempotency_key", "1 to 512 bytes".into()));
        }
        let e = NewEvent {
            id: new_id(),
            kind: kind.into(),
            project: project.map(str::to_string),
            subject: None,
            data: text,
            at: self.now(),
        };
        let (done, stored) = tokio::sync::oneshot::channel();
        self.event_writer
            .send(((e, idempotency_key), done))
            .await
            .map_err(|_| EngineError::Unavailable("Agent OS is shutting down; send the event again".into()))?;
        let stored = stored
            .await
            .map_err(|_| EngineError::Unavailable("the event was not stored; send it again".into()))?
            .map_err(EngineError::Unavailable)?;
        self.workflows_changed.notify_one();
        Ok(stored)
    }

    /// Writes events as they come, every event waiting at that moment in one transaction
    /// (group commit); each is answered only after its transaction commits. An event the
    /// database refuses fails alone (`group::write_group`).
    pub(super) async fn event_loop(
        self: Arc<Self>,
        jobs: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<EventJob>>>,
    ) {
        // The queue outlives the loop: a loop started again after a panic goes on with it.
        let mut jobs = jobs.lock().await;
        let closing = self.loops.closing().clone();
        while let Some(batch) = super::group::next_group(&mut jobs, &closing, EVENT_GROUP).await {
            let events: Vec<(NewEvent, Option<String>)> = batch.iter().map(|(e, _)| e.clone()).collect();
            let results = super::group::write_group(&events, |g| self.store.emit_events(g), "events").await;
            if results.iter().any(Result::is_ok) {
                self.touch();
            }
            for ((_, reply), result) in batch.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
    }

    /// Wakes the workflow loop to look at every active run (a step's task run ended where no
    /// pass followed it).
    pub(super) fn step_runs_changed(&self) {
        self.workflows.step_runs.notify_one();
    }

    /// Stores the end of an attempt of a step's task run together with what it decides for
    /// its workflow run, in one transaction: the step settled, the steps it unblocks started,
    /// their task runs queued and, where this node has free slots, claimed and started at
    /// once. Ends of one workflow run's task runs that arrive while it is being advanced wait
    /// and go together in the next pass (so a wide for_each pays one pass for many items).
    /// Falls back to storing each end alone if the workflow run cannot be advanced. Returns
    /// the run as stored, and whether its workflow run was advanced.
    pub(super) async fn step_run_ended(
        &self,
        workflow_run: &str,
        run: &RunRecord,
        finish: FinishAttempt,
    ) -> (Result<RunRecord, StoreError>, bool) {
        let (tell, told) = tokio::sync::oneshot::channel();
        let waiting = || self.workflows.ended.lock().unwrap_or_else(|p| p.into_inner());
        waiting().entry(workflow_run.to_string()).or_default().push(EndedRun { run: run.clone(), finish, tell });
        let turn = self.workflows.advancing.lock().await;
        let batch = waiting().remove(workflow_run).unwrap_or_default();
        if batch.is_empty() {
            // A pass that took the lock first carried this end too.
            drop(turn);
            return told.await.unwrap_or_else(|_| (Err(StoreError::NotFound(format!("run {}", run.id))), false));
        }
        let mut pass = Pass::default();
        let mut tells = Vec::with_capacity(batch.len());
        for e in batch {
            tells.push((e.run.id.clone(), e.tell));
            // The run as its end leaves it (as `finish_attempt` writes it, without a retry).
            pass.ended.push(RunRecord {
                status: e.finish.attempt_status,
                finished_at: Some(e.finish.now),
                exit_code: e.finish.exit_code,
                error: e.finish.error.clone(),
                outputs: e.finish.outputs.clone(),
                ..e.run
            });
            pass.finish.push(e.finish);
        }
        let advanced = match self.store.get_workflow_run(workflow_run).await {
            Ok(Some(w)) if !w.status.is_terminal() => match self.advance(w, &mut pass).await {
                Ok(next) => {
                    if next.is_some() {
                        // A timer the loop must keep.
                        self.step_runs_changed();
                    }
                    true
                }
                Err(e) => {
                    tracing::warn!(workflow_run, error = %e, "workflow run not advanced after its step's run ended");
                    false
                }
            },
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(workflow_run, error = %e, "workflow run not read after its step's run ended");
                false
            }
        };
        let mut results: Vec<Result<RunRecord, StoreError>> = Vec::with_capacity(tells.len());
        if pass.finish.is_empty() {
            results.extend(pass.ended.into_iter().map(Ok));
        } else {
            // Not stored with a pass: each stored alone, and the loop decides.
            for f in &pass.finish {
                results.push(self.store.finish_attempt(f).await);
            }
        }
        let advanced = advanced && pass.finish.is_empty();
        drop(turn);
        let mut own = Err(StoreError::NotFound(format!("run {}", run.id)));
        for ((id, tell), result) in tells.into_iter().zip(results) {
            if id == run.id {
                own = result;
            } else {
                let _ = tell.send((result, advanced));
            }
        }
        (own, advanced)
    }

    /// Starts a run of `name` (or finds the run its trigger key already started).
    pub async fn start_workflow(&self, name: &str, start: StartWorkflow) -> Result<WorkflowRunRecord, EngineError> {
        Ok(self.start_workflow_once(name, start).await?.0)
    }

    /// The same, saying whether the run is new (false: its trigger key had started one).
    pub async fn start_workflow_once(
        &self,
        name: &str,
        start: StartWorkflow,
    ) -> Result<(WorkflowRunRecord, bool), EngineError> {
        let w = self.workflow(name)?;
        // Typed inputs are what a person or a calling workflow gives; an event, a webhook or a
        // slot gives none, and gets the defaults.
        let given = matches!(start.trigger, TriggerKind::Manual | TriggerKind::Workflow);
        let inputs = check_inputs(&w.def, start.inputs, given)?;
        let now = self.now();
        let ctx = json!({"event": start.event.clone().unwrap_or(Value::Null), "inputs": inputs});
        let key = match &w.def.concurrency {
            Some(c) => Some(match c.key.render(&ctx) {
                Ok(Value::String(s)) => s,
                Ok(v) => v.to_string(),
                Err(e) => {
                    return Err(EngineError::Invalid { field: Some("concurrency.key".into()), message: e.to_string() });
                }
            }),
            None => None,
        };
        let record = WorkflowRunRecord {
            id: new_id(),
            workflow: name.into(),
            definition: w.source.clone(),
            status: WorkflowRunStatus::Queued,
            trigger: start.trigger,
            trigger_key: start.trigger_key,
            event: start.event.map(|e| e.to_string()),
            inputs: inputs.to_string(),
            outputs: None,
            error: None,
            concurrency_key: key,
            parent_run_id: start.parent.as_ref().map(|p| p.0.clone()),
            parent_step: start.parent.map(|p| p.1),
            created_at: now,
            started_at: None,
            finished_at: None,
            deadline_at: None,
        };
        let (run, created) = self.store.insert_workflow_run(&record).await?;
        self.touch();
        self.workflows_changed.notify_one();
        Ok((run, created))
    }

    /// Waits until a workflow run ends, or `timeout` passes; returns it either way. Woken at
    /// once by an end on this node; an end through another node is seen within a second.
    pub async fn wait_workflow_run(&self, id: &str, timeout: Duration) -> Result<WorkflowRunRecord, EngineError> {
        let mut ended = self.workflows.runs_ended.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            ended.borrow_and_update();
            let run = self
                .store
                .get_workflow_run(id)
                .await?
                .ok_or_else(|| EngineError::NotFound(format!("no workflow run {id:?}")))?;
            if run.status.is_terminal() || tokio::time::Instant::now() >= deadline || *self.stopping.borrow() {
                return Ok(run);
            }
            let wait = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
            let _ = tokio::time::timeout_at(wait, ended.changed()).await;
        }
    }

    /// Cancels a workflow run: its running task runs are cancelled, the rest does not start.
    pub async fn cancel_workflow_run(&self, id: &str) -> Result<WorkflowRunRecord, EngineError> {
        let _turn = self.workflows.advancing.lock().await;
        self.cancel_run_locked(id).await
    }

    async fn cancel_run_locked(&self, id: &str) -> Result<WorkflowRunRecord, EngineError> {
        let mut run = self
            .store
            .get_workflow_run(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("no workflow run {id:?}")))?;
        if run.status.is_terminal() {
            return Ok(run);
        }
        self.stop_steps(&run, "cancelled").await?;
        run.status = WorkflowRunStatus::Cancelled;
        run.error = Some("cancelled".into());
        run.finished_at = Some(self.now());
        self.finish_workflow_run(&run).await?;
        Ok(run)
    }

    pub(super) async fn workflow_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        let mut last_errors: Vec<String> = Vec::new();
        let mut last_load: Option<std::time::Instant> = None;
        let mut last_route = std::time::Instant::now();
        let mut woken_by_events = true;
        loop {
            // Picks up edited files (runs in progress keep their definition), and tries files
            // with errors again: a project they name may have been registered since.
            if last_load.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
                if self.workflow_files_changed() || !last_errors.is_empty() {
                    let errors: Vec<String> = match self.load_workflows().await {
                        Ok(errors) => errors.into_iter().map(|e| e.message).collect(),
                        Err(e) => vec![e.to_string()],
                    };
                    if errors != last_errors {
                        for e in &errors {
                            tracing::warn!(error = %e, "workflow not loaded");
                        }
                    }
                    last_errors = errors;
                }
                last_load = Some(std::time::Instant::now());
            }
            let mut next: Option<i64> = None;
            match self.fire_workflow_schedules().await {
                Ok(Some(at)) => next = Some(at),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "workflow schedules not fired"),
            }
            // Events posted here wake the loop; those Agent OS stores on its own (a check going
            // down) and other nodes' are found within a second.
            if (woken_by_events || last_route.elapsed() >= MAX_SLEEP)
                && let Err(e) = self.route_events().await
            {
                tracing::warn!(error = %e, "events not routed to workflows");
            }
            if woken_by_events || last_route.elapsed() >= MAX_SLEEP {
                last_route = std::time::Instant::now();
            }
            woken_by_events = false;
            match self.store.list_workflow_runs(None, true, 10_000).await {
                Ok(active) => {
                    for run in active {
                        // One run at a time, and never beside a cancel: a run ends once.
                        let _turn = self.workflows.advancing.lock().await;
                        let Ok(Some(run)) = self.store.get_workflow_run(&run.id).await else { continue };
                        if run.status.is_terminal() {
                            continue;
                        }
                        match self.advance(run, &mut Pass::default()).await {
                            Ok(Some(at)) => next = Some(next.map_or(at, |n: i64| n.min(at))),
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "workflow run not advanced"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "workflow runs not read"),
            }
            let sleep = next
                .map(|at| Duration::from_millis((at - self.now()).max(0) as u64))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.workflows.step_runs.notified() => {}
                _ = self.workflows_changed.notified() => woken_by_events = true,
                _ = stopping.changed() => return,
            }
        }
    }

    fn workflow_files_changed(&self) -> bool {
        let Some(dir) = &self.cfg().workflows_dir else { return false };
        let stamp: Vec<(PathBuf, Option<std::time::SystemTime>)> = std::fs::read_dir(dir)
            .map(|entries| {
                let mut v: Vec<_> =
                    entries.flatten().map(|e| (e.path(), e.metadata().ok().and_then(|m| m.modified().ok()))).collect();
                v.sort();
                v
            })
            .unwrap_or_default();
        let mut last = self.workflow_stamp.lock().unwrap_or_else(|p| p.into_inner());
        if *last == stamp {
            return false;
        }
        *last = stamp;
        true
    }

    /// Starts the runs of scheduled workflows whose slot has come, once per (workflow, slot)
    /// across nodes (the slot is the run's trigger key), with the trigger's catch-up and
    /// overlap policies. Returns when the next slot is due.
    pub async fn fire_workflow_schedules(&self) -> Result<Option<i64>, EngineError> {
        let now = self.now();
        let mut next: Option<i64> = None;
        for w in self.workflow_list() {
            for t in &w.def.triggers {
                let Trigger::Schedule { cron, timezone, catch_up, overlap } = t else { continue };
                let key = (w.def.name.clone(), cron.source().to_string());
                let last = match self.workflows.slots.lock().ok().and_then(|m| m.get(&key).copied()) {
                    Some(l) => l,
                    None => {
                        // After a restart: the last slot a run was started for, else now.
                        let runs = self.store.list_workflow_runs(Some(&w.def.name), false, 200).await?;
                        let stored = runs
                            .iter()
                            .filter_map(|r| r.trigger_key.as_deref()?.strip_prefix("schedule:")?.parse::<i64>().ok())
                            .max();
                        stored.unwrap_or(now)
                    }
                };
                let mut due = Vec::new();
                let mut after = last;
                while let Some(slot) =
                    jiff::Timestamp::from_millisecond(after).ok().and_then(|t| cron.next_after(timezone.tz(), t))
                {
                    let slot = slot.as_millisecond();
                    if slot > now {
                        next = Some(next.map_or(slot, |n: i64| n.min(slot)));
                        break;
                    }
                    due.push(slot);
                    after = slot;
                    if due.len() > MAX_CATCH_UP * 10 {
                        break;
                    }
                }
                let fire: Vec<i64> = match catch_up {
                    // Only a slot that is due now (within a minute), none missed while down.
                    CatchUp::Skip => due.iter().copied().rfind(|s| now - s < 60_000).into_iter().collect(),
                    CatchUp::All => due.iter().rev().take(MAX_CATCH_UP).rev().copied().collect(),
                    CatchUp::Latest => due.last().copied().into_iter().collect(),
                };
                if let Some(l) = due.last()
                    && let Ok(mut m) = self.workflows.slots.lock()
                {
                    m.insert(key.clone(), *l);
                } else if let Ok(mut m) = self.workflows.slots.lock() {
                    m.entry(key.clone()).or_insert(last);
                }
                for slot in fire {
                    let active = self.store.list_workflow_runs(Some(&w.def.name), true, 100).await?;
                    if !active.is_empty() {
                        match overlap {
                            Overlap::Skip => {
                                tracing::info!(workflow = %w.def.name, slot, "slot skipped: a run is still active");
                                continue;
                            }
                            Overlap::Replace => {
                                for r in &active {
                                    self.cancel_workflow_run(&r.id).await?;
                                }
                            }
                            // Waits behind the active run, or runs beside it.
                            Overlap::Queue | Overlap::Allow => {}
                        }
                    }
                    let at = jiff::Timestamp::from_millisecond(slot).map(|t| t.to_string()).unwrap_or_default();
                    let start = StartWorkflow {
                        trigger: TriggerKind::Schedule,
                        trigger_key: Some(format!("schedule:{slot}")),
                        event: Some(json!({"type": "schedule", "data": {
                            "slot": at, "cron": cron.source(), "timezone": timezone.name()
                        }})),
                        inputs: json!({}),
                        parent: None,
                    };
                    self.start_workflow(&w.def.name, start).await?;
                }
            }
        }
        Ok(next)
    }

    /// Starts the runs the new events trigger, once per (workflow, event).
    async fn route_events(&self) -> Result<(), EngineError> {
        loop {
            let events = self.store.unrouted_events(500).await?;
            if events.is_empty() {
                return Ok(());
            }
            let workflows = self.workflow_list();
            for e in &events {
                let ev = event_json(e);
                for w in &workflows {
                    if let Some(trigger) = event_trigger(&w.def, e, &ev) {
                        let start = StartWorkflow {
                            trigger,
                            trigger_key: Some(format!("event:{}", e.id)),
                            event: Some(ev.clone()),
                            inputs: json!({}),
                            parent: None,
                        };
                        if let Err(err) = self.start_workflow(&w.def.name, start).await {
                            tracing::warn!(workflow = %w.def.name, event = %e.id, error = %err, "workflow not started");
                        }
                    }
                }
            }
            let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
            self.store.mark_routed(&ids, self.now()).await?;
        }
    }

    /// The plan of a run: parsed once from the text it started with.
    async fn plan(&self, run: &WorkflowRunRecord) -> Result<Arc<Workflow>, String> {
        if let Some(p) = self.workflows.plans.read().ok().and_then(|m| m.get(&run.id).cloned()) {
            return Ok(p);
        }
        let mut names: Vec<String> = self.workflow_list().iter().map(|w| w.def.name.clone()).collect();
        names.push(run.workflow.clone());
        let catalog = self.catalog(names).await;
        let def = workflow::parse(&format!("{}.yaml", run.workflow), &run.definition, &catalog)
            .map_err(|e| format!("its definition no longer validates: {e}"))?;
        let def = Arc::new(def);
        if let Ok(mut m) = self.workflows.plans.write() {
            m.insert(run.id.clone(), def.clone());
        }
        Ok(def)
    }

    /// Moves one run on as far as it can go now; returns when it next needs looking at (a
    /// timer), if any.
    async fn advance(&self, run: WorkflowRunRecord, pass: &mut Pass) -> Result<Option<i64>, EngineError> {
        let next = self.advance_pass(run, pass).await?;
        self.flush(pass).await?;
        Ok(next)
    }

    /// What [`Engine::advance`] decides, stored as it goes only where what follows reads the
    /// store (the run's end, stopping its steps); the rest is left in `pass`.
    async fn advance_pass(&self, mut run: WorkflowRunRecord, pass: &mut Pass) -> Result<Option<i64>, EngineError> {
        let now = self.now();
        let def = match self.plan(&run).await {
            Ok(d) => d,
            Err(why) => {
                self.flush(pass).await?;
                run.status = WorkflowRunStatus::Failed;
                run.error = Some(why);
                run.finished_at = Some(now);
                self.finish_workflow_run(&run).await?;
                return Ok(None);
            }
        };
        if run.status == WorkflowRunStatus::Queued {
            if !self.may_start(&def, &run).await? {
                return Ok(None);
            }
            run.status = WorkflowRunStatus::Running;
            run.started_at = Some(now);
            run.deadline_at = def.timeout.map(|t| now + t.as_millis() as i64);
            self.store.update_workflow_run(&run).await?;
            self.touch();
        }
        if run.status != WorkflowRunStatus::Running {
            return Ok(None);
        }
        if run.deadline_at.is_some_and(|d| now >= d) {
            self.flush(pass).await?;
            self.stop_steps(&run, "the workflow timed out").await?;
            run.status = WorkflowRunStatus::TimedOut;
            run.error =
                Some(format!("timed out after {}", agent_os_core::format_duration(def.timeout.unwrap_or_default())));
            run.finished_at = Some(now);
            self.finish_workflow_run(&run).await?;
            return Ok(None);
        }
        let mut rows: HashMap<(String, i64), StepRecord> =
            self.store.workflow_steps(&run.id).await?.into_iter().map(|s| ((s.step_id.clone(), s.item), s)).collect();
        let mut next = run.deadline_at;
        let mut wake = |at: i64| next = Some(next.map_or(at, |n| n.min(at)));
        // Repeat while something finished at once (an emit, a skip), so a chain of quick steps
        // goes through in one pass.
        loop {
            let mut progressed = false;
            for step in def.topological_order() {
                let whole = rows.get(&(step.id.clone(), WHOLE)).cloned();
                let updated = match whole {
                    None if step
                        .needs
                        .iter()
                        .all(|n| rows.get(&(n.clone(), WHOLE)).is_some_and(|r| r.status.is_terminal())) =>
                    {
                        let ctx = context(&run, &def, &rows);
                        self.begin_step(pass, &run, &def, step, &rows, &ctx).await?
                    }
                    None => None,
                    Some(s) if !s.status.is_terminal() => {
                        let ctx = context(&run, &def, &rows);
                        self.poll_step(pass, &run, step, s, &mut rows, &ctx).await?
                    }
                    Some(_) => None,
                };
                if let Some(s) = updated {
                    if s.status.is_terminal() {
                        progressed = true;
                    }
                    if let Some(at) = s.wake_at.filter(|_| !s.status.is_terminal()) {
                        wake(at);
                    }
                    rows.insert((s.step_id.clone(), s.item), s);
                } else if let Some(s) = rows.get(&(step.id.clone(), WHOLE))
                    && let Some(at) = s.wake_at.filter(|_| !s.status.is_terminal())
                {
                    wake(at);
                }
            }
            if !progressed {
                break;
            }
        }
        let done = def.steps.iter().all(|s| rows.get(&(s.id.clone(), WHOLE)).is_some_and(|r| r.status.is_terminal()));
        if done {
            let failed = def.steps.iter().find(|s| {
                !s.continue_on_error
                    && rows
                        .get(&(s.id.clone(), WHOLE))
                        .is_some_and(|r| matches!(r.status, StepStatus::Failed | StepStatus::Cancelled))
            });
            match failed {
                Some(s) => {
                    let why = rows.get(&(s.id.clone(), WHOLE)).and_then(|r| r.error.clone()).unwrap_or_default();
                    run.status = WorkflowRunStatus::Failed;
                    run.error = Some(format!("step {} failed: {why}", s.id));
                }
                None => {
                    let ctx = context(&run, &def, &rows);
                    let mut outputs = Map::new();
                    let mut error = None;
                    for (k, t) in &def.outputs {
                        match t.render(&ctx) {
                            Ok(v) => {
                                outputs.insert(k.clone(), v);
                            }
                            Err(e) => error = Some(format!("outputs.{k}: {e}")),
                        }
                    }
                    run.status = if error.is_some() { WorkflowRunStatus::Failed } else { WorkflowRunStatus::Succeeded };
                    run.error = error;
                    run.outputs = Some(Value::Object(outputs).to_string());
                }
            }
            run.finished_at = Some(self.now());
            // Its steps' ends are stored before the run's.
            self.flush(pass).await?;
            self.finish_workflow_run(&run).await?;
            return Ok(None);
        }
        Ok(next)
    }

    /// Stores what `pass` holds in one transaction (the attempt's end first), claiming its
    /// queued task runs on this node as far as slots are free and starting them at once. A
    /// failure leaves the attempt's end in `pass` for the caller; the rest is decided again by
    /// the next pass, from the rows.
    async fn flush(&self, pass: &mut Pass) -> Result<(), EngineError> {
        if pass.finish.is_empty() && pass.runs.is_empty() && pass.steps.is_empty() {
            return Ok(());
        }
        let here = self.claim_here(pass.runs.len());
        let commit = StepCommit {
            finish: pass.finish.clone(),
            runs: std::mem::take(&mut pass.runs),
            steps: std::mem::take(&mut pass.steps),
            claim: here.as_ref().map(|h| h.claim.clone()),
        };
        if let Some(r) = commit.runs.first() {
            tracing::trace!(target: "timeline", run = %r.id, "decided");
        }
        if !commit.finish.is_empty() {
            crash_point("step-decided");
        }
        let done = self.store.commit_steps(&commit).await?;
        if !done.finished.is_empty() {
            crash_point("step-committed");
        }
        if !pass.finish.is_empty() {
            pass.finish.clear();
            pass.ended = done.finished;
        }
        for r in &done.queued.runs {
            tracing::trace!(target: "timeline", run = %r.id, "queued");
        }
        let queued = done.queued.runs.len();
        self.start_here(done.queued.claimed, queued, here);
        self.runs_changed.send_modify(|v| *v += 1);
        self.touch();
        Ok(())
    }

    /// Whether a queued run may start under its concurrency limit (applying `skip` and
    /// `cancel_running`).
    async fn may_start(&self, def: &Workflow, run: &WorkflowRunRecord) -> Result<bool, EngineError> {
        let queued_slot = run.trigger == TriggerKind::Schedule
            && def.triggers.iter().any(|t| matches!(t, Trigger::Schedule { overlap: Overlap::Queue, .. }));
        if def.concurrency.is_none() && !queued_slot {
            return Ok(true);
        }
        let active = self.store.list_workflow_runs(Some(&run.workflow), true, 10_000).await?;
        if queued_slot && active.iter().any(|r| r.status == WorkflowRunStatus::Running && r.id != run.id) {
            return Ok(false);
        }
        let Some(c) = &def.concurrency else { return Ok(true) };
        let running: Vec<&WorkflowRunRecord> = active
            .iter()
            .filter(|r| {
                r.status == WorkflowRunStatus::Running && r.id != run.id && r.concurrency_key == run.concurrency_key
            })
            .collect();
        if (running.len() as u32) < c.limit {
            // Runs queued earlier under the same key go first.
            let earlier = active.iter().any(|r| {
                r.status == WorkflowRunStatus::Queued
                    && r.id != run.id
                    && r.concurrency_key == run.concurrency_key
                    && (r.created_at, &r.id) < (run.created_at, &run.id)
            });
            return Ok(!earlier || c.on_limit != OnLimit::Queue);
        }
        match c.on_limit {
            OnLimit::Queue => Ok(false),
            OnLimit::Skip => {
                let mut r = run.clone();
                r.status = WorkflowRunStatus::Skipped;
                r.error = Some(format!(
                    "{} run(s) with concurrency key {:?} already running (limit {})",
                    running.len(),
                    run.concurrency_key.clone().unwrap_or_default(),
                    c.limit
                ));
                r.finished_at = Some(self.now());
                self.finish_workflow_run(&r).await?;
                Ok(false)
            }
            OnLimit::CancelRunning => {
                for other in running {
                    self.cancel_run_locked(&other.id).await?;
                }
                Ok(true)
            }
        }
    }

    /// A step with no row yet: waits for its needs, then is skipped or started.
    async fn begin_step(
        &self,
        pass: &mut Pass,
        run: &WorkflowRunRecord,
        def: &Workflow,
        step: &Step,
        rows: &HashMap<(String, i64), StepRecord>,
        ctx: &Value,
    ) -> Result<Option<StepRecord>, EngineError> {
        let mut blocked = None;
        for n in &step.needs {
            match rows.get(&(n.clone(), WHOLE)) {
                Some(r) if r.status.is_terminal() => {
                    // A skipped need is done (its `if` said so); a failed one stops the steps
                    // after it unless it may fail.
                    let tolerated = def.step(n).is_some_and(|s| s.continue_on_error);
                    let failed_before = r.status == StepStatus::Skipped
                        && r.error.as_deref().is_some_and(|e| e.starts_with(SKIPPED_BY_FAILURE));
                    if (matches!(r.status, StepStatus::Failed | StepStatus::Cancelled) && !tolerated) || failed_before {
                        blocked.get_or_insert(format!("{SKIPPED_BY_FAILURE}{n} failed"));
                    }
                }
                _ => return Ok(None),
            }
        }
        let now = self.now();
        let mut s = StepRecord {
            run_id: run.id.clone(),
            step_id: step.id.clone(),
            item: WHOLE,
            status: StepStatus::Running,
            attempt: 1,
            task_run_id: None,
            child_run_id: None,
            outputs: None,
            error: None,
            wake_at: None,
            started_at: Some(now),
            finished_at: None,
        };
        if let Some(why) = blocked {
            return self.settle(pass, s, StepStatus::Skipped, None, Some(why)).await.map(Some);
        }
        if let Some(cond) = &step.condition {
            match cond.is_true(ctx) {
                Ok(true) => {}
                Ok(false) => {
                    return self
                        .settle(pass, s, StepStatus::Skipped, None, Some("its if: was false".into()))
                        .await
                        .map(Some);
                }
                Err(e) => {
                    return self.settle(pass, s, StepStatus::Failed, None, Some(format!("if: {e}"))).await.map(Some);
                }
            }
        }
        if step.for_each.is_some() {
            // The step row stands for all its items; they start in poll_step.
            s.wake_at = Some(now);
            pass.put(&s);
            return Ok(Some(s));
        }
        self.start_action(pass, run, step, s, ctx).await.map(Some)
    }

    /// Does what a step (or one for_each item, `s.item` ≥ 0) does, from its first attempt or a
    /// retry.
    async fn start_action(
        &self,
        pass: &mut Pass,
        run: &WorkflowRunRecord,
        step: &Step,
        mut s: StepRecord,
        ctx: &Value,
    ) -> Result<StepRecord, EngineError> {
        let now = self.now();
        s.status = StepStatus::Running;
        s.wake_at = step.timeout.map(|t| now + t.as_millis() as i64);
        s.started_at = Some(now);
        match &step.action {
            Action::Run { project, task, with } => {
                let input = match render_value(with, ctx) {
                    Ok(v) if v.is_object() => v,
                    Ok(v) => {
                        return self
                            .settle(
                                pass,
                                s,
                                StepStatus::Failed,
                                None,
                                Some(format!("with: renders to {v}, not an object")),
                            )
                            .await;
                    }
                    Err(e) => return self.settle(pass, s, StepStatus::Failed, None, Some(format!("with: {e}"))).await,
                };
                let new_run = match self.step_task_run(project, task, input, &run.id, &step.id, s.item).await {
                    Ok(r) => r,
                    Err(e) => return self.settle(pass, s, StepStatus::Failed, None, Some(e.to_string())).await,
                };
                // Queued with the step's row when the pass is stored (and claimed here if a slot
                // is free), so a crash cannot leave a run the step does not know.
                s.task_run_id = Some(new_run.id.clone());
                pass.runs.push(new_run);
                pass.put(&s);
                Ok(s)
            }
            Action::Emit { event_type, data } => match render_value(data, ctx) {
                Ok(data) => {
                    let key = format!("workflow:{}:{}:{}", run.id, step.id, s.item);
                    let project = None;
                    match self.emit_event(project, event_type, data, Some(key)).await {
                        Ok((e, _)) => self.settle(pass, s, StepStatus::Succeeded, Some(event_json(&e)), None).await,
                        Err(e) => self.settle(pass, s, StepStatus::Failed, None, Some(e.to_string())).await,
                    }
                }
                Err(e) => self.settle(pass, s, StepStatus::Failed, None, Some(format!("data: {e}"))).await,
            },
            Action::Wait(Wait::Duration(d)) => {
                s.status = StepStatus::Waiting;
                // Woken at the end of the pause or at the step's timeout, whichever is first.
                s.wake_at = Some(now + d.as_millis() as i64).min(s.wake_at).or(Some(now + d.as_millis() as i64));
                pass.put(&s);
                Ok(s)
            }
            Action::Wait(Wait::Event { timeout, .. }) => {
                s.status = StepStatus::Waiting;
                let own = timeout.map(|t| now + t.as_millis() as i64);
                s.wake_at = match (own, s.wake_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                pass.put(&s);
                Ok(s)
            }
            Action::Workflow { name, inputs } => {
                let inputs = match render_value(inputs, ctx) {
                    Ok(v) => v,
                    Err(e) => {
                        return self.settle(pass, s, StepStatus::Failed, None, Some(format!("inputs: {e}"))).await;
                    }
                };
                let start = StartWorkflow {
                    trigger: TriggerKind::Workflow,
                    trigger_key: Some(format!("step:{}:{}:{}:{}", run.id, step.id, s.item, s.attempt)),
                    event: None,
                    inputs,
                    parent: Some((run.id.clone(), step.id.clone())),
                };
                match Box::pin(self.start_workflow(name, start)).await {
                    Ok(child) => {
                        s.child_run_id = Some(child.id);
                        pass.put(&s);
                        Ok(s)
                    }
                    Err(e) => self.settle(pass, s, StepStatus::Failed, None, Some(e.to_string())).await,
                }
            }
            Action::Approval(a) => self.start_approval(pass, run, step, a, s, ctx).await,
            Action::Notify { title, body, severity, tags } => {
                let render = |t: &str| match render_value(&Value::String(t.into()), ctx) {
                    Ok(Value::String(s)) => Ok(s),
                    Ok(v) => Ok(v.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let (title, body) = match (render(title), render(body)) {
                    (Ok(t), Ok(b)) => (t, b),
                    (Err(e), _) | (_, Err(e)) => return self.settle(pass, s, StepStatus::Failed, None, Some(e)).await,
                };
                let input = NotifyInput {
                    title,
                    body,
                    severity: Some(*severity),
                    tags: tags.clone(),
                    dedup_key: Some(format!("workflow:{}:{}:{}", run.id, step.id, s.item)),
                    source: Some(NotificationSource::Workflow),
                    incident_id: None,
                    also_to: Vec::new(),
                    idempotency_key: None,
                };
                match self.notify(None, input, None).await {
                    Ok(n) => {
                        self.settle(
                            pass,
                            s,
                            StepStatus::Succeeded,
                            Some(json!({"notification": n.notification.id})),
                            None,
                        )
                        .await
                    }
                    Err(e) => self.settle(pass, s, StepStatus::Failed, None, Some(e.to_string())).await,
                }
            }
        }
    }

    /// Looks at a step (or item) in progress: its task run, its timer, its child run, the
    /// events it waits for, or its for_each items.
    async fn poll_step(
        &self,
        pass: &mut Pass,
        run: &WorkflowRunRecord,
        step: &Step,
        s: StepRecord,
        rows: &mut HashMap<(String, i64), StepRecord>,
        ctx: &Value,
    ) -> Result<Option<StepRecord>, EngineError> {
        if s.item == WHOLE
            && let Some(fe) = &step.for_each
        {
            return self.poll_for_each(pass, run, step, &fe.items, fe.max_parallel, s, rows, ctx).await;
        }
        self.poll_one(pass, run, step, s, ctx).await
    }

    async fn poll_one(
        &self,
        pass: &mut Pass,
        run: &WorkflowRunRecord,
        step: &Step,
        mut s: StepRecord,
        ctx: &Value,
    ) -> Result<Option<StepRecord>, EngineError> {
        let now = self.now();
        if s.status == StepStatus::Retrying {
            if s.wake_at.is_some_and(|w| now < w) {
                return Ok(None);
            }
            s.attempt += 1;
            s.task_run_id = None;
            s.child_run_id = None;
            s.error = None;
            let ctx = with_item(ctx, step, &s);
            return self.start_action(pass, run, step, s, &ctx).await.map(Some);
        }
        if let (Some(t), Some(started)) = (step.timeout, s.started_at)
            && now >= started + t.as_millis() as i64
            && !matches!(step.action, Action::Emit { .. } | Action::Notify { .. })
        {
            if let Some(r) = &s.task_run_id {
                let _ = self.cancel_run(r).await;
            }
            if let Some(c) = &s.child_run_id {
                let _ = Box::pin(self.cancel_run_locked(c)).await;
            }
            let why = format!("timed out after {}", agent_os_core::format_duration(t));
            return self.fail_or_retry(pass, step, s, why).await.map(Some);
        }
        match &step.action {
            Action::Run { .. } => {
                let Some(task_run) = s.task_run_id.clone() else {
                    // Recorded without its run (cannot happen: they are stored together).
                    return self.fail_or_retry(pass, step, s, "its task run is missing".into()).await.map(Some);
                };
                let r = match pass.ended.iter().find(|r| r.id == task_run) {
                    Some(r) => r.clone(),
                    // Queued in this pass, not stored yet; or, in a pass for another step's run
                    // that ended here, still running as far as this pass needs to know (its own
                    // end advances the run again, on this node or through the workflow loop).
                    None if !pass.ended.is_empty() || pass.runs.iter().any(|r| r.id == task_run) => return Ok(None),
                    None => match self.store.get_run(&task_run).await? {
                        Some(r) => r,
                        None => {
                            return self.fail_or_retry(pass, step, s, "its task run is missing".into()).await.map(Some);
                        }
                    },
                };
                tracing::trace!(target: "timeline", run = %r.id, status = %r.status, "seen");
                match r.status {
                    RunStatus::Succeeded => {
                        let outputs =
                            r.outputs.as_deref().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(json!({}));
                        self.settle(pass, s, StepStatus::Succeeded, Some(outputs), None).await.map(Some)
                    }
                    RunStatus::Failed | RunStatus::TimedOut => {
                        let why = format!("run {} {}: {}", r.id, r.status, r.error.clone().unwrap_or_default());
                        self.fail_or_retry(pass, step, s, why).await.map(Some)
                    }
                    RunStatus::Cancelled => self
                        .settle(pass, s, StepStatus::Cancelled, None, Some(format!("run {} was cancelled", r.id)))
                        .await
                        .map(Some),
                    RunStatus::Queued | RunStatus::Running => Ok(None),
                }
            }
            Action::Wait(Wait::Duration(d)) => {
                if s.started_at.is_some_and(|st| now >= st + d.as_millis() as i64) {
                    return self.settle(pass, s, StepStatus::Succeeded, Some(json!({})), None).await.map(Some);
                }
                Ok(None)
            }
            Action::Wait(Wait::Event { pattern, filter, timeout }) => {
                let since = s.started_at.unwrap_or(now);
                // Only events of the awaited type are read (a `*` or `prefix.*` pattern reads by
                // prefix), so other traffic cannot push the awaited one out of reach.
                let prefix = pattern.strip_suffix('*').unwrap_or(pattern);
                let prefix = (!prefix.is_empty()).then_some(prefix);
                for e in self.store.events_since(since, prefix, 1000).await? {
                    if !workflow::type_matches(pattern, &e.kind) {
                        continue;
                    }
                    let ev = event_json(&e);
                    let mut c = ctx.clone();
                    c["event"] = ev.clone();
                    if filter.as_ref().is_none_or(|f| f.is_true(&c).unwrap_or(false)) {
                        return self.settle(pass, s, StepStatus::Succeeded, Some(ev), None).await.map(Some);
                    }
                }
                if let (Some(t), Some(st)) = (timeout, s.started_at)
                    && now >= st + t.as_millis() as i64
                {
                    return self
                        .fail_or_retry(pass, step, s, format!("no {pattern} event came in time"))
                        .await
                        .map(Some);
                }
                Ok(None)
            }
            Action::Workflow { .. } => {
                let Some(child) = s.child_run_id.clone() else { return Ok(None) };
                let Some(c) = self.store.get_workflow_run(&child).await? else { return Ok(None) };
                match c.status {
                    WorkflowRunStatus::Succeeded => {
                        let outputs =
                            c.outputs.as_deref().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(json!({}));
                        self.settle(pass, s, StepStatus::Succeeded, Some(outputs), None).await.map(Some)
                    }
                    status if status.is_terminal() => {
                        let why = format!("workflow run {} {status}: {}", c.id, c.error.unwrap_or_default());
                        self.fail_or_retry(pass, step, s, why).await.map(Some)
                    }
                    _ => Ok(None),
                }
            }
            Action::Approval(a) => self.poll_approval(pass, run, step, a, s).await,
            // Finished when they started.
            Action::Emit { .. } | Action::Notify { .. } => Ok(None),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn poll_for_each(
        &self,
        pass: &mut Pass,
        run: &WorkflowRunRecord,
        step: &Step,
        items: &Expr,
        max_parallel: u32,
        mut whole: StepRecord,
        rows: &mut HashMap<(String, i64), StepRecord>,
        ctx: &Value,
    ) -> Result<Option<StepRecord>, EngineError> {
        let list = match items.eval(ctx) {
            Ok(Value::Array(a)) => a,
            Ok(v) => {
                return self
                    .settle(pass, whole, StepStatus::Failed, None, Some(format!("for_each: {v} is not a list")))
                    .await
                    .map(Some);
            }
            Err(e) => {
                return self
                    .settle(pass, whole, StepStatus::Failed, None, Some(format!("for_each: {e}")))
                    .await
                    .map(Some);
            }
        };
        let mut active = 0;
        let mut finished = 0;
        let mut first_failure = None;
        let mut wake: Option<i64> = None;
        for (i, item) in list.iter().enumerate() {
            let key = (step.id.clone(), i as i64);
            let Some(mut r) = rows.get(&key).cloned() else { continue };
            // In a pass for another item's task run, a running item's run is not read (see
            // poll_one): it is left before its context is built.
            let elsewhere = r.status == StepStatus::Running
                && matches!(step.action, Action::Run { .. })
                && !pass.ended.is_empty()
                && !pass.ended.iter().any(|e| r.task_run_id.as_deref() == Some(e.id.as_str()));
            if !r.status.is_terminal() && !elsewhere {
                let item_ctx = item_context(ctx, item, i);
                if let Some(updated) = self.poll_one(pass, run, step, r.clone(), &item_ctx).await? {
                    r = updated;
                    rows.insert(key.clone(), r.clone());
                }
            }
            if r.status.is_terminal() {
                finished += 1;
                if r.status != StepStatus::Succeeded && first_failure.is_none() {
                    first_failure =
                        Some(format!("item {i}: {}", r.error.clone().unwrap_or_else(|| r.status.to_string())));
                }
            } else {
                active += 1;
                if let Some(w) = r.wake_at {
                    wake = Some(wake.map_or(w, |x: i64| x.min(w)));
                }
            }
        }
        for (i, item) in list.iter().enumerate() {
            if active >= max_parallel as usize {
                break;
            }
            let key = (step.id.clone(), i as i64);
            if rows.contains_key(&key) {
                continue;
            }
            let s = StepRecord { item: i as i64, ..whole.clone() };
            let item_ctx = item_context(ctx, item, i);
            let started = self.start_action(pass, run, step, s, &item_ctx).await?;
            if started.status.is_terminal() {
                finished += 1;
            } else {
                active += 1;
            }
            rows.insert(key, started);
        }
        if finished == list.len() {
            let outputs: Vec<Value> = (0..list.len())
                .map(|i| {
                    rows.get(&(step.id.clone(), i as i64))
                        .and_then(|r| r.outputs.as_deref().and_then(|o| serde_json::from_str(o).ok()))
                        .unwrap_or(Value::Null)
                })
                .collect();
            return match first_failure {
                Some(why) => {
                    self.settle(pass, whole, StepStatus::Failed, Some(Value::Array(outputs)), Some(why)).await.map(Some)
                }
                None => {
                    self.settle(pass, whole, StepStatus::Succeeded, Some(Value::Array(outputs)), None).await.map(Some)
                }
            };
        }
        whole.wake_at = wake;
        Ok(Some(whole))
    }

    /// A failed attempt: retried after the step's pause while attempts remain, else failed.
    async fn fail_or_retry(
        &self,
        pass: &mut Pass,
        step: &Step,
        mut s: StepRecord,
        why: String,
    ) -> Result<StepRecord, EngineError> {
        if (s.attempt as u32) < step.retry.attempts {
            let pause = workflow::retry_pause(&step.retry, s.attempt as u32 + 1);
            s.status = StepStatus::Retrying;
            s.error = Some(why);
            s.wake_at = Some(self.now() + pause.as_millis() as i64);
            pass.put(&s);
            return Ok(s);
        }
        self.settle(pass, s, StepStatus::Failed, None, Some(why)).await
    }

    /// Stores a step's end.
    async fn settle(
        &self,
        pass: &mut Pass,
        mut s: StepRecord,
        status: StepStatus,
        outputs: Option<Value>,
        error: Option<String>,
    ) -> Result<StepRecord, EngineError> {
        s.status = status;
        s.outputs = outputs.map(|o| o.to_string());
        s.error = error;
        s.wake_at = None;
        s.finished_at = Some(self.now());
        pass.put(&s);
        Ok(s)
    }

    /// Cancels what a run has in progress.
    async fn stop_steps(&self, run: &WorkflowRunRecord, why: &str) -> Result<(), EngineError> {
        let mut stopped = Vec::new();
        for mut s in self.store.workflow_steps(&run.id).await? {
            if s.status.is_terminal() {
                continue;
            }
            if let Some(r) = &s.task_run_id {
                let _ = self.cancel_run(r).await;
            }
            if let Some(c) = &s.child_run_id {
                let _ = Box::pin(self.cancel_run_locked(c)).await;
            }
            s.status = StepStatus::Cancelled;
            s.error = Some(why.into());
            s.finished_at = Some(self.now());
            stopped.push(s);
        }
        self.store.put_steps(&stopped).await?;
        self.touch();
        Ok(())
    }

    /// Stores a run's end and announces it as an event (`workflow.succeeded`, …), which is
    /// how `on: workflow:` triggers see it.
    async fn finish_workflow_run(&self, run: &WorkflowRunRecord) -> Result<(), EngineError> {
        let updated = self.store.update_workflow_run(run).await?;
        self.touch();
        if !updated {
            // It had ended meanwhile (a cancel through another node): that end stands.
            return Ok(());
        }
        if let Ok(mut m) = self.workflows.plans.write() {
            m.remove(&run.id);
        }
        self.workflows.runs_ended.send_modify(|v| *v += 1);
        let data = json!({
            "workflow": run.workflow,
            "run": run.id,
            "status": run.status,
            "outputs": run.outputs.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok()),
            "error": run.error,
        });
        let kind = format!("workflow.{}", run.status);
        self.emit_event(None, &kind, data, Some(format!("workflow-end:{}", run.id))).await?;
        Ok(())
    }

    /// A queued task run for a step, as `start_run` would make it (same checks), with the
    /// trigger naming the workflow run and step.
    async fn step_task_run(
        &self,
        project: &str,
        task: &str,
        input: Value,
        run_id: &str,
        step_id: &str,
        item: i64,
    ) -> Result<agent_os_store::NewRun, EngineError> {
        let p = self.project(project).await?;
        let t = p
            .manifest
            .task(task)
            .ok_or_else(|| EngineError::NotFound(format!("project {project:?} has no task {task:?}")))?;
        self.check_resources(&p.record.name, t)?;
        self.refuse_if_paused(&p.record.name).await?;
        let trigger = if item == WHOLE {
            format!("workflow:{run_id}/{step_id}")
        } else {
            format!("workflow:{run_id}/{step_id}[{item}]")
        };
        Ok(super::task_run(&p, t, input.to_string(), &trigger, self.now()))
    }
}

/// The trigger an event fires in a workflow, if any: `event` (type and filter), `workflow`
/// (another workflow's end).
fn event_trigger(def: &Workflow, e: &EventRecord, ev: &Value) -> Option<TriggerKind> {
    for t in &def.triggers {
        match t {
            Trigger::Event { pattern, filter } if workflow::type_matches(pattern, &e.kind) => {
                let ctx = json!({ "event": ev });
                if filter.as_ref().is_none_or(|f| f.is_true(&ctx).unwrap_or(false)) {
                    return Some(TriggerKind::Event);
                }
            }
            Trigger::Workflow { name, statuses } => {
                if let Some(status) = e.kind.strip_prefix("workflow.")
                    && ev["data"]["workflow"] == *name
                    && (statuses.is_empty() || status.parse().is_ok_and(|s: WorkflowRunStatus| statuses.contains(&s)))
                    && *name != def.name
                {
                    return Some(TriggerKind::Workflow);
                }
            }
            _ => {}
        }
    }
    None
}

/// The expression context of a run: `event`, `inputs` and each finished step's `outputs`.
fn context(run: &WorkflowRunRecord, def: &Workflow, rows: &HashMap<(String, i64), StepRecord>) -> Value {
    let mut steps = Map::new();
    for s in &def.steps {
        if let Some(r) = rows.get(&(s.id.clone(), WHOLE)) {
            let outputs =
                r.outputs.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok()).unwrap_or(Value::Null);
            steps.insert(s.id.clone(), json!({"status": r.status, "outputs": outputs, "error": r.error}));
        }
    }
    json!({
        "event": run.event.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()).unwrap_or(Value::Null),
        "inputs": serde_json::from_str::<Value>(&run.inputs).unwrap_or(json!({})),
        "steps": steps,
    })
}

/// The context of for_each item `index`: `item` and `index` added.
fn item_context(ctx: &Value, item: &Value, index: usize) -> Value {
    let mut c = ctx.clone();
    c["item"] = item.clone();
    c["index"] = json!(index);
    c
}

/// The context of one for_each item: `item` and `index` added.
fn with_item(ctx: &Value, step: &Step, s: &StepRecord) -> Value {
    if s.item == WHOLE || step.for_each.is_none() {
        return ctx.clone();
    }
    let Some(fe) = &step.for_each else { return ctx.clone() };
    let item = match fe.items.eval(ctx) {
        Ok(Value::Array(a)) => a.get(s.item as usize).cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    };
    item_context(ctx, &item, s.item as usize)
}

/// Manual inputs checked against their declarations, defaults filled in.
fn check_inputs(def: &Workflow, given: Value, required: bool) -> Result<Value, EngineError> {
    let invalid = |field: String, message: String| EngineError::Invalid { field: Some(field), message };
    let mut given = match given {
        Value::Null => Map::new(),
        Value::Object(m) => m,
        _ => return Err(invalid("inputs".into(), "inputs must be a JSON object".into())),
    };
    for k in given.keys() {
        if !def.inputs.contains_key(k) && !def.inputs.is_empty() {
            let known: Vec<&str> = def.inputs.keys().map(String::as_str).collect();
            return Err(invalid(
                format!("inputs.{k}"),
                format!("{} takes no input {k:?}; it takes {}", def.name, known.join(", ")),
            ));
        }
    }
    for (name, decl) in &def.inputs {
        match given.get(name) {
            None => {
                if let Some(d) = &decl.default {
                    given.insert(name.clone(), d.clone());
                } else if decl.required && required {
                    return Err(invalid(format!("inputs.{name}"), format!("{} needs the input {name:?}", def.name)));
                }
            }
            Some(v) => {
                if !decl.kind.admits(v) {
                    return Err(invalid(
                        format!("inputs.{name}"),
                        format!("{name} must be of type {}", decl.kind.as_str()),
                    ));
                }
            }
        }
    }
    Ok(Value::Object(given))
}
