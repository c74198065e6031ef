//! Cron expressions evaluated as Debian's cron does, in an IANA time zone.
//!
//! Five fields (minute hour day-of-month month day-of-week) with names, ranges, steps and lists,
//! the `@yearly`… aliases, and the extensions users know from Healthchecks and Quartz: `L` in
//! day-of-month (last day), `DOW#N` (N-th weekday of the month) and `DOWL` (last such weekday).
//!
//! Semantics that matter, all Debian's:
//! - When both day-of-month and day-of-week are restricted, a day matches if *either* does. A
//!   field counts as unrestricted when its text starts with `*` (so `*/2` is "unrestricted").
//! - Daylight saving time. A *fixed-time* job (neither minute nor hour starts with `*`) whose
//!   time falls in a skipped hour runs right after the jump; in a repeated hour it runs once.
//!   Jobs with a wildcard minute or hour follow the wall clock: nothing runs for skipped times,
//!   and they run in both copies of a repeated hour. A change of 3 hours or more is a clock
//!   correction, not DST: then every job simply follows the new wall clock.
//!
//! The zone is passed in as a `jiff::tz::TimeZone`; looking it up by name is the caller's I/O.

use std::fmt;

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan};

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    source: String,
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    last_day: bool,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0.
    weekdays: u8,
    /// (weekday, n): the n-th such weekday of the month.
    nth: Vec<(u8, u8)>,
    /// Bits 0..=6: the last such weekday of the month.
    last_weekdays: u8,
    dom_star: bool,
    dow_star: bool,
    fixed: bool,
}

fn sorted(nth: &[(u8, u8)]) -> Vec<(u8, u8)> {
    let mut v = nth.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Why an expression is not valid: the field and the token at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronError {
    /// `minute`, `hour`, `day-of-month`, `month`, `day-of-week`, or `expression`.
    pub field: &'static str,
    pub token: String,
    pub message: String,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.token.is_empty() {
            write!(f, "{} field: {}", self.field, self.message)
        } else {
            write!(f, "{} field: bad token {:?}: {}", self.field, self.token, self.message)
        }
    }
}

impl std::error::Error for CronError {}

const FIELDS: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Larger clock changes are corrections, not daylight saving time (Debian cron's rule).
const DST_LIMIT: SignedDuration = SignedDuration::from_hours(3);

fn err(field: usize, token: &str, message: impl Into<String>) -> CronError {
    CronError { field: FIELDS[field], token: token.to_string(), message: message.into() }
}

fn number(field: usize, token: &str, text: &str, min: u32, max: u32) -> Result<u32, CronError> {
    let names: &[&str] = match field {
        3 => &MONTHS,
        4 => &DAYS,
        _ => &[],
    };
    let upper = text.to_ascii_uppercase();
    if let Some(i) = names.iter().position(|n| *n == upper) {
        return Ok(if field == 3 { i as u32 + 1 } else { i as u32 });
    }
    let n: u32 = text.parse().map_err(|_| {
        let hint = match field {
            3 => " (a number 1-12 or JAN-DEC)",
            4 => " (a number 0-7 or SUN-SAT)",
            _ => "",
        };
        err(field, token, format!("{text:?} is not a number{hint}"))
    })?;
    if n < min || n > max {
        return Err(err(field, token, format!("{n} is out of range {min}-{max}")));
    }
    Ok(n)
}

/// Parses one comma-separated field into a bit set over `min..=max`, handling `L`, `#` and
/// `DOWL` for the day fields.
fn field(idx: usize, text: &str, min: u32, max: u32, cron: &mut Cron) -> Result<u64, CronError> {
    let mut bits = 0u64;
    if text.is_empty() {
        return Err(err(idx, text, "empty field"));
    }
    for token in text.split(',') {
        if token.is_empty() {
            return Err(err(idx, text, "empty list item"));
        }
        let upper = token.to_ascii_uppercase();
        if idx == 2 && upper == "L" {
            cron.last_day = true;
            continue;
        }
        if idx == 4 {
            if let Some((d, n)) = token.split_once('#') {
                let day = number(idx, token, d, 0, 7)? % 7;
                let n: u8 = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=5).contains(n))
                    .ok_or_else(|| err(idx, token, "the number after # is the week of the month, 1-5"))?;
                cron.nth.push((day as u8, n));
                continue;
            }
            if upper.len() > 1 && upper.ends_with('L') {
                let day = number(idx, token, &token[..token.len() - 1], 0, 7)? % 7;
                cron.last_weekdays |= 1 << day;
                continue;
            }
        }
        let (range, step) = match token.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| err(idx, token, format!("step {s:?} is not a number")))?;
                if step == 0 || step > max {
                    return Err(err(idx, token, format!("step {step} is out of range 1-{max}")));
                }
                (r, step)
            }
            None => (token, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = number(idx, token, a, min, max)?;
            let b = number(idx, token, b, min, max)?;
            if a > b {
                return Err(err(idx, token, format!("range {a}-{b} runs backwards; write it as two ranges")));
            }
            (a, b)
        } else {
            let a = number(idx, token, range, min, max)?;
            // `a/n` means from a to the end of the range, stepping n.
            (a, if token.contains('/') { max } else { a })
        };
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Cron {
    /// Whether `other` fires at the same times, however each was written (`@daily` and
    /// `0 0 * * *`, `1-5` and `mon-fri`).
    pub fn fires_like(&self, other: &Cron) -> bool {
        Cron { source: String::new(), nth: sorted(&self.nth), ..self.clone() }
            == Cron { source: String::new(), nth: sorted(&other.nth), ..other.clone() }
    }

    /// Parses an expression: five fields or an `@` alias.
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let trimmed = expr.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => {
                return Err(CronError {
                    field: "expression",
                    token: trimmed.to_string(),
                    message: "unknown alias; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly"
                        .into(),
                });
            }
            _ => trimmed,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(CronError {
                field: "expression",
                token: String::new(),
                message: format!(
                    "{trimmed:?} has {} fields; cron needs 5: minute hour day-of-month month day-of-week",
                    parts.len()
                ),
            });
        }
        let mut c = Cron {
            source: trimmed.to_string(),
            minutes: 0,
            hours: 0,
            days: 0,
            last_day: false,
            months: 0,
            weekdays: 0,
            nth: Vec::new(),
            last_weekdays: 0,
            dom_star: parts[2].starts_with('*'),
            dow_star: parts[4].starts_with('*'),
            fixed: !parts[0].starts_with('*') && !parts[1].starts_with('*'),
        };
        c.minutes = field(0, parts[0], 0, 59, &mut c)?;
        c.hours = field(1, parts[1], 0, 23, &mut c)? as u32;
        c.days = field(2, parts[2], 1, 31, &mut c)? as u32;
        c.months = field(3, parts[3], 1, 12, &mut c)? as u16;
        let dow = field(4, parts[4], 0, 7, &mut c)?;
        // 7 is Sunday too.
        c.weekdays = ((dow | (dow >> 7)) & 0x7f) as u8;
        Ok(c)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True for a fixed-time job (no `*` at the start of the minute or hour field), the kind
    /// Debian cron's DST rules apply to.
    pub fn is_fixed_time(&self) -> bool {
        self.fixed
    }

    fn day_matches(&self, d: Date) -> bool {
        let day = d.day() as u32;
        let last = d.days_in_month() as u32;
        let dom = self.days & (1 << day) != 0 || (self.last_day && day == last);
        let wd = d.weekday().to_sunday_zero_offset() as u8;
        let dow = self.weekdays & (1 << wd) != 0
            || self.nth.iter().any(|(w, n)| *w == wd && (day - 1) / 7 + 1 == u32::from(*n))
            || (self.last_weekdays & (1 << wd) != 0 && day + 7 > last);
        if self.dom_star || self.dow_star { dom && dow } else { dom || dow }
    }

    /// Whether a wall-clock minute matches (seconds ignored).
    pub fn matches(&self, dt: DateTime) -> bool {
        self.months & (1 << dt.month()) != 0
            && self.day_matches(dt.date())
            && self.hours & (1 << dt.hour()) != 0
            && self.minutes & (1 << dt.minute()) != 0
    }

    /// The first matching wall-clock minute at or after `from` and before `until`.
    fn next_civil(&self, from: DateTime, until: DateTime) -> Option<DateTime> {
        let mut dt = from.with().second(0).subsec_nanosecond(0).build().ok()?;
        if dt < from {
            dt = dt.checked_add(1.minute()).ok()?;
        }
        let give_up = from.year().saturating_add(30);
        while dt < until && dt.year() <= give_up {
            if self.months & (1 << dt.month()) == 0 {
                dt = dt.first_of_month().checked_add(1.month()).ok()?.with().hour(0).minute(0).build().ok()?;
                continue;
            }
            if !self.day_matches(dt.date()) {
                dt = dt.date().tomorrow().ok()?.to_datetime(jiff::civil::time(0, 0, 0, 0));
                continue;
            }
            if self.hours & (1 << dt.hour()) == 0 {
                dt = dt.with().minute(0).build().ok()?.checked_add(1.hour()).ok()?;
                continue;
            }
            let m = dt.minute() as u32;
            match (m..60).find(|m| self.minutes & (1 << m) != 0) {
                Some(next) => return Some(dt.with().minute(next as i8).build().ok()?).filter(|d| *d < until),
                None => dt = dt.with().minute(0).build().ok()?.checked_add(1.hour()).ok()?,
            }
        }
        None
    }

    /// The first fire strictly after `after`, in `tz`, with Debian cron's DST rules; `None` if
    /// the expression never fires within 30 years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
        let civil = |t: Timestamp, off: jiff::tz::Offset| off.to_datetime(t);
        let mut offset = tz.to_offset(after);
        // Strictly after: the next whole minute.
        let mut lo = civil(after, offset).checked_add(SignedDuration::from_nanos(1)).ok()?;
        if self.fixed {
            // Starting inside the second copy of a repeated hour: a fixed-time job already ran
            // in the first copy, so the search begins where the repetition ends.
            let just_after = after.checked_add(SignedDuration::from_nanos(1)).ok()?;
            if let Some(t) = tz.preceding(just_after).next() {
                let before = tz.to_offset(t.timestamp().checked_sub(SignedDuration::from_nanos(1)).ok()?);
                let delta = t.offset().duration_since(before);
                let repeat_end = civil(t.timestamp(), before);
                if delta.is_negative() && delta.abs() < DST_LIMIT && lo < repeat_end {
                    lo = repeat_end;
                }
            }
        }
        let mut start = after;
        for _ in 0..2000 {
            let transition = tz.following(start).next();
            let hi = match &transition {
                Some(t) => civil(t.timestamp(), offset),
                None => DateTime::MAX,
            };
            if let Some(c) = self.next_civil(lo, hi) {
                return offset.to_timestamp(c).ok();
            }
            let t = transition?;
            let new = t.offset();
            let delta = new.duration_since(offset);
            if self.fixed && delta.abs() < DST_LIMIT {
                if delta.is_positive() {
                    // Spring forward: fixed-time jobs of the skipped hour run right after it.
                    if self.next_civil(civil(t.timestamp(), offset), civil(t.timestamp(), new)).is_some()
                        && t.timestamp() > after
                    {
                        return Some(t.timestamp());
                    }
                    lo = civil(t.timestamp(), new);
                } else {
                    // Fall back: the repeated hour ran already, once.
                    lo = civil(t.timestamp(), offset);
                }
            } else {
                lo = civil(t.timestamp(), new);
            }
            offset = new;
            start = t.timestamp();
        }
        None
    }

    /// The next `count` fires after `after`.
    pub fn upcoming(&self, tz: &TimeZone, after: Timestamp, count: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(count);
        let mut t = after;
        while out.len() < count {
            match self.next_after(tz, t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }
}

/// Looks up an IANA zone by name, refusing fixed offsets (schedules keep zone names so DST is
/// right). This reads the time zone database: the one I/O in this module, kept at the edge.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    let n = name.trim();
    if n.starts_with('+') || n.starts_with('-') {
        return Err(format!("{n:?} is a fixed offset; use a zone name such as Europe/Berlin so DST is right"));
    }
    TimeZone::get(n).map_err(|_| {
        format!("unknown time zone {n:?}; use an IANA name such as America/Los_Angeles, Europe/Berlin or UTC")
    })
}

/// An IANA time zone looked up once, with its name as written: plans hold this rather than the
/// name, so nothing looks the zone up again on use. The name is what is stored, shown and part
/// of a schedule's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// Looks `name` up ([`zone`]'s rules: a zone name, never a fixed offset).
    pub fn parse(name: &str) -> Result<Zone, String> {
        Ok(Zone { tz: zone(name)?, name: name.to_string() })
    }

    pub fn utc() -> Zone {
        Zone { name: "UTC".into(), tz: TimeZone::UTC }
    }

    /// The name as written.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }
}

/// Weekday helper for tests and reports.
pub fn weekday_name(w: Weekday) -> &'static str {
    DAYS[w.to_sunday_zero_offset() as usize]
}

/// A reference evaluator that walks real time minute by minute, asking at each minute what
/// Debian's cron would: used to check [`Cron::next_after`], which skips ahead instead.
#[doc(hidden)]
pub fn reference_next(c: &Cron, tz: &TimeZone, after: Timestamp, max_minutes: i64) -> Option<Timestamp> {
    let minute = SignedDuration::from_mins(1);
    let secs = after.as_second().div_euclid(60) * 60;
    let mut t = Timestamp::from_second(secs).ok()?.checked_add(minute).ok()?;
    for _ in 0..max_minutes {
        let off = tz.to_offset(t);
        let prev = tz.to_offset(t.checked_sub(minute).ok()?);
        let local = off.to_datetime(t);
        if off != prev && c.fixed && off.duration_since(prev).abs() < DST_LIMIT && off > prev {
            // Just after a spring-forward jump: did a fixed-time job fall in the skipped minutes?
            let mut s = prev.to_datetime(t);
            while s < local {
                if c.matches(s) {
                    return Some(t);
                }
                s = s.checked_add(minute).ok()?;
            }
        }
        if c.matches(local) {
            let repeat = match tz.to_ambiguous_timestamp(local).offset() {
                AmbiguousOffset::Fold { before, after: later } => {
                    c.fixed && off == later && before.duration_since(later).abs() < DST_LIMIT
                }
                _ => false,
            };
            if !repeat {
                return Some(t);
            }
        }
        t = t.checked_add(minute).ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_written_differently_fire_alike() {
        let p = |e: &str| Cron::parse(e).unwrap();
        assert!(p("@daily").fires_like(&p("0 0 * * *")));
        assert!(p("0 9 * * 1-5").fires_like(&p("0 9 * * mon-fri")));
        assert!(p("0 9 * * 1-5").fires_like(&p(" 0  9 * * 1,2,3,4,5")));
        assert!(!p("0 9 * * 1-5").fires_like(&p("0 9 * * 1-6")));
        assert!(!p("30 3 * * *").fires_like(&p("30 4 * * *")));
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn fires(expr: &str, zone_name: &str, after: &str, n: usize) -> Vec<String> {
        let c = Cron::parse(expr).unwrap();
        let tz = zone(zone_name).unwrap();
        c.upcoming(&tz, ts(after), n)
            .into_iter()
            .map(|t| t.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M%:z").to_string())
            .collect()
    }

    #[test]
    fn parses_the_common_forms() {
        for ok in [
            "* * * * *",
            "*/15 * * * *",
            "0 22 * * *",
            "1-30/7 * * * *",
            "0 9 * JAN-MAR MON-FRI",
            "0 0 L * *",
            "0 12 * * 5#3",
            "0 12 * * 5L",
            "@daily",
            "@ANNUALLY",
            "0 0 * * 7",
            "5/10 * * * *",
            "0 0 1,15,L * *",
        ] {
            assert!(Cron::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn errors_name_the_field_and_token() {
        let cases = [
            ("61 * * * *", "minute field: bad token \"61\": 61 is out of range 0-59"),
            ("* 24 * * *", "hour field: bad token \"24\": 24 is out of range 0-23"),
            ("* * 0 * *", "day-of-month field: bad token \"0\": 0 is out of range 1-31"),
            ("* * * FOO *", "month field: bad token \"FOO\": \"FOO\" is not a number (a number 1-12 or JAN-DEC)"),
            ("* * * * 8", "day-of-week field: bad token \"8\": 8 is out of range 0-7"),
            ("* * * * 1#6", "day-of-week field: bad token \"1#6\": the number after # is the week of the month, 1-5"),
            ("*/0 * * * *", "minute field: bad token \"*/0\": step 0 is out of range 1-59"),
            ("5-1 * * * *", "minute field: bad token \"5-1\": range 5-1 runs backwards; write it as two ranges"),
        ];
        for (expr, want) in cases {
            assert_eq!(Cron::parse(expr).unwrap_err().to_string(), want, "{expr}");
        }
        assert!(Cron::parse("* * * *").unwrap_err().to_string().contains("has 4 fields"));
        assert!(Cron::parse("@reboot").unwrap_err().to_string().contains("unknown alias"));
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // Every 13th and every Friday, as Debian cron reads it.
        let got = fires("0 0 13 * 5", "UTC", "2026-11-01T00:00:00Z", 4);
        assert_eq!(
            got,
            ["2026-11-06T00:00+00:00", "2026-11-13T00:00+00:00", "2026-11-20T00:00+00:00", "2026-11-27T00:00+00:00"]
        );
        // A `*`-led field is unrestricted: `*/2` with a weekday means odd days that are Fridays.
        let got = fires("0 0 */2 * 5", "UTC", "2026-11-01T00:00:00Z", 2);
        assert_eq!(got, ["2026-11-13T00:00+00:00", "2026-11-27T00:00+00:00"]);
    }

    #[test]
    fn extensions() {
        assert_eq!(
            fires("0 0 L * *", "UTC", "2028-02-01T00:00:00Z", 2),
            ["2028-02-29T00:00+00:00", "2028-03-31T00:00+00:00"]
        );
        assert_eq!(fires("0 12 * * 5L", "UTC", "2026-11-01T00:00:00Z", 1), ["2026-11-27T12:00+00:00"]);
        assert_eq!(
            fires("0 12 * * MON#1", "UTC", "2026-11-01T00:00:00Z", 2),
            ["2026-11-02T12:00+00:00", "2026-12-07T12:00+00:00"]
        );
        assert_eq!(fires("0 0 * * 7", "UTC", "2026-11-24T00:00:00Z", 1), ["2026-11-29T00:00+00:00"], "7 is Sunday");
        assert!(Cron::parse("0 0 30 2 *").unwrap().next_after(&TimeZone::UTC, ts("2026-01-01T00:00:00Z")).is_none());
    }

    #[test]
    fn spring_forward_in_los_angeles() {
        // 2026-03-08 02:00 PST jumps to 03:00 PDT.
        assert_eq!(
            fires("30 2 * * *", "America/Los_Angeles", "2026-03-07T08:00:00Z", 2),
            ["2026-03-07T02:30-08:00", "2026-03-08T03:00-07:00"],
            "runs right after the jump"
        );
        assert_eq!(fires("30 2 * * *", "America/Los_Angeles", "2026-03-08T11:00:00Z", 1), ["2026-03-09T02:30-07:00"]);
        assert_eq!(
            fires("30 * * * *", "America/Los_Angeles", "2026-03-08T08:00:00Z", 3),
            ["2026-03-08T00:30-08:00", "2026-03-08T01:30-08:00", "2026-03-08T03:30-07:00"],
            "wildcard hours skip the missing 02:30"
        );
    }

    #[test]
    fn fall_back_in_los_angeles() {
        // 2026-11-01 02:00 PDT goes back to 01:00 PST.
        assert_eq!(
            fires("30 1 * * *", "America/Los_Angeles", "2026-11-01T07:00:00Z", 2),
            ["2026-11-01T01:30-07:00", "2026-11-02T01:30-08:00"],
            "a fixed time runs once"
        );
        assert_eq!(
            fires("30 * * * *", "America/Los_Angeles", "2026-11-01T07:00:00Z", 3),
            ["2026-11-01T00:30-07:00", "2026-11-01T01:30-07:00", "2026-11-01T01:30-08:00"],
            "wildcard hours run in both copies"
        );
    }

    #[test]
    fn starting_inside_a_repeated_hour_does_not_rerun_a_fixed_job() {
        // Sydney 2009-04-05: 03:00 AEDT became 02:00 AEST at 16:00 UTC; 02:01 AEDT already ran.
        assert_eq!(fires("1 2 * * *", "Australia/Sydney", "2009-04-04T16:00:00Z", 1), ["2009-04-06T02:01+10:00"]);
        assert_eq!(
            fires("1 * * * *", "Australia/Sydney", "2009-04-04T16:00:00Z", 1),
            ["2009-04-05T02:01+10:00"],
            "wildcard hours do run again"
        );
    }

    #[test]
    fn southern_hemisphere_and_half_hour_shifts() {
        // Sydney: 2026-04-05 03:00 AEDT goes back to 02:00 AEST.
        assert_eq!(
            fires("30 2 * * *", "Australia/Sydney", "2026-04-04T12:00:00Z", 2),
            ["2026-04-05T02:30+11:00", "2026-04-06T02:30+10:00"]
        );
        // Lord Howe moves 30 minutes: 2026-10-04 02:00 +10:30 becomes 02:30 +11:00.
        assert_eq!(fires("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00Z", 1), ["2026-10-04T02:30+11:00"]);
        assert_eq!(
            fires("*/20 2 * * *", "Australia/Lord_Howe", "2026-10-03T15:00:00Z", 2),
            ["2026-10-04T02:40+11:00", "2026-10-05T02:00+11:00"]
        );
    }

    #[test]
    fn a_clock_correction_is_not_dst() {
        // Samoa skipped 2011-12-30 entirely (24 h): jobs follow the new wall clock.
        assert_eq!(
            fires("0 12 * * *", "Pacific/Apia", "2011-12-29T00:00:00Z", 2),
            ["2011-12-29T12:00-10:00", "2011-12-31T12:00+14:00"]
        );
    }

    #[test]
    fn zones_are_names_not_offsets() {
        assert!(zone("Europe/Berlin").is_ok());
        assert!(zone("+02:00").unwrap_err().contains("fixed offset"));
        assert!(zone("Mars/Olympus").unwrap_err().contains("unknown time zone"));
    }
}
