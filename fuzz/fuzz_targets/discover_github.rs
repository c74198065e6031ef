//! Discovery's GitHub Actions reader (`on.schedule[].cron` of a workflow file): every finding
//! is at a line of the file, and every translation is a cron expression and zone that the
//! scheduler accepts.
#![no_main]

use agent_os_core::discover;
use agent_os_fuzz::{check_findings, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = text(data) else { return };
    let source = ".github/workflows/nightly.yml";
    check_findings(source, text, &discover::discover_github(source, text));
});
