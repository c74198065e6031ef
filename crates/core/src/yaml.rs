//! Reading YAML documents users write, with errors that point at the place.
//!
//! The parser (serde-saphyr) reports a line and column; users also want the field path
//! (`tasks.daily_update.timeout`). [`path_at`] recovers it from the text by walking up the
//! indentation, which is exact for block-style YAML and names the enclosing key for flow style.

use std::fmt;

/// One problem in a user's YAML file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// Dotted field path, `tasks.daily_update.timeout`; empty for the document itself.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// A location inside the document, 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl From<serde_saphyr::Location> for Pos {
    fn from(l: serde_saphyr::Location) -> Self {
        Pos { line: l.line(), column: l.column() }
    }
}

/// Parses `text` into `T`, turning a parse error into a [`SourceError`] with the field path.
pub fn parse<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, SourceError> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let pos = e.location().map(Pos::from).unwrap_or(Pos { line: 1, column: 1 });
        let (message, hint) = explain(&e);
        SourceError {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            path: path_at(text, pos.line as usize),
            message,
            hint,
        }
    })
}

/// The parser's message without its rendered snippet or position, plus a hint for the common
/// mistakes.
fn explain(e: &serde_saphyr::Error) -> (String, Option<String>) {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("invalid YAML").trim();
    let mut message = first.strip_prefix("error: ").unwrap_or(first);
    // Drop the parser's own "line N column M: " prefix; the error carries the position.
    if let Some(rest) = message.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
    {
        message = after;
    }
    let message = message.trim_end_matches(|c: char| c == ':' || c.is_whitespace()).to_string();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let known: Vec<&str> = expected
            .trim_start_matches(", expected one of ")
            .trim_start_matches(", expected ")
            .split(", ")
            .map(|k| k.trim_matches('`'))
            .filter(|k| !k.is_empty())
            .collect();
        let hint = match crate::manifest::suggest(field, &known) {
            Some(k) => format!("did you mean `{k}`?"),
            None if known.is_empty() => "remove the field".to_string(),
            None => format!("remove it; the known fields are: {}", known.join(", ")),
        };
        return (format!("unknown field `{field}`"), Some(hint));
    }
    if message.contains("untagged enum RawCommand") {
        return (
            "`run` must be a command line (a string) or an argv list".into(),
            Some("e.g. run: scripts/do_it.sh   or   run: [python3, scripts/do_it.py]".into()),
        );
    }
    let hint = if message.contains("missing field") {
        Some("add the field; docs/manifest.md shows the full shape".into())
    } else if message.contains("invalid") {
        Some("check the value's type against docs/manifest.md".into())
    } else {
        None
    };
    (message, hint)
}

/// The dotted key path of the entry on `line` (1-based), e.g. `tasks.daily_update.timeout`,
/// with `[n]` for list items.
pub fn path_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if line == 0 || line > lines.len() {
        return String::new();
    }
    let mut segments: Vec<String> = Vec::new();
    let target = lines[line - 1];
    let mut indent = indent_of(target);
    if is_content(target) {
        push_line_segments(&lines, line - 1, false, &mut segments);
    } else {
        indent = usize::MAX;
    }
    for i in (0..line - 1).rev() {
        let l = lines[i];
        if !is_content(l) {
            continue;
        }
        let ind = indent_of(l);
        if ind < indent {
            push_line_segments(&lines, i, true, &mut segments);
            indent = ind;
            if ind == 0 {
                break;
            }
        }
    }
    segments.reverse();
    let mut out = String::new();
    for s in segments {
        if !s.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(&s);
    }
    out
}

fn is_content(l: &str) -> bool {
    let t = l.trim_start();
    !t.is_empty() && !t.starts_with('#') && t != "---"
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

/// Pushes (in reverse order) the segments a line opens: its key, and `[n]` when it is a list item.
fn push_line_segments(lines: &[&str], idx: usize, as_parent: bool, segments: &mut Vec<String>) {
    let l = lines[idx];
    let ind = indent_of(l);
    let t = l.trim_start();
    let (item, rest) = match t.strip_prefix("- ").or_else(|| (t == "-").then_some("")) {
        Some(rest) => (true, rest.trim_start()),
        None => (false, t),
    };
    // On a parent line `- task: a`, the key is a sibling of the target, not its parent.
    if !(item && as_parent)
        && let Some(key) = key_of(rest)
    {
        segments.push(key);
    }
    if item {
        // Count earlier items at the same indentation, stopping at the parent.
        let mut n = 0;
        for j in (0..idx).rev() {
            let p = lines[j];
            if !is_content(p) {
                continue;
            }
            let pi = indent_of(p);
            if pi < ind {
                break;
            }
            if pi == ind && p.trim_start().starts_with('-') {
                n += 1;
            } else if pi == ind {
                break;
            }
        }
        segments.push(format!("[{n}]"));
    }
}

fn key_of(s: &str) -> Option<String> {
    if s.starts_with('{') || s.starts_with('[') {
        return None;
    }
    let colon = s.find(": ").or_else(|| s.ends_with(':').then(|| s.len() - 1))?;
    let key = s[..colon].trim().trim_matches(|c| c == '"' || c == '\'');
    (!key.is_empty()).then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: x\ntasks:\n  daily:\n    run: a.sh\n    timeout: 30\n\nschedules:\n  - task: a\n    cron: bad\n  - { task: b }\n";

    #[test]
    fn paths_from_lines() {
        assert_eq!(path_at(DOC, 1), "name");
        assert_eq!(path_at(DOC, 3), "tasks.daily");
        assert_eq!(path_at(DOC, 5), "tasks.daily.timeout");
        assert_eq!(path_at(DOC, 8), "schedules[0].task");
        assert_eq!(path_at(DOC, 9), "schedules[0].cron");
        assert_eq!(path_at(DOC, 10), "schedules[1]");
        assert_eq!(path_at(DOC, 99), "");
    }
}
