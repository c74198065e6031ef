//! The engine's loops under supervision. Every loop (dispatcher, writers, scheduler, monitor…)
//! runs as a task of one `JoinSet` that a supervisor task watches. A loop that panics, or
//! returns while the engine is running, is logged at error level with its name and its panic
//! message, then started again after a backoff; a loop that keeps dying, or one that must not
//! be restarted (the heartbeat), stops the engine instead, and `agent-os serve` exits non-zero.
//! Never a server that answers requests while one of its loops is silently gone. Shutdown
//! cancels the loops and joins them.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Engine;
use super::monitor::PingJob;
use super::workflows::EventJob;

/// One of the engine's loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loop {
    /// Writes pings in groups.
    Ping,
    /// Writes events in groups.
    Event,
    /// Claims queued runs and starts them.
    Dispatch,
    /// Works the notification outbox.
    Delivery,
    /// Tells incidents a maintenance window kept quiet; ends budget incidents.
    Alert,
    /// Loads workflow files, routes events, advances workflow runs.
    Workflow,
    /// Records that this node is alive (and recovers dead nodes' work on PostgreSQL).
    Heartbeat,
    /// Polls status, cost, schedule and health probes.
    Probe,
    /// Fires managed schedules.
    Schedule,
    /// Re-evaluates heartbeat checks.
    Monitor,
    /// Watches config.yaml and applies it again when it changes.
    Config,
    /// Prunes old history, hourly, from a few minutes after start.
    Retention,
}

impl Loop {
    pub const ALL: [Loop; 12] = [
        Loop::Ping,
        Loop::Event,
        Loop::Dispatch,
        Loop::Delivery,
        Loop::Alert,
        Loop::Workflow,
        Loop::Heartbeat,
        Loop::Probe,
        Loop::Schedule,
        Loop::Monitor,
        Loop::Config,
        Loop::Retention,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Loop::Ping => "ping",
            Loop::Event => "event",
            Loop::Dispatch => "dispatch",
            Loop::Delivery => "delivery",
            Loop::Alert => "alert",
            Loop::Workflow => "workflow",
            Loop::Heartbeat => "heartbeat",
            Loop::Probe => "probe",
            Loop::Schedule => "schedule",
            Loop::Monitor => "monitor",
            Loop::Config => "config",
            Loop::Retention => "retention",
        }
    }

    pub fn parse(name: &str) -> Option<Loop> {
        Loop::ALL.into_iter().find(|l| l.name() == name)
    }

    /// What a death of this loop does (ARCHITECTURE.md, "Supervised loops").
    fn on_death(self) -> OnDeath {
        match self {
            // The heartbeat is this node's word that it is alive: while it is missing, other
            // nodes may judge the node dead and run its attempts again while they still run
            // here. A node that cannot keep it stops, and its runs are interrupted and queued
            // again cleanly.
            Loop::Heartbeat => OnDeath::Stop,
            // The others keep their state in the store (or rebuild it), so a new loop picks up
            // where the dead one stopped.
            _ => OnDeath::Restart,
        }
    }
}

/// What the supervisor does when a loop dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnDeath {
    /// Start it again after `BACKOFF` doubled per recent death; stop the engine when it dies
    /// `MAX_DEATHS` times within `DEATH_WINDOW`.
    Restart,
    /// Stop the engine at once.
    Stop,
}

/// The first restart's delay; each further death within the window doubles it.
const BACKOFF: Duration = Duration::from_secs(1);
/// Deaths older than this are forgotten.
const DEATH_WINDOW: Duration = Duration::from_secs(600);
/// A loop that dies this many times within the window is not going to heal: the engine stops.
pub const MAX_DEATHS: usize = 5;

/// How a loop is doing, for `/healthz` and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopHealth {
    pub name: &'static str,
    /// Running now; false while it waits to be started again, and after the engine stopped.
    pub running: bool,
    /// Times it was started again after dying.
    pub restarts: u64,
    /// How it last died: `panicked: MESSAGE` or `returned`.
    pub last_death: Option<String>,
}

/// The inputs a loop takes over from its dead predecessor: the writers' queues.
#[derive(Clone)]
pub(super) struct Inputs {
    /// The ping writer's queue, kept here so a restarted writer goes on with what is waiting.
    pub pings: Arc<tokio::sync::Mutex<mpsc::Receiver<PingJob>>>,
    /// The event writer's queue, likewise.
    pub events: Arc<tokio::sync::Mutex<mpsc::Receiver<EventJob>>>,
}

/// The loops' shared state, held by the engine.
pub(super) struct Loops {
    /// Cancelled at the end of a shutdown, once the runs have ended (their ends still go
    /// through the event writer): every loop stops at its next wait.
    closing: CancellationToken,
    /// Each started loop's health, in start order.
    health: Mutex<Vec<LoopHealth>>,
    /// Why the engine stopped on its own: a loop that could not be kept running.
    failure: watch::Sender<Option<String>>,
    /// The supervisor task, joined by shutdown.
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// Loops told to panic (tests).
    #[cfg(any(test, feature = "testing"))]
    faults: watch::Sender<Vec<Loop>>,
}

impl Loops {
    pub(super) fn new() -> Self {
        Loops {
            closing: CancellationToken::new(),
            health: Mutex::new(Vec::new()),
            failure: watch::channel(None).0,
            supervisor: Mutex::new(None),
            #[cfg(any(test, feature = "testing"))]
            faults: watch::channel(Vec::new()).0,
        }
    }

    /// Cancelled when the loops are to stop (the writers finish what is queued first).
    pub(super) fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    fn update(&self, l: Loop, f: impl FnOnce(&mut LoopHealth)) {
        if let Ok(mut health) = self.health.lock()
            && let Some(h) = health.iter_mut().find(|h| h.name == l.name())
        {
            f(h);
        }
    }

    /// Resolves when `l` has been told to fail; never in a build without test support.
    async fn fault(&self, l: Loop) {
        #[cfg(any(test, feature = "testing"))]
        {
            let mut told = self.faults.subscribe();
            loop {
                let mut hit = false;
                self.faults.send_if_modified(|f| {
                    hit = f.contains(&l);
                    f.retain(|x| *x != l);
                    hit
                });
                if hit {
                    return;
                }
                if told.changed().await.is_err() {
                    break;
                }
            }
        }
        let _ = l;
        std::future::pending::<()>().await
    }
}

impl Engine {
    /// Starts `loops` under a supervisor task.
    pub(super) fn supervise(self: &Arc<Self>, loops: Vec<Loop>, inputs: Inputs) {
        if let Ok(mut health) = self.loops.health.lock() {
            health.extend(loops.iter().map(|l| LoopHealth {
                name: l.name(),
                running: true,
                restarts: 0,
                last_death: None,
            }));
        }
        let supervisor = tokio::spawn(self.clone().supervisor(loops, inputs));
        if let Ok(mut slot) = self.loops.supervisor.lock() {
            *slot = Some(supervisor);
        }
    }

    async fn supervisor(self: Arc<Self>, loops: Vec<Loop>, inputs: Inputs) {
        let mut set = JoinSet::new();
        let mut which = HashMap::new();
        for l in loops {
            let task = set.spawn(self.clone().incarnation(l, inputs.clone(), None));
            which.insert(task.id(), l);
        }
        let mut deaths: HashMap<Loop, Vec<Instant>> = HashMap::new();
        while let Some(done) = set.join_next_with_id().await {
            let (id, death) = match done {
                Ok((id, ())) => (id, "returned".to_string()),
                Err(e) if e.is_panic() => (e.id(), format!("panicked: {}", panic_message(e.into_panic()))),
                Err(e) => (e.id(), "was cancelled".to_string()),
            };
            let Some(l) = which.remove(&id) else { continue };
            self.loops.update(l, |h| h.running = false);
            let panicked = death.starts_with("panicked");
            if self.loops.closing.is_cancelled() || (*self.stopping.borrow() && !panicked) {
                // The end of a shutdown (or of a failure): loops stop, and are not started again.
                if panicked {
                    tracing::error!(target: "agent_os::loops", r#loop = l.name(), death = %death, "engine loop died while stopping");
                }
                continue;
            }
            let now = Instant::now();
            let recent = deaths.entry(l).or_default();
            recent.retain(|t| now.duration_since(*t) < DEATH_WINDOW);
            recent.push(now);
            let count = recent.len();
            self.loops.update(l, |h| h.last_death = Some(death.clone()));
            match l.on_death() {
                OnDeath::Restart if count < MAX_DEATHS => {
                    let backoff = BACKOFF * 2u32.pow(count as u32 - 1);
                    tracing::error!(
                        target: "agent_os::loops",
                        r#loop = l.name(),
                        death = %death,
                        restart_in_s = backoff.as_secs(),
                        "engine loop died; starting it again"
                    );
                    let task = set.spawn(self.clone().incarnation(l, inputs.clone(), Some(now + backoff)));
                    which.insert(task.id(), l);
                }
                policy => {
                    let why = if policy == OnDeath::Restart {
                        format!(
                            "the {} loop died {count} times within {} minutes, last {death}",
                            l.name(),
                            DEATH_WINDOW.as_secs() / 60
                        )
                    } else {
                        format!("the {} loop {death}", l.name())
                    };
                    tracing::error!(target: "agent_os::loops", r#loop = l.name(), death = %death, "engine loop died and is not started again; Agent OS stops: {why}");
                    self.fail(why);
                }
            }
        }
    }

    /// One life of loop `l`, from `restart_at` (a restart) or now; ends early when the loops
    /// are closing.
    async fn incarnation(self: Arc<Self>, l: Loop, inputs: Inputs, restart_at: Option<Instant>) {
        let closing = self.loops.closing.clone();
        if let Some(at) = restart_at {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = closing.cancelled() => return,
            }
            self.loops.update(l, |h| {
                h.running = true;
                h.restarts += 1;
            });
        }
        let body: Pin<Box<dyn Future<Output = ()> + Send>> = match l {
            Loop::Ping => Box::pin(self.clone().ping_loop(inputs.pings)),
            Loop::Event => Box::pin(self.clone().event_loop(inputs.events)),
            Loop::Dispatch => Box::pin(self.clone().dispatch_loop()),
            Loop::Delivery => Box::pin(self.clone().delivery_loop()),
            Loop::Alert => Box::pin(self.clone().alert_loop()),
            Loop::Workflow => Box::pin(self.clone().workflow_loop()),
            Loop::Heartbeat => Box::pin(self.clone().heartbeat_loop()),
            Loop::Probe => Box::pin(self.clone().probe_loop()),
            Loop::Schedule => Box::pin(self.clone().schedule_loop()),
            Loop::Monitor => Box::pin(self.clone().monitor_loop()),
            Loop::Config => Box::pin(self.clone().config_loop()),
            Loop::Retention => Box::pin(self.clone().retention_loop()),
        };
        tokio::select! {
            _ = body => {}
            // The writers see `closing` themselves, to write what is queued before they stop.
            _ = closing.cancelled(), if !matches!(l, Loop::Ping | Loop::Event) => {}
            _ = self.loops.fault(l) => panic!("fault injected into the {} loop", l.name()),
        }
    }

    /// Stops the engine because a loop could not be kept running: no more work is claimed, and
    /// [`Engine::failed`] resolves (the server then shuts down and exits non-zero).
    fn fail(&self, why: String) {
        self.loops.failure.send_if_modified(|f| {
            let first = f.is_none();
            if first {
                *f = Some(why);
            }
            first
        });
        self.begin_shutdown();
    }

    /// Why the engine stopped on its own, if it did: a loop that could not be kept running.
    pub fn failure(&self) -> Option<String> {
        self.loops.failure.borrow().clone()
    }

    /// Resolves, with the reason, when the engine stops on its own because a loop could not be
    /// kept running.
    pub async fn failed(&self) -> String {
        let mut failure = self.loops.failure.subscribe();
        let why = failure.wait_for(Option::is_some).await.ok().and_then(|why| why.clone());
        match why {
            Some(why) => why,
            // The engine is gone (it never drops while its loops run).
            None => std::future::pending().await,
        }
    }

    /// How each of the engine's loops is doing.
    pub fn loop_health(&self) -> Vec<LoopHealth> {
        self.loops.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Makes loop `l` panic at its next wait, as a bug in it would (tests of the supervisor).
    #[cfg(any(test, feature = "testing"))]
    pub fn inject_panic(&self, l: Loop) {
        self.loops.faults.send_modify(|f| f.push(l));
    }

    /// Stops the loops (the writers after writing what is queued) and joins them, for at most
    /// `within`; a loop still running then is aborted.
    pub(super) async fn stop_loops(&self, within: Duration) {
        self.loops.closing.cancel();
        let supervisor = self.loops.supervisor.lock().ok().and_then(|mut s| s.take());
        let Some(mut supervisor) = supervisor else { return };
        if tokio::time::timeout(within, &mut supervisor).await.is_err() {
            tracing::warn!("engine loops did not stop within {within:?}; aborting them");
            supervisor.abort();
            let _ = supervisor.await;
        }
        if let Ok(mut health) = self.loops.health.lock() {
            health.iter_mut().for_each(|h| h.running = false);
        }
    }
}

/// The message a panic carried.
pub(crate) fn panic_message(panic: Box<dyn Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(panic) => match panic.downcast::<&'static str>() {
            Ok(s) => s.to_string(),
            Err(_) => "a panic without a message".into(),
        },
    }
}
