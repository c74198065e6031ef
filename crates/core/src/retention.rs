//! How long Agent OS keeps its history (`retention:` in config.yaml, docs/config.md#retention):
//! the policy, one [`Keep`] per key, and the [`PruneKind`]s a prune pass works through.
//!
//! A kind is a table and what hangs off it; two kinds follow another kind's key (schedule slots
//! go with `runs`, dashboard sessions with `tokens`), so the config names ten keys and a pass
//! reports twelve kinds. Which records a kind never prunes (the latest run of a task, an open
//! incident, …) is the store's part: it is written into each kind's statement.

use std::time::Duration;

use crate::duration::{format_duration, parse_duration};
use crate::text::text_enum;

text_enum! {
    /// What a prune pass deletes, in the order a pass works through them.
    pub enum PruneKind("retention kind") {
        /// Workflow runs that finished, with their steps.
        WorkflowRuns = "workflow_runs",
        /// Finished task runs, with their attempts and logs.
        Runs = "runs",
        /// Schedule slots already fired (kept as long as runs).
        ScheduleSlots = "schedule_slots",
        /// The log lines of finished runs; the run stays, marked as pruned.
        Logs = "logs",
        /// Events the workflow router has seen.
        Events = "events",
        /// Heartbeat check pings.
        Pings = "pings",
        /// Probe results (health history).
        Health = "health",
        /// Notifications, with their deliveries.
        Notifications = "notifications",
        /// Resolved incidents.
        Incidents = "incidents",
        /// Run tokens that expired or were revoked.
        Tokens = "tokens",
        /// Dashboard sessions that expired (kept as long as run tokens).
        Sessions = "sessions",
        /// Cost records (the daily rollup that totals read is never pruned).
        Costs = "costs",
    }
}

/// How long records of one kind are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Never pruned.
    Forever,
    /// Pruned once older than this (never zero).
    For(Duration),
}

impl Keep {
    /// The time before which records go, for a pass at `now` (ms); `None` for [`Keep::Forever`].
    pub fn cutoff(self, now_ms: i64) -> Option<i64> {
        match self {
            Keep::Forever => None,
            Keep::For(d) => Some(now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))),
        }
    }

    /// As written in config.yaml: `90d`, `forever`.
    pub fn text(self) -> String {
        match self {
            Keep::Forever => "forever".into(),
            Keep::For(d) => format_duration(d),
        }
    }

    /// Parses `forever` or a duration of at least a minute (a shorter one would prune what a
    /// running pass has just written).
    pub fn parse(text: &str) -> Result<Keep, String> {
        if text.trim() == "forever" {
            return Ok(Keep::Forever);
        }
        let d = parse_duration(text)?;
        if d < Duration::from_secs(60) {
            return Err(format!("{text:?} is too short: keep records at least 1m, or write forever"));
        }
        Ok(Keep::For(d))
    }
}

const DAY: u64 = 86_400;

/// The retention policy: how long each kind of history is kept. Defaults suit one person's
/// projects: three months of runs, a month of logs, pings and probe results, half a year of
/// resolved incidents, costs for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Finished runs with their attempts (and logs), and fired schedule slots.
    pub runs: Keep,
    /// The log lines of finished runs.
    pub logs: Keep,
    pub events: Keep,
    pub pings: Keep,
    /// Probe results.
    pub health: Keep,
    /// Notifications with their deliveries.
    pub notifications: Keep,
    /// Resolved incidents, counted from when they were resolved.
    pub incidents: Keep,
    /// Finished workflow runs with their steps.
    pub workflow_runs: Keep,
    /// Run tokens and dashboard sessions, counted from when they expired or were revoked.
    pub tokens: Keep,
    /// Cost records; forever unless set (the daily rollup is kept in any case).
    pub costs: Keep,
}

impl Default for Retention {
    fn default() -> Self {
        let days = |n: u64| Keep::For(Duration::from_secs(n * DAY));
        Retention {
            runs: days(90),
            logs: days(30),
            events: days(90),
            pings: days(30),
            health: days(30),
            notifications: days(90),
            incidents: days(180),
            workflow_runs: days(90),
            tokens: days(7),
            costs: Keep::Forever,
        }
    }
}

impl Retention {
    /// The keys of `retention:` in config.yaml, in the order docs list them.
    pub const KEYS: [&'static str; 10] =
        ["runs", "logs", "events", "pings", "health", "notifications", "incidents", "workflow_runs", "tokens", "costs"];

    /// How long a kind is kept (schedule slots follow `runs`, sessions follow `tokens`).
    pub fn keep(&self, kind: PruneKind) -> Keep {
        match kind {
            PruneKind::WorkflowRuns => self.workflow_runs,
            PruneKind::Runs | PruneKind::ScheduleSlots => self.runs,
            PruneKind::Logs => self.logs,
            PruneKind::Events => self.events,
            PruneKind::Pings => self.pings,
            PruneKind::Health => self.health,
            PruneKind::Notifications => self.notifications,
            PruneKind::Incidents => self.incidents,
            PruneKind::Tokens | PruneKind::Sessions => self.tokens,
            PruneKind::Costs => self.costs,
        }
    }

    /// The setting under config key `key` (one of [`Retention::KEYS`]).
    pub fn key_mut(&mut self, key: &str) -> Option<&mut Keep> {
        Some(match key {
            "runs" => &mut self.runs,
            "logs" => &mut self.logs,
            "events" => &mut self.events,
            "pings" => &mut self.pings,
            "health" => &mut self.health,
            "notifications" => &mut self.notifications,
            "incidents" => &mut self.incidents,
            "workflow_runs" => &mut self.workflow_runs,
            "tokens" => &mut self.tokens,
            "costs" => &mut self.costs,
            _ => return None,
        })
    }

    /// The setting under config key `key`, as written.
    pub fn key(&self, key: &str) -> Option<Keep> {
        Some(match key {
            "runs" => self.runs,
            "logs" => self.logs,
            "events" => self.events,
            "pings" => self.pings,
            "health" => self.health,
            "notifications" => self.notifications,
            "incidents" => self.incidents,
            "workflow_runs" => self.workflow_runs,
            "tokens" => self.tokens,
            "costs" => self.costs,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_parse_and_print() {
        assert_eq!(Keep::parse("forever"), Ok(Keep::Forever));
        assert_eq!(Keep::parse("90d"), Ok(Keep::For(Duration::from_secs(90 * DAY))));
        assert_eq!(Keep::parse("720h").map(Keep::text), Ok("30d".to_string()));
        assert!(Keep::parse("30s").unwrap_err().contains("at least 1m"));
        assert!(Keep::parse("never").is_err());
        assert!(Keep::parse("90").unwrap_err().contains("needs a unit"));
    }

    #[test]
    fn cutoffs_count_back_from_now() {
        assert_eq!(Keep::Forever.cutoff(1_000), None);
        assert_eq!(Keep::For(Duration::from_secs(1)).cutoff(5_000), Some(4_000));
        // A cutoff before the epoch is still a number, and prunes nothing.
        assert_eq!(Keep::For(Duration::from_secs(10)).cutoff(5_000), Some(-5_000));
    }

    #[test]
    fn every_kind_has_a_key() {
        let r = Retention::default();
        for kind in PruneKind::ALL {
            let keep = r.keep(*kind);
            assert!(Retention::KEYS.iter().any(|k| r.key(k) == Some(keep)), "{kind}");
        }
        assert_eq!(r.keep(PruneKind::Costs), Keep::Forever);
        assert_eq!(r.keep(PruneKind::Sessions), r.tokens);
        assert_eq!(r.key("nope"), None);
    }
}
