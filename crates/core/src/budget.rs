//! Budgets: a spending limit per project (and optionally per service) for a UTC calendar day
//! or month, with thresholds that raise events once per period and, if asked, a pause of the
//! project's spending when the limit is reached.

use jiff::civil::Date;
use jiff::{Timestamp, tz::TimeZone};

use crate::text::text_enum;

/// Thresholds in percent when a budget names none.
pub const DEFAULT_THRESHOLDS: [i64; 3] = [50, 80, 100];

text_enum! {
    /// A budget's UTC calendar period.
    pub enum Period("period") {
        Daily = "daily",
        Monthly = "monthly",
    }
}

text_enum! {
    /// What happens when a budget is spent: an alert only, or a pause of the project's spending.
    pub enum OnExceed("action") {
        Alert = "alert",
        Pause = "pause",
    }
}

text_enum! {
    /// Where a budget was set: `config.yaml` (kept in step with it) or the API.
    pub enum BudgetSource("budget source") {
        Config = "config",
        Api = "api",
    }
}

impl Period {
    pub fn parse(s: &str) -> Result<Period, String> {
        s.parse().map_err(|e: crate::text::UnknownValue| e.to_string())
    }

    /// The UTC period holding `now` (ms): its start and end (exclusive).
    pub fn bounds(self, now: i64) -> (i64, i64) {
        let day = Timestamp::from_millisecond(now).unwrap_or_default().to_zoned(TimeZone::UTC).date();
        let (start, end) = match self {
            Period::Daily => (day, day.tomorrow().unwrap_or(day)),
            Period::Monthly => {
                let first = day.first_of_month();
                (first, first.checked_add(jiff::Span::new().months(1)).unwrap_or(first))
            }
        };
        (midnight(start), midnight(end))
    }
}

fn midnight(d: Date) -> i64 {
    d.to_zoned(TimeZone::UTC).map(|z| z.timestamp().as_millisecond()).unwrap_or(0)
}

/// What the period will have cost at its end if spending goes on at the rate so far (at least
/// one hour of the period counts as elapsed, so a first cost does not forecast a fortune).
pub fn forecast(spent_nanos: i64, start: i64, end: i64, now: i64) -> i64 {
    let elapsed = (now - start).max(3_600_000).min(end - start).max(1);
    ((spent_nanos as i128) * i128::from(end - start) / i128::from(elapsed)).min(i128::from(i64::MAX)) as i64
}

/// Checks thresholds: 1 to 1000 percent, no repeats; returned ascending.
pub fn check_thresholds(t: &[i64]) -> Result<Vec<i64>, String> {
    if t.is_empty() || t.len() > 10 {
        return Err("give 1 to 10 thresholds, in percent, e.g. [50, 80, 100]".into());
    }
    if let Some(bad) = t.iter().find(|p| !(1..=1000).contains(*p)) {
        return Err(format!("threshold {bad} is out of range: 1 to 1000 (percent)"));
    }
    let mut v = t.to_vec();
    v.sort_unstable();
    v.dedup();
    if v.len() != t.len() {
        return Err("a threshold is given twice".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t: &str) -> i64 {
        t.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn periods_are_utc_days_and_months() {
        let now = ms("2026-02-14T23:30:00Z");
        assert_eq!(Period::Daily.bounds(now), (ms("2026-02-14T00:00:00Z"), ms("2026-02-15T00:00:00Z")));
        assert_eq!(Period::Monthly.bounds(now), (ms("2026-02-01T00:00:00Z"), ms("2026-03-01T00:00:00Z")));
        let dec = ms("2026-12-31T12:00:00Z");
        assert_eq!(Period::Monthly.bounds(dec), (ms("2026-12-01T00:00:00Z"), ms("2027-01-01T00:00:00Z")));
    }

    #[test]
    fn forecast_extrapolates_the_spend_so_far() {
        let (start, end) = Period::Monthly.bounds(ms("2026-11-16T00:00:00Z"));
        // 15 of 30 days gone, 10 spent: 20 by the end.
        assert_eq!(forecast(10, start, end, ms("2026-11-16T00:00:00Z")), 20);
        // Ten minutes in, one hour counts as elapsed.
        assert_eq!(forecast(1, start, end, start + 600_000), 720);
    }

    #[test]
    fn thresholds_are_checked() {
        assert_eq!(check_thresholds(&[100, 50]).unwrap(), vec![50, 100]);
        assert!(check_thresholds(&[]).is_err());
        assert!(check_thresholds(&[0]).unwrap_err().contains("out of range"));
        assert!(check_thresholds(&[50, 50]).unwrap_err().contains("twice"));
    }
}
