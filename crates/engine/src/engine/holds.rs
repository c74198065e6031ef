//! Why a late or down check does not page: a snooze (of the check or of its project) until a
//! time, or a check it `depends_on` that is late or down itself (then it is listed under that
//! check's incident). `check_changed` asks [`Engine::hold_of`] before it raises; `check_tick`
//! asks again for every held check and pages the ones nothing holds any more, so a check still
//! down when its snooze ends, or when its upstream recovers, pages then, on its own.

use std::collections::HashMap;
use std::time::Duration;

use agent_os_core::check::CheckState;
use agent_os_core::id::new_id;
use agent_os_store::{CheckRecord, NewEvent, Snooze};
use serde_json::json;

use super::{Engine, EngineError};

/// The longest a snooze may last.
pub const MAX_SNOOZE: Duration = Duration::from_secs(90 * 86_400);

/// Longest snooze reason kept.
const MAX_REASON: usize = 500;

/// How far up a chain of held checks the incident that lists a downstream one is looked for.
const MAX_CHAIN: usize = 8;

/// What holds a check's alert back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// `PROJECT/SLUG` of an upstream check that is late or down.
    Upstream(String),
    /// The check, or its whole project, is snoozed until this time.
    Snoozed { until: i64, project: bool },
}

impl Hold {
    /// How it is stored in `held_by` and shown: the upstream's name, or `snooze`.
    pub fn label(&self) -> &str {
        match self {
            Hold::Upstream(name) => name,
            Hold::Snoozed { .. } => "snooze",
        }
    }
}

/// `PROJECT/SLUG` of the check `dep` (a `depends_on` entry) of a check of `project` names.
pub fn upstream_name(project: &str, dep: &str) -> String {
    if dep.contains('/') { dep.to_string() } else { format!("{project}/{dep}") }
}

/// The snooze in force at `now`, if `s` is one.
pub fn active(s: Option<&Snooze>, now: i64) -> Option<&Snooze> {
    s.filter(|s| s.until > now)
}

impl Engine {
    /// A check by its id or `project/slug`.
    pub async fn find_check(&self, reference: &str) -> Result<CheckRecord, EngineError> {
        if let Some(c) = self.store.get_check(reference).await? {
            return Ok(c);
        }
        if let Some((project, slug)) = reference.split_once('/')
            && let Some(c) = self.store.list_checks(Some(project)).await?.into_iter().find(|c| c.slug == slug)
        {
            return Ok(c);
        }
        Err(EngineError::NotFound(format!(
            "no check {reference:?}; give its id or project/slug (`agent-os checks` lists them)"
        )))
    }

    /// When a snooze asked for as `until` ends: a duration from now (`2h`, `1d`) or an
    /// RFC 3339 time, in the future and at most [`MAX_SNOOZE`] away.
    pub fn snooze_until(&self, until: &str) -> Result<i64, EngineError> {
        let now = self.now();
        let bad = |message: String| EngineError::Invalid { field: Some("until".into()), message };
        let at = match agent_os_core::parse_duration(until) {
            Ok(d) if d > MAX_SNOOZE => None,
            Ok(d) => Some(now.saturating_add(d.as_millis() as i64)),
            Err(_) => match until.parse::<jiff::Timestamp>() {
                Ok(t) => Some(t.as_millisecond()),
                Err(_) => {
                    return Err(bad(format!(
                        "until {until:?} is neither a duration (e.g. 2h, 1d) nor an RFC 3339 time (e.g. 2026-12-01T08:00:00Z)"
                    )));
                }
            },
        };
        match at {
            Some(at) if at <= now => {
                Err(bad(format!("until {until:?} is not in the future; a snooze ends later than now")))
            }
            Some(at) if at - now <= MAX_SNOOZE.as_millis() as i64 => Ok(at),
            _ => Err(bad(format!(
                "until {until:?} is more than {} away; snooze for at most that, and again if needed",
                agent_os_core::format_duration(MAX_SNOOZE)
            ))),
        }
    }

    fn snooze_of(&self, until: i64, reason: Option<String>, by: Option<String>) -> Result<Snooze, EngineError> {
        let reason = reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
        if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
            return Err(EngineError::Invalid {
                field: Some("reason".into()),
                message: format!("at most {MAX_REASON} bytes"),
            });
        }
        Ok(Snooze { until, reason, by })
    }

    /// Snoozes a check (by id or `project/slug`) until `until` (ms): its late and down states
    /// are still evaluated and recorded, but open no incident until then.
    pub async fn snooze_check(
        &self,
        reference: &str,
        until: i64,
        reason: Option<String>,
        by: Option<String>,
    ) -> Result<CheckRecord, EngineError> {
        let c = self.find_check(reference).await?;
        let snooze = self.snooze_of(until, reason, by)?;
        self.store.set_check_snooze(&c.id, Some(&snooze)).await?;
        self.checks_changed.notify_one();
        Ok(CheckRecord { snooze: Some(snooze), ..c })
    }

    /// Ends a check's snooze now; if it is late or down and nothing else holds it, the
    /// monitor pages it at once.
    pub async fn unsnooze_check(&self, reference: &str) -> Result<CheckRecord, EngineError> {
        let c = self.find_check(reference).await?;
        self.store.set_check_snooze(&c.id, None).await?;
        self.checks_changed.notify_one();
        Ok(CheckRecord { snooze: None, ..c })
    }

    /// Snoozes every check of a project until `until` (ms).
    pub async fn snooze_project(
        &self,
        name: &str,
        until: i64,
        reason: Option<String>,
        by: Option<String>,
    ) -> Result<Snooze, EngineError> {
        let p = self.project(name).await?;
        let snooze = self.snooze_of(until, reason, by)?;
        self.store.set_project_snooze(&p.record.id, Some(&snooze), self.now()).await?;
        self.checks_changed.notify_one();
        Ok(snooze)
    }

    pub async fn unsnooze_project(&self, name: &str) -> Result<(), EngineError> {
        let p = self.project(name).await?;
        self.store.set_project_snooze(&p.record.id, None, self.now()).await?;
        self.checks_changed.notify_one();
        Ok(())
    }

    /// The project snoozes in force now, by project name.
    pub async fn project_snoozes(&self) -> Result<HashMap<String, Snooze>, EngineError> {
        let now = self.now();
        Ok(self.store.project_snoozes().await?.into_iter().filter(|(_, s)| s.until > now).collect())
    }

    /// What holds the alert of `c` (late or down) back at `now`, if anything: a late or down
    /// upstream first (the cause), then the check's snooze, then its project's.
    pub(super) async fn hold_of(
        &self,
        c: &CheckRecord,
        projects: &HashMap<String, Snooze>,
        now: i64,
    ) -> Result<Option<Hold>, EngineError> {
        for dep in &c.depends_on {
            let name = upstream_name(&c.project, dep);
            if let Some(up) = self.check_named(&name).await?
                && matches!(up.state, CheckState::Late | CheckState::Down)
            {
                return Ok(Some(Hold::Upstream(name)));
            }
        }
        if let Some(s) = active(c.snooze.as_ref(), now) {
            return Ok(Some(Hold::Snoozed { until: s.until, project: false }));
        }
        Ok(projects.get(&c.project).filter(|s| s.until > now).map(|s| Hold::Snoozed { until: s.until, project: true }))
    }

    /// The check `PROJECT/SLUG`, if it exists.
    async fn check_named(&self, name: &str) -> Result<Option<CheckRecord>, EngineError> {
        let Some((project, slug)) = name.split_once('/') else { return Ok(None) };
        Ok(self.store.list_checks(Some(project)).await?.into_iter().find(|c| c.slug == slug))
    }

    /// Records that the alert of `c` (now `state`) is held, with a `check.held` event when
    /// what holds it changed. The event names the incident it is listed under, if one is open.
    pub(super) async fn hold_check(&self, c: &CheckRecord, state: CheckState, hold: &Hold, why: &str) {
        if c.held_by.as_deref() == Some(hold.label()) {
            return;
        }
        let incident = match hold {
            Hold::Upstream(name) => self.listing_incident(name).await,
            Hold::Snoozed { .. } => None,
        };
        let until = match hold {
            Hold::Snoozed { until, .. } => Some(*until),
            Hold::Upstream(_) => None,
        };
        let event = NewEvent {
            id: new_id(),
            kind: "check.held".into(),
            project: Some(c.project.clone()),
            subject: Some(c.slug.clone()),
            data: json!({
                "check": c.id, "project": c.project, "slug": c.slug, "state": state.as_str(),
                "held_by": hold.label(), "incident": incident, "snoozed_until": until,
                "project_snooze": matches!(hold, Hold::Snoozed { project: true, .. }), "reason": why,
            })
            .to_string(),
            at: self.now(),
        };
        if let Err(e) = self.store.set_check_held(&c.id, Some(hold.label()), Some(&event)).await {
            tracing::warn!(check = %c.id, error = %e, "held check not recorded");
        }
        self.touch();
    }

    /// The open incident a check held by `upstream` is listed under: the upstream's own, or,
    /// when the upstream is held too, the one its upstream is listed under.
    async fn listing_incident(&self, upstream: &str) -> Option<String> {
        let mut name = upstream.to_string();
        for _ in 0..MAX_CHAIN {
            if let Ok(Some(i)) =
                self.store.find_open_incident(agent_os_core::alerting::IncidentSource::Check, &name).await
            {
                return Some(i.id);
            }
            let next = self.check_named(&name).await.ok().flatten()?.held_by?;
            if next == "snooze" {
                return None;
            }
            name = next;
        }
        None
    }

    /// The checks listed under the check incident of `subject` (`PROJECT/SLUG`): late or down,
    /// held by that check.
    pub async fn also_affected(&self, subject: &str) -> Result<Vec<String>, EngineError> {
        Ok(self
            .store
            .list_checks(None)
            .await?
            .into_iter()
            .filter(|c| c.held_by.as_deref() == Some(subject) && matches!(c.state, CheckState::Late | CheckState::Down))
            .map(|c| format!("{}/{}", c.project, c.slug))
            .collect())
    }

    /// A held check looked at again by the monitor (still late or down): pages it when nothing
    /// holds it any more, or records what holds it now.
    pub(super) async fn recheck_held(
        &self,
        c: &CheckRecord,
        projects: &HashMap<String, Snooze>,
        why: &str,
        now: i64,
    ) -> Result<(), EngineError> {
        match self.hold_of(c, projects, now).await? {
            Some(hold) => self.hold_check(c, c.state, &hold, why).await,
            None => {
                let was = c.held_by.clone().unwrap_or_default();
                self.store.set_check_held(&c.id, None, None).await?;
                let why = if was == "snooze" {
                    format!("{why} (still {} when its snooze ended)", c.state)
                } else {
                    format!("{why} (still {} after {was}, which held it, recovered)", c.state)
                };
                self.page_check(c, c.state, &why).await;
            }
        }
        Ok(())
    }
}
