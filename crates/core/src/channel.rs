//! Notification channels: Apprise-style URLs (`discord://ID/TOKEN`, `slack://T/B/SECRET`,
//! `json://host/path`, `mailto://user:pass@smtp.host?to=ops@example.com`) turned into the
//! endpoint to call and the body each service expects (for e-mail: the SMTP server, the
//! envelope and a subject and plain-text body).
//! Secrets come from Agent OS's own environment through `${VAR}` references, resolved by the
//! caller's lookup; a channel URL in `config.yaml` never has to hold one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
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
    /// E-mail through an SMTP server (`mailto://`, `mailtos://`).
    Email,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Discord => "discord",
            Kind::Slack => "slack",
            Kind::Json => "json",
            Kind::Ntfy => "ntfy",
            Kind::Email => "email",
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
    /// The SMTP server, credentials and envelope (e-mail channels).
    pub email: Option<EmailTarget>,
}

/// How an e-mail channel protects its connection to the SMTP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailTls {
    /// TLS from the first byte (`mailtos://`, port 465 by default).
    Implicit,
    /// STARTTLS, required: a server that does not offer it is sent nothing (`mailto://`).
    StartTls,
    /// No TLS at all (`tls=off`): for a relay on this machine or a test sink.
    Off,
}

/// SMTP AUTH credentials; the password is never shown, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct MailLogin {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for MailLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailLogin").field("user", &self.user).field("password", &"…").finish()
    }
}

/// Where and as whom an e-mail channel sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailTarget {
    /// The SMTP server: a host name or an IP address (without brackets).
    pub host: String,
    pub port: u16,
    pub login: Option<MailLogin>,
    /// The sender, in the envelope and the `From:` header.
    pub from: String,
    /// The recipients: at least one, each a checked address.
    pub to: Vec<String>,
    pub tls: MailTls,
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
        let value = lookup(name)
            .ok_or_else(|| format!("${{{name}}} is not set in Agent OS's environment; set it, or write the value"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn mask(secret: &str) -> String {
    if secret.len() <= 6 { "…".into() } else { format!("{}…", &secret[..3]) }
}

/// Whether `v` is an `http(s)://` address with a host: `base=http://` alone would leave the
/// service's path to stand where the host belongs.
fn has_host(v: &str) -> bool {
    crate::url::parse_http(v).is_ok()
}

/// The URL's query: `base=` (another address for the service: a proxy, or a local test sink)
/// and `secret=` (a Standard Webhooks secret, json channels).
fn split_query(rest: &str) -> Result<(&str, Option<String>, Option<String>), String> {
    let Some((path, query)) = rest.split_once('?') else { return Ok((rest, None, None)) };
    let (mut base, mut secret) = (None, None);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("base", v)) if has_host(v) => base = Some(v.trim_end_matches('/').to_string()),
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
        format!(
            "{url:?} is not a channel URL; write discord://ID/TOKEN, slack://T/B/SECRET, json(s)://HOST/PATH or mailto://HOST?to=ADDRESS"
        )
    })?;
    if matches!(scheme, "mailto" | "mailtos") {
        return parse_mail(name, scheme, rest);
    }
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
        email: None,
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
                    Some(format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))))
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
        other => Err(format!("unknown channel kind {other:?}; discord, slack, ntfy(s), json(s) or mailto(s)")),
    }
}

/// The most recipients one e-mail channel sends to.
pub const MAIL_MAX_RECIPIENTS: usize = 50;

/// Parses `mailto://[USER:PASSWORD@]HOST[:PORT]?to=ADDRESS[,ADDRESS…][&from=ADDRESS][&tls=starttls|off]`
/// (`mailtos://` for TLS from the first byte). The user and password may be percent-encoded, and
/// must be when they hold `/`, `?`, `#` or `%`.
fn parse_mail(name: &str, scheme: &str, rest: &str) -> Result<Channel, String> {
    const FORM: &str = "mailto://[USER:PASSWORD@]HOST[:PORT]?to=ADDRESS (mailtos:// for TLS on 465)";
    let implicit = scheme == "mailtos";
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if query.split('&').next().is_some_and(|first| first.split('=').next().is_some_and(|key| key.contains('@'))) {
        return Err("a ? in the mailto password must be percent-encoded as %3F".into());
    }
    if authority.contains(['/', '#']) {
        return Err(format!(
            "{scheme}:// takes no path: recipients go in to= (percent-encode a / or # in the password): {FORM}"
        ));
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let login = match userinfo {
        Some(u) => {
            let (user, password) = u.split_once(':').ok_or("mailto credentials are USER:PASSWORD")?;
            let user = crate::url::decode_component(user).map_err(|e| format!("the mailto user name: {e}"))?;
            let password = crate::url::decode_component(password).map_err(|e| format!("the mailto password: {e}"))?;
            if user.is_empty() || password.is_empty() {
                return Err("mailto credentials are USER:PASSWORD, neither empty".into());
            }
            if user.contains(['\r', '\n', '\0']) || password.contains(['\r', '\n', '\0']) {
                return Err("the mailto user name and password cannot hold line breaks or NUL".into());
            }
            Some(MailLogin { user, password })
        }
        None => None,
    };
    let (host, port) = split_host_port(hostport).map_err(|e| format!("{e}: {FORM}"))?;
    let port = port.unwrap_or(if implicit { 465 } else { 587 });

    let (mut to, mut from, mut tls) = (Vec::<String>::new(), None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = crate::url::decode_component(value).map_err(|e| format!("parameter {key}=: {e}"))?;
        match key {
            "to" => {
                for address in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                    if !is_address(address) {
                        return Err(format!(
                            "to= {address:?} is not an e-mail address (ASCII local@domain, no display name)"
                        ));
                    }
                    if !to.iter().any(|t| t == address) {
                        to.push(address.to_string());
                    }
                }
            }
            "from" if from.is_some() => return Err("from= is given twice; name one sender".into()),
            "from" if is_address(&value) => from = Some(value),
            "from" => {
                return Err(format!("from= {value:?} is not an e-mail address (ASCII local@domain, no display name)"));
            }
            "tls" if implicit => return Err("mailtos:// is TLS from the start; tls= is for mailto://".into()),
            "tls" => {
                tls = Some(match value.as_str() {
                    "starttls" => MailTls::StartTls,
                    "off" => MailTls::Off,
                    _ => return Err(format!("tls={value:?}: write tls=starttls (the default) or tls=off")),
                })
            }
            _ => {
                return Err(format!(
                    "unknown or bad parameter {pair:?}; read are to=ADDRESS, from=ADDRESS and tls=starttls|off"
                ));
            }
        }
    }
    if to.is_empty() {
        return Err(format!("name at least one recipient with to=ADDRESS: {FORM}"));
    }
    if to.len() > MAIL_MAX_RECIPIENTS {
        return Err(format!("at most {MAIL_MAX_RECIPIENTS} recipients in to="));
    }
    let from = from.unwrap_or_else(|| match &login {
        Some(l) if is_address(&l.user) => l.user.clone(),
        _ => format!("agent-os@{}", address_domain(&host)),
    });
    if !is_address(&from) {
        return Err(format!("the sender {from:?} is not an e-mail address; name one with from=ADDRESS"));
    }
    let tls = if implicit { MailTls::Implicit } else { tls.unwrap_or(MailTls::StartTls) };

    let shown_host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    let user = login.as_ref().map(|l| format!("{}:…@", l.user)).unwrap_or_default();
    let off = if tls == MailTls::Off { "&tls=off" } else { "" };
    Ok(Channel {
        name: name.into(),
        kind: Kind::Email,
        endpoint: format!("{}://{shown_host}:{port}", if implicit { "smtps" } else { "smtp" }),
        display: format!("{scheme}://{user}{shown_host}:{port}?to={}{off}", to.join(",")),
        authorization: None,
        signing_secret: None,
        topic: None,
        email: Some(EmailTarget { host, port, login, from, to, tls }),
    })
}

/// `HOST[:PORT]` or `[IPV6][:PORT]`: the host (without brackets) and the port if given.
fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (ip, after) = bracketed.split_once(']').ok_or("a `[` around the host is never closed")?;
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("[{ip}] is not an IPv6 address"));
        }
        match after {
            "" => (ip, None),
            _ => (ip, Some(after.strip_prefix(':').ok_or("write the port after the host as :PORT")?)),
        }
    } else {
        if hostport.matches(':').count() > 1 {
            return Err("write an IPv6 host in brackets, [::1]:25".into());
        }
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) => {
            Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("{p:?} is not a port number"))?)
        }
        None => None,
    };
    let host_ok = host.contains(':') || host.parse::<std::net::Ipv4Addr>().is_ok() || is_domain(host);
    if !host_ok {
        return Err(if host.is_empty() {
            "name the SMTP server".to_string()
        } else {
            format!("{host:?} is not a host name (letters, digits, - and .)")
        });
    }
    Ok((host.to_string(), port))
}

/// The domain part of an address at `host`: the name itself, or an address literal.
fn address_domain(host: &str) -> String {
    if host.contains(':') {
        format!("[IPv6:{host}]")
    } else if host.parse::<std::net::Ipv4Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Whether `s` is a plain ASCII address, `local@domain`: a dot-atom local part (RFC 5322, no
/// quoted forms) and a host name or an address literal (`[192.0.2.1]`, `[IPv6:…]`). Such an
/// address can go into an SMTP command or a header as it is: it holds no space, line break,
/// `<`, `>` or `,`.
pub fn is_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local.split('.').all(|part| !part.is_empty() && part.chars().all(atext));
    let domain_ok = match domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        Some(literal) => match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        },
        None => is_domain(domain),
    };
    s.len() <= 254 && local_ok && domain_ok
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

/// A notification as an e-mail: a one-line subject (`[warning] Title · project`, with no line
/// breaks or control characters) and a plain-text body.
pub fn mail_text(m: &Message) -> (String, String) {
    let from = m.project.map(|p| format!(" · {p}")).unwrap_or_default();
    let subject: String =
        format!("[{}] {}{from}", m.severity, m.title).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut body = String::new();
    if !m.body.is_empty() {
        body.push_str(m.body.trim_end());
        body.push_str("\n\n");
    }
    body.push_str(&format!("Severity: {}\n", m.severity));
    if let Some(p) = m.project {
        body.push_str(&format!("Project: {p}\n"));
    }
    if !m.tags.is_empty() {
        body.push_str(&format!("Tags: {}\n", m.tags.join(" ")));
    }
    body.push_str(&format!("At: {}\nNotification: {}\n\n-- \nSent by Agent OS\n", m.at, m.id));
    (subject, body)
}

/// The body the channel's service expects (`topic`: the ntfy topic). E-mail channels are sent
/// through [`mail_text`]; their payload is the generic JSON form.
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
        Kind::Json | Kind::Email => json!({
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
    fn a_base_address_without_a_host_is_refused() {
        for url in
            ["slack://T000/B000/XXXXsecret?base=http://", "discord://1/tok?base=https:///x", "slack://T/B/s?base=http:"]
        {
            let e = parse("ops", url).unwrap_err();
            assert!(e.contains("base=http(s)://"), "{url}: {e}");
        }
        assert!(parse("ops", "slack://T000/B000/XXXXsecret?base=http://127.0.0.1:9").is_ok());
    }

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
    fn mailto_urls_become_an_smtp_server_and_an_envelope_with_the_password_masked() {
        let c = parse("mail", "mailto://me%40example.com:p%40ss%2Fw0rd@smtp.example.com?to=ops@example.com").unwrap();
        assert_eq!((c.kind, c.endpoint.as_str()), (Kind::Email, "smtp://smtp.example.com:587"));
        assert_eq!(c.display, "mailto://me@example.com:…@smtp.example.com:587?to=ops@example.com");
        let e = c.email.unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls), ("smtp.example.com", 587, MailTls::StartTls));
        assert!(!format!("{e:?}").contains("p@ss/w0rd"), "Debug never shows the password");
        let login = e.login.unwrap();
        assert_eq!((login.user.as_str(), login.password.as_str()), ("me@example.com", "p@ss/w0rd"));
        assert_eq!(e.from, "me@example.com", "a user name that is an address is the sender");
        assert_eq!(e.to, ["ops@example.com"]);

        let raw_at = parse("mail", "mailto://me@example.com:pw@smtp.example.com?to=a@b.example").unwrap();
        assert_eq!(raw_at.email.unwrap().login.unwrap().user, "me@example.com");

        let s = parse("mail", "mailtos://bot:pw@mail.example.com?to=a@x.example,b+tag@y.example&to=a@x.example")
            .unwrap()
            .email
            .unwrap();
        assert_eq!((s.port, s.tls), (465, MailTls::Implicit));
        assert_eq!(s.to, ["a@x.example", "b+tag@y.example"], "comma-separated and repeated, once each");
        assert_eq!(s.from, "agent-os@mail.example.com", "a bare user name is no sender");

        let local =
            parse("sink", "mailto://127.0.0.1:2525/?to=root@localhost&tls=off&from=alerts@example.com").unwrap();
        assert_eq!(local.display, "mailto://127.0.0.1:2525?to=root@localhost&tls=off");
        let e = local.email.unwrap();
        assert_eq!((e.port, e.tls, e.login, e.from.as_str()), (2525, MailTls::Off, None, "alerts@example.com"));
        let v6 = parse("sink", "mailto://[::1]:25?to=root@localhost").unwrap();
        assert_eq!(v6.endpoint, "smtp://[::1]:25");
        assert_eq!(v6.email.unwrap().from, "agent-os@[IPv6:::1]");

        for (bad, says) in [
            ("mailto://smtp.example.com", "at least one recipient"),
            ("mailto://smtp.example.com?to=", "at least one recipient"),
            ("mailto://smtp.example.com?to=nobody", "not an e-mail address"),
            ("mailto://smtp.example.com?to=a@b.example%0D%0ARCPT", "not an e-mail address"),
            ("mailto://smtp.example.com?to=Ops%20<ops@example.com>", "no display name"),
            ("mailto://smtp.example.com?to=a@b.example&from=me", "from= \"me\" is not an e-mail address"),
            ("mailto://smtp.example.com?to=a@b.example&tls=none", "tls=starttls (the default) or tls=off"),
            ("mailtos://smtp.example.com?to=a@b.example&tls=off", "tls= is for mailto://"),
            ("mailto://smtp.example.com?to=a@b.example&cc=c@d.example", "unknown or bad parameter \"cc=c@d.example\""),
            ("mailto://smtp.example.com/a@b.example", "takes no path"),
            ("mailto://user@smtp.example.com?to=a@b.example", "USER:PASSWORD"),
            ("mailto://user:@smtp.example.com?to=a@b.example", "neither empty"),
            ("mailto://user:100%@smtp.example.com?to=a@b.example", "write a literal % as %25"),
            ("mailto://user:pa?ss@smtp.example.com?to=a@b.example", "%3F"),
            ("mailto://user:pa#ss@smtp.example.com?to=a@b.example", "percent-encode a / or #"),
            ("mailto://smtp.example.com:99999?to=a@b.example", "\"99999\" is not a port number"),
            ("mailto://?to=a@b.example", "name the SMTP server"),
            ("mailto://smtp_example.com?to=a@b.example", "is not a host name"),
            ("mailto://::1:25?to=a@b.example", "IPv6 host in brackets"),
            ("mailto://smtp.example.com?to=a@b.example&from=x@y.example&from=z@y.example", "given twice"),
        ] {
            let e = parse("c", bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn addresses_are_plain_ascii_local_at_domain() {
        for good in ["a@b", "first.last+tag@mail.example.com", "x@[192.0.2.1]", "x@[IPv6:2001:db8::1]", "o'neil@x.io"] {
            assert!(is_address(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "@b",
            "a@",
            "a..b@c",
            ".a@c",
            "a@-c",
            "a@c..d",
            "a b@c",
            "a@c\r\n",
            "<a@c>",
            "ü@c",
            "a@[300.1.1.1]",
        ] {
            assert!(!is_address(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_mail_has_a_one_line_subject_and_the_details_in_its_body() {
        let tags = vec!["disk".to_string(), "prod".to_string()];
        let m = Message {
            id: "n1",
            project: Some("trading"),
            title: "Disk\nfull",
            body: "94% used\n",
            severity: "warning",
            tags: &tags,
            at: "2025-01-02T03:04:05.000Z",
        };
        let (subject, body) = mail_text(&m);
        assert_eq!(subject, "[warning] Disk full · trading");
        assert_eq!(
            body,
            "94% used\n\nSeverity: warning\nProject: trading\nTags: disk prod\nAt: 2025-01-02T03:04:05.000Z\nNotification: n1\n\n-- \nSent by Agent OS\n"
        );
        assert_eq!(Kind::Email.as_str(), "email");
        assert_eq!(payload(Kind::Email, None, &m)["title"], "Disk\nfull");
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
