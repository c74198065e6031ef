//! Redaction of secret-shaped text before anything is stored.
//!
//! Task output is untrusted and may echo credentials. Known provider key shapes, bearer tokens,
//! Agent OS's own token shapes and any exact values the caller names (a run's own token) are
//! replaced by `[REDACTED]`. The scanner is a hand-written matcher, not a regex engine, because
//! the shapes are prefix + charset + minimum length.

/// What replaces a secret.
pub const MASK: &str = "[REDACTED]";

struct Shape {
    prefix: &'static str,
    /// Minimum number of body characters after the prefix.
    min_body: usize,
    body: fn(u8) -> bool,
}

fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn upper_or_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Known secret shapes. `sk-` covers OpenAI (`sk-…`, `sk-proj-…`) and Anthropic (`sk-ant-…`).
const SHAPES: &[Shape] = &[
    Shape { prefix: "sk-", min_body: 20, body: token_char },
    Shape { prefix: "aosa_", min_body: 20, body: alnum },
    Shape { prefix: "aosp_", min_body: 20, body: alnum },
    Shape { prefix: "aosr_", min_body: 20, body: alnum },
    Shape { prefix: "ghp_", min_body: 20, body: alnum },
    Shape { prefix: "gho_", min_body: 20, body: alnum },
    Shape { prefix: "ghs_", min_body: 20, body: alnum },
    Shape { prefix: "ghu_", min_body: 20, body: alnum },
    Shape { prefix: "github_pat_", min_body: 20, body: token_char },
    Shape { prefix: "xoxb-", min_body: 10, body: token_char },
    Shape { prefix: "xoxp-", min_body: 10, body: token_char },
    Shape { prefix: "xoxa-", min_body: 10, body: token_char },
    Shape { prefix: "AKIA", min_body: 16, body: upper_or_digit },
    Shape { prefix: "AIza", min_body: 30, body: token_char },
    Shape { prefix: "whsec_", min_body: 16, body: |b| alnum(b) || b == b'+' || b == b'/' || b == b'=' },
];

fn bearer_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}

/// Redacts known secret shapes and the given exact values from `text`.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    exact: Vec<String>,
}

impl Redactor {
    /// A redactor that also masks each of `exact` (values shorter than 8 characters are ignored:
    /// masking them would shred ordinary output).
    pub fn new(exact: impl IntoIterator<Item = String>) -> Self {
        let mut exact: Vec<String> = exact.into_iter().filter(|s| s.len() >= 8).collect();
        exact.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { exact }
    }

    /// Returns `text` with every secret replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let mut current = std::borrow::Cow::Borrowed(text);
        for secret in &self.exact {
            if current.contains(secret.as_str()) {
                current = std::borrow::Cow::Owned(current.replace(secret.as_str(), MASK));
            }
        }
        redact_shapes(&current)
    }
}

/// Masks the shapes in [`SHAPES`] and `Bearer <token>`.
pub fn redact_shapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in find_shapes(text) {
        out.push_str(&text[copied..start]);
        out.push_str(MASK);
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Byte ranges `(start, end)` of the secret shapes in `text`: what [`redact_shapes`] would mask
/// (for `Bearer <token>`, the token only). Used to find secrets without rewriting the text.
pub fn find_shapes(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // The end of a secret is a boundary too: once it is masked, what follows it starts a
        // word, so a secret written right after another one must not go through unmasked.
        let boundary = i == 0 || !token_char(bytes[i - 1]) || spans.last().is_some_and(|&(_, end)| end == i);
        if boundary {
            if let Some(end) = match_shape(bytes, i) {
                spans.push((i, end));
                i = end;
                continue;
            }
            if let Some((token_start, end)) = match_bearer(bytes, i) {
                spans.push((token_start, end));
                i = end;
                continue;
            }
        }
        i += 1;
    }
    spans
}

fn match_shape(bytes: &[u8], at: usize) -> Option<usize> {
    for shape in SHAPES {
        let p = shape.prefix.as_bytes();
        if bytes.len() >= at + p.len() && &bytes[at..at + p.len()] == p {
            let body_start = at + p.len();
            let body_len = bytes[body_start..].iter().take_while(|b| (shape.body)(**b)).count();
            if body_len >= shape.min_body {
                return Some(body_start + body_len);
            }
        }
    }
    None
}

fn match_bearer(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    const WORD: &[u8] = b"bearer";
    if bytes.len() < at + WORD.len() + 1 || !bytes[at..at + WORD.len()].eq_ignore_ascii_case(WORD) {
        return None;
    }
    let mut j = at + WORD.len();
    let spaces = bytes[j..].iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    if spaces == 0 {
        return None;
    }
    j += spaces;
    let len = bytes[j..].iter().take_while(|b| bearer_char(**b)).count();
    (len >= 8).then_some((j, j + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_provider_keys() {
        let cases = [
            ("key=sk-abcdefghijklmnopqrstuvwxyz123", "key=[REDACTED]"),
            ("sk-proj-AbCdEfGhIjKlMnOpQrStUvWx_yz-0123 done", "[REDACTED] done"),
            ("anthropic: sk-ant-api03-abcdefghijklmnopqrstuv", "anthropic: [REDACTED]"),
            ("AKIAABCDEFGHIJKLMNOP", "[REDACTED]"),
            ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "token [REDACTED]"),
            ("aosr_0123456789abcdefghijABCDEFGHIJ", "[REDACTED]"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_shapes(input), want, "{input}");
        }
    }

    #[test]
    fn masks_bearer_tokens_but_keeps_the_word() {
        assert_eq!(redact_shapes("Authorization: Bearer abc.def-ghi_jkl=="), "Authorization: Bearer [REDACTED]");
        assert_eq!(redact_shapes("bearer\tXYZ12345678"), "bearer\t[REDACTED]");
        assert_eq!(redact_shapes("the bearer of news"), "the bearer of news");
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for text in ["disk-usage-abcdefghijklmnopqrstuvwxyz", "sk-short", "task-1", "ünïcödé sk-"] {
            assert_eq!(redact_shapes(text), text);
        }
    }

    #[test]
    fn finds_the_spans_redaction_would_mask() {
        let text = "a=sk-abcdefghijklmnopqrstuvwxyz123 Authorization: Bearer abc.def-ghi_jkl== ghp_short";
        let spans = find_shapes(text);
        let found: Vec<&str> = spans.iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(found, ["sk-abcdefghijklmnopqrstuvwxyz123", "abc.def-ghi_jkl=="]);
        for text in ["disk-usage-abcdefghijklmnopqrstuvwxyz", "sk-short", "ünïcödé sk-", ""] {
            assert!(find_shapes(text).is_empty(), "{text}");
        }
        // The same places redact_shapes masks.
        let mut masked = String::new();
        let mut at = 0;
        for (s, e) in find_shapes(text) {
            masked.push_str(&text[at..s]);
            masked.push_str(MASK);
            at = e;
        }
        masked.push_str(&text[at..]);
        assert_eq!(masked, redact_shapes(text));
    }

    #[test]
    fn a_secret_right_after_another_secret_is_masked_too() {
        // An AWS key id ends at the first character outside A-Z0-9, which may start the next
        // secret; masking only the first left the second readable after the mask.
        let cases = [
            ("AKIAABCDEFGHIJKLMNOPsk-proj-abcdefghijklmnopqrstu", "[REDACTED][REDACTED]"),
            ("AKIAABCDEFGHIJKLMNOPbearer\tXYZisk-usag12345", "[REDACTED]bearer\t[REDACTED]"),
            ("AKIAABCDEFGHIJKLMNOPghp_abcdefghijklmnopqrstuvwxyz", "[REDACTED][REDACTED]"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_shapes(input), want, "{input}");
            assert!(find_shapes(&redact_shapes(input)).is_empty(), "{input}");
        }
        // Still no match inside a word.
        assert_eq!(redact_shapes("xAKIAABCDEFGHIJKLMNOP"), "xAKIAABCDEFGHIJKLMNOP");
    }

    #[test]
    fn masks_exact_values() {
        let r = Redactor::new(["my-run-token-value".to_string(), "short".to_string()]);
        assert_eq!(r.redact("a my-run-token-value b short"), "a [REDACTED] b short");
        assert_eq!(r.redact("x sk-abcdefghijklmnopqrstuvwxyz"), "x [REDACTED]");
    }
}
