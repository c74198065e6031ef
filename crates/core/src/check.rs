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

/// The state of a check at `now`, and when it would next change without a ping.
/// `expect` is `None` when the expectation cannot be read (a stored cron that no longer
/// parses): a check that was pinged is then up, with nothing due.
pub fn evaluate(expect: Option<&Expect>, grace: Duration, pings: &Pings, now: i64) -> (CheckState, Option<i64>) {
    let grace = grace.as_millis() as i64;
    let Some(last) = pings.last_finish.or(pings.running_since) else {
        return (CheckState::New, None);
    };
    if let Some(start) = pings.running_since {
        // Started and not finished: it has the grace time to finish.
        return if now > start + grace { (CheckState::Down, None) } else { (CheckState::Up, Some(start + grace + 1)) };
    }
    if pings.last_failed {
        return (CheckState::Down, None);
    }
    let expected = match expect {
        Some(Expect::Period(p)) => Some(last + p.as_millis() as i64),
        Some(Expect::Cron { cron, timezone }) => jiff::Timestamp::from_millisecond(last)
            .ok()
            .and_then(|t| cron.next_after(timezone.tz(), t))
            .map(|t| t.as_millisecond()),
        None => None,
    };
    match expected {
        None => (CheckState::Up, None),
        Some(due) if now <= due => (CheckState::Up, Some(due + 1)),
        Some(due) if now <= due + grace => (CheckState::Late, Some(due + grace + 1)),
        Some(_) => (CheckState::Down, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn ping_actions() {
        assert_eq!(PingKind::parse(""), Some(PingKind::Success));
        assert_eq!(PingKind::parse("0"), Some(PingKind::Exit(0)));
        assert!(PingKind::parse("3").unwrap().is_failure());
        assert!(!PingKind::parse("0").unwrap().is_failure());
        assert_eq!(PingKind::parse("256"), None);
        assert_eq!(PingKind::parse("restart"), None);
    }
}
