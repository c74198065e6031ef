//! Identifiers: UUIDv7 strings, sortable by creation time, the same text on every backend.

/// A new time-ordered identifier (UUIDv7, hyphenated lower-case).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// True when `s` is a hyphenated UUID; used to tell ids from names in paths.
pub fn looks_like_id(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
