//! Heartbeat checks, Healthchecks-style: a job pings when it starts and when it ends; the
//! state follows from the last pings and the expectation (a period or a cron schedule) plus a
//! grace time. new → up → late (past due, within grace) → down.

use std::time::Duration;

use crate::manifest::Expect;
use crate::text::text_enum;
use crate::text::{UnknownValue, text_serde, text_sqlx};

text_enum! {
    /// The state of a check.
    pub enum CheckState("check state") {
        /// Never pinged: nothing is expected yet.
        New = "new",
        Up = "up",
        /// Past due, still within grace.
        Late = "late",
        Down = "down",
    }
}

text_enum! {
    /// How a check's expectation is stored: a period, or a cron expression in a zone.
    pub enum CheckKind("check kind") {
        Period = "period",
        Cron = "cron",
    }
}

/// What a ping says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingKind {
    Success,
    Start,
    Fail,
    /// An exit status; 0 is a success.
    Exit(u8),
    /// Only a log line; it changes nothing.
    Log,
}

impl PingKind {
    /// From the last part of a ping URL (`""`, `start`, `fail`, `log`, `0`–`255`).
    pub fn parse(action: &str) -> Option<PingKind> {
        match action {
            "" => Some(PingKind::Success),
            "start" => Some(PingKind::Start),
            "fail" => Some(PingKind::Fail),
            "log" => Some(PingKind::Log),
            n => n.parse::<u8>().ok().map(PingKind::Exit),
        }
    }

    /// As stored and shown: `success`, `start`, `fail`, `exit N` or `log`.
    pub fn as_str(self) -> String {
        self.to_string()
    }

    /// True for a ping that reports the job failed.
    pub fn is_failure(self) -> bool {
        matches!(self, PingKind::Fail) || matches!(self, PingKind::Exit(n) if n != 0)
    }

    /// True for a ping that reports the job finished (well or not).
    pub fn is_finish(self) -> bool {
        matches!(self, PingKind::Success | PingKind::Fail | PingKind::Exit(_))
    }
}

impl std::fmt::Display for PingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PingKind::Success => f.write_str("success"),
            PingKind::Start => f.write_str("start"),
            PingKind::Fail => f.write_str("fail"),
            PingKind::Exit(n) => write!(f, "exit {n}"),
            PingKind::Log => f.write_str("log"),
        }
    }
}

impl std::str::FromStr for PingKind {
    type Err = UnknownValue;

    /// The stored form, [`PingKind::as_str`]'s (not the ping URL's, which [`PingKind::parse`] reads).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(PingKind::Success),
            "start" => Ok(PingKind::Start),
            "fail" => Ok(PingKind::Fail),
            "log" => Ok(PingKind::Log),
            _ => s
                .strip_prefix("exit ")
                .and_then(|n| n.parse::<u8>().ok())
                .filter(|n| s == format!("exit {n}"))
                .map(PingKind::Exit)
                .ok_or_else(|| UnknownValue {
                    what: "ping kind",
                    value: s.to_string(),
                    expected: &["success", "start", "fail", "exit 0-255", "log"],
                }),
        }
    }
}

text_serde!(PingKind);
text_sqlx!(PingKind);

/// What a check knows of its pings (all times in ms since the epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pings {
    /// The last finishing ping (success or failure).
    pub last_finish: Option<i64>,
    pub last_failed: bool,
    /// The last start ping, if it came after the last finish (a run in progress).
    pub running_since: Option<i64>,
}

/// The timing rules of a check besides its expectation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// How long past due (or past `max_duration`, or past a missing start) before down.
    pub grace: Duration,
    /// When set, the job is expected to send a start ping within this long of the due time;
    /// without one the check is late ("no start signal"), then down after `grace`.
    pub start_grace: Option<Duration>,
    /// When set, a run still going this long after its start ping is late, then down after
    /// `grace`. Without it a run has `grace` from its start to finish.
    pub max_duration: Option<Duration>,
}

/// Why a check is in the state [`assess`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Never pinged.
    NeverPinged,
    /// Pings came as expected (or a run is going within its time).
    OnTime,
    /// The last finish was a failure.
    Failed,
    /// The expected ping did not come by its due time.
    Overdue,
    /// A start ping was expected within `start_grace` of the due time and none came.
    NoStart,
    /// A run is going past the time it has (`max_duration`, or `grace` without one).
    RunningTooLong,
}

impl Why {
    /// A sentence for events and incidents, in the words of `state`.
    pub fn describe(self, state: CheckState) -> &'static str {
        match (self, state) {
            (Why::NoStart, CheckState::Late) => "no start signal: the start ping did not come within start_grace",
            (Why::NoStart, _) => "no start signal: no start ping came within start_grace and the grace time",
            (Why::RunningTooLong, CheckState::Late) => "still running past max_duration; within grace",
            (Why::RunningTooLong, _) => "started but did not finish in its time (max_duration or grace)",
            (Why::Overdue, CheckState::Late) => "the expected ping did not come; within grace",
            (Why::Overdue, _) => "the expected ping did not come within the grace time",
            (Why::Failed, _) => "the job reported a failure",
            (Why::NeverPinged | Why::OnTime, _) => "re-evaluated",
        }
    }
}

/// What [`assess`] finds: the state, when it would next change without a ping, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub state: CheckState,
    pub next: Option<i64>,
    pub why: Why,
}

/// Up to `until`, then late to `until + grace`, then down: the shape every deadline takes.
fn deadline(until: i64, grace: i64, now: i64, why: Why) -> Assessment {
    if now <= until {
        Assessment { state: CheckState::Up, next: Some(until + 1), why: Why::OnTime }
    } else if now <= until + grace {
        Assessment { state: CheckState::Late, next: Some(until + grace + 1), why }
    } else {
        Assessment { state: CheckState::Down, next: None, why }
    }
}

/// The state of a check at `now`, when it would next change without a ping, and why, under
/// every timing rule of the check. `expect` is `None` when the expectation cannot be read (a
/// stored cron that no longer parses): a check that was pinged is then up, with nothing due.
pub fn assess(expect: Option<&Expect>, timing: &Timing, pings: &Pings, now: i64) -> Assessment {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
    let grace = ms(timing.grace);
    let Some(last) = pings.last_finish.or(pings.running_since) else {
        return Assessment { state: CheckState::New, next: None, why: Why::NeverPinged };
    };
    if let Some(start) = pings.running_since {
        return match timing.max_duration {
            // Started and not finished: up to max_duration, then late for the grace time.
            Some(max) => deadline(start.saturating_add(ms(max)), grace, now, Why::RunningTooLong),
            // Without max_duration it has the grace time to finish, and is never late.
            None if now > start.saturating_add(grace) => {
                Assessment { state: CheckState::Down, next: None, why: Why::RunningTooLong }
            }
            None => Assessment { state: CheckState::Up, next: Some(start.saturating_add(grace) + 1), why: Why::OnTime },
        };
    }
    if pings.last_failed {
        return Assessment { state: CheckState::Down, next: None, why: Why::Failed };
    }
    let expected = match expect {
        Some(Expect::Period(p)) => Some(last.saturating_add(ms(*p))),
        Some(Expect::Cron { cron, timezone }) => jiff::Timestamp::from_millisecond(last)
            .ok()
            .and_then(|t| cron.next_after(timezone.tz(), t))
            .map(|t| t.as_millisecond()),
        None => None,
    };
    match (expected, timing.start_grace) {
        (None, _) => Assessment { state: CheckState::Up, next: None, why: Why::OnTime },
        // A start is due within start_grace of the due time; a missing one is late, then
        // down after the grace time.
        (Some(due), Some(start_grace)) => deadline(due.saturating_add(ms(start_grace)), grace, now, Why::NoStart),
        (Some(due), None) => deadline(due, grace, now, Why::Overdue),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`assess`] with the grace time alone: the rules every check has.
    fn evaluate(expect: Option<&Expect>, grace: Duration, pings: &Pings, now: i64) -> (CheckState, Option<i64>) {
        let a = assess(expect, &Timing { grace, ..Timing::default() }, pings, now);
        (a.state, a.next)
    }
    use crate::cron::{Cron, Zone};

    const MIN: i64 = 60_000;

    fn pings(last_finish: Option<i64>, last_failed: bool, running_since: Option<i64>) -> Pings {
        Pings { last_finish, last_failed, running_since }
    }

    #[test]
    fn period_checks_go_up_late_down() {
        let e = Expect::Period(Duration::from_secs(3600));
        let g = Duration::from_secs(600);
        assert_eq!(evaluate(Some(&e), g, &pings(None, false, None), 0), (CheckState::New, None));
        let p = pings(Some(0), false, None);
        assert_eq!(evaluate(Some(&e), g, &p, 30 * MIN), (CheckState::Up, Some(60 * MIN + 1)));
        assert_eq!(evaluate(Some(&e), g, &p, 65 * MIN), (CheckState::Late, Some(70 * MIN + 1)));
        assert_eq!(evaluate(Some(&e), g, &p, 71 * MIN).0, CheckState::Down);
        assert_eq!(
            evaluate(Some(&e), g, &pings(Some(0), true, None), 1).0,
            CheckState::Down,
            "a failure ping is down at once"
        );
    }

    #[test]
    fn a_start_without_a_finish_is_down_after_grace() {
        let e = Expect::Period(Duration::from_secs(3600));
        let p = pings(Some(0), false, Some(10 * MIN));
        assert_eq!(evaluate(Some(&e), Duration::from_secs(300), &p, 14 * MIN).0, CheckState::Up);
        assert_eq!(evaluate(Some(&e), Duration::from_secs(300), &p, 16 * MIN).0, CheckState::Down);
    }

    #[test]
    fn cron_checks_expect_the_next_fire() {
        let e = Expect::Cron { cron: Cron::parse("0 22 * * *").unwrap(), timezone: Zone::parse("UTC").unwrap() };
        let day = 86_400_000;
        let last = 22 * 3600 * 1000; // 1970-01-01 22:00 UTC
        let p = pings(Some(last), false, None);
        let g = Duration::from_secs(600);
        assert_eq!(evaluate(Some(&e), g, &p, last + day - 1).0, CheckState::Up);
        assert_eq!(evaluate(Some(&e), g, &p, last + day + 5 * MIN).0, CheckState::Late);
        assert_eq!(evaluate(Some(&e), g, &p, last + day + 11 * MIN).0, CheckState::Down);
    }

    #[test]
    fn max_duration_makes_a_long_run_late_then_down() {
        let e = Expect::Period(Duration::from_secs(3600));
        let t = Timing {
            grace: Duration::from_secs(300),
            start_grace: None,
            max_duration: Some(Duration::from_secs(1200)),
        };
        let p = pings(Some(0), false, Some(10 * MIN));
        let at = |now| assess(Some(&e), &t, &p, now);
        assert_eq!(at(29 * MIN), Assessment { state: CheckState::Up, next: Some(30 * MIN + 1), why: Why::OnTime });
        assert_eq!(
            at(31 * MIN),
            Assessment { state: CheckState::Late, next: Some(35 * MIN + 1), why: Why::RunningTooLong }
        );
        assert_eq!(at(36 * MIN).state, CheckState::Down);
        assert_eq!(at(36 * MIN).why, Why::RunningTooLong);
    }

    #[test]
    fn start_grace_makes_a_missing_start_late_with_its_own_reason() {
        let e = Expect::Period(Duration::from_secs(3600));
        let t =
            Timing { grace: Duration::from_secs(600), start_grace: Some(Duration::from_secs(120)), max_duration: None };
        let idle = pings(Some(0), false, None);
        // Due at 60 min: up until the start grace is out, late for the grace time, then down.
        assert_eq!(assess(Some(&e), &t, &idle, 61 * MIN).state, CheckState::Up);
        let late = assess(Some(&e), &t, &idle, 63 * MIN);
        assert_eq!((late.state, late.why, late.next), (CheckState::Late, Why::NoStart, Some(72 * MIN + 1)));
        assert!(late.why.describe(late.state).contains("no start signal"));
        assert_eq!(assess(Some(&e), &t, &idle, 73 * MIN).state, CheckState::Down);
        // A start inside the window keeps it up while the run has time.
        let started = pings(Some(0), false, Some(61 * MIN));
        assert_eq!(assess(Some(&e), &t, &started, 63 * MIN).state, CheckState::Up);
        // Without start_grace the old rule holds: late as soon as it is due.
        let plain = Timing { start_grace: None, ..t };
        assert_eq!(assess(Some(&e), &plain, &idle, 61 * MIN).why, Why::Overdue);
    }

    #[test]
    fn ping_actions() {
        assert_eq!(PingKind::parse(""), Some(PingKind::Success));
        assert_eq!(PingKind::parse("0"), Some(PingKind::Exit(0)));
        assert!(PingKind::parse("3").unwrap().is_failure());
        assert!(!PingKind::parse("0").unwrap().is_failure());
        assert_eq!(PingKind::parse("256"), None);
        assert_eq!(PingKind::parse("restart"), None);
    }
}
