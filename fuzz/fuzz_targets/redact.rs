//! Redaction of task output (untrusted: a task may print anything): what comes out holds no
//! secret shape any more, the masks are the only change, and a run's own token never survives.
#![no_main]

use agent_os_core::redact::{MASK, Redactor, find_shapes, redact_shapes};
use agent_os_fuzz::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = text(data) else { return };
    let out = redact_shapes(text);
    let left: Vec<&str> = find_shapes(&out).iter().map(|&(s, e)| &out[s..e]).collect();
    assert!(left.is_empty(), "secret shapes left after redaction: {left:?} in {out:?}");
    if find_shapes(text).is_empty() {
        assert_eq!(out, text, "text without secrets changed");
    }
    // A run's own token: take the input's longest word as the exact value to mask.
    let word = text.split(|c: char| !c.is_ascii_alphanumeric()).max_by_key(|w| w.len()).unwrap_or("");
    if word.len() >= 8 {
        let out = Redactor::new([word.to_string()]).redact(text);
        assert!(!out.contains(word) || MASK.contains(word), "the exact value {word:?} survived: {out:?}");
        assert!(find_shapes(&out).is_empty(), "secret shapes left after redaction: {out:?}");
    }
});
