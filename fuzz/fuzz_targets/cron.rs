//! Cron expressions (manifests, workflow triggers, `agent-os cron next`, discovered crontabs):
//! an accepted expression's next fire time is after the start and is exactly the one a
//! minute-by-minute walk with Debian cron's rules finds (`cron::reference_next`), near DST
//! transitions of zones that exercise the rules.
//!
//! Input: the expression on the first line; an optional second line names the zone (any text,
//! which `cron::zone` must refuse or resolve). A hash of the whole input picks the zone when
//! there is no second line, and the start instant: a few minutes to days before one of the
//! zone's transitions between 1995 and 2040.
#![no_main]

use std::sync::OnceLock;

use agent_os_core::cron::{self, Cron, reference_next};
use agent_os_fuzz::text;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;

/// Both hemispheres, a 30-minute shift, abolished DST, a 24-hour jump, no DST at all.
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

/// How far the reference walks, in minutes: three days.
const WINDOW: i64 = 3 * 24 * 60;

fn zones() -> &'static [TimeZone] {
    static ZONE_LIST: OnceLock<Vec<TimeZone>> = OnceLock::new();
    ZONE_LIST.get_or_init(|| ZONES.iter().map(|z| cron::zone(z).expect("a zone of the fuzz list")).collect())
}

/// FNV-1a: a stable spread of the input over the zones and instants.
fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = text(data) else { return };
    let (expr, zone_name) = match text.split_once('\n') {
        Some((e, z)) => (e, Some(z)),
        None => (text, None),
    };
    let Ok(c) = Cron::parse(expr) else { return };
    assert_eq!(c.source(), expr.trim());
    let h = hash(data);
    let named;
    let tz = match zone_name {
        Some(name) => match cron::zone(name) {
            Ok(z) => {
                named = z;
                &named
            }
            Err(_) => return,
        },
        None => &zones()[(h % ZONES.len() as u64) as usize],
    };
    let year = 1995 + ((h >> 8) % 46) as i16;
    let Ok(start) = jiff::civil::date(year, 1, 1).to_zoned(TimeZone::UTC).map(|z| z.timestamp()) else { return };
    let transitions: Vec<Timestamp> = tz.following(start).take(4).map(|t| t.timestamp()).collect();
    let base = match transitions.len() {
        0 => start,
        n => transitions[((h >> 16) % n as u64) as usize],
    };
    let Ok(mut after) = base.checked_sub(SignedDuration::from_mins(((h >> 24) % (4 * 24 * 60)) as i64)) else { return };
    for _ in 0..2 {
        let got = c.next_after(tz, after);
        if let Some(next) = got {
            assert!(next > after, "{expr:?}: next fire {next} is not after {after}");
        }
        match reference_next(&c, tz, after, WINDOW) {
            Some(want) => assert_eq!(got, Some(want), "{expr:?} in {tz:?} after {after}"),
            None => {
                let Ok(first) = Timestamp::from_second(after.as_second().div_euclid(60) * 60) else { return };
                let horizon = first + SignedDuration::from_mins(WINDOW);
                assert!(
                    got.is_none_or(|next| next > horizon),
                    "{expr:?} in {tz:?} after {after}: next_after gives {got:?}, the reference nothing within the window"
                );
            }
        }
        let Some(next) = got else { break };
        after = next;
    }
});
