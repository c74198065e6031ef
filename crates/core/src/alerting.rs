//! The rules that decide where and when an alert goes: routes (which channels), quiet hours
//! and throttles (when a channel may be sent to), maintenance windows (when nothing alerts) and
//! flapping (when an incident that keeps changing stops alerting). Pure functions of the rules
//! and a time; the engine applies them.

use std::time::Duration;

use jiff::Timestamp;

use crate::cron::{Cron, Zone};
use crate::text::text_enum;

text_enum! {
    /// How bad an alert is; routes match "at least".
    #[derive(PartialOrd, Ord)]
    pub enum Severity("severity") {
        Info = "info",
        Warning = "warning",
        Critical = "critical",
    }
}

impl Severity {
    pub fn parse(text: &str) -> Result<Severity, String> {
        text.parse().map_err(|e: crate::text::UnknownValue| e.to_string())
    }
}

text_enum! {
    /// Where incidents come from; routes match on it.
    pub enum IncidentSource("source") {
        Run = "run",
        Check = "check",
        Health = "health",
        Budget = "budget",
        Project = "project",
        Channel = "channel",
        /// No worker serving a worker project has been connected for `workers.grace`.
        Worker = "worker",
        /// Cost records of a model without a price (the subject is the model).
        Pricing = "pricing",
        /// config.yaml was changed into something invalid; the settings in force are kept.
        Config = "config",
    }
}

text_enum! {
    /// What raised a notification: a project or user (`project`), a channel test, or the
    /// source of the incident it tells about.
    pub enum NotificationSource("notification source") {
        Run = "run",
        Check = "check",
        Health = "health",
        Budget = "budget",
        Project = "project",
        Channel = "channel",
        /// A workflow's `notify` step.
        Workflow = "workflow",
        Test = "test",
        /// A worker project without a connected worker.
        Worker = "worker",
        /// Tokens of a model without a price.
        Pricing = "pricing",
        /// An invalid config.yaml.
        Config = "config",
    }
}

impl From<IncidentSource> for NotificationSource {
    fn from(s: IncidentSource) -> Self {
        match s {
            IncidentSource::Run => NotificationSource::Run,
            IncidentSource::Check => NotificationSource::Check,
            IncidentSource::Health => NotificationSource::Health,
            IncidentSource::Budget => NotificationSource::Budget,
            IncidentSource::Project => NotificationSource::Project,
            IncidentSource::Channel => NotificationSource::Channel,
            IncidentSource::Worker => NotificationSource::Worker,
            IncidentSource::Pricing => NotificationSource::Pricing,
            IncidentSource::Config => NotificationSource::Config,
        }
    }
}

text_enum! {
    /// Whether an incident is still going on.
    pub enum IncidentStatus("incident status") {
        Open = "open",
        Resolved = "resolved",
    }
}

text_enum! {
    /// Where one notification's delivery to one channel stands.
    pub enum DeliveryStatus("delivery status") {
        /// Due to be attempted (again).
        Pending = "pending",
        /// Waiting for a digest (quiet hours, throttle).
        Held = "held",
        Delivered = "delivered",
        /// Gave up.
        Failed = "failed",
        /// The channel is gone.
        Disabled = "disabled",
    }
}

text_enum! {
    /// Why a delivery waits for a digest.
    pub enum HoldReason("hold reason") {
        QuietHours = "quiet hours",
        Throttle = "throttle",
    }
}

/// Hours of the day, in a zone, during which a channel is only written to in a digest sent when
/// they end. `except` lets alerts of that severity or worse through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuietHours {
    /// Minutes after local midnight.
    pub from: u16,
    pub to: u16,
    pub timezone: Zone,
    pub except: Option<Severity>,
}

/// Parses `HH:MM`.
pub fn parse_clock(text: &str) -> Result<u16, String> {
    let bad = || format!("{text:?} is not a time of day; write HH:MM, e.g. 22:00");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 || text.trim().len() != 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl QuietHours {
    /// When the quiet hours around `now` end, if `now` is inside them and `severity` does not
    /// pass; `None` when a message may go now.
    pub fn held_until(&self, now: i64, severity: Severity) -> Option<i64> {
        if self.except.is_some_and(|e| severity >= e) || self.from == self.to {
            return None;
        }
        let tz = self.timezone.tz();
        let here = Timestamp::from_millisecond(now).ok()?.to_zoned(tz.clone());
        let minute = (here.hour() as u16) * 60 + here.minute() as u16;
        let quiet = if self.from < self.to {
            minute >= self.from && minute < self.to
        } else {
            minute >= self.from || minute < self.to
        };
        if !quiet {
            return None;
        }
        let mut day = here.date();
        if minute >= self.to {
            day = day.tomorrow().ok()?;
        }
        let end = day.at((self.to / 60) as i8, (self.to % 60) as i8, 0, 0).to_zoned(tz.clone()).ok()?;
        Some(end.timestamp().as_millisecond())
    }
}

/// At most `count` messages to a channel per `per`; the rest wait for a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub count: u32,
    pub per: Duration,
}

/// A channel's own rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelRules {
    pub quiet_hours: Option<QuietHours>,
    pub throttle: Option<Throttle>,
}

/// One routing rule: when every given condition holds, the alert goes to `channels`; the first
/// matching rule decides unless it says `continue`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// Any of these projects (empty: any).
    pub projects: Vec<String>,
    /// Any of these sources (empty: any).
    pub sources: Vec<IncidentSource>,
    /// At least this severity.
    pub severity: Option<Severity>,
    /// At least one of these tags (empty: any).
    pub tags: Vec<String>,
    pub channels: Vec<String>,
    pub continue_matching: bool,
}

/// What routing looks at.
#[derive(Clone, Copy, Debug)]
pub struct Routed<'a> {
    pub project: Option<&'a str>,
    pub source: NotificationSource,
    pub severity: Severity,
    pub tags: &'a [String],
}

impl Route {
    pub fn matches(&self, m: &Routed) -> bool {
        (self.projects.is_empty() || m.project.is_some_and(|p| self.projects.iter().any(|x| x == p)))
            && (self.sources.is_empty() || self.sources.iter().any(|s| NotificationSource::from(*s) == m.source))
            && self.severity.is_none_or(|s| m.severity >= s)
            && (self.tags.is_empty() || self.tags.iter().any(|t| m.tags.contains(t)))
    }
}

/// Routes and the default; no routes and no default sends everything everywhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    pub routes: Vec<Route>,
    /// Channels for an alert no route matched; `None`: every channel.
    pub default: Option<Vec<String>>,
}

impl Routing {
    /// The channels (from `all`, in their order) an alert goes to.
    pub fn channels(&self, all: &[String], m: &Routed) -> Vec<String> {
        let mut chosen: Vec<&str> = Vec::new();
        let mut matched = false;
        for r in &self.routes {
            if r.matches(m) {
                matched = true;
                chosen.extend(r.channels.iter().map(String::as_str));
                if !r.continue_matching {
                    break;
                }
            }
        }
        if !matched {
            match &self.default {
                Some(d) => chosen.extend(d.iter().map(String::as_str)),
                None => return all.to_vec(),
            }
        }
        all.iter().filter(|c| chosen.contains(&c.as_str())).cloned().collect()
    }
}

/// When an incident that keeps opening and resolving stops alerting: `changes` state changes
/// within `window`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flapping {
    pub changes: u32,
    pub window: Duration,
}

impl Default for Flapping {
    fn default() -> Self {
        Flapping { changes: 4, window: Duration::from_secs(3600) }
    }
}

/// When a maintenance window is.
#[derive(Clone, Debug, PartialEq)]
pub enum Window {
    /// From `start` to `end`, ms since the epoch.
    Fixed { start: i64, end: i64 },
    /// Starting at each fire of `cron` in `timezone`, lasting `duration`.
    Recurring { cron: Cron, timezone: Zone, duration: Duration },
}

/// A time during which nothing about `project` (or anything, without one) alerts.
#[derive(Clone, Debug, PartialEq)]
pub struct Maintenance {
    pub project: Option<String>,
    pub window: Window,
    pub reason: Option<String>,
}

impl Maintenance {
    /// When the window around `now` ends, if `now` is inside it.
    pub fn active_until(&self, now: i64) -> Option<i64> {
        match &self.window {
            Window::Fixed { start, end } => (*start <= now && now < *end).then_some(*end),
            Window::Recurring { cron, timezone, duration } => {
                let len = duration.as_millis() as i64;
                // The latest fire at or before `now` is the first fire after `now - len - 1`, when
                // it is not later than `now`.
                let from = Timestamp::from_millisecond(now - len - 1).ok()?;
                let fire = cron.next_after(timezone.tz(), from)?.as_millisecond();
                (fire <= now && now < fire + len).then_some(fire + len)
            }
        }
    }

    /// Whether this window covers alerts about `project` (global windows cover everything).
    pub fn covers(&self, project: Option<&str>) -> bool {
        match (&self.project, project) {
            (None, _) => true,
            (Some(p), Some(q)) => p == q,
            (Some(_), None) => false,
        }
    }
}

/// The full set of alerting rules from config.yaml.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Alerting {
    pub routing: Routing,
    /// Per channel name.
    pub channels: std::collections::BTreeMap<String, ChannelRules>,
    pub flapping: Flapping,
    pub maintenance: Vec<Maintenance>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn quiet_hours_wrap_midnight_in_their_zone_and_let_severe_alerts_through() {
        let q = QuietHours {
            from: parse_clock("22:00").unwrap(),
            to: parse_clock("07:00").unwrap(),
            timezone: Zone::parse("Europe/Berlin").unwrap(),
            except: Some(Severity::Critical),
        };
        // 23:30 in Berlin (UTC+1 in November) is quiet until 07:00 the next morning.
        assert_eq!(q.held_until(at("2026-11-25T22:30:00Z"), Severity::Warning), Some(at("2026-11-26T06:00:00Z")));
        // 05:00 Berlin: quiet until 07:00 the same day.
        assert_eq!(q.held_until(at("2026-11-26T04:00:00Z"), Severity::Info), Some(at("2026-11-26T06:00:00Z")));
        assert_eq!(q.held_until(at("2026-11-26T06:00:00Z"), Severity::Info), None, "07:00 is no longer quiet");
        assert_eq!(q.held_until(at("2026-11-25T12:00:00Z"), Severity::Info), None);
        assert_eq!(q.held_until(at("2026-11-25T22:30:00Z"), Severity::Critical), None, "critical passes");
        let day = QuietHours { from: 9 * 60, to: 17 * 60, timezone: Zone::utc(), except: None };
        assert_eq!(day.held_until(at("2026-11-25T10:00:00Z"), Severity::Critical), Some(at("2026-11-25T17:00:00Z")));
        for bad in ["7:00", "24:00", "12:60", "noon"] {
            assert!(parse_clock(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_match_on_project_source_severity_and_tags_and_fall_back_to_the_default() {
        let all: Vec<String> = ["team", "phone", "log"].map(String::from).to_vec();
        let routing = Routing {
            routes: vec![
                Route {
                    severity: Some(Severity::Critical),
                    channels: vec!["phone".into()],
                    continue_matching: true,
                    ..Default::default()
                },
                Route { projects: vec!["trading".into()], channels: vec!["team".into()], ..Default::default() },
                Route { tags: vec!["audit".into()], channels: vec!["log".into()], ..Default::default() },
            ],
            default: Some(vec!["log".into()]),
        };
        let tags = ["audit".to_string()];
        let m = |project, severity, tags: &'static [String]| Routed {
            project,
            source: NotificationSource::Run,
            severity,
            tags,
        };
        let no_tags: &'static [String] = &[];
        assert_eq!(routing.channels(&all, &m(Some("trading"), Severity::Critical, no_tags)), ["team", "phone"]);
        assert_eq!(routing.channels(&all, &m(Some("trading"), Severity::Info, no_tags)), ["team"]);
        assert_eq!(routing.channels(&all, &m(Some("cortana"), Severity::Info, no_tags)), ["log"], "the default");
        let tagged = Routed {
            project: Some("cortana"),
            source: NotificationSource::Project,
            severity: Severity::Info,
            tags: &tags,
        };
        assert_eq!(routing.channels(&all, &tagged), ["log"]);
        assert_eq!(Routing::default().channels(&all, &tagged), all, "no rules: everywhere");
        let sources = Route { sources: vec![IncidentSource::Check], ..Default::default() };
        assert!(!sources.matches(&m(None, Severity::Info, no_tags)));
    }

    #[test]
    fn maintenance_windows_fixed_and_recurring() {
        let fixed = Maintenance {
            project: Some("trading".into()),
            window: Window::Fixed { start: at("2026-12-01T00:00:00Z"), end: at("2026-12-01T06:00:00Z") },
            reason: None,
        };
        assert_eq!(fixed.active_until(at("2026-12-01T03:00:00Z")), Some(at("2026-12-01T06:00:00Z")));
        assert_eq!(fixed.active_until(at("2026-12-01T06:00:00Z")), None);
        assert!(fixed.covers(Some("trading")) && !fixed.covers(Some("cortana")) && !fixed.covers(None));
        let nightly = Maintenance {
            project: None,
            window: Window::Recurring {
                cron: Cron::parse("0 3 * * *").unwrap(),
                timezone: Zone::parse("Europe/Berlin").unwrap(),
                duration: Duration::from_secs(3600),
            },
            reason: Some("backups".into()),
        };
        // 03:00–04:00 Berlin is 02:00–03:00 UTC in winter.
        assert_eq!(nightly.active_until(at("2026-11-25T02:00:00Z")), Some(at("2026-11-25T03:00:00Z")));
        assert_eq!(nightly.active_until(at("2026-11-25T02:59:59Z")), Some(at("2026-11-25T03:00:00Z")));
        assert_eq!(nightly.active_until(at("2026-11-25T03:00:00Z")), None);
        assert_eq!(nightly.active_until(at("2026-11-25T01:59:00Z")), None);
        assert!(nightly.covers(None) && nightly.covers(Some("x")));
    }
}
