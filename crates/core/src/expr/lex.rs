//! Splitting expression text into tokens, for the parser.
//!
//! The parser drives the lexer one token at a time rather than taking a token list, because two
//! places need context: a field name after `.` may start with a digit or hold a `-` (step ids
//! such as `fetch-prices`), and inside a template the expression ends at the `}}` that does not
//! close an object literal, which only a count of open braces can tell.

use serde_json::{Number, Value};

use super::{ExprError, MAX_SOURCE};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Num(Value),
    Str(String),
    Name(String),
    Punct(&'static str),
    /// The end of the text, or a template's closing `}`.
    End,
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Two-character operators first, so `<=` is not read as `<` then `=`.
const PUNCT: [&str; 24] = [
    "==", "!=", "<=", ">=", "&&", "||", "(", ")", "[", "]", "{", "}", ",", ":", ".", "?", "+", "-", "*", "/", "%", "!",
    "<", ">",
];

const KEYWORDS: [&str; 7] = ["true", "false", "null", "and", "or", "not", "in"];

/// A position in the text plus what is needed to read on from it; cheap to copy, so the parser
/// can look ahead and come back.
#[derive(Clone, Debug)]
pub(super) struct Lexer<'s> {
    src: &'s str,
    /// Where the expression starts: 0, or just after `{{` in a template.
    start: usize,
    pos: usize,
    /// Object literals open, so a template's closing `}}` is told apart from theirs.
    braces: usize,
    /// In a template, the offset of the `{{` this expression follows.
    pub(super) open: Option<usize>,
}

impl<'s> Lexer<'s> {
    pub(super) fn new(src: &'s str, start: usize, open: Option<usize>) -> Lexer<'s> {
        Lexer { src, start, pos: start, braces: 0, open }
    }

    /// True when `t` is the end of the whole text (not a template's `}}`).
    pub(super) fn at_text_end(&self, t: &Token) -> bool {
        matches!(t.tok, Tok::End) && t.start >= self.src.len()
    }

    /// The next token; `End` at the end of the text and, in a template, at a `}` that closes
    /// no object literal.
    pub(super) fn next(&mut self) -> Result<Token, ExprError> {
        let rest = &self.src[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
        let start = self.pos;
        if start - self.start > MAX_SOURCE {
            return Err(ExprError::new(start, "the expression inside '{{ }}' is longer than 4096 bytes")
                .hint("move the logic into a step and use its output"));
        }
        let rest = &self.src[start..];
        let Some(c) = rest.chars().next() else {
            return Ok(Token { tok: Tok::End, start, end: start });
        };
        if c == '}' && self.braces == 0 && self.open.is_some() {
            return Ok(Token { tok: Tok::End, start, end: start });
        }
        if c.is_ascii_digit() {
            return self.number(start);
        }
        if c == '"' || c == '\'' {
            return self.string(start, c);
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let len = rest.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
            self.pos += len;
            return Ok(Token { tok: Tok::Name(rest[..len].to_string()), start, end: start + len });
        }
        if let Some(p) = PUNCT.iter().find(|p| rest.starts_with(**p)) {
            self.pos += p.len();
            match *p {
                "{" => self.braces += 1,
                "}" => self.braces = self.braces.saturating_sub(1),
                _ => {}
            }
            return Ok(Token { tok: Tok::Punct(p), start, end: self.pos });
        }
        Err(match c {
            '=' => ExprError::new(start, "'=' is not an operator").hint("compare with '=='"),
            '&' => ExprError::new(start, "'&' is not an operator").hint("use '&&' or 'and'"),
            '|' => ExprError::new(start, "'|' is not an operator").hint("use '||' or 'or'"),
            '$' => ExprError::new(start, "unexpected character '$'")
                .hint("names are written as they are, as in event.data.x, without '$'"),
            _ => ExprError::new(start, format!("unexpected character {c:?}")),
        })
    }

    fn number(&mut self, start: usize) -> Result<Token, ExprError> {
        let b = self.src.as_bytes();
        let digits = |mut i: usize| {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            i
        };
        let mut end = digits(start);
        let mut float = false;
        if b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
            float = true;
            end = digits(end + 1);
        }
        if matches!(b.get(end), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(b.get(end + 1), Some(b'+' | b'-')));
            if b.get(end + 1 + sign).is_some_and(u8::is_ascii_digit) {
                float = true;
                end = digits(end + 1 + sign);
            }
        }
        let text = &self.src[start..end];
        if b.get(end).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') {
            let word = b[end..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
            let word = &self.src[start..end + word];
            return Err(ExprError::new(start, format!("'{word}' is neither a number nor a name"))
                .hint("names start with a letter or '_'; a field such as steps.2fa is fine after a '.'"));
        }
        self.pos = end;
        let value = match text.parse::<i64>() {
            Ok(i) if !float => Value::from(i),
            _ => text
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| ExprError::new(start, format!("the number {text} is too large")))?,
        };
        Ok(Token { tok: Tok::Num(value), start, end })
    }

    fn string(&mut self, start: usize, quote: char) -> Result<Token, ExprError> {
        let mut out = String::new();
        let mut chars = self.src[start + 1..].char_indices().map(|(i, c)| (start + 1 + i, c));
        let unterminated =
            || ExprError::new(start, "unterminated string").hint(format!("close it with {quote} on the same side"));
        loop {
            let (i, c) = chars.next().ok_or_else(unterminated)?;
            match c {
                c if c == quote => {
                    self.pos = i + 1;
                    return Ok(Token { tok: Tok::Str(out), start, end: self.pos });
                }
                '\\' => {
                    let (_, e) = chars.next().ok_or_else(unterminated)?;
                    out.push(match e {
                        '"' | '\'' | '\\' => e,
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        _ => {
                            return Err(ExprError::new(i, format!("unknown escape '\\{e}' in a string"))
                                .hint(r#"the escapes are \" \' \\ \n \t and \r"#));
                        }
                    });
                }
                c => out.push(c),
            }
        }
    }

    /// A field name after `.`, or `None` when none follows: letters, digits and `_`, and `-` when a letter or `_` follows
    /// (so `fetch-prices` is one name but `count-1` is a subtraction).
    pub(super) fn field_name(&mut self) -> Result<Option<String>, ExprError> {
        let rest = &self.src[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
        let b = self.src.as_bytes();
        let start = self.pos;
        let mut end = start;
        while end < b.len() {
            let c = b[end];
            let hyphen =
                c == b'-' && end > start && b.get(end + 1).is_some_and(|n| n.is_ascii_alphabetic() || *n == b'_');
            if c.is_ascii_alphanumeric() || c == b'_' || hyphen {
                end += 1;
            } else {
                break;
            }
        }
        if end == start {
            return Ok(None);
        }
        let name = &self.src[start..end];
        if name.bytes().all(|c| c.is_ascii_digit()) {
            return Err(ExprError::new(start, format!("'.{name}' is not a field name"))
                .hint(format!("index an array with [{name}]")));
        }
        self.pos = end;
        Ok(Some(name.to_string()))
    }

    pub(super) fn describe(&self, t: &Token) -> String {
        match &t.tok {
            Tok::End if t.start >= self.src.len() => {
                if self.open.is_some() { "end of text" } else { "end of expression" }.to_string()
            }
            Tok::End if self.src[t.start..].starts_with("}}") => "'}}'".to_string(),
            Tok::End => "'}'".to_string(),
            Tok::Num(_) => format!("number {}", &self.src[t.start..t.end]),
            Tok::Str(_) => format!("string {}", shorten(&self.src[t.start..t.end])),
            Tok::Name(n) if KEYWORDS.contains(&n.as_str()) => format!("'{n}'"),
            Tok::Name(n) => format!("name '{n}'"),
            Tok::Punct(p) => format!("'{p}'"),
        }
    }

    pub(super) fn unclosed(&self) -> ExprError {
        let open = self.open.unwrap_or(0);
        ExprError::new(open, format!("'{{{{' at offset {open} is never closed"))
            .hint(r#"close it with '}}'; a literal '{{' is written {{ "{{" }}"#)
    }
}

/// At most 30 characters of a token, for messages.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(30) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
