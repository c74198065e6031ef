//! Redaction of secret-shaped text before anything is stored or shown.
//!
//! Everything a project produces is untrusted and may echo credentials: task output, outputs
//! objects, error messages, probe answers, notifications, event data, and the command lines of
//! its manifest. All of it passes through this one matcher. Known provider key shapes, bearer
//! tokens, JWTs, webhook URLs whose path is the secret, the password of a URL with user
//! information, AWS secret access keys written after their name, Agent OS's own token shapes and
//! any exact values the caller names (a run's own token) are replaced by `[REDACTED]`. The
//! scanner is a hand-written matcher, not a regex engine: every shape is a literal start, a
//! character class and a minimum length, so one linear scan finds them all.

use serde_json::Value;

/// What replaces a secret.
pub const MASK: &str = "[REDACTED]";

/// Which part of a matched shape is the secret.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The whole match, prefix included (`sk-…`: the prefix says what the key is, and masking
    /// it too keeps one rule for every key). The prefix is compared case-sensitively.
    Whole,
    /// Only what follows the prefix: the prefix is a URL's host and path, which is not secret
    /// and tells the reader what was there. Hosts are compared ignoring ASCII case.
    Body,
}

struct Shape {
    prefix: &'static str,
    /// Minimum number of body characters after the prefix.
    min_body: usize,
    body: fn(u8) -> bool,
    mask: Part,
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

fn path_char(b: u8) -> bool {
    token_char(b) || b == b'/'
}

const fn key(prefix: &'static str, min_body: usize, body: fn(u8) -> bool) -> Shape {
    Shape { prefix, min_body, body, mask: Part::Whole }
}

const fn url_path(prefix: &'static str) -> Shape {
    // A webhook's id and token: `123456789012345678/AbC…`, 20 characters at least so that an
    // id alone (which names the webhook but cannot post to it) is left readable.
    Shape { prefix, min_body: 20, body: path_char, mask: Part::Body }
}

/// Known secret shapes. `sk-` covers OpenAI (`sk-…`, `sk-proj-…`) and Anthropic (`sk-ant-…`);
/// `sk_live_`/`rk_live_` and their `_test_` twins are Stripe's secret and restricted keys
/// (publishable `pk_…` keys are public by design).
const SHAPES: &[Shape] = &[
    key("sk-", 20, token_char),
    key("sk_live_", 16, alnum),
    key("sk_test_", 16, alnum),
    key("rk_live_", 16, alnum),
    key("rk_test_", 16, alnum),
    key("aosa_", 20, alnum),
    key("aosp_", 20, alnum),
    key("aosr_", 20, alnum),
    key("aosw_", 20, alnum),
    key("ghp_", 20, alnum),
    key("gho_", 20, alnum),
    key("ghs_", 20, alnum),
    key("ghu_", 20, alnum),
    key("github_pat_", 20, token_char),
    key("xoxb-", 10, token_char),
    key("xoxp-", 10, token_char),
    key("xoxa-", 10, token_char),
    key("AKIA", 16, upper_or_digit),
    key("AIza", 30, token_char),
    key("whsec_", 16, |b| alnum(b) || b == b'+' || b == b'/' || b == b'='),
    url_path("discord.com/api/webhooks/"),
    url_path("discordapp.com/api/webhooks/"),
    url_path("discord://"),
    url_path("hooks.slack.com/services/"),
];

fn bearer_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}

fn base64url_char(b: u8) -> bool {
    token_char(b)
}

fn base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Redacts known secret shapes and the given exact values from text and JSON values. The
/// default redactor knows the shapes only.
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

    /// Returns `value` with every string in it, object keys included, redacted as
    /// [`Redactor::redact`] does; numbers, booleans and the structure are kept. Two keys that
    /// become the same masked key keep the later value.
    pub fn redact_json(&self, value: Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.redact(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.redact_json(v)).collect()),
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (self.redact(&k), self.redact_json(v))).collect())
            }
            other => other,
        }
    }
}

/// Masks every secret shape [`find_shapes`] finds.
pub fn redact_shapes(text: &str) -> String {
    let spans = find_shapes(text);
    if spans.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in spans {
        out.push_str(&text[copied..start]);
        out.push_str(MASK);
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Byte ranges `(start, end)` of the secrets in `text`, in order and not overlapping: what
/// [`redact_shapes`] masks. For `Bearer <token>`, a URL's password, a webhook URL and
/// `aws_secret_access_key = <key>`, the range is the secret alone, so the masked text still says
/// what was there. Used to find secrets without rewriting the text.
pub fn find_shapes(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // The end of a secret is a boundary too: once it is masked, what follows it starts a
        // word, so a secret written right after another one must not go through unmasked.
        let boundary = i == 0 || !token_char(bytes[i - 1]) || spans.last().is_some_and(|&(_, end)| end == i);
        if boundary {
            let found = match_shape(bytes, i)
                .or_else(|| match_jwt(bytes, i))
                .or_else(|| match_bearer(bytes, i))
                .or_else(|| match_url_password(bytes, i))
                .or_else(|| match_aws_secret(bytes, i));
            if let Some((start, end)) = found {
                spans.push((start, end));
                i = end;
                continue;
            }
        }
        i += 1;
    }
    spans
}

/// Length of the run of `class` characters starting at `at`.
fn run_len(bytes: &[u8], at: usize, class: fn(u8) -> bool) -> usize {
    bytes.get(at..).map_or(0, |rest| rest.iter().take_while(|b| class(**b)).count())
}

fn match_shape(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    for shape in SHAPES {
        let p = shape.prefix.as_bytes();
        let Some(candidate) = bytes.get(at..at + p.len()) else { continue };
        let same = match shape.mask {
            Part::Whole => candidate == p,
            Part::Body => candidate.eq_ignore_ascii_case(p),
        };
        if !same {
            continue;
        }
        let body_start = at + p.len();
        let body_len = run_len(bytes, body_start, shape.body);
        if body_len >= shape.min_body {
            let start = if shape.mask == Part::Whole { at } else { body_start };
            return Some((start, body_start + body_len));
        }
    }
    None
}

/// A JSON Web Token: `eyJ…` (a base64url JSON header), a payload and a signature, separated by
/// dots (a JWE's five parts included). The signature may be empty (`alg: none`).
fn match_jwt(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    if !bytes.get(at..)?.starts_with(b"eyJ") {
        return None;
    }
    let header = run_len(bytes, at, base64url_char);
    let mut end = at + header;
    if header < 10 || bytes.get(end) != Some(&b'.') {
        return None;
    }
    let payload = run_len(bytes, end + 1, base64url_char);
    end += 1 + payload;
    if payload < 4 || bytes.get(end) != Some(&b'.') {
        return None;
    }
    end += 1 + run_len(bytes, end + 1, base64url_char);
    while bytes.get(end) == Some(&b'.') && run_len(bytes, end + 1, base64url_char) > 0 {
        end += 1 + run_len(bytes, end + 1, base64url_char);
    }
    Some((at, end))
}

fn match_bearer(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    const WORD: &[u8] = b"bearer";
    if !bytes.get(at..at + WORD.len())?.eq_ignore_ascii_case(WORD) {
        return None;
    }
    let mut j = at + WORD.len();
    let spaces = bytes[j..].iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    if spaces == 0 {
        return None;
    }
    j += spaces;
    let len = run_len(bytes, j, bearer_char);
    // `Bearer postgres://u:pw@h` is a URL, whose password the URL matcher finds.
    if bytes[j..j + len].iter().all(|b| scheme_char(*b)) && bytes[j + len..].starts_with(b"://") {
        return None;
    }
    (len >= 8).then_some((j, j + len))
}

/// The password of a URL with user information, of any scheme: `postgres://user:PASS@host`.
/// The authority ends at `/`, `?`, `#`, white space or a quote; the user information ends at
/// its last `@` (a raw `@` in a password is common). A password that is only a variable
/// reference (`$PGPASSWORD`, `${DB_PASS}`) is not a secret and is kept.
fn match_url_password(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    if !bytes.get(at)?.is_ascii_alphabetic() {
        return None;
    }
    let scheme = run_len(bytes, at, scheme_char);
    let mut j = at + scheme;
    if !bytes.get(j..)?.starts_with(b"://") {
        return None;
    }
    j += 3;
    let authority = run_len(bytes, j, |b| !(b.is_ascii_whitespace() || b"/?#\"'<>`".contains(&b)));
    let authority = &bytes[j..j + authority];
    let last_at = authority.iter().rposition(|b| *b == b'@')?;
    let colon = authority[..last_at].iter().position(|b| *b == b':')?;
    let password = &authority[colon + 1..last_at];
    if password.is_empty() || password == MASK.as_bytes() || variable_reference(password) {
        return None;
    }
    Some((j + colon + 1, j + last_at))
}

fn scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.'
}

/// `$NAME` or `${NAME}`.
fn variable_reference(text: &[u8]) -> bool {
    let name = match text {
        [b'$', b'{', inner @ .., b'}'] => inner,
        [b'$', inner @ ..] => inner,
        _ => return false,
    };
    !name.is_empty() && !name[0].is_ascii_digit() && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// An AWS secret access key: exactly 40 base64 characters, but only right after a name that
/// says what it is (`aws_secret_access_key = …`, `AWS_SECRET_ACCESS_KEY=…`,
/// `"SecretAccessKey": "…"`, `AWS_SECRET_KEY: …`). Without the name, a 40-character string is
/// as likely a commit hash or a digest, and masking every one would shred ordinary output.
fn match_aws_secret(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let name_len = run_len(bytes, at, token_char);
    if name_len < 12 {
        return None;
    }
    let name: Vec<u8> =
        bytes[at..at + name_len].iter().filter(|b| b.is_ascii_alphanumeric()).map(u8::to_ascii_lowercase).collect();
    if !(name.ends_with(b"secretaccesskey") || name.ends_with(b"awssecretkey")) {
        return None;
    }
    let mut j = at + name_len;
    let skip = |j: &mut usize, class: &[u8]| {
        while bytes.get(*j).is_some_and(|b| class.contains(b)) {
            *j += 1;
        }
    };
    skip(&mut j, b"\"' \t");
    if !matches!(bytes.get(j), Some(b'=' | b':')) {
        return None;
    }
    j += 1;
    skip(&mut j, b"\"' \t");
    let len = run_len(bytes, j, base64_char);
    (len == 40 && bytes.get(j + len) != Some(&b'=')).then_some((j, j + 40))
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
    fn stripe_secret_and_restricted_keys_are_redacted() {
        let cases = [
            ("STRIPE_KEY=sk_live_51HxYzAbCdEfGhIjKlMnOpQr", "STRIPE_KEY=[REDACTED]"),
            ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "[REDACTED]"),
            ("rk_live_51HxYzAbCdEfGhIjKlMnOpQrSt ok", "[REDACTED] ok"),
            ("rk_test_abcdefghijklmnop1234", "[REDACTED]"),
            // Publishable keys are public; short ones are not keys.
            ("pk_live_51HxYzAbCdEfGhIjKlMnOpQr", "pk_live_51HxYzAbCdEfGhIjKlMnOpQr"),
            ("sk_live_short", "sk_live_short"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_shapes(input), want, "{input}");
        }
    }

    #[test]
    fn webhook_urls_keep_their_host_and_lose_their_token() {
        let token = "AbCdEf-GhIjKl_MnOpQrStUvWxYz0123456789abcdefghijklmnopqrstuvwxyzABCD";
        let cases = [
            (
                format!("posting to https://discord.com/api/webhooks/123456789012345678/{token} now"),
                "posting to https://discord.com/api/webhooks/[REDACTED] now".to_string(),
            ),
            (
                format!("https://discordapp.com/api/webhooks/123456789012345678/{token}"),
                "https://discordapp.com/api/webhooks/[REDACTED]".to_string(),
            ),
            (
                format!("https://ptb.Discord.com/api/webhooks/123456789012345678/{token}?wait=true"),
                "https://ptb.Discord.com/api/webhooks/[REDACTED]?wait=true".to_string(),
            ),
            (format!("discord://123456789012345678/{token}"), "discord://[REDACTED]".to_string()),
            (
                "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX".to_string(),
                "https://hooks.slack.com/services/[REDACTED]".to_string(),
            ),
            // A webhook's id alone cannot post.
            (
                "https://discord.com/api/webhooks/123456789012345678".to_string(),
                "https://discord.com/api/webhooks/123456789012345678".to_string(),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_shapes(&input), want, "{input}");
        }
    }

    #[test]
    fn jwts_are_redacted() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(redact_shapes(&format!("token={jwt};")), "token=[REDACTED];");
        assert_eq!(redact_shapes(&format!("{{\"id_token\":\"{jwt}\"}}")), "{\"id_token\":\"[REDACTED]\"}");
        // Unsigned (alg none) and five-part (JWE) tokens too.
        assert_eq!(redact_shapes("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0. end"), "[REDACTED] end");
        assert_eq!(
            redact_shapes(
                "eyJhbGciOiJSU0EtT0FFUCJ9.OKOawDo13gRp2o.48V1_ALb6US04U3b.5eym8TW_c8SuK.XFBoMYUZodetZdvTiFvSkQ"
            ),
            MASK
        );
        for text in ["eyJ", "eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9.abc", "keyJhbGciOiJIUzI1NiJ9.eyJzdWIi.x"] {
            assert_eq!(redact_shapes(text), text);
        }
    }

    #[test]
    fn url_passwords_are_redacted_in_any_scheme() {
        let cases = [
            ("postgres://app:s3cret-P4ss@db.internal:5432/prod", "postgres://app:[REDACTED]@db.internal:5432/prod"),
            ("DATABASE_URL=mysql://root:hunter2@localhost/db", "DATABASE_URL=mysql://root:[REDACTED]@localhost/db"),
            ("redis+sentinel://:pa:ss@host", "redis+sentinel://:[REDACTED]@host"),
            ("jdbc:postgresql://u:p@ss@h/x", "jdbc:postgresql://u:[REDACTED]@h/x"),
            ("\"amqp://guest:guest@rabbit\"", "\"amqp://guest:[REDACTED]@rabbit\""),
            ("https://user:tok en@host", "https://user:tok en@host"),
            // No password, a host with a port, a variable reference: nothing to hide.
            ("postgres://app@db/prod", "postgres://app@db/prod"),
            ("http://localhost:8080/path?a=b@c", "http://localhost:8080/path?a=b@c"),
            ("psql postgres://app:$PGPASSWORD@db/prod", "psql postgres://app:$PGPASSWORD@db/prod"),
            ("psql postgres://app:${DB_PASS}@db/prod", "psql postgres://app:${DB_PASS}@db/prod"),
            ("mailto me@example.com: see https://example.com", "mailto me@example.com: see https://example.com"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_shapes(input), want, "{input}");
        }
    }

    #[test]
    fn aws_secret_keys_are_redacted_after_their_name_only() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let cases = [
            (format!("aws_secret_access_key = {secret}"), "aws_secret_access_key = [REDACTED]".to_string()),
            (
                format!("export AWS_SECRET_ACCESS_KEY=\"{secret}\""),
                "export AWS_SECRET_ACCESS_KEY=\"[REDACTED]\"".to_string(),
            ),
            (format!("{{\"SecretAccessKey\": \"{secret}\"}}"), "{\"SecretAccessKey\": \"[REDACTED]\"}".to_string()),
            (format!("AWS_SECRET_KEY: {secret}"), "AWS_SECRET_KEY: [REDACTED]".to_string()),
            // The same 40 characters without the name, a commit hash, a longer value.
            (format!("value {secret}"), format!("value {secret}")),
            (
                "commit 0123456789abcdef0123456789abcdef01234567".to_string(),
                "commit 0123456789abcdef0123456789abcdef01234567".to_string(),
            ),
            (format!("aws_secret_access_key={secret}AB"), format!("aws_secret_access_key={secret}AB")),
        ];
        for (input, want) in cases {
            assert_eq!(redact_shapes(&input), want, "{input}");
        }
    }

    #[test]
    fn masks_bearer_tokens_but_keeps_the_word() {
        assert_eq!(redact_shapes("Authorization: Bearer abc.def-ghi_jkl=="), "Authorization: Bearer [REDACTED]");
        assert_eq!(redact_shapes("bearer\tXYZ12345678"), "bearer\t[REDACTED]");
        assert_eq!(redact_shapes("the bearer of news"), "the bearer of news");
        assert_eq!(redact_shapes("bearer postgresql://u:pw@h/db"), "bearer postgresql://u:[REDACTED]@h/db");
        // Found by the idempotence property: a token that is not a scheme is a token.
        assert_eq!(redact_shapes("Bearer discord.com/api/webhooks/sk_live_sk_live__AAA://"), "Bearer [REDACTED]://");
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for text in [
            "disk-usage-abcdefghijklmnopqrstuvwxyz",
            "sk-short",
            "task-1",
            "ünïcödé sk-",
            "see https://example.com/a@b",
        ] {
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

    #[test]
    fn json_values_are_redacted_string_by_string() {
        let r = Redactor::new(["my-run-token-value".to_string()]);
        let value = serde_json::json!({
            "leaked": "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123",
            "nested": {"list": ["ok", "db postgres://u:pw@h/x", 3, true, null], "token": "my-run-token-value"},
            "sk_live_51HxYzAbCdEfGhIjKlMnOpQr": 1.5,
        });
        let want = serde_json::json!({
            "leaked": MASK,
            "nested": {"list": ["ok", "db postgres://u:[REDACTED]@h/x", 3, true, null], "token": MASK},
            MASK: 1.5,
        });
        assert_eq!(r.redact_json(value), want);
    }
}
