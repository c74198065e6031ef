//! `agent-os.yaml`, as a user writes it or a hosted project pushes it over the API: a rejected
//! manifest names each problem at a place inside the text; an accepted one has only schedules
//! the scheduler can evaluate, on tasks it declares, and checks whose tags are valid.
#![no_main]

use agent_os_core::cron::{self, Cron};
use agent_os_core::manifest::{Expect, Manifest, check_schedule};
use agent_os_core::name::{MAX_TAGS, check_tag};
use agent_os_fuzz::{check_errors, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = text(data) else { return };
    match Manifest::parse("agent-os.yaml", text) {
        Err(e) => check_errors(text, &e),
        Ok(m) => {
            assert!(!m.name.is_empty());
            for s in &m.schedules {
                let (expr, zone) = (s.cron.source(), s.timezone.name());
                match check_schedule(&m.tasks, &s.task, expr, zone, s.managed_by.as_str()) {
                    Ok((again, _, _)) => assert_eq!(again, s.cron, "the schedule's cron reads back as written"),
                    Err(e) => panic!("an accepted manifest holds a schedule the scheduler refuses: {e}"),
                }
            }
            for c in &m.checks {
                // Tags are stored joined by spaces and matched whole: each must be a valid tag.
                assert!(c.tags.len() <= MAX_TAGS, "check {} has {} tags", c.slug, c.tags.len());
                for (i, t) in c.tags.iter().enumerate() {
                    assert!(check_tag(t).is_ok() && !c.tags[..i].contains(t), "check {} has the tag {t:?}", c.slug);
                }
                if let Expect::Cron { cron: parsed, timezone } = &c.expect {
                    let (expr, zone) = (parsed.source(), timezone.name());
                    assert!(Cron::parse(expr).is_ok(), "check {} has the cron {expr:?}", c.slug);
                    assert!(cron::zone(zone).is_ok(), "check {} has the zone {zone:?}", c.slug);
                }
            }
            for (name, task) in &m.tasks {
                assert_eq!(name, &task.name);
            }
        }
    }
});
