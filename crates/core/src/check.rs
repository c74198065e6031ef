//! Heartbeat checks, Healthchecks-style: a job pings when it starts and when it ends; the
//! state follows from the last pings and the expectation (a period or a cron schedule) plus a
//! grace time. new → up → late (past due, within grace) → down.

use std::time::Duration;

use crate::cron::Cron;
use crate::manifest::Expect;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckState {
    /// Never pinged: nothing is expected yet.
    New,
    Up,
    /// Past due, still within grace.
    Late,
    Down,
}

impl CheckState {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::New => "new",
            CheckState::Up => "up",
            CheckState::Late => "late",
            CheckState::Down => "down",
        }
    }

    pub fn parse(s: &str) -> CheckState {
        match s {
            "up" => CheckState::Up,
            "late" => CheckState::Late,
            "down" => CheckState::Down,
            _ => CheckState::New,
        }
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

    pub fn as_str(self) -> String {
        match self {
            PingKind::Success => "success".into(),
            PingKind::Start => "start".into(),
            PingKind::Fail => "fail".into(),
            PingKind::Exit(n) => format!("exit {n}"),
            PingKind::Log => "log".into(),
        }
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
pub fn evaluate(
    expect: &Expect,
    cron: Option<(&Cron, &jiff::tz::TimeZone)>,
    grace: Duration,
    pings: &Pings,
    now: i64,
) -> (CheckState, Option<i64>) {
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
    let expected = match (expect, cron) {
        (Expect::Period(p), _) => Some(last + p.as_millis() as i64),
        (Expect::Cron { .. }, Some((c, tz))) => {
            jiff::Timestamp::from_millisecond(last).ok().and_then(|t| c.next_after(tz, t)).map(|t| t.as_millisecond())
        }
        (Expect::Cron { .. }, None) => None,
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

    const MIN: i64 = 60_000;

    fn pings(last_finish: Option<i64>, last_failed: bool, running_since: Option<i64>) -> Pings {
        Pings { last_finish, last_failed, running_since }
    }

    #[test]
    fn period_checks_go_up_late_down() {
        let e = Expect::Period(Duration::from_secs(3600));
        let g = Duration::from_secs(600);
        assert_eq!(evaluate(&e, None, g, &pings(None, false, None), 0), (CheckState::New, None));
        let p = pings(Some(0), false, None);
        assert_eq!(evaluate(&e, None, g, &p, 30 * MIN), (CheckState::Up, Some(60 * MIN + 1)));
        assert_eq!(evaluate(&e, None, g, &p, 65 * MIN), (CheckState::Late, Some(70 * MIN + 1)));
        assert_eq!(evaluate(&e, None, g, &p, 71 * MIN).0, CheckState::Down);
        assert_eq!(
            evaluate(&e, None, g, &pings(Some(0), true, None), 1).0,
            CheckState::Down,
            "a failure ping is down at once"
        );
    }

    #[test]
    fn a_start_without_a_finish_is_down_after_grace() {
        let e = Expect::Period(Duration::from_secs(3600));
        let p = pings(Some(0), false, Some(10 * MIN));
        assert_eq!(evaluate(&e, None, Duration::from_secs(300), &p, 14 * MIN).0, CheckState::Up);
        assert_eq!(evaluate(&e, None, Duration::from_secs(300), &p, 16 * MIN).0, CheckState::Down);
    }

    #[test]
    fn cron_checks_expect_the_next_fire() {
        let c = Cron::parse("0 22 * * *").unwrap();
        let tz = crate::cron::zone("UTC").unwrap();
        let day = 86_400_000;
        let last = 22 * 3600 * 1000; // 1970-01-01 22:00 UTC
        let p = pings(Some(last), false, None);
        let g = Duration::from_secs(600);
        assert_eq!(
            evaluate(
                &Expect::Cron { cron: "0 22 * * *".into(), timezone: "UTC".into() },
                Some((&c, &tz)),
                g,
                &p,
                last + day - 1
            )
            .0,
            CheckState::Up
        );
        assert_eq!(
            evaluate(
                &Expect::Cron { cron: "0 22 * * *".into(), timezone: "UTC".into() },
                Some((&c, &tz)),
                g,
                &p,
                last + day + 5 * MIN
            )
            .0,
            CheckState::Late
        );
        assert_eq!(
            evaluate(
                &Expect::Cron { cron: "0 22 * * *".into(), timezone: "UTC".into() },
                Some((&c, &tz)),
                g,
                &p,
                last + day + 11 * MIN
            )
            .0,
            CheckState::Down
        );
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
