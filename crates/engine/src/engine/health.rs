//! A project's health: the worst of what its status probe says, what its HTTP health check
//! finds, its checks, its open incidents (failing tasks, budgets, its own warnings) and its
//! budget pause, each with the reason. When the
//! probes (status and health check) find it degraded or down, a `health` incident opens; it
//! resolves when they find it well again.

use std::time::{Duration, Instant};

use agent_os_core::alerting::{IncidentSource, Severity};
use agent_os_core::check::CheckState;
use agent_os_core::manifest::{HealthCheck, ProbeKind, ProbeStatus};
use agent_os_core::redact::redact_shapes;
use agent_os_store::ProbeResult;

use super::incidents::Alert;
use super::{Engine, EngineError};
use crate::project::LoadedProject;

pub use agent_os_core::health::{HealthSource, HealthState};

/// One thing that went into a project's health.
#[derive(Clone, Debug)]
pub struct HealthReason {
    pub source: HealthSource,
    pub state: HealthState,
    pub message: String,
}

/// A project's health with what it is made of, worst first.
#[derive(Clone, Debug)]
pub struct ProjectHealth {
    pub state: HealthState,
    pub reasons: Vec<HealthReason>,
}

/// What a stored probe result says about health.
fn probe_state(r: &ProbeResult) -> HealthReason {
    let health_check = r.kind == ProbeKind::Health;
    let source = if health_check { HealthSource::Health } else { HealthSource::Status };
    if !r.ok {
        let why = r.error.clone().unwrap_or_else(|| "no answer".into());
        let state = if health_check { HealthState::Down } else { HealthState::Degraded };
        let what = if health_check { "health check failed" } else { "status probe failed" };
        return HealthReason { source, state, message: format!("{what}: {why}") };
    }
    let state = match r.status {
        Some(ProbeStatus::Down) => HealthState::Down,
        Some(ProbeStatus::Degraded) => HealthState::Degraded,
        Some(ProbeStatus::Ok) | None => HealthState::Ok,
    };
    let message = r.message.clone().unwrap_or_else(|| r.status.unwrap_or(ProbeStatus::Ok).to_string());
    HealthReason { source, state, message }
}

impl Engine {
    /// The project's health now, with every reason that is not plain "ok" (or the ok ones when
    /// everything is fine).
    pub async fn project_health(&self, p: &LoadedProject) -> Result<ProjectHealth, EngineError> {
        let mut reasons = Vec::new();
        for r in self.store.latest_probe_results(&p.record.id).await? {
            if r.kind == ProbeKind::Status || r.kind == ProbeKind::Health {
                reasons.push(probe_state(&r));
            }
        }
        for c in self.store.list_checks(Some(&p.record.name)).await? {
            let state = match c.state {
                CheckState::Down => HealthState::Down,
                CheckState::Late => HealthState::Degraded,
                CheckState::Up => HealthState::Ok,
                CheckState::New => continue,
            };
            reasons.push(HealthReason {
                source: HealthSource::Check,
                state,
                message: format!("check {} is {}", c.slug, c.state),
            });
        }
        // Every open incident of the project counts, so a project is never "well" while one
        // is open. Checks and probes are judged from their state now, above; their incidents
        // would say the same twice.
        for i in self.store.list_incidents(true, Some(&p.record.name), 100).await? {
            let (source, message) = match i.source {
                IncidentSource::Check | IncidentSource::Health | IncidentSource::Worker | IncidentSource::Pricing => {
                    continue;
                }
                IncidentSource::Run => (HealthSource::Run, i.reason),
                IncidentSource::Budget => (HealthSource::Budget, i.title),
                IncidentSource::Project => (HealthSource::Project, i.title),
                IncidentSource::Channel | IncidentSource::Config => (HealthSource::Incident, i.title),
            };
            // Only the project itself can say it is down; anything else open degrades it.
            let state = if source == HealthSource::Project && i.severity == Severity::Critical {
                HealthState::Down
            } else {
                HealthState::Degraded
            };
            reasons.push(HealthReason { source, state, message });
        }
        if p.record.transport == agent_os_store::ProjectTransport::Worker {
            reasons.push(self.worker_health(&p.record.name).await?);
        }
        if let Some(pause) = self.pause_of(&p.record.name).await? {
            reasons.push(HealthReason {
                source: HealthSource::Budget,
                state: HealthState::Degraded,
                message: format!("paused: {}", pause.reason),
            });
        }
        let state = reasons.iter().map(|r| r.state).max().unwrap_or(HealthState::Unknown);
        reasons.sort_by_key(|r| std::cmp::Reverse(r.state));
        if state > HealthState::Ok {
            reasons.retain(|r| r.state > HealthState::Ok);
        }
        Ok(ProjectHealth { state, reasons })
    }

    /// A worker project's part of its health: fine while a worker serving it is connected,
    /// degraded without one, down once that has lasted past `workers.grace` (its incident).
    async fn worker_health(&self, name: &str) -> Result<HealthReason, EngineError> {
        let (connected, last_seen) = self.worker_presence(name).await?;
        if connected {
            let message = format!("a worker serving {name} is connected");
            return Ok(HealthReason { source: HealthSource::Worker, state: HealthState::Ok, message });
        }
        let open = self.store.find_open_incident(IncidentSource::Worker, name).await?.is_some();
        let state = if open { HealthState::Down } else { HealthState::Degraded };
        Ok(HealthReason { source: HealthSource::Worker, state, message: self.no_worker(name, last_seen) })
    }

    /// `GET` the project's health URL once and store what came of it.
    pub async fn run_health_check(&self, p: &LoadedProject, h: &HealthCheck) {
        let started = Instant::now();
        let mut result = self.probe_result(p, ProbeKind::Health, started);
        let answer = self.health_get(h).await;
        result.duration_ms = started.elapsed().as_millis() as i64;
        match answer {
            Ok(status) if status == h.expect => {
                result.status = Some(ProbeStatus::Ok);
                result.message = Some(format!("GET {} answered {status}", h.url));
            }
            Ok(status) => {
                result.ok = false;
                result.status = Some(ProbeStatus::Down);
                result.error = Some(format!("GET {} answered {status}, expected {}", h.url, h.expect));
            }
            Err(e) => {
                result.ok = false;
                result.status = Some(ProbeStatus::Down);
                result.error = Some(format!("GET {}: {e}", h.url));
            }
        }
        // The URL may carry user information (`https://u:PASS@host/health`).
        result.message = result.message.map(|m| redact_shapes(&m));
        result.error = result.error.map(|m| redact_shapes(&m));
        if let Err(e) = self.store.insert_probe_result(&result).await {
            tracing::warn!(project = %p.record.name, error = %e, "could not store a health check result");
        }
        self.probes_changed(p).await;
    }

    async fn health_get(&self, h: &HealthCheck) -> Result<u16, String> {
        // The user's own service, named in the user's own manifest: local addresses are the
        // point here, unlike notification channels. Redirects are answers, not followed.
        crate::plugin::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("agent-os/", env!("CARGO_PKG_VERSION"), " health-check"))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(h.timeout)
            .connect_timeout(h.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| e.to_string())?;
        let resp = client.get(&h.url).send().await.map_err(|e| {
            if e.is_timeout() {
                return format!("no answer within {}", agent_os_core::format_duration(h.timeout));
            }
            // reqwest's own text hides the cause (connection refused, DNS); name the deepest.
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            cause.to_string()
        })?;
        Ok(resp.status().as_u16())
    }

    /// After a status probe or health check: opens or resolves the project's `health` incident
    /// from what the probes say now.
    pub(super) async fn probes_changed(&self, p: &LoadedProject) {
        let latest = match self.store.latest_probe_results(&p.record.id).await {
            Ok(l) => l,
            Err(e) => return tracing::warn!(error = %e, "could not read probe results"),
        };
        let worst = latest
            .iter()
            .filter(|r| r.kind == ProbeKind::Status || r.kind == ProbeKind::Health)
            .map(probe_state)
            .max_by_key(|r| r.state);
        let name = &p.record.name;
        let result = match worst {
            Some(r) if r.state >= HealthState::Degraded => {
                let alert = Alert {
                    source: IncidentSource::Health,
                    subject: name.clone(),
                    project: Some(name.clone()),
                    severity: if r.state == HealthState::Down { Severity::Critical } else { Severity::Warning },
                    title: format!("{name} is {}", r.state.as_str()),
                    reason: r.message,
                    tags: Vec::new(),
                    worse: false,
                };
                self.raise(alert).await.map(|_| ())
            }
            Some(_) => self.resolve(IncidentSource::Health, name, "its probes find it well again").await.map(|_| ()),
            None => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(project = %name, error = %e, "health incident not recorded");
        }
    }
}
