//! Workers: `agent-os worker` processes on other machines that connect out to the server and
//! serve projects from their own directories (docs/worker-protocol.md).
//!
//! The server never reaches into a worker's machine and never sends a command or a path: a
//! worker registers its projects' manifests, long-polls for runs of them (claimed for it in
//! the transaction that opens their attempts, with run tokens, as the dispatcher claims for a
//! node), streams their logs (stored once per sequence number) and reports their ends, which
//! go through the same decision as a local attempt's ([`Engine::finish_of`]). It runs their
//! probes too and sends what they answered. A worker that goes silent for `workers.lost_after`
//! has lost what it ran (retried per policy, on any worker of the project); a worker project
//! with no worker for `workers.grace` is a health problem (an incident).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use agent_os_core::alerting::{IncidentSource, Severity};
use agent_os_core::id::new_id;
use agent_os_core::manifest::{MANIFEST_FILE, Manifest, ProbeKind, Transport};
use agent_os_core::redact::{Redactor, redact_shapes};
use agent_os_core::run::{AttemptEnd, LogStream};
use agent_os_core::{RunStatus, format_duration};
use agent_os_store::{
    AttemptRecord, NewLogChunk, NewProject, ProjectTransport, RunRecord, StoreError, WorkerLog, WorkerLogChunk,
    WorkerRecord,
};

use super::incidents::Alert;
use super::{AttemptReport, Engine, EngineError, manifest_schedules, run_tokens};
use crate::plugin::CallError;
use crate::project::LoadedProject;

/// The worker protocol this server speaks (`Agent-OS-Worker-Protocol`).
pub const WORKER_PROTOCOL: u32 = 1;

/// What a worker token allows: its id and the projects it may serve (by name).
#[derive(Clone, Debug)]
pub struct WorkerToken {
    pub token_id: String,
    pub projects: Vec<String>,
}

impl WorkerToken {
    pub fn allows(&self, project: &str) -> bool {
        self.projects.iter().any(|p| p == project)
    }
}

/// One attempt, as a worker names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRef {
    pub run_id: String,
    pub attempt: i64,
}

/// A worker's hello, its manifests already checked ([`Engine::check_worker_manifest`]).
#[derive(Clone, Debug)]
pub struct Hello {
    pub name: String,
    pub version: String,
    pub hostname: String,
    pub capacity: i64,
    /// Each project it serves: the validated plan and the text it came from.
    pub projects: Vec<(Manifest, String)>,
    /// Attempts the worker process runs now.
    pub running: Vec<AttemptRef>,
    /// Attempts it has finished and holds the results of, not yet delivered.
    pub pending: Vec<AttemptRef>,
}

/// The answer to a hello: the worker as recorded, and each project's cost cursor.
#[derive(Clone, Debug)]
pub struct Welcome {
    pub worker: WorkerRecord,
    pub projects: Vec<(String, Option<String>)>,
}

/// A run handed to a worker, with the token its attempt acts with.
#[derive(Clone, Debug)]
pub struct ClaimedRun {
    pub run: RunRecord,
    pub token: String,
}

/// What a poll brings a worker: runs to start and attempts to stop.
#[derive(Clone, Debug, Default)]
pub struct Poll {
    pub runs: Vec<ClaimedRun>,
    pub cancel: Vec<AttemptRef>,
}

/// How a worker says one of its attempts ended.
#[derive(Clone, Debug)]
pub struct WorkerEnd {
    /// `succeeded`, `failed`, `timed_out` or `cancelled`.
    pub status: RunStatus,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    /// For a failure: whether another attempt may help.
    pub retryable: bool,
    /// The worker itself was stopping: retried at once, not counted.
    pub interrupted: bool,
    pub outputs: Option<Value>,
    /// The last log chunk it sent for the attempt.
    pub last_seq: i64,
}

/// What became of a worker's end.
#[derive(Clone, Debug)]
pub enum Ended {
    /// Recorded: the run as it now is.
    Recorded(RunRecord),
    /// Not recorded, since the attempt had already ended (an end sent twice, or judged lost).
    Refused { run: RunRecord, reason: String },
}

/// A worker with what it runs, for the list of workers.
#[derive(Clone, Debug)]
pub struct WorkerState {
    pub worker: WorkerRecord,
    /// Heard from within `workers.lost_after`.
    pub connected: bool,
    pub running: Vec<(RunRecord, AttemptRecord)>,
}

/// Milliseconds as RFC 3339 UTC to the second, for messages.
fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| format!("{t:.0}")).unwrap_or_default()
}

impl Engine {
    /// Ends a worker's attempt as lost (`note` in its log and as its error) and tells a run that
    /// ended for good; whether this call ended it (another node may have done so first).
    async fn lose_worker_attempt(&self, run: &RunRecord, attempt: i64, note: String) -> Result<bool, EngineError> {
        match self.end_lost(run, attempt, note).await {
            Ok(done) => {
                if done.status.is_terminal() {
                    self.run_ended(&done).await;
                }
                Ok(true)
            }
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn lost_after_ms(&self) -> i64 {
        self.cfg().workers.lost_after.as_millis() as i64
    }

    /// Whether `w` has been heard from within `workers.lost_after`.
    pub fn worker_connected(&self, w: &WorkerRecord) -> bool {
        self.now() - w.last_contact <= self.lost_after_ms()
    }

    /// How long a poll waits for work before it answers with none (`workers.poll_wait`).
    pub fn poll_wait(&self) -> Duration {
        self.cfg().workers.poll_wait
    }

    /// Checks a manifest a worker sends for project `name`: valid as any stored manifest, named
    /// `name`, with command tasks (a worker runs programs; it is not an HTTP plugin), and `name`
    /// not taken by a project registered from a path or over HTTP (`Conflict`).
    pub async fn check_worker_manifest(&self, name: &str, text: &str) -> Result<Manifest, EngineError> {
        let manifest = Manifest::parse(&format!("{name}/{MANIFEST_FILE}"), text)?;
        if manifest.name != name {
            return Err(EngineError::Invalid {
                field: Some("name".into()),
                message: format!(
                    "the manifest names the project {:?}, not {name:?}; the name sent must be the manifest's own",
                    manifest.name
                ),
            });
        }
        if let Transport::Http { .. } = manifest.transport {
            return Err(EngineError::Invalid {
                field: Some("manifest".into()),
                message: format!(
                    "project {name:?} names an HTTP endpoint (plugin: {{ url: … }}); a worker serves command tasks from its own directory, so remove `plugin` or register the project over HTTP instead"
                ),
            });
        }
        self.check_manifest_resources(&manifest)?;
        if let Some(existing) = self.store.get_project(name).await?
            && existing.transport != ProjectTransport::Worker
        {
            let how = match existing.transport {
                ProjectTransport::Http { .. } => "as a hosted project (HTTP)",
                _ => "from a directory on the server",
            };
            return Err(EngineError::Conflict(format!(
                "project {name:?} is already registered {how}; a worker cannot serve it (remove it from the server first, or serve the worker's project under another name)"
            )));
        }
        Ok(manifest)
    }

    /// Registers or updates a worker project from its checked manifest; a manifest that did
    /// not change is left alone. Gives the project's cost cursor.
    async fn put_worker_project(&self, manifest: Manifest, text: &str) -> Result<Option<String>, EngineError> {
        let name = manifest.name.clone();
        match self.store.get_project(&name).await? {
            None => {
                let new = NewProject {
                    id: new_id(),
                    name: name.clone(),
                    description: manifest.description.clone(),
                    transport: ProjectTransport::Worker,
                    manifest: text.to_string(),
                };
                let record = match self.store.insert_project(&new, &manifest_schedules(&manifest), self.now()).await {
                    Ok(r) => r,
                    // Two workers of the project registering it at once: the other won.
                    Err(StoreError::Conflict(_)) => return Box::pin(self.put_worker_project(manifest, text)).await,
                    Err(e) => return Err(e.into()),
                };
                let loaded = Arc::new(LoadedProject { record, manifest });
                self.cache(loaded.clone());
                self.sync_checks(&loaded).await?;
                Ok(None)
            }
            Some(current) if current.transport != ProjectTransport::Worker => Err(EngineError::Conflict(format!(
                "project {name:?} is registered on the server, not served by workers"
            ))),
            Some(current) if current.manifest == text => Ok(current.cost_cursor),
            Some(current) => {
                let mut schedules = manifest_schedules(&manifest);
                schedules.extend(self.plugin_schedules(&name).await?);
                let record =
                    self.store.update_project(&name, text, &manifest.description, &schedules, self.now()).await?;
                let loaded = Arc::new(LoadedProject { record, manifest });
                self.cache(loaded.clone());
                self.sync_checks(&loaded).await?;
                Ok(current.cost_cursor)
            }
        }
    }

    /// A worker's hello: records the worker (the same one for the same token and name),
    /// registers or updates its projects, and ends as lost every attempt the store has running
    /// on it that the worker neither runs nor holds a result for (it restarted without them).
    pub async fn worker_hello(&self, token: &WorkerToken, hello: Hello) -> Result<Welcome, EngineError> {
        let now = self.now();
        let mut cursors = Vec::with_capacity(hello.projects.len());
        for (manifest, text) in hello.projects.iter().cloned() {
            let name = manifest.name.clone();
            cursors.push((name, self.put_worker_project(manifest, &text).await?));
        }
        let worker = self
            .store
            .upsert_worker(&WorkerRecord {
                id: new_id(),
                token_id: token.token_id.clone(),
                name: hello.name.clone(),
                hostname: hello.hostname,
                version: hello.version,
                capacity: hello.capacity,
                projects: cursors.iter().map(|(n, _)| n.clone()).collect(),
                first_seen: now,
                last_contact: now,
            })
            .await?;
        let held: HashSet<(&str, i64)> =
            hello.running.iter().chain(&hello.pending).map(|a| (a.run_id.as_str(), a.attempt)).collect();
        let seen: Vec<(String, i64)> = held.iter().map(|(r, a)| (r.to_string(), *a)).collect();
        self.store.touch_worker(&worker.id, &seen, now).await?;
        let mut lost = 0;
        for (run, attempt) in self.store.running_worker_attempts().await? {
            if attempt.worker_id.as_deref() != Some(worker.id.as_str())
                || held.contains(&(attempt.run_id.as_str(), attempt.attempt))
            {
                continue;
            }
            let note = format!(
                "lost: worker {} started again without attempt {} (it was neither running nor finished there)",
                worker.name, attempt.attempt
            );
            if self.lose_worker_attempt(&run, attempt.attempt, note).await? {
                lost += 1;
            }
        }
        if lost > 0 {
            tracing::warn!(worker = %worker.name, lost, "a worker came back without attempts it was running");
        }
        for (name, _) in &cursors {
            self.worker_is_back(name, &worker).await;
        }
        self.runs_changed.send_modify(|v| *v += 1);
        Ok(Welcome { worker, projects: cursors })
    }

    /// The worker `id` of `token` (`NotFound` for another token's, or one that never said hello).
    pub async fn worker(&self, token: &WorkerToken, id: &str) -> Result<WorkerRecord, EngineError> {
        match self.store.get_worker(id).await? {
            Some(w) if w.token_id == token.token_id => Ok(w),
            _ => Err(EngineError::NotFound(format!(
                "no worker {id:?} for this token; say hello first (POST /api/v1/worker/hello) and use the worker_id it answers"
            ))),
        }
    }

    /// A project's manifest changed on the worker's disk: stored as at a hello (the worker
    /// serves it from now on). Gives the project's cost cursor.
    pub async fn worker_manifest(
        &self,
        worker: &WorkerRecord,
        manifest: Manifest,
        text: &str,
    ) -> Result<Option<String>, EngineError> {
        let name = manifest.name.clone();
        let cursor = self.put_worker_project(manifest, text).await?;
        let now = self.now();
        if !worker.projects.contains(&name) {
            let mut w = worker.clone();
            w.projects.push(name.clone());
            w.last_contact = now;
            self.store.upsert_worker(&w).await?;
        } else {
            self.store.touch_worker(&worker.id, &[], now).await?;
        }
        Ok(cursor)
    }

    /// A worker's long poll, and its heartbeat: answers at once with the attempts it runs that
    /// it should stop (a cancel was asked for, or the attempt is no longer its own to run: it
    /// ended, or was judged lost) and up to `capacity` runs of its projects, claimed for it;
    /// else waits for a change of runs on this node, looking again every second for other
    /// nodes' changes, up to `workers.poll_wait`, and answers with nothing.
    pub async fn worker_poll(
        &self,
        worker: &WorkerRecord,
        capacity: i64,
        running: &[AttemptRef],
    ) -> Result<Poll, EngineError> {
        let seen: Vec<(String, i64)> = running.iter().map(|a| (a.run_id.clone(), a.attempt)).collect();
        self.store.touch_worker(&worker.id, &seen, self.now()).await?;
        let mut changes = self.runs_changed.subscribe();
        let mut stopping = self.stopping.subscribe();
        let deadline = tokio::time::Instant::now() + self.cfg().workers.poll_wait;
        let poll = loop {
            changes.borrow_and_update();
            let cancel = self.to_stop(worker, running).await?;
            let runs =
                if capacity > 0 && !*stopping.borrow() { self.claim_for(worker, capacity).await? } else { Vec::new() };
            if !runs.is_empty() || !cancel.is_empty() {
                break Poll { runs, cancel };
            }
            if *stopping.borrow() || tokio::time::Instant::now() >= deadline {
                break Poll::default();
            }
            let wait = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep_until(wait) => {}
                _ = changes.changed() => {}
                _ = stopping.changed() => {}
            }
        };
        // The poll held the worker's attention all along: that is contact too.
        self.store.touch_worker(&worker.id, &[], self.now()).await?;
        if !poll.runs.is_empty() {
            self.runs_changed.send_modify(|v| *v += 1);
        }
        Ok(poll)
    }

    /// Of the attempts a worker says it runs, those it should stop.
    async fn to_stop(&self, worker: &WorkerRecord, running: &[AttemptRef]) -> Result<Vec<AttemptRef>, EngineError> {
        let mut out = Vec::new();
        for a in running {
            let attempt = self.store.get_attempt(&a.run_id, a.attempt).await?;
            let ours = attempt
                .as_ref()
                .is_some_and(|x| x.status == RunStatus::Running && x.worker_id.as_deref() == Some(worker.id.as_str()));
            let stop =
                if ours { self.store.get_run(&a.run_id).await?.is_none_or(|r| r.cancel_requested) } else { true };
            if stop {
                out.push(a.clone());
            }
        }
        Ok(out)
    }

    /// Claims up to `capacity` due runs of the worker's projects for it, each with its token.
    async fn claim_for(&self, worker: &WorkerRecord, capacity: i64) -> Result<Vec<ClaimedRun>, EngineError> {
        let n = capacity.clamp(0, 1000) as usize;
        let now = self.now();
        let (plain, records) = run_tokens(n, now);
        let runs = self
            .store
            .claim_worker_runs(
                &worker.id,
                &self.cfg().node_id,
                &worker.projects,
                now,
                n as i64,
                &records,
                &self.cfg().resources,
            )
            .await?;
        Ok(runs.into_iter().zip(plain).map(|(run, token)| ClaimedRun { run, token }).collect())
    }

    /// Stores log chunks of a worker's attempt: redacted as a local run's log is (the run token
    /// by its shape: the server keeps only its hash), those already stored skipped.
    pub async fn worker_log(
        &self,
        worker: &WorkerRecord,
        run_id: &str,
        attempt: i64,
        chunks: Vec<WorkerLogChunk>,
    ) -> Result<WorkerLog, EngineError> {
        let redactor = Redactor::default();
        let chunks: Vec<WorkerLogChunk> =
            chunks.into_iter().map(|c| WorkerLogChunk { data: redactor.redact(&c.data), ..c }).collect();
        let now = self.now();
        let stored =
            self.store.append_worker_log(run_id, attempt, &worker.id, &chunks, self.cfg().log_max_bytes, now).await?;
        self.store.touch_worker(&worker.id, &[], now).await?;
        if matches!(stored, WorkerLog::Stored { .. }) {
            self.logs_changed.send_modify(|v| *v += 1);
        }
        Ok(stored)
    }

    /// Records how a worker's attempt ended, deciding the retry exactly as for a local attempt
    /// ([`Engine::finish_of`]); the store refuses an attempt that is no longer running, which
    /// makes an end sent twice (or after the attempt was judged lost) harmless.
    pub async fn worker_end(
        &self,
        worker: &WorkerRecord,
        run_id: &str,
        attempt: i64,
        end: WorkerEnd,
    ) -> Result<Ended, EngineError> {
        let now = self.now();
        self.store.touch_worker(&worker.id, &[], now).await?;
        let not_found = || EngineError::NotFound(format!("attempt {attempt} of run {run_id:?} is not this worker's"));
        let a = self.store.get_attempt(run_id, attempt).await?.ok_or_else(not_found)?;
        if a.worker_id.as_deref() != Some(worker.id.as_str()) {
            return Err(not_found());
        }
        let run = self.store.get_run(run_id).await?.ok_or_else(not_found)?;
        if a.status != RunStatus::Running {
            let why = a.error.clone().unwrap_or_else(|| a.status.to_string());
            let reason = format!("attempt {attempt} had already ended ({}: {why})", a.status);
            return Ok(Ended::Refused { run, reason });
        }
        if end.last_seq > a.worker_seq {
            self.note_missing_log(run_id, a.worker_seq + 1, end.last_seq).await;
        }
        // The project's manifest gives the retry delay: make sure it is at hand.
        let _ = self.project(&run.project).await;
        let interrupted = end.interrupted && end.status == RunStatus::Failed;
        let reason = |default: &str| end.error.clone().unwrap_or_else(|| default.to_string());
        let attempt_end = match end.status {
            RunStatus::Succeeded => AttemptEnd::Succeeded,
            RunStatus::TimedOut => AttemptEnd::TimedOut,
            RunStatus::Cancelled => AttemptEnd::Cancelled,
            _ if interrupted => {
                AttemptEnd::Failed { reason: reason("interrupted: the worker stopped"), retryable: true }
            }
            _ => AttemptEnd::Failed { reason: reason("failed on the worker"), retryable: end.retryable },
        };
        let report = AttemptReport {
            exit_code: end.exit_code.or((attempt_end == AttemptEnd::Succeeded).then_some(0)),
            end: attempt_end,
            interrupted,
            outputs: end.outputs,
        };
        let (finish, retry) = self.finish_of(&run, report, &Redactor::default(), now);
        match self.record_end(&run, finish, retry).await {
            Ok(done) => {
                if done.status.is_terminal() {
                    let total = done.finished_at.unwrap_or(now) - done.started_at.unwrap_or(now);
                    self.run_durations.observe(total.max(0) as f64 / 1000.0);
                    self.run_ended(&done).await;
                }
                self.runs_changed.send_modify(|v| *v += 1);
                self.wake.notify_one();
                Ok(Ended::Recorded(done))
            }
            Err(StoreError::Conflict(_)) => {
                let run = self.store.get_run(run_id).await?.ok_or_else(not_found)?;
                Ok(Ended::Refused { run, reason: format!("attempt {attempt} had already ended") })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes what a worker's probe of `project` answered (or why it failed) exactly as a local
    /// probe's answer is taken: a status goes to the project's health, costs to the ledger,
    /// schedules to the project's schedules. Gives the cost cursor to pass to the next cost
    /// probe.
    pub async fn worker_probe(
        &self,
        worker: &WorkerRecord,
        project: &str,
        kind: ProbeKind,
        answer: Result<Value, String>,
        duration_ms: i64,
        since: Option<&str>,
    ) -> Result<Option<String>, EngineError> {
        self.store.touch_worker(&worker.id, &[], self.now()).await?;
        let p = self.project(project).await?;
        if p.record.transport != ProjectTransport::Worker {
            return Err(EngineError::Conflict(format!("project {project:?} is not served by workers")));
        }
        let mut result = self.probe_result(&p, kind, std::time::Instant::now());
        result.duration_ms = duration_ms.max(0);
        let answer = answer.map_err(|e| redact_shapes(&e));
        match kind {
            ProbeKind::Schedule => {
                let answer = answer.map_err(|message| CallError { message, retryable: false });
                self.take_schedules(&p, answer, result).await;
            }
            ProbeKind::Status | ProbeKind::Cost => self.take_probe(&p, kind, since, answer, result).await,
            ProbeKind::Health => {
                return Err(EngineError::Invalid {
                    field: Some("kind".into()),
                    message: "kind is status, cost or schedule".into(),
                });
            }
        }
        Ok(self.store.get_project(project).await?.and_then(|r| r.cost_cursor))
    }

    /// The pass over workers, in the heartbeat loop: attempts of workers silent for
    /// `workers.lost_after` (or that their worker has not said it runs for that long) are
    /// ended as lost and retried per their policy; a worker project without a connected
    /// worker for `workers.grace` opens an incident, resolved when one is back. Nothing is
    /// judged lost during this node's own first `lost_after`. Gives the number of attempts
    /// ended as lost.
    pub async fn judge_workers(&self) -> Result<usize, EngineError> {
        let now = self.now();
        let lost_after = self.lost_after_ms();
        let workers = self.store.list_workers().await?;
        let mut lost = 0;
        if now - self.started_at >= lost_after {
            for (run, attempt) in self.store.running_worker_attempts().await? {
                let worker = workers.iter().find(|w| Some(&w.id) == attempt.worker_id.as_ref());
                let seen = attempt.seen_at.unwrap_or(attempt.started_at);
                let note = match worker {
                    None => format!("lost: the worker running attempt {} is unknown", attempt.attempt),
                    Some(w) if now - w.last_contact > lost_after => format!(
                        "lost: worker {} has not been heard from since {} (workers.lost_after is {})",
                        w.name,
                        when(w.last_contact),
                        format_duration(self.cfg().workers.lost_after)
                    ),
                    Some(w) if now - seen > lost_after => format!(
                        "lost: worker {} has not said it runs attempt {} since {} (it never received it, or lost it)",
                        w.name,
                        attempt.attempt,
                        when(seen)
                    ),
                    Some(_) => continue,
                };
                if self.lose_worker_attempt(&run, attempt.attempt, note).await? {
                    lost += 1;
                }
            }
        }
        if lost > 0 {
            tracing::warn!(lost, "ended attempts of workers that went silent");
            self.runs_changed.send_modify(|v| *v += 1);
        }
        for p in self.projects().await? {
            if p.record.transport != ProjectTransport::Worker {
                continue;
            }
            let name = &p.record.name;
            let serving: Vec<&WorkerRecord> = workers.iter().filter(|w| w.projects.contains(name)).collect();
            if let Some(w) = serving.iter().find(|w| self.worker_connected(w)) {
                self.worker_is_back(name, w).await;
                continue;
            }
            let last_seen = serving.iter().map(|w| w.last_contact).max();
            let since = last_seen.unwrap_or(p.record.created_at).max(p.record.created_at).max(self.started_at);
            if now - since <= self.cfg().workers.grace.as_millis() as i64 {
                continue;
            }
            if self.store.find_open_incident(IncidentSource::Worker, name).await?.is_some() {
                continue;
            }
            let alert = Alert {
                source: IncidentSource::Worker,
                subject: name.clone(),
                project: Some(name.clone()),
                severity: Severity::Critical,
                title: format!("no worker serving {name} is connected"),
                reason: format!(
                    "{}; its runs wait until one connects (workers.grace is {})",
                    self.no_worker(name, last_seen),
                    format_duration(self.cfg().workers.grace)
                ),
                tags: Vec::new(),
                worse: false,
            };
            if let Err(e) = self.raise(alert).await {
                tracing::warn!(project = %name, error = %e, "worker incident not recorded");
            }
        }
        Ok(lost)
    }

    /// Resolves a worker project's incident now that `w` serves it again.
    async fn worker_is_back(&self, project: &str, w: &WorkerRecord) {
        let why = format!("worker {} is connected", w.name);
        if let Err(e) = self.resolve(IncidentSource::Worker, project, &why).await {
            tracing::warn!(project, error = %e, "worker incident not resolved");
        }
    }

    /// "no worker serving P is connected (last seen …)", or that none ever connected.
    pub(super) fn no_worker(&self, project: &str, last_seen: Option<i64>) -> String {
        match last_seen {
            Some(at) => format!("no worker serving {project} is connected (last seen {})", when(at)),
            None => format!("no worker serving {project} has ever connected"),
        }
    }

    /// Whether a worker project has a worker connected now, and when one was last heard from.
    pub async fn worker_presence(&self, project: &str) -> Result<(bool, Option<i64>), EngineError> {
        let workers = self.store.list_workers().await?;
        let serving: Vec<&WorkerRecord> = workers.iter().filter(|w| w.projects.iter().any(|p| p == project)).collect();
        let connected = serving.iter().any(|w| self.worker_connected(w));
        Ok((connected, serving.iter().map(|w| w.last_contact).max()))
    }

    /// Why a queued run of a worker project waits: no worker serving its project is connected.
    /// `None` for any other run, or when one is connected.
    pub async fn worker_wait_reason(&self, run: &RunRecord) -> Option<String> {
        if run.status != RunStatus::Queued {
            return None;
        }
        // From the engine's project cache: a list of runs asks this for every queued one.
        let project = self.project(&run.project).await.ok().filter(|p| p.record.id == run.project_id)?;
        if project.record.transport != ProjectTransport::Worker {
            return None;
        }
        let (connected, last_seen) = self.worker_presence(&project.record.name).await.ok()?;
        (!connected).then(|| self.no_worker(&project.record.name, last_seen))
    }

    /// Every worker, whether it is connected and what it runs.
    pub async fn workers(&self) -> Result<Vec<WorkerState>, EngineError> {
        let attempts = self.store.running_worker_attempts().await?;
        let workers = self.store.list_workers().await?;
        Ok(workers
            .into_iter()
            .map(|w| {
                let running =
                    attempts.iter().filter(|(_, a)| a.worker_id.as_deref() == Some(w.id.as_str())).cloned().collect();
                WorkerState { connected: self.worker_connected(&w), worker: w, running }
            })
            .collect())
    }

    /// Notes in an attempt's log that chunks the worker said it sent never arrived.
    pub(crate) async fn note_missing_log(&self, run_id: &str, from: i64, to: i64) {
        let note = NewLogChunk {
            stream: LogStream::System,
            at: self.now(),
            data: format!("the worker's log chunks {from} to {to} never arrived\n"),
        };
        let _ = self.store.append_log(run_id, &[note], self.cfg().log_max_bytes).await;
    }
}
