//! Named resources (`openai`, `gpu`): how many may hold one at once, how fast it may be taken,
//! and who gets it next. Pure: the store runs [`allocate`] inside the transaction that records
//! the holds, so the decision and its effect are one atomic step on every node.
//!
//! Acquisition is all-or-nothing: a waiter that needs two resources takes both or neither, so
//! two waiters can never each hold one and wait for the other. Waiters go by priority, then
//! first come; a waiter that cannot go keeps the resources it needs from everyone behind it,
//! so a waiter needing a busy resource is never overtaken forever by a stream of smaller ones.
//! Priority ages: every [`AGING_MS`] waited adds one, so no project can starve another.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::text::text_enum;

/// Waiting this long raises a waiter's priority by one.
pub const AGING_MS: i64 = 6_000;

/// Priorities go from 0 to this; 50 when none is given.
pub const MAX_PRIORITY: i64 = 100;
pub const DEFAULT_PRIORITY: i64 = 50;

text_enum! {
    /// Who holds or waits for a resource: a run of a task, or a lease taken by a job Agent OS
    /// does not run.
    pub enum HolderKind("holder kind") {
        Run = "run",
        Lease = "lease",
    }
}

/// The limits of one resource, from the config's `resources:`.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Most holders at once; `None` is unlimited.
    pub concurrency: Option<u32>,
    pub rate: Option<Rate>,
}

/// Whose holders and waiters a caller may act on and see in full. A lease belongs to whoever
/// took it: the admin, or a project (its project token and its runs' tokens act for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceScope {
    /// Renews and releases any lease, and sees every holder and waiter.
    Admin,
    /// Acts only on the leases of this project (by name), and sees only its own in full.
    Project(String),
}

impl ResourceScope {
    /// Whether a holder or waiter of `project` (`None`: taken by the admin) is the caller's.
    pub fn owns(&self, project: Option<&str>) -> bool {
        match self {
            ResourceScope::Admin => true,
            ResourceScope::Project(p) => project == Some(p.as_str()),
        }
    }

    /// The project the caller is limited to (`None` for the admin).
    pub fn project(&self) -> Option<&str> {
        match self {
            ResourceScope::Admin => None,
            ResourceScope::Project(p) => Some(p),
        }
    }
}

/// A token bucket: `count` acquisitions per `per`, with up to `burst` at once.
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
    pub burst: u32,
}

impl Rate {
    /// Tokens added per millisecond.
    pub fn per_ms(&self) -> f64 {
        f64::from(self.count) / (self.per.as_millis().max(1) as f64)
    }

    pub fn describe(&self) -> String {
        let unit = match self.per.as_secs() {
            1 => "s".to_string(),
            60 => "min".to_string(),
            3600 => "h".to_string(),
            86400 => "d".to_string(),
            s => format!("{s}s"),
        };
        format!("{}/{unit}", self.count)
    }
}

/// Parses `60/min`, `5/s`, `1000/h`, `10000/day`.
pub fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let hint = "write COUNT/UNIT, e.g. 60/min, 5/s, 1000/h or 10000/day";
    let (count, unit) = text.trim().split_once('/').ok_or_else(|| format!("{text:?} is not a rate; {hint}"))?;
    let count: u32 = count.trim().parse().map_err(|_| format!("{:?} is not a whole number; {hint}", count.trim()))?;
    if count == 0 {
        return Err(format!("a rate of 0 lets nothing through; {hint}"));
    }
    let secs = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86400,
        other => return Err(format!("unknown unit {other:?}; {hint}")),
    };
    Ok((count, Duration::from_secs(secs)))
}

/// A rate bucket's level as stored: `tokens` at time `at` (ms).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub at: i64,
}

impl Bucket {
    /// The level at `now`: refilled at the rate, never above the burst.
    pub fn level(&self, rate: &Rate, now: i64) -> f64 {
        let refilled = self.tokens + (now - self.at).max(0) as f64 * rate.per_ms();
        refilled.min(f64::from(rate.burst))
    }
}

/// One who wants resources: a queued run or a lease request.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiter {
    pub id: String,
    pub resources: Vec<String>,
    pub priority: i64,
    /// When it started waiting (ms).
    pub since: i64,
}

/// A priority raised by one for every [`AGING_MS`] waited since `since`.
pub fn aged(priority: i64, since: i64, now: i64) -> i64 {
    priority + (now - since).max(0) / AGING_MS
}

/// Serving order: higher aged priority first, then who came first, then id.
pub fn turn_order(a: (i64, i64, &str), b: (i64, i64, &str), now: i64) -> std::cmp::Ordering {
    let (pa, sa, ia) = a;
    let (pb, sb, ib) = b;
    aged(pb, sb, now).cmp(&aged(pa, sa, now)).then(sa.cmp(&sb)).then(ia.cmp(ib))
}

/// What is in use now: holders per resource and bucket levels.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub held: HashMap<String, u32>,
    pub buckets: HashMap<String, Bucket>,
}

/// The outcome of one allocation round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allocation {
    /// Waiters that may take their resources now, in order.
    pub granted: Vec<String>,
    /// The new level of each bucket a grant drew from.
    pub buckets: HashMap<String, Bucket>,
    /// The earliest time a waiter blocked only by a rate could go (ms).
    pub retry_at: Option<i64>,
}

/// Decides who goes now. `waiters` may be in any order; a waiter naming a resource without
/// limits is treated as unlimited for it (the caller rejects unknown names before).
pub fn allocate(waiters: &[Waiter], limits: &HashMap<String, Limits>, usage: &Usage, now: i64) -> Allocation {
    let mut order: Vec<&Waiter> = waiters.iter().collect();
    order.sort_by(|a, b| turn_order((a.priority, a.since, &a.id), (b.priority, b.since, &b.id), now));
    let mut held = usage.held.clone();
    let mut levels: HashMap<String, f64> = HashMap::new();
    let mut out = Allocation::default();
    let mut blocked: HashSet<&str> = HashSet::new();
    for w in order {
        if w.resources.iter().any(|r| blocked.contains(r.as_str())) {
            w.resources.iter().for_each(|r| {
                blocked.insert(r);
            });
            continue;
        }
        let mut ok = true;
        for r in &w.resources {
            let Some(l) = limits.get(r) else { continue };
            if l.concurrency.is_some_and(|c| held.get(r).copied().unwrap_or(0) >= c) {
                ok = false;
            }
            if let Some(rate) = &l.rate {
                let level = *levels
                    .entry(r.clone())
                    .or_insert_with(|| usage.buckets.get(r).map_or(f64::from(rate.burst), |b| b.level(rate, now)));
                if level < 1.0 {
                    ok = false;
                    let wait = ((1.0 - level) / rate.per_ms()).ceil() as i64;
                    out.retry_at = Some(out.retry_at.map_or(now + wait, |t: i64| t.min(now + wait)));
                }
            }
        }
        if !ok {
            w.resources.iter().for_each(|r| {
                blocked.insert(r);
            });
            continue;
        }
        for r in &w.resources {
            *held.entry(r.clone()).or_insert(0) += 1;
            if let Some(level) = levels.get_mut(r) {
                *level -= 1.0;
                out.buckets.insert(r.clone(), Bucket { tokens: *level, at: now });
            }
        }
        out.granted.push(w.id.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: &str, resources: &[&str], priority: i64, since: i64) -> Waiter {
        Waiter { id: id.into(), resources: resources.iter().map(|r| r.to_string()).collect(), priority, since }
    }

    /// (count, seconds, burst)
    type RateSpec = (u32, u64, u32);

    fn limits(entries: &[(&str, Option<u32>, Option<RateSpec>)]) -> HashMap<String, Limits> {
        entries
            .iter()
            .map(|(name, c, r)| {
                let rate = r.map(|(count, secs, burst)| Rate { count, per: Duration::from_secs(secs), burst });
                (name.to_string(), Limits { concurrency: *c, rate })
            })
            .collect()
    }

    #[test]
    fn rates_parse_with_their_units() {
        assert_eq!(parse_rate("60/min").unwrap(), (60, Duration::from_secs(60)));
        assert_eq!(parse_rate(" 5 / s ").unwrap(), (5, Duration::from_secs(1)));
        assert_eq!(parse_rate("10000/day").unwrap(), (10000, Duration::from_secs(86400)));
        assert!(parse_rate("60").unwrap_err().contains("COUNT/UNIT"));
        assert!(parse_rate("0/s").unwrap_err().contains("nothing through"));
        assert!(parse_rate("5/fortnight").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn concurrency_grants_in_priority_then_arrival_order() {
        let l = limits(&[("openai", Some(1), None)]);
        let ws = [w("late", &["openai"], 50, 20), w("early", &["openai"], 50, 10), w("urgent", &["openai"], 90, 30)];
        let a = allocate(&ws, &l, &Usage::default(), 30);
        assert_eq!(a.granted, vec!["urgent"]);
        let busy = Usage { held: HashMap::from([("openai".into(), 1)]), ..Default::default() };
        assert!(allocate(&ws, &l, &busy, 30).granted.is_empty());
        let without_urgent = &ws[..2];
        assert_eq!(allocate(without_urgent, &l, &Usage::default(), 30).granted, vec!["early"]);
    }

    #[test]
    fn a_waiter_for_two_resources_is_not_overtaken_forever() {
        // gpu is busy; "both" waits for it and keeps openai from "small", which came later.
        let l = limits(&[("openai", Some(1), None), ("gpu", Some(1), None)]);
        let usage = Usage { held: HashMap::from([("gpu".into(), 1)]), ..Default::default() };
        let ws = [w("both", &["openai", "gpu"], 50, 1), w("small", &["openai"], 50, 2), w("other", &["disk"], 50, 3)];
        let a = allocate(&ws, &l, &usage, 10);
        assert_eq!(a.granted, vec!["other"], "all-or-nothing: `both` takes neither; `small` may not jump it");
    }

    #[test]
    fn priority_ages_so_nobody_starves() {
        let l = limits(&[("openai", Some(1), None)]);
        let old = w("old", &["openai"], 10, 0);
        let fresh = w("fresh", &["openai"], 90, 1_000_000);
        assert_eq!(allocate(&[old.clone(), fresh.clone()], &l, &Usage::default(), 1_000_000).granted, vec!["old"]);
        assert_eq!(allocate(&[old, fresh], &l, &Usage::default(), 100_000).granted, vec!["fresh"]);
    }

    #[test]
    fn a_rate_lets_the_burst_through_then_spaces_grants() {
        let l = limits(&[("api", None, Some((60, 60, 2)))]);
        let ws: Vec<Waiter> = (0..4).map(|i| w(&format!("w{i}"), &["api"], 50, i)).collect();
        let a = allocate(&ws, &l, &Usage::default(), 0);
        assert_eq!(a.granted, vec!["w0", "w1"], "the burst");
        assert_eq!(a.buckets["api"].tokens, 0.0);
        assert_eq!(a.retry_at, Some(1_000), "one token a second");
        let usage = Usage { buckets: a.buckets.clone(), ..Default::default() };
        assert!(allocate(&ws[2..], &l, &usage, 500).granted.is_empty());
        assert_eq!(allocate(&ws[2..], &l, &usage, 1_000).granted, vec!["w2"]);
    }
}
