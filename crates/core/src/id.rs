//! Identifiers: UUIDv7 strings, sortable by creation time, the same text on every backend.

/// A new time-ordered identifier (UUIDv7, hyphenated lower-case).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// True when `s` is a hyphenated UUID; used to tell ids from names in paths.
pub fn looks_like_id(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

/// What a schedule is, as the scheduler and its slot records know it: editing the task, the
/// expression or the zone makes a new schedule (whose slots count afresh).
pub fn schedule_key(project_id: &str, task: &str, cron: &str, timezone: &str) -> String {
    format!("{project_id}:{task}:{cron}:{timezone}")
}

/// The short, stable id users type for a schedule (`agent-os schedules pause ID`): 16 hex
/// digits of the FNV-1a hash of its key.
pub fn schedule_id(key: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_ids_are_stable_and_differ_by_expression() {
        let a = schedule_id(&schedule_key("p1", "sync", "0 * * * *", "UTC"));
        assert_eq!(a, schedule_id("p1:sync:0 * * * *:UTC"));
        assert_eq!(a.len(), 16);
        assert_ne!(a, schedule_id(&schedule_key("p1", "sync", "0 * * * *", "Europe/Berlin")));
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert!(a < b, "{a} should sort before {b}");
        assert!(looks_like_id(&a));
        assert!(!looks_like_id("cortana"));
    }
}
