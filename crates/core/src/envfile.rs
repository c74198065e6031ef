//! A reader for `.env` files, as dotenv libraries write them: `KEY=value` lines, an optional
//! `export ` prefix, `#` comments (whole lines, or after an unquoted value and a space), single
//! quotes (literal), double quotes (with `\n`, `\t`, `\"`, `\\` escapes), quoted values over
//! several lines, CRLF line ends and empty values. Nothing is ever expanded: `${HOME}` stays
//! `${HOME}`, so reading a file never pulls in the reader's own environment.
//!
//! A line it cannot read is reported with its number and skipped; the rest is still read.

/// One variable and the line it starts on (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A line that is not `KEY=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvProblem {
    pub line: usize,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvFile {
    pub entries: Vec<EnvEntry>,
    pub problems: Vec<EnvProblem>,
}

impl EnvFile {
    /// The last value of `key` (a later line wins, as in dotenv).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().rev().find(|e| e.key == key).map(|e| e.value.as_str())
    }
}

fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
}

/// Parses the text of a `.env` file.
pub fn parse(text: &str) -> EnvFile {
    let chars: Vec<char> = text.chars().collect();
    let mut out = EnvFile::default();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let start_line = line;
        // Leading blanks.
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        match chars[i] {
            '\n' => {
                i += 1;
                line += 1;
                continue;
            }
            '\r' if chars.get(i + 1) == Some(&'\n') => {
                i += 2;
                line += 1;
                continue;
            }
            '#' => {
                skip_line(&chars, &mut i, &mut line);
                continue;
            }
            _ => {}
        }
        // `export ` prefix.
        if chars[i..].starts_with(&['e', 'x', 'p', 'o', 'r', 't']) && matches!(chars.get(i + 6), Some(' ' | '\t')) {
            i += 6;
            while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                i += 1;
            }
        }
        let key_start = i;
        while i < chars.len() && key_char(chars[i]) {
            i += 1;
        }
        let key: String = chars[key_start..i].iter().collect();
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) || chars.get(i) != Some(&'=') {
            out.problems.push(EnvProblem { line: start_line, message: "not a KEY=value line".into() });
            skip_line(&chars, &mut i, &mut line);
            continue;
        }
        i += 1; // '='
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        let value = match chars.get(i) {
            Some(&q @ ('\'' | '"')) => {
                i += 1;
                let mut v = String::new();
                let mut closed = false;
                while i < chars.len() {
                    let c = chars[i];
                    if c == q {
                        closed = true;
                        i += 1;
                        break;
                    }
                    if c == '\\' && q == '"' && i + 1 < chars.len() {
                        let next = chars[i + 1];
                        match next {
                            'n' => v.push('\n'),
                            't' => v.push('\t'),
                            'r' => v.push('\r'),
                            '"' | '\\' | '$' | '`' => v.push(next),
                            other => {
                                v.push('\\');
                                v.push(other);
                            }
                        }
                        if next == '\n' {
                            line += 1;
                        }
                        i += 2;
                        continue;
                    }
                    if c == '\r' && chars.get(i + 1) == Some(&'\n') {
                        i += 1;
                        continue;
                    }
                    if c == '\n' {
                        line += 1;
                    }
                    v.push(c);
                    i += 1;
                }
                if !closed {
                    out.problems.push(EnvProblem {
                        line: start_line,
                        message: format!(
                            "the {} quote opened here is never closed",
                            if q == '"' { "double" } else { "single" }
                        ),
                    });
                    continue;
                }
                // Anything after the closing quote must be blanks or a comment.
                while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                    i += 1;
                }
                match chars.get(i) {
                    None | Some('\n') | Some('#') => {}
                    Some('\r') if chars.get(i + 1) == Some(&'\n') => {}
                    Some(_) => {
                        out.problems.push(EnvProblem { line, message: "text after the closing quote".into() });
                    }
                }
                skip_line(&chars, &mut i, &mut line);
                v
            }
            _ => {
                let mut v = String::new();
                while i < chars.len() && chars[i] != '\n' {
                    if chars[i] == '\r' && chars.get(i + 1) == Some(&'\n') {
                        break;
                    }
                    // ` #` starts a comment after an unquoted value.
                    if chars[i] == '#' && v.ends_with([' ', '\t']) {
                        break;
                    }
                    v.push(chars[i]);
                    i += 1;
                }
                skip_line(&chars, &mut i, &mut line);
                v.trim_end().to_string()
            }
        };
        out.entries.push(EnvEntry { key, value, line: start_line });
    }
    out
}

/// Moves past the end of the current line.
fn skip_line(chars: &[char], i: &mut usize, line: &mut usize) {
    while *i < chars.len() && chars[*i] != '\n' {
        *i += 1;
    }
    if *i < chars.len() {
        *i += 1;
        *line += 1;
    }
}

/// Writes a value so that [`parse`] reads it back unchanged: bare when that is safe, else in
/// double quotes with escapes.
pub fn quote(value: &str) -> String {
    let bare = !value.is_empty()
        && value.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '#' | '\\' | '`' | '$'));
    if bare {
        return value.to_string();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(f: &EnvFile) -> Vec<(&str, &str, usize)> {
        f.entries.iter().map(|e| (e.key.as_str(), e.value.as_str(), e.line)).collect()
    }

    #[test]
    fn reads_what_dotenv_files_hold() {
        let text = "# comment\nA=1\nexport B = two words # note\nC='single $HOME #x'\r\nD=\"line\\nbreak \\\"q\\\"\"\nE=\nF=\"multi\nline\"\nG=${HOME}/x\n  H=indented\n";
        let f = parse(text);
        assert_eq!(
            kv(&f),
            vec![
                ("A", "1", 2),
                ("B", "two words", 3),
                ("C", "single $HOME #x", 4),
                ("D", "line\nbreak \"q\"", 5),
                ("E", "", 6),
                ("F", "multi\nline", 7),
                ("G", "${HOME}/x", 9),
                ("H", "indented", 10),
            ]
        );
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert_eq!(f.get("G"), Some("${HOME}/x"), "never expanded");
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let f = parse("just words\nOK=1\n1BAD=2\nQ=\"never closed\n");
        assert_eq!(kv(&f), vec![("OK", "1", 2)]);
        assert_eq!(f.problems.iter().map(|p| p.line).collect::<Vec<_>>(), vec![1, 3, 4]);
    }

    #[test]
    fn a_later_line_wins() {
        assert_eq!(parse("K=1\nK=2\n").get("K"), Some("2"));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_parses_without_panicking(text in "\\PC*") {
                let _ = parse(&text);
            }

            #[test]
            fn quoted_values_read_back_unchanged(
                entries in proptest::collection::vec(("[A-Z_][A-Z0-9_]{0,12}", "[\\PC\t\r\n]{0,40}"), 0..8),
                crlf in any::<bool>(),
                exported in any::<bool>(),
            ) {
                let nl = if crlf { "\r\n" } else { "\n" };
                let mut text = String::new();
                for (k, v) in &entries {
                    if exported { text.push_str("export "); }
                    text.push_str(&format!("{k}={}{nl}# between{nl}", quote(v)));
                }
                let f = parse(&text);
                prop_assert!(f.problems.is_empty(), "{:?} in {:?}", f.problems, text);
                let got: Vec<(String, String)> = f.entries.into_iter().map(|e| (e.key, e.value)).collect();
                let want: Vec<(String, String)> = entries.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
