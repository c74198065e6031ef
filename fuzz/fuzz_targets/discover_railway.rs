//! Discovery's Railway readers (`railway.json` and `railway.toml`, `cronSchedule`): every
//! finding is at a line of the file, and every translation is a cron expression and zone that
//! the scheduler accepts. The same text is read by both readers.
#![no_main]

use agent_os_core::discover;
use agent_os_fuzz::{check_findings, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = text(data) else { return };
    check_findings("railway.json", text, &discover::discover_railway_json("railway.json", text));
    check_findings("railway.toml", text, &discover::discover_railway_toml("railway.toml", text));
});
