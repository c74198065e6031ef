//! What the fuzz targets share: the properties every parser's output must have whatever the
//! input (errors that point inside the text, findings whose cron expressions parse), so each
//! target asserts more than "does not panic".

use agent_os_core::cron::{self, Cron};
use agent_os_core::discover::{Finding, LOCAL, Outcome};
use agent_os_core::manifest::ManifestError;

/// The input as text, or `None`: every parser here reads `&str`, as its callers do after
/// reading a file or a request body as UTF-8.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// The highest line number a place in `text` can have, 1-based, counting every line break a
/// YAML reader counts (`\n`, `\r\n` and a lone `\r`) plus the line after the last break.
pub fn last_line(text: &str) -> u64 {
    let breaks = text.bytes().filter(|b| *b == b'\n' || *b == b'\r').count();
    breaks as u64 + 1
}

/// An error report names at least one problem, each at a line and column inside the text,
/// with a message, and renders without panicking.
pub fn check_errors(text: &str, err: &ManifestError) {
    assert!(!err.0.is_empty(), "an error without any problem in it");
    let last = last_line(text);
    for e in &err.0 {
        assert!((1..=last).contains(&e.line), "line {} outside 1..={last}: {e}", e.line);
        assert!(e.column >= 1, "column 0: {e}");
        assert!(!e.message.trim().is_empty(), "an empty message at {}:{}", e.line, e.column);
    }
    let shown = err.to_string();
    assert!(!shown.is_empty());
}

/// Every finding of a discovery reader is at a line of the file it came from, and a translated
/// one is five cron fields that [`Cron::parse`] accepts, in a zone that exists.
pub fn check_findings(source: &str, text: &str, findings: &[Finding]) {
    let last = last_line(text);
    for f in findings {
        assert_eq!(f.source, source);
        assert!((1..=last).contains(&f.line), "line {} outside 1..={last}: {f:?}", f.line);
        match &f.outcome {
            Outcome::Schedule { cron: expr, timezone } => {
                assert_eq!(expr.split_whitespace().count(), 5, "not five fields: {expr:?}");
                if let Err(e) = Cron::parse(expr) {
                    panic!("discovery produced {expr:?}, which cron refuses: {e}");
                }
                assert!(
                    timezone == LOCAL || cron::zone(timezone).is_ok(),
                    "discovery produced the zone {timezone:?}, which does not exist"
                );
            }
            Outcome::Untranslatable { reason } => assert!(!reason.trim().is_empty(), "no reason given: {f:?}"),
        }
    }
}
