//! `agent-os.yaml`, as a user writes it or a hosted project pushes it over the API: a rejected
//! manifest names each problem at a place inside the text; an accepted one has only schedules
//! the scheduler can evaluate, on tasks it declares.
#![no_main]

use agent_os_core::cron::{self, Cron};
use agent_os_core::manifest::{Expect, Manifest, check_schedule};
use agent_os_fuzz::{check_errors, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = text(data) else { return };
    match Manifest::parse("agent-os.yaml", text) {
        Err(e) => check_errors(text, &e),
        Ok(m) => {
            assert!(!m.name.is_empty());
            for s in &m.schedules {
                if let Err(e) = check_schedule(&m.tasks, &s.task, &s.cron, &s.timezone, &s.managed_by) {
                    panic!("an accepted manifest holds a schedule the scheduler refuses: {e}");
                }
            }
            for c in &m.checks {
                if let Expect::Cron { cron: expr, timezone } = &c.expect {
                    assert!(Cron::parse(expr).is_ok(), "check {} has the cron {expr:?}", c.slug);
                    assert!(cron::zone(timezone).is_ok(), "check {} has the zone {timezone:?}", c.slug);
                }
            }
            for (name, task) in &m.tasks {
                assert_eq!(name, &task.name);
            }
        }
    }
});
