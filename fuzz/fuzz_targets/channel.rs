//! Channel URLs (`config.yaml`'s `notifications.channels`, after `${VAR}` expansion) and the
//! bodies built from a notification's text: an accepted URL's display form never shows its
//! secrets, an e-mail target holds only addresses fit for an SMTP command, and a message never
//! outgrows its service's limit or puts a line break into a subject.
//!
//! Input: the URL on the first line; the rest is a notification's title and body.
#![no_main]

use agent_os_core::channel::{
    self, DISCORD_LIMIT, GOOGLE_CHAT_LIMIT, Kind, MATRIX_LIMIT, MATTERMOST_LIMIT, Message, PAGERDUTY_SUMMARY_LIMIT,
    PUSHOVER_MESSAGE_LIMIT, PUSHOVER_TITLE_LIMIT, SLACK_LIMIT, TELEGRAM_LIMIT,
};
use agent_os_fuzz::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = text(data) else { return };
    let (url, rest) = text.split_once('\n').unwrap_or((text, ""));

    // `${VAR}` expansion leaves no reference behind.
    if let Ok(expanded) = channel::expand(url, &|_| Some("X".to_string())) {
        assert!(!expanded.contains("${"), "{url:?} expanded to {expanded:?}");
    }

    if let Ok(c) = channel::parse("fuzz", url) {
        assert_eq!(c.name, "fuzz");
        assert!(
            ["http://", "https://", "smtp://", "smtps://"].iter().any(|s| c.endpoint.starts_with(s)),
            "endpoint {:?}",
            c.endpoint
        );
        if let Some(secret) = &c.signing_secret {
            assert!(!c.display.contains(secret.as_str()), "display {:?} shows the signing secret", c.display);
        }
        if let Some(auth) = &c.authorization {
            assert!(auth.starts_with("Basic "));
            assert!(!c.display.contains('@'), "display {:?} shows ntfy credentials", c.display);
        }
        if let Some(e) = &c.email {
            assert_eq!(c.kind, Kind::Email);
            assert!(!e.to.is_empty() && e.to.len() <= channel::MAIL_MAX_RECIPIENTS);
            for address in e.to.iter().chain([&e.from]) {
                assert!(channel::is_address(address), "{address:?} in the envelope");
                assert!(!address.contains(|c: char| c.is_control() || c.is_whitespace()), "{address:?}");
            }
            assert!(!e.host.is_empty() && e.port != 0);
            if let Some(login) = &e.login {
                assert!(!login.user.contains(['\r', '\n']) && !login.password.contains(['\r', '\n']));
                let both = format!("{}:{}", login.user, login.password);
                assert!(!c.display.contains(&both), "display {:?} shows the password", c.display);
            }
        }
    }

    let (title, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let tags = vec![title.chars().take(20).collect::<String>()];
    let m = Message {
        id: "0190b1f2-0000-7000-8000-000000000000",
        project: Some(body.get(..body.len().min(30)).unwrap_or("trading")),
        title,
        body,
        severity: ["info", "warning", "critical", title][title.len() % 4],
        tags: &tags,
        at: "2025-01-01T00:00:00Z",
        incident: (title.len() % 3 == 0).then_some("0190b1f2-0000-7000-8000-000000000001"),
        resolves: title.len() % 2 == 0,
    };
    let content = channel::payload(Kind::Discord, None, &m);
    let content = content["content"].as_str().unwrap_or_default();
    assert!(content.chars().count() <= DISCORD_LIMIT, "a Discord message of {} characters", content.chars().count());
    let text = channel::payload(Kind::Slack, None, &m);
    assert!(text["text"].as_str().unwrap_or_default().chars().count() <= SLACK_LIMIT);
    for kind in [Kind::Ntfy, Kind::Json, Kind::Email, Kind::Gotify, Kind::Teams] {
        assert!(channel::payload(kind, Some("alerts"), &m).is_object());
    }
    let chars = |v: &serde_json::Value| v.as_str().unwrap_or_default().chars().count();
    let telegram = channel::payload(Kind::Telegram, None, &m);
    let utf16 = telegram["text"].as_str().unwrap_or_default().encode_utf16().count();
    assert!(utf16 <= TELEGRAM_LIMIT, "a Telegram message of {utf16} UTF-16 units");
    let pushover = channel::payload(Kind::Pushover, None, &m);
    assert!(chars(&pushover["title"]) <= PUSHOVER_TITLE_LIMIT && chars(&pushover["message"]) <= PUSHOVER_MESSAGE_LIMIT);
    assert!(chars(&channel::payload(Kind::Mattermost, None, &m)["text"]) <= MATTERMOST_LIMIT);
    assert!(chars(&channel::payload(Kind::GoogleChat, None, &m)["text"]) <= GOOGLE_CHAT_LIMIT);
    assert!(chars(&channel::payload(Kind::Matrix, None, &m)["body"]) <= MATRIX_LIMIT);
    let pagerduty = channel::payload(Kind::PagerDuty, None, &m);
    assert!(chars(&pagerduty["payload"]["summary"]) <= PAGERDUTY_SUMMARY_LIMIT);
    let action = if m.resolves { "resolve" } else { "trigger" };
    assert_eq!(pagerduty["event_action"], action);
    let (subject, mail_body) = channel::mail_text(&m);
    assert!(!subject.contains(|c: char| c.is_control()), "a subject with a control character: {subject:?}");
    assert!(mail_body.ends_with("Sent by Agent OS\n"));
});
