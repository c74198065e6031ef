//! Heartbeat checks of the schedules projects keep elsewhere (Railway cron, launchd, crontab…):
//! pings come in over HTTP, the state follows `core::check::assess`, and every state change
//! is stored as an event (`check.up`, `check.late`, `check.down`) in the same transaction.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashSet;

use agent_os_core::check::{Assessment, CheckKind, CheckState, PingKind, Pings, Timing, assess};
use agent_os_core::cron::{Cron, Zone};
use agent_os_core::discover::{runs_task, same_zone};
use agent_os_core::id::new_id;
use agent_os_core::manifest::{DEFAULT_GRACE, Expect, ManagedBy, ScheduleSource};
use agent_os_core::name::check_task_name;
use agent_os_store::{CheckRecord, NewCheck, NewEvent, NewSchedule, PingUpdate};
use serde_json::json;

use super::{Engine, EngineError};
use crate::project::LoadedProject;

/// Longest a ping body kept as the ping's log.
pub const MAX_PING_BODY: usize = 100 * 1024;

/// The longest the monitor sleeps without looking again.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Most schedules one registration may carry.
const MAX_DISCOVERED: usize = 500;

/// A schedule found by discovery, to register as one a project keeps elsewhere.
#[derive(Clone, Debug)]
pub struct DiscoveredSchedule {
    /// Its name within the project; also the slug of the check that watches it.
    pub name: String,
    pub cron: String,
    /// IANA zone (default UTC).
    pub timezone: Option<String>,
    /// `cron`, `launchd`, `systemd`, `railway` or `github`.
    pub managed_by: String,
    /// What it runs and where it was found.
    pub description: String,
    /// The command the job runs, as its file states it: recognises the manifest's task.
    pub command: Option<String>,
    /// The file names no zone: the job follows the clock of the machine it runs on, and
    /// `timezone` is only the zone of the machine discovery ran on.
    pub zone_from_machine: bool,
}

/// What became of one discovered schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Registered (or replaced) under this name.
    Registered(String),
    /// Already declared in the manifest: this schedule kept elsewhere, of this task, watches it.
    InManifest { task: String, cron: String, timezone: String },
}

/// The schedule kept elsewhere of `p`'s manifest that `f` is, if any: the same cron (however
/// written), the same task (by name, or because the job runs the task's command) and the same
/// zone. A job whose file names no zone follows its machine's clock, which the manifest's zone
/// states better than the machine discovery ran on, so any zone matches it.
fn in_manifest<'a>(p: &'a LoadedProject, f: &DiscoveredSchedule) -> Option<&'a agent_os_core::manifest::Schedule> {
    let cron = Cron::parse(&f.cron).ok()?;
    let zone = f.timezone.as_deref().unwrap_or("UTC");
    p.manifest.schedules.iter().filter(|s| s.check.is_some()).find(|s| {
        let same_task = s.task == f.name
            || s.check.as_deref() == Some(f.name.as_str())
            || f.command.as_deref().is_some_and(|job| {
                p.manifest.tasks.get(&s.task).and_then(|t| t.run.as_ref()).is_some_and(|run| runs_task(job, run))
            });
        same_task && s.cron.fires_like(&cron) && (f.zone_from_machine || same_zone(s.timezone.name(), zone))
    })
}

/// A ping to store, and where to say whether it was.
pub(crate) type PingJob = (PingUpdate, tokio::sync::oneshot::Sender<Result<(), String>>);

/// Most pings one transaction carries.
const PING_GROUP: usize = 256;

/// How late a ping may say it happened (a job's spool sent after an outage).
const LATE_PING_MAX_MS: i64 = 30 * 86_400_000;

/// Which check a ping is for.
pub enum PingTarget<'a> {
    /// `/ping/<check id>`
    Id(&'a str),
    /// `/ping/<project ping key>/<slug>`
    Slug { ping_key: &'a str, slug: &'a str },
}

/// The expectation of a stored check, read from its row; `None` when its stored cron or zone
/// no longer parses.
fn expect_of(c: &CheckRecord) -> Option<Expect> {
    match (c.kind, c.period_ms, &c.cron) {
        (CheckKind::Period, Some(ms), _) => Some(Expect::Period(Duration::from_millis(ms.max(0) as u64))),
        (_, _, Some(cron)) => {
            let cron = Cron::parse(cron).ok()?;
            let timezone = Zone::parse(c.timezone.as_deref().unwrap_or("UTC")).ok()?;
            Some(Expect::Cron { cron, timezone })
        }
        _ => Some(Expect::Period(Duration::from_secs(u64::MAX / 4))),
    }
}

/// A stored length of time (ms); a negative one reads as zero.
fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

/// The state of a stored check at `now`, when it would change next, and why.
fn state_of(c: &CheckRecord, pings: &Pings, now: i64) -> Assessment {
    let timing = Timing {
        grace: millis(c.grace_ms),
        start_grace: c.start_grace_ms.map(millis),
        max_duration: c.max_duration_ms.map(millis),
    };
    assess(expect_of(c).as_ref(), &timing, pings, now)
}

fn event(c: &CheckRecord, state: CheckState, at: i64, why: &str) -> NewEvent {
    NewEvent {
        id: new_id(),
        kind: format!("check.{}", state.as_str()),
        project: Some(c.project.clone()),
        subject: Some(c.slug.clone()),
        data: json!({"check": c.id, "project": c.project, "slug": c.slug, "state": state.as_str(), "reason": why})
            .to_string(),
        at,
    }
}

impl Engine {
    /// Makes the project's checks match its manifest and its registered discovered schedules
    /// (ids, and so ping URLs, are kept).
    pub(super) async fn sync_checks(&self, p: &LoadedProject) -> Result<(), EngineError> {
        let candidate = hex::encode(crate::secrets::random_bytes::<12>());
        self.store.ensure_ping_key(&p.record.id, &candidate).await?;
        let mut checks: Vec<NewCheck> = p
            .manifest
            .checks
            .iter()
            .map(|c| {
                let (kind, period_ms, cron, timezone) = match &c.expect {
                    Expect::Period(d) => (CheckKind::Period, Some(d.as_millis() as i64), None, None),
                    Expect::Cron { cron, timezone } => {
                        (CheckKind::Cron, None, Some(cron.source().to_string()), Some(timezone.name().to_string()))
                    }
                };
                NewCheck {
                    slug: c.slug.clone(),
                    kind,
                    period_ms,
                    cron,
                    timezone,
                    grace_ms: c.grace.as_millis() as i64,
                    start_grace_ms: c.start_grace.map(|d| d.as_millis() as i64),
                    min_duration_ms: c.min_duration.map(|d| d.as_millis() as i64),
                    max_duration_ms: c.max_duration.map(|d| d.as_millis() as i64),
                    max_pings: c.max_pings.map(|m| (i64::from(m.count), m.within.as_millis() as i64)),
                    description: c.description.clone(),
                    tags: c.tags.clone(),
                    depends_on: c.depends_on.clone(),
                }
            })
            .collect();
        for s in self.store.list_schedules(Some(&p.record.name)).await? {
            // Discovered schedules, and those a plugin reports through `get_schedule` that are
            // kept elsewhere, are watched like the manifest's.
            if matches!(s.source, ScheduleSource::Discovered | ScheduleSource::Plugin)
                && s.managed_by != ManagedBy::AgentOs
                && let Some(slug) = s.check_slug
                && !checks.iter().any(|c| c.slug == slug)
            {
                checks.push(NewCheck {
                    slug,
                    kind: CheckKind::Cron,
                    period_ms: None,
                    cron: Some(s.cron),
                    timezone: Some(s.timezone),
                    grace_ms: DEFAULT_GRACE.as_millis() as i64,
                    start_grace_ms: None,
                    min_duration_ms: None,
                    max_duration_ms: None,
                    max_pings: None,
                    description: s.description,
                    // Registered discovered and plugin-reported schedules carry no tags (yet):
                    // the manifest's `schedules:` entry of the same job carries them instead.
                    tags: Vec::new(),
                    depends_on: Vec::new(),
                });
            }
        }
        self.store.sync_checks(&p.record.id, &checks, self.now()).await?;
        self.checks_changed.notify_one();
        Ok(())
    }

    /// Registers schedules found by discovery as schedules `project` keeps elsewhere, each
    /// watched by a check named after it. All are checked first: one bad entry registers none.
    /// Registering a name again replaces it. One the manifest already declares ([`in_manifest`])
    /// is recognised, not registered, and replaces a registration of its name. Returns what
    /// became of each, in order.
    pub async fn register_discovered(
        &self,
        project: &str,
        found: &[DiscoveredSchedule],
    ) -> Result<Vec<Registration>, EngineError> {
        let p = self.project(project).await?;
        if found.is_empty() || found.len() > MAX_DISCOVERED {
            return Err(EngineError::Invalid {
                field: Some("schedules".into()),
                message: format!("give 1 to {MAX_DISCOVERED} schedules"),
            });
        }
        let mut names = HashSet::new();
        let mut records = Vec::with_capacity(found.len());
        let mut outcome = Vec::with_capacity(found.len());
        for (i, f) in found.iter().enumerate() {
            let bad = |field: &str, message: String| EngineError::Invalid {
                field: Some(format!("schedules[{i}].{field}")),
                message,
            };
            check_task_name(&f.name).map_err(|e| bad("name", e.replace("task name", "schedule name")))?;
            if !names.insert(f.name.as_str()) {
                return Err(bad("name", format!("{:?} is given twice", f.name)));
            }
            if let Some(s) = in_manifest(&p, f) {
                outcome.push(Registration::InManifest {
                    task: s.task.clone(),
                    cron: s.cron.source().to_string(),
                    timezone: s.timezone.name().to_string(),
                });
                continue;
            }
            if p.manifest.checks.iter().any(|c| c.slug == f.name) {
                return Err(bad(
                    "name",
                    format!("project {project:?} already has a check {:?} in its manifest; pick another name", f.name),
                ));
            }
            let timezone = f.timezone.clone().unwrap_or_else(|| "UTC".into());
            Cron::parse(&f.cron).map_err(|e| bad("cron", e.to_string()))?;
            Zone::parse(&timezone).map_err(|e| bad("timezone", e))?;
            let managed_by = f.managed_by.parse().ok().filter(|m| *m != ManagedBy::AgentOs).ok_or_else(|| {
                let elsewhere: Vec<&str> =
                    ManagedBy::ALL.iter().filter(|m| **m != ManagedBy::AgentOs).map(|m| m.as_str()).collect();
                bad(
                    "managed_by",
                    format!("{:?} is not a scheduler kept elsewhere; one of: {}", f.managed_by, elsewhere.join(", ")),
                )
            })?;
            if f.description.len() > 2000 {
                return Err(bad("description", "at most 2000 bytes".into()));
            }
            records.push(NewSchedule {
                task: f.name.clone(),
                cron: f.cron.trim().to_string(),
                timezone,
                managed_by,
                description: f.description.clone(),
                source: ScheduleSource::Discovered,
                check_slug: Some(f.name.clone()),
            });
            outcome.push(Registration::Registered(f.name.clone()));
        }
        if !records.is_empty() {
            self.store.add_discovered_schedules(&p.record.id, &records).await?;
        }
        // A registration made before the manifest declared the job (or before it was
        // recognised) would watch it twice.
        for (f, done) in found.iter().zip(&outcome) {
            if matches!(done, Registration::InManifest { .. }) {
                self.store.remove_discovered_schedule(&p.record.id, &f.name).await?;
            }
        }
        self.sync_checks(&p).await?;
        self.schedules_touched();
        Ok(outcome)
    }

    /// Removes a registered discovered schedule named by its id or `project/name`, as
    /// [`Engine::find_schedule`] finds it.
    pub async fn forget_schedule(&self, reference: &str) -> Result<(), EngineError> {
        let s = self.find_schedule(reference).await?;
        if s.record.source != ScheduleSource::Discovered {
            return Err(EngineError::Invalid {
                field: None,
                message: format!(
                    "schedule {} of project {:?} comes from its {}, not from `schedules discover --register`; change it there",
                    s.id, s.record.project, s.record.source
                ),
            });
        }
        self.remove_discovered(&s.record.project, &s.record.task).await
    }

    /// Removes a registered discovered schedule (and its check).
    pub async fn remove_discovered(&self, project: &str, name: &str) -> Result<(), EngineError> {
        let p = self.project(project).await?;
        if !self.store.remove_discovered_schedule(&p.record.id, name).await? {
            return Err(EngineError::NotFound(format!(
                "project {project:?} has no registered discovered schedule {name:?} (schedules from the manifest are changed there)"
            )));
        }
        self.sync_checks(&p).await?;
        self.schedules_touched();
        Ok(())
    }

    /// Takes a ping: records it and the check's new state (with an event when it changed).
    ///
    /// `sent_at` is when the job says the ping happened (a ping sent late from a client's
    /// spool); it is taken within [the check's last ping or 30 days ago, now], so a late ping
    /// never moves the check back in time. A start or finish that repeats its run id and kind
    /// (a client resending after a lost answer) is recorded once.
    pub async fn ping(
        &self,
        target: PingTarget<'_>,
        kind: PingKind,
        rid: Option<String>,
        body: Option<String>,
        remote: Option<String>,
        sent_at: Option<i64>,
    ) -> Result<CheckRecord, EngineError> {
        let check = match target {
            PingTarget::Id(id) => self.store.get_check(id).await?,
            PingTarget::Slug { ping_key, slug } => self.store.find_check_by_slug(ping_key, slug).await?,
        }
        .ok_or_else(|| EngineError::NotFound("no such check".into()))?;
        let earlier = match &rid {
            Some(rid) if kind != PingKind::Log => Some(self.store.rid_pings(&check.id, rid, &kind.as_str()).await?),
            _ => None,
        };
        if earlier.as_ref().is_some_and(|e| e.recorded) {
            return Ok(check);
        }
        let clock = self.now();
        // A late ping is taken no earlier than the check's last ping (nor 30 days ago).
        let floor = check.last_ping_at.unwrap_or(i64::MIN).max(clock - LATE_PING_MAX_MS).min(clock);
        let now = sent_at.map_or(clock, |at| at.clamp(floor, clock));
        let mut pings = Pings {
            last_finish: check.last_finish_at,
            last_failed: check.last_failed,
            running_since: check.running_since,
        };
        let mut duration_ms = None;
        let mut too_fast = None;
        match kind {
            PingKind::Start => pings.running_since = Some(now),
            PingKind::Log => {}
            finish => {
                // With a run id, the finish pairs with the start of the same id, so concurrent
                // runs of one job each get their own duration; a run still going keeps the
                // check "running".
                let paired = earlier.and_then(|e| e.started);
                duration_ms = paired.or(pings.running_since).map(|s| now - s);
                pings.last_finish = Some(now);
                pings.last_failed = finish.is_failure();
                // A success sooner after its start than min_duration counts as a failure.
                if let (false, Some(took), Some(min)) = (pings.last_failed, duration_ms, check.min_duration_ms)
                    && took < min
                {
                    pings.last_failed = true;
                    too_fast = Some(format!(
                        "finished too fast: {} after its start, under min_duration {}",
                        agent_os_core::format_duration(millis(took)),
                        agent_os_core::format_duration(millis(min))
                    ));
                }
                if paired.is_none_or(|s| Some(s) == pings.running_since) {
                    pings.running_since = None;
                }
            }
        }
        let old = check.state;
        let state = if kind == PingKind::Log { old } else { state_of(&check, &pings, clock).state };
        let why = too_fast.unwrap_or_else(|| match kind {
            PingKind::Fail => "the job reported a failure".to_string(),
            PingKind::Exit(n) if n != 0 => format!("the job exited with status {n}"),
            _ => "a ping arrived".to_string(),
        });
        let body = body.map(|b| {
            let mut b = agent_os_core::redact::redact_shapes(&b);
            if b.len() > MAX_PING_BODY {
                let mut end = MAX_PING_BODY;
                while !b.is_char_boundary(end) {
                    end -= 1;
                }
                b.truncate(end);
            }
            b
        });
        let (done, stored) = tokio::sync::oneshot::channel();
        let update = PingUpdate {
            id: new_id(),
            check_id: check.id.clone(),
            at: now,
            kind,
            rid,
            duration_ms,
            body,
            remote,
            last_finish_at: pings.last_finish,
            last_failed: pings.last_failed,
            running_since: pings.running_since,
            state,
            event: (state != old).then(|| event(&check, state, clock, &why)),
        };
        self.ping_writer
            .send((update, done))
            .await
            .map_err(|_| EngineError::Unavailable("Agent OS is shutting down; ping again".into()))?;
        stored
            .await
            .map_err(|_| EngineError::Unavailable("the ping was not stored; ping again".into()))?
            .map_err(EngineError::Unavailable)?;
        self.checks_changed.notify_one();
        if state != old {
            self.check_changed(&check, state, &why).await;
        }
        if let (Some((count, within)), true) = (check.max_pings, kind.is_finish() && !kind.is_failure()) {
            self.pinged_too_often(&check, count, within, now).await;
        }
        Ok(CheckRecord {
            state,
            last_finish_at: pings.last_finish,
            last_failed: pings.last_failed,
            running_since: pings.running_since,
            last_ping_at: Some(now),
            last_duration_ms: duration_ms.or(check.last_duration_ms),
            state_changed_at: if state != old { Some(now) } else { check.state_changed_at },
            ..check
        })
    }

    /// After a success ping of a check with `max_pings`: more success pings than `count` within
    /// `within` ms (up to `now`) raises a warning incident of its own (subject
    /// `PROJECT/SLUG:too-often`), apart from the check's late/down incident, so it neither
    /// changes the check's state nor is resolved by the ping; a success within the limit
    /// resolves it.
    async fn pinged_too_often(&self, c: &CheckRecord, count: i64, within: i64, now: i64) {
        let subject = format!("{}/{}:too-often", c.project, c.slug);
        // A snooze (of the check or its project) keeps this warning quiet too.
        let snoozed = super::holds::active(c.snooze.as_ref(), now).is_some()
            || self.project_snoozes().await.is_ok_and(|p| p.contains_key(&c.project));
        let result = match self.store.count_successes(&c.id, now.saturating_sub(within) + 1).await {
            Ok(n) if n > count && snoozed => Ok(()),
            Ok(n) if n > count => self
                .raise(super::incidents::Alert {
                    source: agent_os_core::alerting::IncidentSource::Check,
                    subject: subject.clone(),
                    project: Some(c.project.clone()),
                    severity: agent_os_core::alerting::Severity::Warning,
                    title: format!("{}/{} is pinged too often", c.project, c.slug),
                    reason: format!(
                        "{n} success pings within {}; max_pings allows {count}",
                        agent_os_core::format_duration(millis(within))
                    ),
                    tags: c.tags.clone(),
                    worse: false,
                })
                .await
                .map(|_| ()),
            Ok(_) => self
                .resolve(
                    agent_os_core::alerting::IncidentSource::Check,
                    &subject,
                    "success pings within max_pings again",
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            tracing::warn!(check = %subject, error = %e, "too-often incident not recorded");
        }
    }

    /// Writes pings as they come, every ping waiting at that moment in one transaction: under
    /// load a commit carries many pings (group commit), alone a ping is written at once. A
    /// ping is answered only after its transaction commits; one the database refuses fails
    /// alone (`group::write_group`).
    pub(super) async fn ping_loop(
        self: Arc<Self>,
        jobs: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<PingJob>>>,
    ) {
        // The queue outlives the loop: a loop started again after a panic goes on with it.
        let mut jobs = jobs.lock().await;
        let closing = self.loops.closing().clone();
        while let Some(batch) = super::group::next_group(&mut jobs, &closing, PING_GROUP).await {
            let updates: Vec<PingUpdate> = batch.iter().map(|(u, _)| u.clone()).collect();
            let store = &self.store;
            let results = super::group::write_group(
                &updates,
                |g| async move { store.record_pings(g).await.map(|()| vec![(); g.len()]) },
                "pings",
            )
            .await;
            for ((_, reply), result) in batch.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
    }

    /// Re-evaluates every check at the current time, storing changes (late, down) with their
    /// events. Returns when the next change could happen without a ping.
    pub async fn check_tick(&self) -> Result<Option<i64>, EngineError> {
        let now = self.now();
        let mut next: Option<i64> = None;
        let mut wake = |at: i64| next = Some(next.map_or(at, |n: i64| n.min(at)));
        // A snooze's end is a time to look again: a check still late or down pages then.
        let projects = self.project_snoozes().await?;
        for s in projects.values() {
            wake(s.until);
        }
        // Every change is stored before any is alerted on, so a check going late in the same
        // tick as a check it depends on finds that one late already, whatever their order.
        let mut changed = Vec::new();
        let mut held = Vec::new();
        for c in self.store.list_checks(None).await? {
            let pings =
                Pings { last_finish: c.last_finish_at, last_failed: c.last_failed, running_since: c.running_since };
            let Assessment { state, next: due, why } = state_of(&c, &pings, now);
            if let Some(d) = due {
                wake(d);
            }
            if let Some(s) = super::holds::active(c.snooze.as_ref(), now) {
                wake(s.until);
            }
            if state != c.state {
                let why = why.describe(state).to_string();
                if self.store.set_check_state(&c.id, state, &event(&c, state, now, &why)).await? {
                    changed.push((c, state, why));
                }
            } else if c.held_by.is_some() && matches!(state, CheckState::Late | CheckState::Down) {
                held.push((c, why.describe(state)));
            }
        }
        // Pages first, holds after: a held check's event names the incident it is listed
        // under, which its upstream may open in this same tick.
        let mut holds = Vec::new();
        for (c, state, why) in changed {
            if matches!(state, CheckState::Late | CheckState::Down)
                && let Some(hold) = self.hold_of(&c, &projects, now).await?
            {
                holds.push((c, state, hold, why));
                continue;
            }
            self.check_changed(&c, state, &why).await;
        }
        for (c, state, hold, why) in holds {
            self.hold_check(&c, state, &hold, &why).await;
        }
        for (c, why) in held {
            self.recheck_held(&c, &projects, why, now).await?;
        }
        Ok(next)
    }

    pub(super) async fn monitor_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        loop {
            let sleep = match self.check_tick().await {
                Ok(Some(next)) => Duration::from_millis((next - self.now()).max(0) as u64).min(MAX_SLEEP),
                Ok(None) => MAX_SLEEP,
                Err(e) => {
                    tracing::warn!(error = %e, "check evaluation failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.checks_changed.notified() => {}
                _ = stopping.changed() => return,
            }
        }
    }
}
