//! Property tests of redaction: every secret shape, generated and set in ordinary text, comes
//! out masked and nothing around it changes; any mix of shape fragments redacts without a
//! panic, and redacting twice changes nothing more.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use agent_os_core::redact::{MASK, Redactor, find_shapes, redact_shapes};
use proptest::prelude::*;

/// A secret as it appears in output, and what redaction must turn it into.
type Case = (String, String);

fn masked(secret: String) -> Case {
    (secret, MASK.to_string())
}

fn provider_key() -> impl Strategy<Value = Case> {
    prop_oneof![
        "sk-proj-[A-Za-z0-9_-]{20,60}".prop_map(masked),
        "sk-ant-api03-[A-Za-z0-9_-]{20,60}".prop_map(masked),
        "(sk|rk)_(live|test)_[A-Za-z0-9]{16,60}".prop_map(masked),
        "gh[pous]_[A-Za-z0-9]{36}".prop_map(masked),
        "AKIA[A-Z0-9]{16}".prop_map(masked),
        "xox[bpa]-[0-9]{10,12}-[A-Za-z0-9]{20,30}".prop_map(masked),
        "aos[apr]_[A-Za-z0-9]{32}".prop_map(masked),
    ]
}

fn webhook_url() -> impl Strategy<Value = Case> {
    let host = prop_oneof![
        Just("https://discord.com/api/webhooks/"),
        Just("https://discordapp.com/api/webhooks/"),
        Just("https://canary.discord.com/api/webhooks/"),
        Just("discord://"),
    ];
    (host, "[0-9]{17,19}/[A-Za-z0-9_-]{60,68}")
        .prop_map(|(host, path)| (format!("{host}{path}"), format!("{host}{MASK}")))
}

fn jwt() -> impl Strategy<Value = Case> {
    "eyJ[A-Za-z0-9_-]{10,40}\\.eyJ[A-Za-z0-9_-]{4,80}\\.[A-Za-z0-9_-]{0,60}".prop_map(masked)
}

fn url_with_password() -> impl Strategy<Value = Case> {
    (
        "(postgres|postgresql|mysql|redis|amqps|mongodb\\+srv|https)",
        "[a-z]{1,10}",
        "[A-Za-z0-9!*%~:@]{1,30}",
        "[a-z]{1,10}(:[0-9]{2,5})?",
        "(/[a-z]{1,8})?",
    )
        .prop_filter("a password that is a whole mask is already redacted", |(_, _, pw, _, _)| pw != MASK)
        .prop_map(|(scheme, user, pw, host, path)| {
            (format!("{scheme}://{user}:{pw}@{host}{path}"), format!("{scheme}://{user}:{MASK}@{host}{path}"))
        })
}

fn aws_secret() -> impl Strategy<Value = Case> {
    let name = prop_oneof![
        Just("aws_secret_access_key = "),
        Just("AWS_SECRET_ACCESS_KEY="),
        Just("\"SecretAccessKey\": \""),
        Just("AWS_SECRET_KEY: "),
    ];
    (name, "[A-Za-z0-9+/]{40}").prop_map(|(name, key)| (format!("{name}{key}"), format!("{name}{MASK}")))
}

fn bearer() -> impl Strategy<Value = Case> {
    "[A-Za-z0-9._~+/=-]{8,80}"
        .prop_map(|t| (format!("Authorization: Bearer {t}"), format!("Authorization: Bearer {MASK}")))
}

fn secret() -> impl Strategy<Value = Case> {
    prop_oneof![provider_key(), webhook_url(), jwt(), url_with_password(), aws_secret(), bearer()]
}

/// Ordinary text: no shape can start in it (no upper case, no `-`, `_` or `:`, no `b`).
fn plain() -> impl Strategy<Value = String> {
    "[ac-z0-9 .,;!éü\n]{0,40}"
}

/// Fragments of every shape, run together in any order, to look for overlaps the table tests
/// do not think of.
fn soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("sk-".to_string()),
        Just("sk_live_".to_string()),
        Just("Bearer ".to_string()),
        Just("://".to_string()),
        Just(":".to_string()),
        Just("@".to_string()),
        Just("/".to_string()),
        Just(".".to_string()),
        Just(" ".to_string()),
        Just("=".to_string()),
        Just("\"".to_string()),
        Just("$".to_string()),
        Just("eyJ".to_string()),
        Just("aws_secret_access_key=".to_string()),
        Just("discord.com/api/webhooks/".to_string()),
        Just(MASK.to_string()),
        Just("ü".to_string()),
        "[A-Za-z0-9+/_-]{1,45}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_secret_in_ordinary_text_is_masked_and_nothing_else_changes(
        before in plain(),
        (secret, want) in secret(),
        after in plain(),
    ) {
        let text = format!("{before} {secret}\n{after}");
        prop_assert_eq!(redact_shapes(&text), format!("{before} {want}\n{after}"));
        let value = serde_json::json!({"outputs": [text.clone()]});
        prop_assert_eq!(Redactor::default().redact_json(value), serde_json::json!({"outputs": [format!("{before} {want}\n{after}")]}));
    }

    #[test]
    fn redaction_is_idempotent_and_spans_are_ordered(text in soup()) {
        let once = redact_shapes(&text);
        prop_assert_eq!(redact_shapes(&once), once.clone());
        let spans = find_shapes(&text);
        let mut last = 0;
        for (start, end) in spans {
            prop_assert!(last <= start && start < end && end <= text.len());
            prop_assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
            last = end;
        }
    }

    #[test]
    fn text_without_shapes_is_left_alone(text in plain()) {
        prop_assert_eq!(redact_shapes(&text), text);
    }
}
