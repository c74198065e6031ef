//! `agent-os worker`: serves projects that live on this machine to an Agent OS server it
//! connects out to (docs/worker-protocol.md). It says hello with its projects' manifests,
//! long-polls for their runs, runs them with the engine's command attempt, streams their logs
//! and ends through an on-disk spool, runs their probes and follows their manifests. It runs
//! only what its local manifests declare; the server sends a task's name and input, never a
//! command line or a path.
//!
//! Modules: `config` (flags, config file, the server address rule), `client` (the wire),
//! `spool` (the disk), `attempt` (running a claimed run), `delivery` (sending what the spool
//! holds), `probes`, `projects` (loading and watching).

mod attempt;
mod client;
mod config;
mod delivery;
mod probes;
mod projects;
mod spool;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use agent_os_engine::command::Stop;
use agent_os_engine::process::{SIGKILL, SIGTERM, group_alive, is_our_group, signal_group};

use client::{AttemptId, AttemptRef, CallError, Client, HelloAnswer, HelloBody, HelloProject, WorkerRun};
use projects::LocalProject;
use spool::{Bounds, Found, Meta, Spool};

pub use config::WorkerArgs;

/// How long a stopping worker goes on delivering what it holds.
const DELIVERY_GRACE: Duration = Duration::from_secs(10);
/// How often manifests are looked at for changes.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// What the spool holds unacknowledged, per attempt (the server's default log cap) and in all.
const SPOOL_BOUNDS: Bounds = Bounds { per_attempt: 1024 * 1024, total: 64 * 1024 * 1024 };

/// The connection as the worker knows it.
#[derive(Clone, Default)]
struct Session {
    /// Bumped by every hello the server answered.
    generation: u64,
    /// The last hello's answer; `None` while the server is out of reach.
    hello: Option<Arc<HelloAnswer>>,
}

pub struct Worker {
    name: String,
    hostname: String,
    capacity: usize,
    home: PathBuf,
    client: Client,
    spool: Spool,
    /// The projects served, by name, as last read from their directories.
    projects: RwLock<BTreeMap<String, Arc<LocalProject>>>,
    /// The manifest text the server last accepted for each project (what a hello sends).
    accepted: Mutex<HashMap<String, String>>,
    /// Projects whose manifest changed: their schedule probe is due.
    changed: Mutex<HashSet<String>>,
    /// Wakes the probe loop (a manifest changed).
    probes_changed: Notify,
    cost_cursors: Mutex<HashMap<String, Option<String>>>,
    /// The stop signals of the attempts running here.
    running: Mutex<HashMap<AttemptRef, watch::Sender<Option<Stop>>>>,
    /// Wakes each attempt's deliverer: its spool entry has more to send.
    deliveries: Mutex<HashMap<AttemptRef, Arc<Notify>>>,
    session: watch::Sender<Session>,
    /// Set when the worker stops taking work (a signal or a fatal answer).
    stopping: watch::Sender<bool>,
    /// Set when the worker stops delivering: the deliverers and loops end.
    done: watch::Sender<bool>,
    /// True while a poll is out or its answer is being taken: a stopping worker waits for it
    /// to be false before it interrupts its attempts, so that none starts after that.
    polling: watch::Sender<bool>,
    /// Wakes a poll held with no free capacity: an attempt ended.
    freed: Notify,
    /// A reason to stop with its exit code (another protocol, a refused token).
    fatal: Mutex<Option<(u8, String)>>,
    /// The attempts' tasks.
    attempts: TaskTracker,
    /// The deliverers.
    deliverers: TaskTracker,
}

/// `agent-os worker`: returns the exit code.
pub async fn run(args: &WorkerArgs, token_flag: Option<String>, home_flag: Option<&Path>) -> Result<u8> {
    let env_token = std::env::var(config::TOKEN_ENV).ok();
    let settings = match config::settings(args, token_flag, env_token, home_flag) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(2);
        }
    };
    if let Some(w) = &settings.warning {
        eprintln!("{w}");
    }
    let local = match projects::load_all(&settings.projects) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(2);
        }
    };
    crate::home::ensure(&settings.home)?;
    let _lock = crate::home::lock_file(
        &settings.home,
        "worker.lock",
        &format!(
            "another worker is already running with the home {}; stop it first or give this one --home DIR",
            settings.home.display()
        ),
    )?;
    let (spool, found) = Spool::open(&settings.home.join("spool"), SPOOL_BOUNDS)?;
    let outputs = settings.home.join("outputs");
    // Leftovers of a worker that was killed: no task of ours is running now (the home is ours).
    let _ = std::fs::remove_dir_all(&outputs);
    std::fs::create_dir_all(&outputs).with_context(|| format!("cannot create {}", outputs.display()))?;
    let mut pending = Vec::new();
    for f in found {
        match f {
            Found::Pending(key) => pending.push(key),
            Found::Interrupted(meta) => {
                kill_leftover(&meta).await;
                spool.remove(&meta.key());
            }
        }
    }
    let client = Client::new(settings.server.clone(), settings.token.clone())?;
    let accepted = local.iter().map(|p| (p.name().to_string(), p.text.clone())).collect();
    let worker = Arc::new(Worker {
        name: settings.name.clone(),
        hostname: agent_os_engine::process::hostname(),
        capacity: settings.capacity,
        home: settings.home.clone(),
        client,
        spool,
        projects: RwLock::new(local.into_iter().map(|p| (p.name().to_string(), Arc::new(p))).collect()),
        accepted: Mutex::new(accepted),
        changed: Mutex::new(HashSet::new()),
        probes_changed: Notify::new(),
        cost_cursors: Mutex::new(HashMap::new()),
        running: Mutex::new(HashMap::new()),
        deliveries: Mutex::new(HashMap::new()),
        session: watch::channel(Session::default()).0,
        stopping: watch::channel(false).0,
        done: watch::channel(false).0,
        polling: watch::channel(false).0,
        freed: Notify::new(),
        fatal: Mutex::new(None),
        attempts: TaskTracker::new(),
        deliverers: TaskTracker::new(),
    });
    for key in pending {
        worker.start_delivery(key);
    }
    eprintln!(
        "agent-os worker {} ({}) serving {} for {}, up to {} runs at once; home {}",
        worker.name,
        env!("CARGO_PKG_VERSION"),
        worker.project_names().join(", "),
        worker.client.base(),
        worker.capacity,
        worker.home.display()
    );
    let loops = TaskTracker::new();
    loops.spawn(probes::probe_loop(worker.clone()));
    loops.spawn(watch_manifests(worker.clone()));
    let connection = tokio::spawn(worker.clone().connection());

    let mut stopping = worker.stopping.subscribe();
    tokio::select! {
        _ = shutdown_signal() => eprintln!("stopping: interrupting running tasks and delivering what the worker holds"),
        _ = stopping.wait_for(|s| *s) => {}
    }
    worker.stopping.send_replace(true);
    let _ = worker.polling.subscribe().wait_for(|p| !*p).await;
    worker.interrupt_all();
    worker.attempts.close();
    worker.attempts.wait().await;
    let fatal = worker.fatal.lock().ok().and_then(|f| f.clone());
    worker.deliverers.close();
    if fatal.is_none() && tokio::time::timeout(DELIVERY_GRACE, worker.deliverers.wait()).await.is_err() {
        eprintln!(
            "the server took no delivery for {}s; what is left stays in {} and is delivered when the worker starts again",
            DELIVERY_GRACE.as_secs(),
            worker.home.join("spool").display()
        );
    }
    worker.done.send_replace(true);
    worker.deliverers.wait().await;
    loops.close();
    loops.wait().await;
    let _ = connection.await;
    match fatal {
        Some((code, why)) => {
            eprintln!("error: {why}");
            Ok(code)
        }
        None => Ok(0),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Kills the process group of an attempt the worker was running when it was killed, if it is
/// still there (the pid and its start time say it is the same process).
async fn kill_leftover(meta: &Meta) {
    let Some(pid) = meta.pid else { return };
    if !is_our_group(pid, meta.proc_start) {
        return;
    }
    signal_group(pid, SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while group_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if group_alive(pid) {
        signal_group(pid, SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while group_alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    eprintln!(
        "killed the process group {pid} of {}.{} ({}), left running when the worker stopped; the server ends that attempt as lost",
        meta.project,
        meta.task,
        meta.key()
    );
}

/// 0.5 s doubling to 30 s, the upper half random.
fn backoff(failures: u32) -> Duration {
    let full = Duration::from_millis(500).saturating_mul(1u32 << failures.min(6)).min(Duration::from_secs(30));
    let half = full / 2;
    half + half.mul_f64(agent_os_engine::secrets::random_fraction())
}

impl Worker {
    fn name(&self) -> &str {
        &self.name
    }

    fn outputs_dir(&self) -> PathBuf {
        self.home.join("outputs")
    }

    fn project(&self, name: &str) -> Option<Arc<LocalProject>> {
        self.projects.read().ok()?.get(name).cloned()
    }

    fn projects(&self) -> Vec<Arc<LocalProject>> {
        self.projects.read().map(|p| p.values().cloned().collect()).unwrap_or_default()
    }

    fn project_names(&self) -> Vec<String> {
        self.projects.read().map(|p| p.keys().cloned().collect()).unwrap_or_default()
    }

    fn cost_cursor(&self, project: &str) -> Option<String> {
        self.cost_cursors.lock().ok()?.get(project).cloned().flatten()
    }

    fn set_cost_cursor(&self, project: &str, cursor: Option<String>) {
        if let Ok(mut c) = self.cost_cursors.lock() {
            c.insert(project.to_string(), cursor);
        }
    }

    /// Projects whose manifest changed since the last call.
    fn take_changed(&self) -> Vec<String> {
        self.changed.lock().map(|mut c| c.drain().collect()).unwrap_or_default()
    }

    async fn probes_wake(&self) {
        self.probes_changed.notified().await
    }

    /// Resolves once the worker stops delivering.
    async fn given_up(&self) {
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|d| *d).await;
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Stops the worker with `code` and `why` (printed last).
    fn fail(&self, code: u8, why: String) {
        if let Ok(mut f) = self.fatal.lock()
            && f.is_none()
        {
            *f = Some((code, why));
        }
        self.stopping.send_replace(true);
    }

    /// The current session, if the server answered the last hello and nothing since found it
    /// out of reach.
    fn session_now(&self) -> Option<(u64, Arc<HelloAnswer>)> {
        let s = self.session.borrow();
        s.hello.clone().map(|h| (s.generation, h))
    }

    /// Waits for a session; `None` once the worker stops delivering.
    async fn connected(&self) -> Option<(u64, Arc<HelloAnswer>)> {
        let mut rx = self.session.subscribe();
        let mut done = self.done.subscribe();
        loop {
            if *done.borrow() {
                return None;
            }
            {
                let s = rx.borrow_and_update();
                if let Some(h) = &s.hello {
                    return Some((s.generation, h.clone()));
                }
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return None },
                _ = done.wait_for(|d| *d) => return None,
            }
        }
    }

    /// A call of session `generation` found the server out of reach: the worker says hello
    /// again (once the server answers) before anything else is sent.
    fn lost_contact(&self, generation: u64) {
        self.session.send_if_modified(|s| {
            if s.generation == generation && s.hello.is_some() {
                s.hello = None;
                true
            } else {
                false
            }
        });
    }

    /// What a refusal means beyond the one call: another protocol or a refused token stops
    /// the worker; anything else is said and the call given up.
    fn call_refused(&self, e: &CallError, what: &str) {
        match e {
            CallError::Protocol(why) => self.fail(2, why.clone()),
            CallError::Refused { status: 401 | 403, .. } => self
                .fail(1, format!("the server refused {what}: {e}; check the worker token and the projects it allows")),
            CallError::Refused { .. } => tracing::warn!(%e, "the server refused {what}"),
            CallError::Unreachable(_) => {}
        }
    }

    /// A delivery call failed: whether the deliverer goes on (it waits for the next hello when
    /// the server was out of reach). An attempt the server has ended, or does not know as this
    /// worker's, is dropped, and its task stopped if it still runs.
    fn delivery_failed(&self, key: &AttemptRef, generation: u64, e: &CallError, what: &str) -> bool {
        match e {
            CallError::Unreachable(why) => {
                tracing::debug!(attempt = %key, %why, "could not deliver {what}");
                self.lost_contact(generation);
                true
            }
            CallError::Refused { status: status @ (404 | 409), code, message, .. } => {
                eprintln!(
                    "{key}: the server no longer takes it (HTTP {status} {code}: {message}); dropping what the worker holds for it"
                );
                if let Ok(running) = self.running.lock()
                    && let Some(stop) = running.get(key)
                {
                    stop.send_replace(Some(Stop::Cancel));
                }
                self.spool.remove(key);
                false
            }
            CallError::Protocol(_) | CallError::Refused { status: 401 | 403, .. } => {
                self.call_refused(e, &format!("{what} of {key}"));
                false
            }
            CallError::Refused { .. } => {
                eprintln!("{key}: the server refused {what}: {e}; dropping them");
                true
            }
        }
    }

    fn start_delivery(self: &Arc<Self>, key: AttemptRef) {
        let wake = Arc::new(Notify::new());
        if let Ok(mut d) = self.deliveries.lock() {
            d.insert(key.clone(), wake.clone());
        }
        self.deliverers.spawn(delivery::deliver(self.clone(), key, wake));
    }

    fn wake_delivery(&self, key: &AttemptRef) {
        if let Some(wake) = self.deliveries.lock().ok().and_then(|d| d.get(key).cloned()) {
            wake.notify_one();
        }
    }

    fn delivery_done(&self, key: &AttemptRef) {
        if let Ok(mut d) = self.deliveries.lock() {
            d.remove(key);
        }
    }

    fn running_keys(&self) -> Vec<AttemptRef> {
        let mut keys: Vec<AttemptRef> = self.running.lock().map(|r| r.keys().cloned().collect()).unwrap_or_default();
        keys.sort();
        keys
    }

    /// An attempt's end is in the spool: it leaves the running set and its deliverer wakes.
    fn attempt_ended(&self, key: &AttemptRef) {
        if let Ok(mut r) = self.running.lock() {
            r.remove(key);
        }
        self.wake_delivery(key);
        self.freed.notify_one();
    }

    fn interrupt_all(&self) {
        if let Ok(running) = self.running.lock() {
            for stop in running.values() {
                stop.send_replace(Some(Stop::Interrupt));
            }
        }
    }

    /// Starts a claimed run: into the running set and the spool first, so that every hello
    /// from now on lists it.
    fn start_attempt(self: &Arc<Self>, claimed: WorkerRun, public_url: &str) {
        let key = AttemptRef::of(&claimed);
        if self.running.lock().map(|r| r.contains_key(&key)).unwrap_or(false) || self.spool.holds(&key) {
            tracing::warn!(attempt = %key, "the server handed out an attempt this worker already has; ignoring it");
            return;
        }
        let meta = Meta {
            run_id: claimed.run_id.clone(),
            attempt: claimed.attempt,
            project: claimed.project.clone(),
            task: claimed.task.clone(),
            pid: None,
            proc_start: None,
        };
        if let Err(e) = self.spool.begin(meta) {
            // Without its spool entry the attempt could not be delivered: it is left to the
            // server, which ends it as lost at the next hello.
            tracing::error!(attempt = %key, error = %e, "cannot record an attempt in the spool; not running it");
            return;
        }
        // Runs handed out as the worker began to stop end at once, interrupted (retried
        // without using up an attempt).
        let (stop_tx, stop_rx) = watch::channel(self.is_stopping().then_some(Stop::Interrupt));
        if let Ok(mut r) = self.running.lock() {
            r.insert(key.clone(), stop_tx);
        }
        tracing::info!(attempt = %key, project = %claimed.project, task = %claimed.task, trigger = %claimed.trigger, "running");
        self.start_delivery(key);
        self.attempts.spawn(attempt::run(self.clone(), claimed, public_url.to_string(), stop_rx));
    }

    /// Says hello: the projects (as the server last accepted them), the attempts running and
    /// the ones ended and held.
    async fn hello(&self) -> Result<Arc<HelloAnswer>, CallError> {
        let projects = self.projects();
        let accepted = self.accepted.lock().map(|a| a.clone()).unwrap_or_default();
        let texts: Vec<(String, String)> = projects
            .iter()
            .map(|p| (p.name().to_string(), accepted.get(p.name()).cloned().unwrap_or_else(|| p.text.clone())))
            .collect();
        let pending = self.spool.pending();
        // An attempt whose end is recorded is pending, not running, even before it leaves the
        // running set.
        let running = self.running_keys().into_iter().filter(|k| !pending.contains(k));
        let hello = HelloBody {
            name: self.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: self.hostname.clone(),
            capacity: self.capacity as i64,
            projects: texts.into_iter().map(|(name, manifest)| HelloProject { name, manifest }).collect(),
            running: running.map(AttemptId::from).collect(),
            pending: pending.into_iter().map(AttemptId::from).collect(),
        };
        let answer = Arc::new(self.client.hello(&hello).await?);
        if let Ok(mut c) = self.cost_cursors.lock() {
            for p in &answer.projects {
                c.insert(p.name.clone(), p.cost_cursor.clone());
            }
        }
        Ok(answer)
    }

    /// Keeps the connection: hello (again after every outage, with backoff), then the long
    /// poll while the worker takes work. A stopping worker polls no more but still says hello
    /// after an outage, so that what it holds can be delivered.
    async fn connection(self: Arc<Self>) {
        let mut failures = 0u32;
        let mut said_unreachable = false;
        let mut stopping = self.stopping.subscribe();
        let mut done = self.done.subscribe();
        let mut session = self.session.subscribe();
        loop {
            if *done.borrow() {
                return;
            }
            let Some((generation, hello)) = self.session_now() else {
                match self.hello().await {
                    Ok(answer) => {
                        failures = 0;
                        said_unreachable = false;
                        let generation = self.session.borrow().generation + 1;
                        println!(
                            "connected to {} as worker {} ({}); serving {}",
                            self.client.base(),
                            self.name,
                            answer.worker_id,
                            self.project_names().join(", ")
                        );
                        self.session.send_replace(Session { generation, hello: Some(answer) });
                        self.resend_manifests().await;
                    }
                    Err(CallError::Unreachable(why)) => {
                        if !said_unreachable {
                            eprintln!("cannot reach the server ({why}); trying again with backoff");
                            said_unreachable = true;
                        }
                        let wait = backoff(failures);
                        failures = failures.saturating_add(1);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = done.wait_for(|d| *d) => return,
                        }
                    }
                    Err(e) => {
                        match &e {
                            CallError::Protocol(why) => self.fail(2, why.clone()),
                            _ => self.fail(1, format!("the server refused the worker's hello: {e}")),
                        }
                        return;
                    }
                }
                continue;
            };
            if self.is_stopping() {
                // No more work: wait for an outage (to say hello again) or the end.
                session.borrow_and_update();
                tokio::select! {
                    _ = session.changed() => {}
                    _ = done.wait_for(|d| *d) => return,
                }
                continue;
            }
            let running = self.running_keys();
            let free = self.capacity.saturating_sub(running.len());
            let wait = Duration::from_millis(hello.poll_wait_ms.clamp(100, 120_000));
            let asked = Instant::now();
            session.borrow_and_update();
            self.polling.send_replace(true);
            let poll = self.client.poll(&hello.worker_id, free, &running, wait);
            // A poll that can bring runs is never dropped mid-way (its runs would be claimed for
            // nobody) unless the worker stops or the server is found out of reach; one that
            // cannot is dropped when a slot frees up. A stop is seen first.
            let answer = tokio::select! {
                biased;
                _ = stopping.wait_for(|s| *s) => None,
                _ = session.changed() => None,
                _ = self.freed.notified(), if free == 0 => None,
                answer = poll => Some(answer),
            };
            let Some(answer) = answer else {
                self.polling.send_replace(false);
                continue;
            };
            match answer {
                Ok(answer) => {
                    let new_runs = !answer.runs.is_empty();
                    for claimed in answer.runs {
                        self.start_attempt(claimed, &hello.public_url);
                    }
                    self.polling.send_replace(false);
                    let mut cancelled = false;
                    if let Ok(running) = self.running.lock() {
                        for key in answer.cancel.into_iter().map(AttemptRef::from) {
                            if let Some(stop) = running.get(&key)
                                && stop.borrow().is_none()
                            {
                                stop.send_replace(Some(Stop::Cancel));
                                cancelled = true;
                            }
                        }
                    }
                    if !new_runs && !cancelled && asked.elapsed() < Duration::from_millis(100) {
                        // An answer at once with nothing new (a cancel already passed on, whose
                        // task is still stopping): ask again a little later, not in a loop.
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = self.freed.notified() => {}
                            _ = stopping.wait_for(|s| *s) => {}
                        }
                    }
                }
                Err(CallError::Unreachable(why)) => {
                    self.polling.send_replace(false);
                    tracing::debug!(%why, "the poll found the server out of reach");
                    self.lost_contact(generation);
                }
                Err(e @ (CallError::Protocol(_) | CallError::Refused { status: 401 | 403, .. })) => {
                    self.polling.send_replace(false);
                    self.call_refused(&e, "the poll");
                    return;
                }
                Err(e) => {
                    self.polling.send_replace(false);
                    // The server does not know this worker as it was (say, its database was
                    // replaced): hello again, after a pause.
                    eprintln!("the server refused the poll ({e}); saying hello again");
                    self.lost_contact(generation);
                    let wait = backoff(failures);
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stopping.wait_for(|s| *s) => {}
                    }
                }
            }
        }
    }

    /// Sends the manifests that changed on disk since the server last accepted them (a hello
    /// sends what it accepted, so that a broken edit cannot keep the worker out).
    async fn resend_manifests(&self) {
        let accepted = self.accepted.lock().map(|a| a.clone()).unwrap_or_default();
        for p in self.projects() {
            if accepted.get(p.name()) != Some(&p.text) {
                self.send_manifest(&p).await;
            }
        }
    }

    /// Sends a project's manifest as it is on disk now.
    async fn send_manifest(&self, p: &LocalProject) {
        let Some((generation, hello)) = self.session_now() else { return };
        match self.client.manifest(&hello.worker_id, p.name(), &p.text).await {
            Ok(answer) => {
                if let Ok(mut a) = self.accepted.lock() {
                    a.insert(p.name().to_string(), p.text.clone());
                }
                self.set_cost_cursor(p.name(), answer.cost_cursor);
                eprintln!("{}: the server took the changed manifest", p.dir.display());
            }
            Err(CallError::Unreachable(_)) => self.lost_contact(generation),
            Err(e @ CallError::Refused { status: 400 | 409 | 422, .. }) => eprintln!(
                "{}: the server kept the project's previous manifest: {e}",
                p.dir.join(agent_os_core::manifest::MANIFEST_FILE).display()
            ),
            Err(e) => self.call_refused(&e, &format!("the manifest of {}", p.name())),
        }
    }
}

/// Looks at every manifest every [`WATCH_EVERY`]; a changed one that still validates replaces
/// the project here and is sent to the server; one that does not is reported once and the
/// project keeps its previous manifest.
async fn watch_manifests(worker: Arc<Worker>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            _ = worker.given_up() => return,
        }
        for p in worker.projects() {
            if !p.changed_on_disk() {
                continue;
            }
            let replacement = match p.reload() {
                Ok(Some(fresh)) => {
                    eprintln!("{}: the manifest changed", p.dir.display());
                    let fresh = Arc::new(fresh);
                    worker.send_manifest(&fresh).await;
                    if let Ok(mut c) = worker.changed.lock() {
                        c.insert(p.name().to_string());
                    }
                    worker.probes_changed.notify_one();
                    fresh
                }
                Ok(None) => {
                    let mut same = (*p).clone();
                    same.mark_seen();
                    Arc::new(same)
                }
                Err(e) => {
                    eprintln!("error: {e:#}\nthe worker keeps the project's previous manifest until this is fixed");
                    let mut kept = (*p).clone();
                    kept.mark_seen();
                    Arc::new(kept)
                }
            };
            if let Ok(mut projects) = worker.projects.write() {
                projects.insert(p.name().to_string(), replacement);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_to_thirty_with_jitter() {
        for _ in 0..100 {
            let first = backoff(0);
            assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500), "{first:?}");
            let third = backoff(2);
            assert!(third >= Duration::from_secs(1) && third <= Duration::from_secs(2), "{third:?}");
            let late = backoff(40);
            assert!(late >= Duration::from_secs(15) && late <= Duration::from_secs(30), "{late:?}");
        }
    }
}
