//! Incidents: something broken, open until it recovers. Every source (a run that failed after
//! its retries, a check late or down, an unhealthy project, a budget threshold, a project's own
//! warning, a channel gone) raises and recovers through here, so each (source, subject) has one
//! open incident, its channels hear once when it opens and once when it resolves, an incident
//! that keeps coming back is folded into one and stops alerting (flapping), and nothing alerts
//! inside a maintenance window.
//!
//! What raising or resolving does to the stored incident is decided here too
//! ([`raise_incident`], [`resolve_incident`]): the store only reads the incident and writes
//! the decision, and refuses the write if the incident changed meanwhile, which sends the
//! decision back to be made again from the incident as it now is.

use std::sync::Arc;
use std::time::Duration;

use agent_os_core::alerting::{IncidentSource, IncidentStatus, NotificationSource, Severity};
use agent_os_core::check::CheckState;
use agent_os_core::format_duration;
use agent_os_core::id::new_id;
use agent_os_core::run::RunStatus;
use agent_os_store::{IncidentRecord, MaintenanceRecord, Store, StoreError};

use super::notify::{Notified, NotifyInput};
use super::{Engine, EngineError};

/// How often open incidents kept quiet by a maintenance window are looked at again.
const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// Something broken, as a source reports it.
#[derive(Clone, Debug)]
pub struct Alert {
    pub source: IncidentSource,
    /// What within the source, e.g. `trading/rebalance`; one open incident per subject.
    pub subject: String,
    pub project: Option<String>,
    pub severity: Severity,
    pub title: String,
    pub reason: String,
    pub tags: Vec<String>,
    /// The open incident got worse at the same severity in a way its channels should hear (a
    /// budget past a higher threshold); a rise in severity is told anyway.
    pub worse: bool,
}

/// A maintenance window in force.
#[derive(Clone, Debug)]
pub struct ActiveMaintenance {
    pub until: i64,
    pub reason: String,
}

impl Engine {
    /// Opens (or updates) the incident for `alert` and tells the channels when that is news.
    pub async fn raise(&self, alert: Alert) -> Result<IncidentRecord, EngineError> {
        let now = self.now();
        let flapping = &self.cfg().alerting.flapping;
        let new = IncidentRecord::opened(
            alert.source,
            &alert.subject,
            alert.project.as_deref(),
            alert.severity,
            &alert.title,
            &alert.reason,
            now,
        );
        let change = self.store_raise(&new).await?;
        let (incident, tell) = match change {
            IncidentChange::Opened(i) => (i, Some(Tell::Opened)),
            IncidentChange::Reopened(i) if i.flapping && i.notified => {
                // Told once when it starts flapping; quiet after that.
                let first = i.changes < i64::from(flapping.changes) + 2;
                (i, first.then_some(Tell::Flapping))
            }
            IncidentChange::Reopened(i) if i.flapping => (i, None),
            IncidentChange::Reopened(i) => (i, Some(Tell::Opened)),
            IncidentChange::Updated { incident, escalated } => {
                let heard = incident.notified && incident.acked_at.is_none() && !incident.flapping;
                let tell = match (escalated, alert.worse) {
                    (true, _) if heard => Some(Tell::Escalated),
                    (false, true) if heard => Some(Tell::Worse),
                    _ => None,
                };
                (incident, tell)
            }
        };
        if let Some(tell) = tell {
            self.tell(&incident, tell, &alert.tags).await?;
        }
        Ok(incident)
    }

    /// Stores `new` as raised: opened, opened again or updated, by the configured flapping rule.
    pub(super) async fn store_raise(&self, new: &IncidentRecord) -> Result<IncidentChange, EngineError> {
        let flapping = &self.cfg().alerting.flapping;
        let reopen_since = new.opened_at - flapping.window.as_millis() as i64;
        let change = raise_incident(&*self.store, new, reopen_since, i64::from(flapping.changes)).await?;
        self.touch();
        Ok(change)
    }

    /// Resolves the open incident of `source` and `subject`, telling the channels that heard
    /// it open (with the notification that told them).
    pub async fn resolve(
        &self,
        source: IncidentSource,
        subject: &str,
        reason: &str,
    ) -> Result<Option<(IncidentRecord, Option<Notified>)>, EngineError> {
        let resolved = resolve_incident(&*self.store, source, subject, reason, self.now()).await?;
        if resolved.is_some() {
            self.touch();
        }
        let Some(incident) = resolved else {
            return Ok(None);
        };
        let told = if incident.notified && !incident.flapping {
            self.tell(&incident, Tell::Resolved, &[]).await?
        } else {
            None
        };
        Ok(Some((incident, told)))
    }

    /// Says someone is on it: acknowledged incidents do not tell of their escalation.
    pub async fn ack_incident(&self, id: &str, by: &str) -> Result<IncidentRecord, EngineError> {
        if let Some(i) = self.store.get_incident(id).await?
            && i.status != IncidentStatus::Open
        {
            return Err(EngineError::Conflict(format!("incident {id} is already resolved; nothing to acknowledge")));
        }
        let acked = self.store.ack_incident(id, by, self.now()).await?;
        self.touch();
        acked.ok_or_else(|| EngineError::NotFound(format!("no incident {id:?}; `agent-os incidents` lists them")))
    }

    pub async fn incidents(
        &self,
        open_only: bool,
        project: Option<&str>,
        limit: i64,
    ) -> Result<Vec<IncidentRecord>, EngineError> {
        Ok(self.store.list_incidents(open_only, project, limit).await?)
    }

    /// The maintenance window covering `project` (or everything) at `now`, from config.yaml or
    /// set over the API.
    pub async fn maintenance_at(
        &self,
        project: Option<&str>,
        now: i64,
    ) -> Result<Option<ActiveMaintenance>, EngineError> {
        for m in &self.cfg().alerting.maintenance {
            if m.covers(project)
                && let Some(until) = m.active_until(now)
            {
                let reason = m.reason.clone().unwrap_or_else(|| "maintenance window in config.yaml".into());
                return Ok(Some(ActiveMaintenance { until, reason }));
            }
        }
        for m in self.store.list_maintenance(now).await? {
            let covers = match (&m.project, project) {
                (None, _) => true,
                (Some(p), Some(q)) => p == q,
                (Some(_), None) => false,
            };
            if covers && m.starts_at <= now {
                let reason = m.reason.clone().unwrap_or_else(|| "maintenance window".into());
                return Ok(Some(ActiveMaintenance { until: m.ends_at, reason }));
            }
        }
        Ok(None)
    }

    /// Sets a maintenance window from `start` (default now) to `end`.
    pub async fn start_maintenance(
        &self,
        project: Option<&str>,
        start: Option<i64>,
        end: i64,
        reason: Option<String>,
    ) -> Result<MaintenanceRecord, EngineError> {
        let now = self.now();
        let start = start.unwrap_or(now);
        if end <= start || end <= now {
            return Err(EngineError::Invalid {
                field: Some("end".into()),
                message: "the window must end after it starts, and in the future".into(),
            });
        }
        if let Some(p) = project {
            self.store.get_project(p).await?.ok_or_else(|| {
                EngineError::NotFound(format!("no project {p:?}; `agent-os project list` shows them"))
            })?;
        }
        if reason.as_ref().is_some_and(|r| r.len() > 500) {
            return Err(EngineError::Invalid { field: Some("reason".into()), message: "at most 500 bytes".into() });
        }
        let m = MaintenanceRecord {
            id: new_id(),
            project: project.map(str::to_string),
            starts_at: start,
            ends_at: end,
            reason,
            created_at: now,
        };
        self.store.insert_maintenance(&m).await?;
        Ok(m)
    }

    pub async fn end_maintenance(&self, id: &str) -> Result<MaintenanceRecord, EngineError> {
        let m = self
            .store
            .end_maintenance(id, self.now())
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("no maintenance window {id:?}")))?;
        self.alerts_changed.notify_one();
        Ok(m)
    }

    /// Maintenance windows set over the API that have not ended.
    pub async fn maintenance_windows(&self) -> Result<Vec<MaintenanceRecord>, EngineError> {
        Ok(self.store.list_maintenance(self.now()).await?)
    }

    /// Tells the channels about an incident, unless a maintenance window covers it (then it is
    /// told when the window ends, if it is still open).
    async fn tell(&self, i: &IncidentRecord, tell: Tell, tags: &[String]) -> Result<Option<Notified>, EngineError> {
        let now = self.now();
        // A resolution of what the channels heard is told even inside a window: it alerts no
        // one, and without it they would believe it still broken.
        if !matches!(tell, Tell::Resolved) && self.maintenance_at(i.project.as_deref(), now).await?.is_some() {
            if matches!(tell, Tell::Opened) {
                self.store.set_incident_notified(&i.id, false).await?;
            }
            return Ok(None);
        }
        let (title, body, severity) = match tell {
            Tell::Opened => (i.title.clone(), i.reason.clone(), i.severity),
            Tell::Escalated => (format!("Now {}: {}", i.severity, i.title), i.reason.clone(), i.severity),
            Tell::Worse => (i.title.clone(), i.reason.clone(), i.severity),
            Tell::Flapping => (
                format!("Flapping: {}", i.title),
                format!(
                    "opened {} times within {}; no more alerts about it until it settles. Last: {}",
                    (i.changes + 1) / 2,
                    format_duration(self.cfg().alerting.flapping.window),
                    i.reason
                ),
                i.severity,
            ),
            Tell::Resolved => {
                let took = Duration::from_millis((i.resolved_at.unwrap_or(now) - i.opened_at).max(0) as u64);
                (
                    format!("Resolved: {}", i.title),
                    format!("{} (open for {})", i.reason, format_duration(Duration::from_secs(took.as_secs().max(1)))),
                    Severity::Info,
                )
            }
        };
        let mut all_tags = vec![format!("incident:{}", i.source)];
        all_tags.extend(tags.iter().take(8).cloned());
        if matches!(tell, Tell::Resolved) {
            all_tags.push(super::notify::RESOLVED_TAG.to_string());
        }
        // Whoever heard it open hears what follows, whatever the routes say of the new message.
        let also_to = match tell {
            Tell::Opened => Vec::new(),
            _ => self.store.incident_channels(&i.id).await?,
        };
        // Someone can acknowledge from the message itself: a signed link, once, for 7 days.
        let link = match tell {
            Tell::Resolved => None,
            _ if i.acked_at.is_some() => None,
            _ => self.ack_link(&i.id).await?,
        };
        let body = match link {
            Some(link) if link.len() <= 1000 => {
                format!("{}\n\nAcknowledge: {link}", truncate(&body, 4000 - 16 - link.len()))
            }
            _ => truncate(&body, 4000),
        };
        let input = NotifyInput {
            title: truncate(&title, 200),
            body,
            severity: Some(severity),
            tags: all_tags,
            dedup_key: None,
            source: Some(NotificationSource::from(i.source)),
            incident_id: Some(i.id.clone()),
            also_to,
            idempotency_key: None,
        };
        // An opening the channels have not heard is claimed before it is told: a raise and the
        // sweep can both find it untold, and only one of them tells it. (One opened again after
        // the channels heard it stays heard, and the sweep leaves it alone.)
        let claim = matches!(tell, Tell::Opened) && !i.notified;
        if claim && !self.store.claim_incident_notice(&i.id).await? {
            return Ok(None);
        }
        let told = self.notify(i.project.as_deref(), input, None).await;
        if claim && told.is_err() {
            self.store.set_incident_notified(&i.id, false).await?;
        }
        Ok(Some(told?))
    }

    /// Tells the channels about incidents a maintenance window kept quiet once it is over.
    pub(super) async fn alert_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        loop {
            if let Err(e) = self.sweep_incidents().await {
                tracing::warn!(error = %e, "could not look at open incidents");
            }
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = self.alerts_changed.notified() => {}
                _ = stopping.changed() => return,
            }
        }
    }

    pub async fn sweep_incidents(&self) -> Result<(), EngineError> {
        let now = self.now();
        for i in self.store.list_incidents(true, None, 1000).await? {
            if i.source == IncidentSource::Budget && budget_period_over(&i.subject, i.opened_at, now) {
                self.resolve(IncidentSource::Budget, &i.subject, "a new budget period began").await?;
                continue;
            }
            if !i.notified && !i.flapping && self.maintenance_at(i.project.as_deref(), now).await?.is_none() {
                self.tell(&i, Tell::Opened, &[]).await?;
            }
        }
        Ok(())
    }
}

// What raising and resolving do -------------------------------------------------------------

/// What raising an incident did.
#[derive(Clone, Debug, PartialEq)]
pub enum IncidentChange {
    /// A new incident.
    Opened(IncidentRecord),
    /// One resolved within the flapping window, open again.
    Reopened(IncidentRecord),
    /// Already open; `escalated` when its severity rose.
    Updated { incident: IncidentRecord, escalated: bool },
}

/// How often a raise or a resolution decides again when the incident changed under it.
const DECIDE_AGAIN: usize = 4;

/// Raises `new` (an open incident, as a source reports it): the open incident of its source
/// and subject takes its title and reason, and its severity when higher; else one resolved at
/// or after `reopen_since` is opened again, flapping from `flap_changes` changes; else `new`
/// is opened.
pub async fn raise_incident(
    store: &dyn Store,
    new: &IncidentRecord,
    reopen_since: i64,
    flap_changes: i64,
) -> Result<IncidentChange, StoreError> {
    for _ in 0..DECIDE_AGAIN {
        if let Some(open) = store.find_open_incident(new.source, &new.subject).await? {
            let (updated, escalated) = raised_again(&open, new);
            if store.replace_incident(&updated, &open).await? {
                return Ok(IncidentChange::Updated { incident: updated, escalated });
            }
            continue;
        }
        if let Some(resolved) = store.last_resolved_incident(new.source, &new.subject, reopen_since).await? {
            let reopened = reopened(&resolved, new, flap_changes);
            if store.replace_incident(&reopened, &resolved).await? {
                return Ok(IncidentChange::Reopened(reopened));
            }
            continue;
        }
        if store.insert_incident(new).await? {
            return Ok(IncidentChange::Opened(new.clone()));
        }
    }
    Err(StoreError::Conflict(format!("incident {}/{} kept changing while it was raised", new.source, new.subject)))
}

/// Resolves the open incident of `source` and `subject`, if there is one, counting the change.
pub async fn resolve_incident(
    store: &dyn Store,
    source: IncidentSource,
    subject: &str,
    reason: &str,
    at: i64,
) -> Result<Option<IncidentRecord>, StoreError> {
    for _ in 0..DECIDE_AGAIN {
        let Some(open) = store.find_open_incident(source, subject).await? else { return Ok(None) };
        let resolved = resolved(&open, reason, at);
        if store.replace_incident(&resolved, &open).await? {
            return Ok(Some(resolved));
        }
    }
    Err(StoreError::Conflict(format!("incident {source}/{subject} kept changing while it was resolved")))
}

/// The open incident raised again: the latest title, reason and time, and the higher severity.
fn raised_again(open: &IncidentRecord, new: &IncidentRecord) -> (IncidentRecord, bool) {
    let escalated = new.severity > open.severity;
    let mut updated = open.clone();
    if escalated {
        updated.severity = new.severity;
    }
    updated.title = new.title.clone();
    updated.reason = new.reason.clone();
    updated.updated_at = new.updated_at;
    (updated, escalated)
}

/// A resolved incident opened again as `new`: a change more, flapping once it has changed
/// `flap_changes` times, its acknowledgement gone (the new failure is not known to anyone yet).
fn reopened(resolved: &IncidentRecord, new: &IncidentRecord, flap_changes: i64) -> IncidentRecord {
    let changes = resolved.changes + 1;
    IncidentRecord {
        status: IncidentStatus::Open,
        resolved_at: None,
        acked_at: None,
        acked_by: None,
        changes,
        flapping: resolved.flapping || changes >= flap_changes,
        severity: new.severity,
        title: new.title.clone(),
        reason: new.reason.clone(),
        opened_at: new.opened_at,
        updated_at: new.updated_at,
        ..resolved.clone()
    }
}

/// The open incident resolved at `at`: a change more.
fn resolved(open: &IncidentRecord, reason: &str, at: i64) -> IncidentRecord {
    IncidentRecord {
        status: IncidentStatus::Resolved,
        resolved_at: Some(at),
        reason: reason.into(),
        changes: open.changes + 1,
        updated_at: at,
        ..open.clone()
    }
}

// Sources ----------------------------------------------------------------------------------

impl Engine {
    /// A run reached its end: a failure after its retries raises the task's incident, a
    /// success resolves it.
    pub(super) async fn run_ended(&self, run: &agent_os_store::RunRecord) {
        let subject = format!("{}/{}", run.project, run.task);
        let result = match run.status {
            RunStatus::Succeeded => {
                self.resolve(IncidentSource::Run, &subject, &format!("run {} succeeded", run.id)).await.map(|_| ())
            }
            RunStatus::Failed | RunStatus::TimedOut => {
                let what = if run.status == RunStatus::TimedOut { "timed out" } else { "failed" };
                let attempts = if run.attempt > 1 { format!(" after {} attempts", run.attempt) } else { String::new() };
                let error = run.error.as_deref().map(|e| format!(": {}", truncate(e, 500))).unwrap_or_default();
                let alert = Alert {
                    source: IncidentSource::Run,
                    subject: subject.clone(),
                    project: Some(run.project.clone()),
                    severity: Severity::Warning,
                    title: format!("{subject} {what}"),
                    reason: format!("run {} {what}{attempts}{error}", run.id),
                    tags: Vec::new(),
                    worse: false,
                };
                self.raise(alert).await.map(|_| ())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(run = %run.id, error = %e, "run incident not recorded");
        }
    }

    /// A check changed state: late opens its incident as a warning, down makes it critical,
    /// up resolves it. A late or down check that something holds (a late or down upstream it
    /// `depends_on`, a snooze: `holds`) opens nothing; it is recorded as held instead, and the
    /// monitor pages it once nothing holds it and it is still late or down.
    pub(super) async fn check_changed(&self, c: &agent_os_store::CheckRecord, state: CheckState, why: &str) {
        match state {
            CheckState::Late | CheckState::Down => {
                let now = self.now();
                let projects = self.project_snoozes().await.unwrap_or_default();
                match self.hold_of(c, &projects, now).await {
                    Ok(Some(hold)) => return self.hold_check(c, state, &hold, why).await,
                    Ok(None) => {}
                    Err(e) => tracing::warn!(check = %c.id, error = %e, "could not tell whether the check is held"),
                }
                if c.held_by.is_some()
                    && let Err(e) = self.store.set_check_held(&c.id, None, None).await
                {
                    tracing::warn!(check = %c.id, error = %e, "held check not released");
                }
            }
            CheckState::Up | CheckState::New => {
                if c.held_by.is_some()
                    && let Err(e) = self.store.set_check_held(&c.id, None, None).await
                {
                    tracing::warn!(check = %c.id, error = %e, "held check not released");
                }
            }
        }
        self.page_check(c, state, why).await;
    }

    /// Raises (late, down) or resolves (up) the incident of a check, without asking what holds
    /// it. The alert carries the check's tags, so routes can match them.
    pub(super) async fn page_check(&self, c: &agent_os_store::CheckRecord, state: CheckState, why: &str) {
        let project = c.project.as_str();
        let subject = format!("{project}/{}", c.slug);
        let result = match state {
            CheckState::Up => self.resolve(IncidentSource::Check, &subject, "a ping arrived").await.map(|_| ()),
            CheckState::Late | CheckState::Down => {
                let alert = Alert {
                    source: IncidentSource::Check,
                    subject: subject.clone(),
                    project: Some(project.to_string()),
                    severity: if state == CheckState::Down { Severity::Critical } else { Severity::Warning },
                    title: format!("{subject} is {state}"),
                    reason: why.to_string(),
                    tags: c.tags.clone(),
                    worse: false,
                };
                self.raise(alert).await.map(|_| ())
            }
            CheckState::New => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(check = %subject, error = %e, "check incident not recorded");
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Tell {
    Opened,
    Escalated,
    Worse,
    Flapping,
    Resolved,
}

/// Whether the budget period a budget incident (subject `PROJECT/PERIOD[:SERVICE]`) was opened
/// in is over.
fn budget_period_over(subject: &str, opened_at: i64, now: i64) -> bool {
    let period = subject.split_once('/').map(|(_, rest)| rest.split(':').next().unwrap_or(rest));
    match period.map(str::parse::<agent_os_core::budget::Period>) {
        Some(Ok(p)) => p.bounds(now).0 > opened_at,
        _ => false,
    }
}

fn truncate(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut end = max_bytes - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
