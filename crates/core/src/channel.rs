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
    /// A generic JSON webhook, signed per Standard Webhooks when it has a secret.
    Json,
    /// An ntfy server's publish API.
    Ntfy,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Discord => "discord",
            Kind::Slack => "slack",
            Kind::Json => "json",
            Kind::Ntfy => "ntfy",
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
    /// An `Authorization` header value (ntfy with user:password), never shown.
    pub authorization: Option<String>,
    /// A Standard Webhooks secret (`whsec_…`) to sign each request with (json channels).
    pub signing_secret: Option<String>,
    /// The ntfy topic.
    pub topic: Option<String>,
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

/// The URL's query: `base=` (another address for the service: a proxy, or a local test sink)
/// and `secret=` (a Standard Webhooks secret, json channels).
fn split_query(rest: &str) -> Result<(&str, Option<String>, Option<String>), String> {
    let Some((path, query)) = rest.split_once('?') else { return Ok((rest, None, None)) };
    let (mut base, mut secret) = (None, None);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("base", v)) if v.starts_with("http://") || v.starts_with("https://") => {
                base = Some(v.trim_end_matches('/').to_string())
            }
            Some(("secret", v)) if v.starts_with("whsec_") && v.len() > 10 => secret = Some(v.to_string()),
            _ => {
                return Err(format!("unknown or bad parameter {pair:?}; read are base=http(s)://… and secret=whsec_…"));
            }
        }
    }
    Ok((path, base, secret))
}

/// Parses a channel URL (after `${VAR}` expansion).
pub fn parse(name: &str, url: &str) -> Result<Channel, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("{url:?} is not a channel URL; write discord://ID/TOKEN, slack://T/B/SECRET or json(s)://HOST/PATH")
    })?;
    let (rest, base, secret) = split_query(rest)?;
    if secret.is_some() && !matches!(scheme, "json" | "jsons") {
        return Err("secret= signs json(s):// channels only".into());
    }
    let plain = |kind: Kind, endpoint: String, display: String| Channel {
        name: name.into(),
        kind,
        endpoint,
        display,
        authorization: None,
        signing_secret: None,
        topic: None,
    };
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
            Ok(plain(
                Kind::Discord,
                format!("{base}/api/webhooks/{id}/{token}"),
                format!("discord://{id}/{}", mask(token)),
            ))
        }
        "slack" => {
            let [t, b, secret] = parts[..] else {
                return Err("slack:// takes T…/B…/SECRET, the three parts of the incoming webhook's URL".into());
            };
            if ![t, b, secret].iter().all(|p| token_ok(p)) {
                return Err("slack://T/B/SECRET: each part is letters and digits".into());
            }
            let base = base.unwrap_or_else(|| "https://hooks.slack.com".into());
            Ok(plain(
                Kind::Slack,
                format!("{base}/services/{t}/{b}/{secret}"),
                format!("slack://{t}/{b}/{}", mask(secret)),
            ))
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
                signing_secret: secret,
                ..plain(Kind::Json, format!("{http}://{rest}"), format!("{scheme}://{host}/…"))
            })
        }
        "ntfy" | "ntfys" => {
            if base.is_some() {
                return Err("ntfy:// needs no base=; write the server itself".into());
            }
            let [host, topic] = parts[..] else {
                return Err("ntfy(s)://[USER:PASSWORD@]HOST[:PORT]/TOPIC".into());
            };
            let (credentials, host) = match host.rsplit_once('@') {
                Some((c, h)) => (Some(c), h),
                None => (None, host),
            };
            if host.is_empty() || !token_ok(topic) {
                return Err("ntfy(s)://[USER:PASSWORD@]HOST[:PORT]/TOPIC: name the host and a topic of letters, digits, - and _".into());
            }
            let authorization = match credentials {
                Some(c) => {
                    let (user, password) = c.split_once(':').ok_or("ntfy credentials are USER:PASSWORD")?;
                    Some(format!("Basic {}", base64_encode(format!("{user}:{password}").as_bytes())))
                }
                None => None,
            };
            let http = if scheme == "ntfys" { "https" } else { "http" };
            Ok(Channel {
                authorization,
                topic: Some(topic.into()),
                ..plain(Kind::Ntfy, format!("{http}://{host}/"), format!("{scheme}://{host}/{topic}"))
            })
        }
        other => Err(format!("unknown channel kind {other:?}; discord, slack, ntfy(s) or json(s)")),
    }
}

/// Standard base64 (for a Basic authorization header).
fn base64_encode(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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

/// The body the channel's service expects (`topic`: the ntfy topic).
pub fn payload(kind: Kind, topic: Option<&str>, m: &Message) -> Value {
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
        Kind::Ntfy => json!({
            "topic": topic,
            "title": format!("{}{from}", m.title),
            "message": m.body,
            "priority": match m.severity { "critical" => 5, "warning" => 4, _ => 3 },
            "tags": m.tags,
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
        let signed = parse("hook", "json://127.0.0.1:9/in?secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(signed.signing_secret.as_deref(), Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        let n = parse("phone", "ntfys://me:pa55@ntfy.example.com/alerts").unwrap();
        assert_eq!((n.endpoint.as_str(), n.topic.as_deref()), ("https://ntfy.example.com/", Some("alerts")));
        assert_eq!(n.authorization.as_deref(), Some("Basic bWU6cGE1NQ=="));
        assert_eq!(n.display, "ntfys://ntfy.example.com/alerts", "credentials are never shown");
        for (bad, says) in [
            ("https://discord.com/x", "unknown channel kind"),
            ("discord://abc/def", "id is digits"),
            ("discord://123", "WEBHOOK_ID/TOKEN"),
            ("slack://T/B", "T…/B…/SECRET"),
            ("json://user:pw@host/x", "credentials"),
            ("discord://1/x?to=me", "unknown or bad parameter"),
            ("slack://T/B/S?secret=whsec_abcdefgh", "json(s):// channels only"),
            ("ntfy://host", "TOPIC"),
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
        let content = payload(Kind::Discord, None, &m)["content"].as_str().unwrap().to_string();
        assert_eq!(content.chars().count(), DISCORD_LIMIT);
        assert!(content.ends_with("(cut: too long for this channel)"));
        assert!(content.starts_with("🟠 **Spike** · trading\n"));
        assert_eq!(payload(Kind::Json, None, &m)["severity"], "warning");
        let ntfy = payload(Kind::Ntfy, Some("alerts"), &m);
        assert_eq!((ntfy["topic"].as_str(), ntfy["priority"].as_i64()), (Some("alerts"), Some(4)));
    }
}
