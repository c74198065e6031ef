//! Property tests: the skipping evaluator agrees with a minute-by-minute reference of Debian
//! cron's rules, for generated expressions, around real DST transitions of several zones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use agent_os_core::cron::{Cron, reference_next, zone};
use jiff::Timestamp;
use proptest::prelude::*;

/// Zones that exercise the rules: both hemispheres, a 30-minute shift, a zone that abolished
/// DST (Brazil, 2019), a 24-hour jump (Samoa, 2011), and zones without DST.
const ZONES: [&str; 9] = [
    "America/Los_Angeles",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Sao_Paulo",
    "Pacific/Apia",
    "Asia/Kolkata",
    "America/St_Johns",
    "UTC",
];

fn minute() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (0u32..60).prop_map(|m| m.to_string()),
        (1u32..31).prop_map(|s| format!("*/{s}")),
        (0u32..30, 30u32..60).prop_map(|(a, b)| format!("{a}-{b}/7")),
        (0u32..60, 0u32..60).prop_map(|(a, b)| format!("{a},{b}")),
    ]
}

fn hour() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (0u32..4).prop_map(|h| h.to_string()),
        (0u32..24).prop_map(|h| h.to_string()),
        (1u32..7).prop_map(|s| format!("*/{s}")),
        (0u32..3, 1u32..4).prop_map(|(a, b)| format!("{a}-{}", a + b)),
    ]
}

fn dom() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("*".to_string()),
        1 => (1u32..29).prop_map(|d| d.to_string()),
        1 => Just("L".to_string()),
        1 => (1u32..4).prop_map(|s| format!("*/{s}")),
        1 => (1u32..15).prop_map(|d| format!("{d}-{}", d + 14)),
    ]
}

fn dow() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("*".to_string()),
        1 => (0u32..8).prop_map(|d| d.to_string()),
        1 => Just("MON-FRI".to_string()),
        1 => (0u32..7, 1u32..5).prop_map(|(d, n)| format!("{d}#{n}")),
        1 => (0u32..7).prop_map(|d| format!("{d}L")),
    ]
}

/// An instant a little before one of the zone's transitions (or an arbitrary instant for
/// zones without any).
fn near_transition(zone_name: &str, year: i16, pick: usize, before_mins: i64) -> Timestamp {
    let tz = zone(zone_name).unwrap();
    let start: Timestamp = format!("{year}-01-01T00:00:00Z").parse().unwrap();
    let transitions: Vec<Timestamp> = tz.following(start).take(4).map(|t| t.timestamp()).collect();
    let base = if transitions.is_empty() { start } else { transitions[pick % transitions.len()] };
    base.checked_sub(jiff::SignedDuration::from_mins(before_mins)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128), ..ProptestConfig::default() })]

    #[test]
    fn skipping_agrees_with_the_minute_by_minute_reference(
        m in minute(), h in hour(), d in dom(), w in dow(),
        zi in 0usize..ZONES.len(), year in 2009i16..2028, pick in 0usize..4, before in 0i64..(3 * 24 * 60),
    ) {
        let expr = format!("{m} {h} {d} * {w}");
        let cron = Cron::parse(&expr).unwrap();
        let tz = zone(ZONES[zi]).unwrap();
        let mut after = near_transition(ZONES[zi], year, pick, before);
        for _ in 0..3 {
            // 75 days of minutes: enough for every generated shape to fire at least once.
            let want = reference_next(&cron, &tz, after, 75 * 24 * 60);
            let Some(want) = want else { break };
            let got = cron.next_after(&tz, after);
            prop_assert_eq!(got, Some(want), "{} in {} after {}", expr, ZONES[zi], after);
            after = want;
        }
    }

    /// Fixed-time jobs in the small hours, just before transitions: where the DST rules bite.
    #[test]
    fn fixed_times_around_transitions_agree_with_the_reference(
        m in 0u32..60, h in prop_oneof![(0u32..4).prop_map(|h| h.to_string()), Just("1-2".to_string()), Just("2,3".to_string())],
        zi in 0usize..5, year in 2009i16..2028, pick in 0usize..4, before in 0i64..(8 * 60),
    ) {
        let expr = format!("{m} {h} * * *");
        let cron = Cron::parse(&expr).unwrap();
        let tz = zone(ZONES[zi]).unwrap();
        let mut after = near_transition(ZONES[zi], year, pick, before);
        for _ in 0..3 {
            let want = reference_next(&cron, &tz, after, 3 * 24 * 60).unwrap();
            prop_assert_eq!(cron.next_after(&tz, after), Some(want), "{} in {} after {}", expr, ZONES[zi], after);
            after = want;
        }
    }

    #[test]
    fn parsing_never_panics(s in "[0-9A-Za-z*/,#L@ -]{0,40}") {
        let _ = Cron::parse(&s);
    }
}
