//! Discovery's crontab reader (a user's `crontab -l`, `/etc/crontab`, `cron.d` files): every
//! finding is at a line of the file, and every translation is a cron expression and zone that
//! the scheduler accepts. The same text is read as a user and as a system crontab.
#![no_main]

use agent_os_core::discover;
use agent_os_fuzz::{check_findings, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = text(data) else { return };
    for (source, system) in [("crontab -l", false), ("/etc/crontab", true)] {
        check_findings(source, text, &discover::discover_crontab(source, text, system));
    }
});
