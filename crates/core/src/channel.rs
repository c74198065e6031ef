//! Notification channels: Apprise-style URLs (`discord://ID/TOKEN`, `slack://T/B/SECRET`,
//! `json://host/path`) turned into the HTTPS endpoint to call and the body each service expects.
//! Secrets come from Agent OS's own environment through `${VAR}` references, resolved by the
//! caller's lookup; a channel URL in `config.yaml` never has to hold one.

use serde_json::{Value, json};

/// Discord's limit on a message's `content`.
pub const DISCORD_LIMIT: usize = 2000;
/// Slack's practical limit on a message's `text` (longer ones are cut by Slack itself).
pub const SLACK_LIMIT: usize = 3000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Discord,
    Slack,
    /// A generic JSON webhook, signed per Standard Webhooks.
    Json,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Discord => "discord",
            Kind::Slack => "slack",
            Kind::Json => "json",
        }
    }
}

/// A channel ready to be called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub kind: Kind,
    /// The endpoint, with its secret: never shown or stored.
    pub endpoint: String,
    /// The endpoint with its secret parts masked, for messages and listings.
    pub display: String,
}

/// What a notification says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub id: &'a str,
    pub project: Option<&'a str>,
    pub title: &'a str,
    pub body: &'a str,
    /// `info`, `warning` or `critical`.
    pub severity: &'a str,
    pub tags: &'a [String],
    /// RFC 3339.
    pub at: &'a str,
}

/// Replaces each `${VAR}` with `lookup(VAR)`; an unknown variable is an error naming it.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or("a `${` is never closed")?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`${{{name}}}` is not a variable name"));
        }
        let value = lookup(name).ok_or_else(|| {
            format!("${{{name}}} is not set in Agent OS's environment (or its own .env); set it, or write the value")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn mask(secret: &str) -> String {
    if secret.len() <= 6 { "…".into() } else { format!("{}…", &secret[..3]) }
}

/// A `base=` query parameter: another address for the service (a proxy, or a local test sink).
fn split_base(rest: &str) -> Result<(&str, Option<String>), String> {
    match rest.split_once('?') {
        None => Ok((rest, None)),
        Some((path, query)) => {
            let mut base = None;
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some(("base", v)) if v.starts_with("http://") || v.starts_with("https://") => {
                        base = Some(v.trim_end_matches('/').to_string())
                    }
                    _ => return Err(format!("unknown or bad parameter {pair:?}; only base=http(s)://… is read")),
                }
            }
            Ok((path, base))
        }
    }
}

/// Parses a channel URL (after `${VAR}` expansion).
pub fn parse(name: &str, url: &str) -> Result<Channel, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("{url:?} is not a channel URL; write discord://ID/TOKEN, slack://T/B/SECRET or json(s)://HOST/PATH")
    })?;
    let (rest, base) = split_base(rest)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let token_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match scheme {
        "discord" => {
            let [id, token] = parts[..] else {
                return Err("discord:// takes WEBHOOK_ID/TOKEN, from the webhook's URL".into());
            };
            if !id.chars().all(|c| c.is_ascii_digit()) || id.is_empty() || !token_ok(token) {
                return Err("discord://WEBHOOK_ID/TOKEN: the id is digits, the token letters, digits, - and _".into());
            }
            let base = base.unwrap_or_else(|| "https://discord.com".into());
            Ok(Channel {
                name: name.into(),
                kind: Kind::Discord,
                endpoint: format!("{base}/api/webhooks/{id}/{token}"),
                display: format!("discord://{id}/{}", mask(token)),
            })
        }
        "slack" => {
            let [t, b, secret] = parts[..] else {
                return Err("slack:// takes T…/B…/SECRET, the three parts of the incoming webhook's URL".into());
            };
            if ![t, b, secret].iter().all(|p| token_ok(p)) {
                return Err("slack://T/B/SECRET: each part is letters and digits".into());
            }
            let base = base.unwrap_or_else(|| "https://hooks.slack.com".into());
            Ok(Channel {
                name: name.into(),
                kind: Kind::Slack,
                endpoint: format!("{base}/services/{t}/{b}/{secret}"),
                display: format!("slack://{t}/{b}/{}", mask(secret)),
            })
        }
        "json" | "jsons" => {
            if base.is_some() {
                return Err("json:// needs no base=; write the address itself".into());
            }
            let host = parts[0];
            if host.is_empty() || host.contains('@') {
                return Err(
                    "json(s)://HOST[:PORT]/PATH: name the host (credentials go in a header, not the URL)".into()
                );
            }
            let http = if scheme == "jsons" { "https" } else { "http" };
            Ok(Channel {
                name: name.into(),
                kind: Kind::Json,
                endpoint: format!("{http}://{rest}"),
                display: format!("{scheme}://{host}/…"),
            })
        }
        other => Err(format!("unknown channel kind {other:?}; discord, slack, json or jsons")),
    }
}

/// `text` cut to `limit` characters, saying so at its end.
fn fit(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    const MORE: &str = "\n… (cut: too long for this channel)";
    let keep = limit - MORE.chars().count();
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(MORE);
    out
}

fn severity_mark(severity: &str) -> &'static str {
    match severity {
        "critical" => "🔴",
        "warning" => "🟠",
        _ => "🔵",
    }
}

/// The body the channel's service expects.
pub fn payload(kind: Kind, m: &Message) -> Value {
    let from = m.project.map(|p| format!(" · {p}")).unwrap_or_default();
    let tags = if m.tags.is_empty() { String::new() } else { format!("\n{}", m.tags.join(" ")) };
    match kind {
        Kind::Discord => json!({
            "content": fit(&format!("{} **{}**{from}\n{}{tags}", severity_mark(m.severity), m.title, m.body), DISCORD_LIMIT),
            "allowed_mentions": { "parse": [] },
        }),
        Kind::Slack => json!({
            "text": fit(&format!("{} *{}*{from}\n{}{tags}", severity_mark(m.severity), m.title, m.body), SLACK_LIMIT),
        }),
        Kind::Json => json!({
            "type": "notification",
            "id": m.id,
            "project": m.project,
            "title": m.title,
            "body": m.body,
            "severity": m.severity,
            "tags": m.tags,
            "at": m.at,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_endpoints_with_their_secrets_masked_for_display() {
        let d = parse("team", "discord://1234567890/abc_DEF-ghi").unwrap();
        assert_eq!(d.endpoint, "https://discord.com/api/webhooks/1234567890/abc_DEF-ghi");
        assert_eq!(d.display, "discord://1234567890/abc…");
        let s = parse("ops", "slack://T000/B000/XXXXsecret?base=http://127.0.0.1:9/").unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:9/services/T000/B000/XXXXsecret");
        let j = parse("hook", "jsons://hooks.example.com:8443/agent-os").unwrap();
        assert_eq!((j.kind, j.endpoint.as_str()), (Kind::Json, "https://hooks.example.com:8443/agent-os"));
        for (bad, says) in [
            ("https://discord.com/x", "unknown channel kind"),
            ("discord://abc/def", "id is digits"),
            ("discord://123", "WEBHOOK_ID/TOKEN"),
            ("slack://T/B", "T…/B…/SECRET"),
            ("json://user:pw@host/x", "credentials"),
            ("discord://1/x?to=me", "only base="),
        ] {
            let e = parse("c", bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn variables_come_from_the_lookup_and_a_missing_one_is_named() {
        let env = |k: &str| (k == "HOOK_TOKEN").then(|| "tok".to_string());
        assert_eq!(expand("discord://1/${HOOK_TOKEN}", &env).unwrap(), "discord://1/tok");
        assert!(expand("discord://1/${NOPE}", &env).unwrap_err().contains("${NOPE} is not set"));
        assert!(expand("x${", &env).is_err());
    }

    #[test]
    fn discord_messages_stay_within_the_limit_and_say_they_were_cut() {
        let long = "x".repeat(5000);
        let m = Message {
            id: "n1",
            project: Some("trading"),
            title: "Spike",
            body: &long,
            severity: "warning",
            tags: &[],
            at: "t",
        };
        let content = payload(Kind::Discord, &m)["content"].as_str().unwrap().to_string();
        assert_eq!(content.chars().count(), DISCORD_LIMIT);
        assert!(content.ends_with("(cut: too long for this channel)"));
        assert!(content.starts_with("🟠 **Spike** · trading\n"));
        assert_eq!(payload(Kind::Json, &m)["severity"], "warning");
    }
}
