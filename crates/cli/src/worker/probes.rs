//! The status, cost and schedule probes of the projects a worker serves, run by the worker in
//! each project's directory (the engine's command probe, as the server runs a local project's)
//! on the manifest's `every`, the schedule probe also right after each hello and each change
//! of the manifest. What a probe printed, or why it failed, goes to the server, which takes it
//! as it takes a local probe's answer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use agent_os_core::manifest::Probe;
use agent_os_engine::plugin::ask_command_probe;

use super::Worker;
use super::client::{CallError, ProbeBody};
use super::projects::LocalProject;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Status,
    Cost,
    Schedule,
}

impl Kind {
    fn wire(self) -> &'static str {
        match self {
            Kind::Status => "status",
            Kind::Cost => "cost",
            Kind::Schedule => "schedule",
        }
    }

    /// The plugin protocol's operation.
    fn op(self) -> &'static str {
        match self {
            Kind::Status => "get_status",
            Kind::Cost => "report_cost",
            Kind::Schedule => "get_schedule",
        }
    }

    fn of(self, p: &LocalProject) -> Option<&Probe> {
        match self {
            Kind::Status => p.manifest.status.as_ref(),
            Kind::Cost => p.manifest.cost.as_ref(),
            Kind::Schedule => p.manifest.schedule_probe.as_ref(),
        }
    }
}

const KINDS: [Kind; 3] = [Kind::Status, Kind::Cost, Kind::Schedule];

pub async fn probe_loop(worker: Arc<Worker>) {
    let mut next: HashMap<(String, Kind), Instant> = HashMap::new();
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let busy: Arc<std::sync::Mutex<HashSet<(String, Kind)>>> = Default::default();
    let mut seen_generation = 0;
    loop {
        while in_flight.try_join_next().is_some() {}
        if let Some((generation, hello)) = worker.session_now() {
            let now = Instant::now();
            if generation != seen_generation {
                // After each hello: the schedule probes at once.
                seen_generation = generation;
                next.retain(|(_, kind), _| *kind != Kind::Schedule);
            }
            for name in worker.take_changed() {
                next.remove(&(name, Kind::Schedule));
            }
            for p in worker.projects() {
                for kind in KINDS {
                    let Some(probe) = kind.of(&p).cloned() else { continue };
                    let key = (p.name().to_string(), kind);
                    let due = *next.entry(key.clone()).or_insert(now);
                    if now < due {
                        continue;
                    }
                    next.insert(key.clone(), now + probe.every);
                    let fresh = busy.lock().map(|mut b| b.insert(key.clone())).unwrap_or(false);
                    if !fresh {
                        continue;
                    }
                    let (worker, busy, public_url, p) =
                        (worker.clone(), busy.clone(), hello.public_url.clone(), p.clone());
                    in_flight.spawn(async move {
                        ask(&worker, &p, kind, &probe, &public_url, generation).await;
                        if let Ok(mut b) = busy.lock() {
                            b.remove(&key);
                        }
                    });
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = worker.probes_wake() => {}
            _ = worker.given_up() => return,
        }
    }
}

/// Runs one probe and reports what it said.
async fn ask(worker: &Worker, p: &LocalProject, kind: Kind, probe: &Probe, public_url: &str, generation: u64) {
    let Some(command) = probe.run.as_ref() else { return };
    let since = match kind {
        Kind::Cost => worker.cost_cursor(p.name()),
        _ => None,
    };
    let started = Instant::now();
    let answer =
        ask_command_probe(&p.root, p.name(), kind.op(), command, probe.timeout, public_url, since.as_deref()).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let (answer, error) = match answer {
        Ok(serde_json::Value::Null) => (None, Some("the probe printed null, not an answer".to_string())),
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.message)),
    };
    let Some((now_generation, hello)) = worker.session_now() else { return };
    if now_generation != generation {
        // Said to a server the worker has said hello to since: still its answer to send.
        tracing::debug!(project = p.name(), "probe answered across a reconnect");
    }
    let report = ProbeBody {
        worker_id: hello.worker_id.clone(),
        project: p.name().to_string(),
        kind: kind.wire().to_string(),
        answer,
        error,
        duration_ms: duration_ms as i64,
        since,
    };
    match worker.client.probe(&report).await {
        Ok(answer) => {
            if kind == Kind::Cost {
                worker.set_cost_cursor(p.name(), answer.cost_cursor);
            }
        }
        Err(CallError::Unreachable(why)) => {
            tracing::debug!(project = p.name(), probe = kind.wire(), %why, "could not report a probe");
            worker.lost_contact(now_generation);
        }
        Err(e) => worker.call_refused(&e, &format!("the {} probe of {}", kind.wire(), p.name())),
    }
}
