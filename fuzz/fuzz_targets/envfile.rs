//! `.env` files (a project's own, read by `agent-os init` and `keys audit` for names and
//! fingerprints only): every entry has a key a shell could export, every line number is a line
//! of the file, and `quote` writes each value so that it reads back unchanged.
#![no_main]

use agent_os_core::envfile::{parse, quote};
use agent_os_fuzz::{last_line, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = text(data) else { return };
    let file = parse(text);
    let last = last_line(text) as usize;
    for e in &file.entries {
        assert!(!e.key.is_empty() && !e.key.starts_with(|c: char| c.is_ascii_digit()), "key {:?}", e.key);
        assert!(e.key.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)), "key {:?}", e.key);
        assert!((1..=last).contains(&e.line), "entry {} at line {} of {last}", e.key, e.line);
        let written = format!("{}={}\n", e.key, quote(&e.value));
        let again = parse(&written);
        assert!(again.problems.is_empty(), "{written:?} reads with problems: {:?}", again.problems);
        assert_eq!(again.entries.len(), 1, "{written:?}");
        assert_eq!(again.entries[0].value, e.value, "quote({:?}) = {written:?} does not read back", e.value);
    }
    for p in &file.problems {
        assert!((1..=last).contains(&p.line), "problem at line {} of {last}: {}", p.line, p.message);
    }
    if let Some(first) = file.entries.first() {
        assert!(file.get(&first.key).is_some());
    }
});
