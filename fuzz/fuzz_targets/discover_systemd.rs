//! Discovery's systemd timer reader (`OnCalendar=` and friends): every finding is at a line of
//! the file, and every translation is a cron expression and zone that the scheduler accepts.
#![no_main]

use agent_os_core::discover;
use agent_os_fuzz::{check_findings, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = text(data) else { return };
    let source = "backup.timer";
    check_findings(source, text, &discover::discover_systemd(source, text));
});
