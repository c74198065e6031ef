//! Notification channels: Apprise-style URLs, in Apprise's own syntax for each service
//! (`discord://ID/TOKEN`, `slack://T/B/SECRET`, `json://host/path`, `ntfy://host/topic`,
//! `mailto://user:pass@smtp.host?to=ops@example.com`, `tgram://BOT_TOKEN/CHAT_ID`,
//! `pover://USER_KEY@APP_TOKEN`, `gotify://host/APP_TOKEN`, `mmost://host/WEBHOOK_TOKEN`,
//! `gchat://WORKSPACE/KEY/TOKEN`, `pagerduty://INTEGRATION_KEY@API_KEY`,
//! `workflows://HOST/WORKFLOW/SIGNATURE` for Microsoft Teams, `matrixs://TOKEN@HOST/!ROOM`)
//! turned into the endpoint to call and the requests each service expects (for e-mail: the SMTP
//! server, the envelope and a subject and plain-text body). Each text is cut visibly at the
//! service's limit.
//! Secrets come from Agent OS's own environment through `${VAR}` references, resolved by the
//! caller's lookup; a channel URL in `config.yaml` never has to hold one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

/// Discord's limit on a message's `content`.
pub const DISCORD_LIMIT: usize = 2000;
/// Slack's practical limit on a message's `text` (longer ones are cut by Slack itself).
pub const SLACK_LIMIT: usize = 3000;
/// Telegram's limit on a message's `text`, in UTF-16 code units.
pub const TELEGRAM_LIMIT: usize = 4096;
/// Pushover's limits on a message's `title` and `message`.
pub const PUSHOVER_TITLE_LIMIT: usize = 250;
pub const PUSHOVER_MESSAGE_LIMIT: usize = 1024;
/// Mattermost's limit on a post's `text`.
pub const MATTERMOST_LIMIT: usize = 16383;
/// Google Chat's limit on a message's `text`.
pub const GOOGLE_CHAT_LIMIT: usize = 4096;
/// A Matrix event is at most 64 KiB in all; its text is kept well within that.
pub const MATRIX_LIMIT: usize = 16000;
/// PagerDuty's limit on an event's `payload.summary`.
pub const PAGERDUTY_SUMMARY_LIMIT: usize = 1024;

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
    /// A Telegram bot's `sendMessage` (`tgram://`), one request per chat.
    Telegram,
    /// Pushover's message API (`pover://`).
    Pushover,
    /// A Gotify server's message API (`gotify://`, `gotifys://`).
    Gotify,
    /// A Mattermost incoming webhook (`mmost://`, `mmosts://`), one request per channel.
    Mattermost,
    /// A Google Chat space's incoming webhook (`gchat://`).
    GoogleChat,
    /// PagerDuty's Events API v2 (`pagerduty://`): incidents trigger and resolve alerts.
    PagerDuty,
    /// A Microsoft Teams channel through a Power Automate workflow webhook (`workflows://`),
    /// sent an Adaptive Card.
    Teams,
    /// A Matrix homeserver's client API (`matrix://`, `matrixs://`) with an access token, one
    /// `PUT` per room.
    Matrix,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Discord => "discord",
            Kind::Slack => "slack",
            Kind::Json => "json",
            Kind::Ntfy => "ntfy",
            Kind::Email => "email",
            Kind::Telegram => "telegram",
            Kind::Pushover => "pushover",
            Kind::Gotify => "gotify",
            Kind::Mattermost => "mattermost",
            Kind::GoogleChat => "googlechat",
            Kind::PagerDuty => "pagerduty",
            Kind::Teams => "teams",
            Kind::Matrix => "matrix",
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
    /// Headers sent with every request, secrets among them (Gotify's `X-Gotify-Key`): never shown.
    pub headers: Vec<(&'static str, String)>,
    /// Fields every request's JSON body carries (Pushover's token and user, Telegram's
    /// options, PagerDuty's routing key); an object here is merged into the body's object of
    /// the same name. May hold secrets: never shown.
    pub fields: Map<String, Value>,
    /// One request per target, each with the target merged into the body (Telegram's
    /// `chat_id`, Mattermost's `channel`) or, for Matrix, the room in the address; none: one
    /// request.
    pub targets: Vec<Value>,
}

/// The HTTP method of a channel's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Without a body (a Matrix room alias looked up).
    Get,
    Post,
    Put,
}

/// One HTTP request a notification makes to a channel's service.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub method: Method,
    /// The address, with its secret: never shown.
    pub url: String,
    pub body: Value,
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
    /// The incident it tells about, if any.
    pub incident: Option<&'a str>,
    /// Whether it tells that the incident is resolved (PagerDuty resolves its alert).
    pub resolves: bool,
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

/// A URL's query: `base=` (another address for the service: a proxy, or a local test sink),
/// `secret=` (a Standard Webhooks secret, json channels) and the service's own parameters, in
/// the order written, their values percent-decoded.
struct Query<'a> {
    base: Option<String>,
    secret: Option<String>,
    others: Vec<(&'a str, &'a str, String)>,
}

impl Query<'_> {
    /// Takes the value of parameter `key` (its last one when repeated).
    fn take(&mut self, key: &str) -> Option<String> {
        let mut found = None;
        self.others.retain(|(k, _, v)| {
            if *k == key {
                found = Some(v.clone());
                false
            } else {
                true
            }
        });
        found
    }

    /// Takes every value of parameter `key`, in the order written.
    fn take_all(&mut self, key: &str) -> Vec<String> {
        let mut found = Vec::new();
        self.others.retain(|(k, _, v)| {
            if *k == key {
                found.push(v.clone());
                false
            } else {
                true
            }
        });
        found
    }

    /// Refuses what is left, naming the parameters `scheme` reads.
    fn done(&self, reads: &str) -> Result<(), String> {
        match self.others.first() {
            Some((_, pair, _)) => Err(format!("unknown or bad parameter {pair:?}; read are {reads}")),
            None => Ok(()),
        }
    }
}

fn split_query(rest: &str) -> Result<(&str, Query<'_>), String> {
    let mut q = Query { base: None, secret: None, others: Vec::new() };
    let Some((path, query)) = rest.split_once('?') else { return Ok((rest, q)) };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("base", v)) if has_host(v) => q.base = Some(v.trim_end_matches('/').to_string()),
            Some(("secret", v)) if v.starts_with("whsec_") && v.len() > 10 => q.secret = Some(v.to_string()),
            Some(("base" | "secret", _)) | None => {
                return Err(format!("unknown or bad parameter {pair:?}; read are base=http(s)://… and secret=whsec_…"));
            }
            Some((key, v)) => {
                let value = crate::url::decode_component(v).map_err(|e| format!("parameter {key}=: {e}"))?;
                q.others.push((key, pair, value));
            }
        }
    }
    Ok((path, q))
}

/// Apprise's yes/no values.
fn yes_no(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Ok(true),
        "no" | "false" | "0" | "off" => Ok(false),
        _ => Err(format!("{key}={value:?}: write {key}=yes or {key}=no")),
    }
}

/// `HOST[:PORT][/PATH…]/TOKEN` of a self-hosted service: the server's base address (with
/// `http` or `https`) and the token.
fn server_and_token<'a>(scheme: &str, secure: bool, rest: &'a str, form: &str) -> Result<(String, &'a str), String> {
    let rest = rest.trim_end_matches('/');
    let (server, token) = rest.rsplit_once('/').ok_or_else(|| format!("name the server and the token: {form}"))?;
    let host = server.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') || server.contains(['?', '#']) || server.split('/').any(str::is_empty) {
        return Err(format!("{scheme}://: name the server as HOST[:PORT][/PATH]: {form}"));
    }
    split_host_port(host).map_err(|e| format!("{e}: {form}"))?;
    let http = if secure { "https" } else { "http" };
    Ok((format!("{http}://{server}"), token))
}

/// Parses a channel URL (after `${VAR}` expansion).
pub fn parse(name: &str, url: &str) -> Result<Channel, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!(
            "{url:?} is not a channel URL; write discord://ID/TOKEN, slack://T/B/SECRET, json(s)://HOST/PATH, mailto://HOST?to=ADDRESS, tgram://BOT_TOKEN/CHAT_ID or another kind in docs/alerting.md"
        )
    })?;
    if matches!(scheme, "mailto" | "mailtos") {
        return parse_mail(name, scheme, rest);
    }
    let (rest, mut query) = split_query(rest)?;
    if query.secret.is_some() && !matches!(scheme, "json" | "jsons") {
        return Err("secret= signs json(s):// channels only".into());
    }
    if matches!(scheme, "discord" | "slack" | "json" | "jsons" | "ntfy" | "ntfys") {
        query.done("base=http(s)://… and secret=whsec_…")?;
    }
    let base = query.base.take();
    let secret = query.secret.take();
    let plain = |kind: Kind, endpoint: String, display: String| Channel {
        name: name.into(),
        kind,
        endpoint,
        display,
        authorization: None,
        signing_secret: None,
        topic: None,
        email: None,
        headers: Vec::new(),
        fields: Map::new(),
        targets: Vec::new(),
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
        "tgram" => {
            const FORM: &str = "tgram://BOT_TOKEN/CHAT_ID[/CHAT_ID…]";
            let token = parts[0].strip_prefix("bot").unwrap_or(parts[0]);
            let (bot, secret) = token.split_once(':').unwrap_or((token, ""));
            if bot.is_empty() || !bot.chars().all(|c| c.is_ascii_digit()) || !token_ok(secret) {
                return Err(format!("the bot token is DIGITS:SECRET, as BotFather gives it: {FORM}"));
            }
            let topic = match query.take("topic").or_else(|| query.take("thread")) {
                Some(t) => Some(thread_id(&t)?),
                None => None,
            };
            let mut fields = Map::new();
            if let Some(silent) = query.take("silent") {
                fields.insert("disable_notification".into(), json!(yes_no("silent", &silent)?));
            }
            let preview = match query.take("preview") {
                Some(p) => yes_no("preview", &p)?,
                None => false,
            };
            fields.insert("link_preview_options".into(), json!({ "is_disabled": !preview }));
            let mut chats: Vec<String> = parts[1..].iter().map(|c| c.to_string()).collect();
            for to in query.take_all("to") {
                chats.extend(to.split(',').map(|c| crate::url::encode_component(c.trim())));
            }
            query.done("to=CHAT[,CHAT…], topic=THREAD_ID, silent=yes|no, preview=yes|no and base=http(s)://…")?;
            let mut targets = Vec::new();
            let mut shown = Vec::new();
            for chat in chats.iter().filter(|c| !c.is_empty()) {
                let chat = crate::url::decode_component(chat).map_err(|e| format!("chat {chat:?}: {e}"))?;
                let (id, thread) = match chat.split_once(':') {
                    Some((id, t)) => (id, Some(thread_id(t)?)),
                    None => (chat.as_str(), topic),
                };
                let chat_id = telegram_chat(id).ok_or_else(|| {
                    format!("chat {id:?} is neither a chat id (digits, - first for a group) nor a @username: {FORM}")
                })?;
                let mut target = json!({ "chat_id": chat_id });
                if let Some(t) = thread {
                    target["message_thread_id"] = json!(t);
                }
                targets.push(target);
                shown.push(chat.clone());
            }
            if targets.is_empty() {
                return Err(format!("name at least one chat to send to: {FORM}"));
            }
            let base = base.unwrap_or_else(|| "https://api.telegram.org".into());
            Ok(Channel {
                fields,
                targets,
                ..plain(
                    Kind::Telegram,
                    format!("{base}/bot{bot}:{secret}/sendMessage"),
                    format!("tgram://{bot}:…/{}", shown.join("/")),
                )
            })
        }
        "pover" => {
            const FORM: &str = "pover://USER_KEY@APP_TOKEN[/DEVICE…]";
            let (user, after) =
                rest.split_once('@').ok_or_else(|| format!("name the user key and the app token: {FORM}"))?;
            let mut after = after.split('/');
            let token = after.next().unwrap_or_default();
            let key_ok = |k: &str| k.len() == 30 && k.chars().all(|c| c.is_ascii_alphanumeric());
            if !key_ok(user) || !key_ok(token) {
                return Err(format!("the user key and the app token are 30 letters and digits each: {FORM}"));
            }
            let devices: Vec<&str> = after.filter(|d| !d.is_empty()).collect();
            if let Some(d) = devices.iter().find(|d| d.len() > 25 || !token_ok(d)) {
                return Err(format!("device {d:?}: up to 25 letters, digits, - and _: {FORM}"));
            }
            if query.take("priority").is_some() {
                return Err("priority= is not read: each notification's severity sets it (info -1, warning 0, critical 1); remove it".into());
            }
            let mut fields = Map::new();
            fields.insert("token".into(), json!(token));
            fields.insert("user".into(), json!(user));
            if !devices.is_empty() {
                fields.insert("device".into(), json!(devices.join(",")));
            }
            if let Some(sound) = query.take("sound") {
                if !token_ok(&sound) {
                    return Err(format!("sound={sound:?}: the name of one of Pushover's sounds"));
                }
                fields.insert("sound".into(), json!(sound));
            }
            query.done("sound=NAME and base=http(s)://…")?;
            let base = base.unwrap_or_else(|| "https://api.pushover.net".into());
            let devices = if devices.is_empty() { String::new() } else { format!("/{}", devices.join("/")) };
            Ok(Channel {
                fields,
                ..plain(
                    Kind::Pushover,
                    format!("{base}/1/messages.json"),
                    format!("pover://{}@{}{devices}", mask(user), mask(token)),
                )
            })
        }
        "gotify" | "gotifys" => {
            const FORM: &str = "gotify(s)://HOST[:PORT][/PATH]/APP_TOKEN";
            if base.is_some() {
                return Err("gotify:// needs no base=; write the server itself".into());
            }
            if query.take("priority").is_some() {
                return Err("priority= is not read: each notification's severity sets it (info 5, warning 8, critical 10); remove it".into());
            }
            if let Some((_, pair, _)) = query.others.first() {
                return Err(format!(
                    "unknown parameter {pair:?}: gotify(s):// reads none (the priority follows each notification's severity)"
                ));
            }
            let (server, token) = server_and_token(scheme, scheme == "gotifys", rest, FORM)?;
            if !token_ok(&token.replace('.', "")) {
                return Err(format!("the app token is letters, digits, ., - and _: {FORM}"));
            }
            let shown = server.split_once("://").map_or(server.as_str(), |(_, s)| s);
            Ok(Channel {
                headers: vec![("X-Gotify-Key", token.to_string())],
                ..plain(Kind::Gotify, format!("{server}/message"), format!("{scheme}://{shown}/{}", mask(token)))
            })
        }
        "mmost" | "mmosts" => {
            const FORM: &str = "mmost(s)://[BOTNAME@]HOST[:PORT][/PATH]/WEBHOOK_TOKEN";
            if base.is_some() {
                return Err("mmost:// needs no base=; write the server itself".into());
            }
            let authority = rest.split('/').next().unwrap_or_default();
            let (botname, rest) = match authority.rsplit_once('@') {
                Some((b, _)) => {
                    let name = crate::url::decode_component(b).map_err(|e| format!("the bot name: {e}"))?;
                    if name.is_empty() || name.chars().any(char::is_control) {
                        return Err(format!("the bot name before @ is empty or holds control characters: {FORM}"));
                    }
                    (Some(name), rest.get(b.len() + 1..).unwrap_or_default())
                }
                None => (None, rest),
            };
            let (server, token) = server_and_token(scheme, scheme == "mmosts", rest, FORM)?;
            if !token_ok(token) {
                return Err(format!("the webhook token is letters and digits: {FORM}"));
            }
            let mut channels = Vec::new();
            for key in ["channel", "channels", "to"] {
                for list in query.take_all(key) {
                    for c in list.split(',').map(|c| c.trim().trim_start_matches('#')).filter(|c| !c.is_empty()) {
                        if !token_ok(c) {
                            return Err(format!(
                                "channel {c:?}: a channel's name in its URL (letters, digits, - and _)"
                            ));
                        }
                        channels.push(json!({ "channel": c }));
                    }
                }
            }
            query.done("channel=NAME[,NAME…]")?;
            let mut fields = Map::new();
            if let Some(b) = botname {
                fields.insert("username".into(), json!(b));
            }
            let shown = server.split_once("://").map_or(server.as_str(), |(_, s)| s);
            Ok(Channel {
                fields,
                targets: channels,
                ..plain(
                    Kind::Mattermost,
                    format!("{server}/hooks/{token}"),
                    format!("{scheme}://{shown}/{}", mask(token)),
                )
            })
        }
        "gchat" => {
            const FORM: &str = "gchat://WORKSPACE/WEBHOOK_KEY/WEBHOOK_TOKEN";
            let [space, key, token] = parts[..] else {
                return Err(format!(
                    "gchat:// takes the space, key and token of the webhook's URL (no thread key): {FORM}"
                ));
            };
            let token = crate::url::decode_component(token).map_err(|e| format!("the webhook token: {e}"))?;
            if !token_ok(space) || !token_ok(key) || !token_ok(token.trim_end_matches('=')) {
                return Err(format!("{FORM}: each part is letters, digits, - and _ (the token may end in =, or %3D)"));
            }
            query.done("base=http(s)://…")?;
            let base = base.unwrap_or_else(|| "https://chat.googleapis.com".into());
            Ok(plain(
                Kind::GoogleChat,
                format!(
                    "{base}/v1/spaces/{space}/messages?key={}&token={}",
                    crate::url::encode_component(key),
                    crate::url::encode_component(&token)
                ),
                format!("gchat://{space}/{}/{}", mask(key), mask(&token)),
            ))
        }
        "pagerduty" => parse_pagerduty(rest, base, query, plain),
        "workflows" | "workflow" => parse_workflows(scheme, rest, base, query, plain),
        "matrix" | "matrixs" => parse_matrix(scheme, rest, base, query, plain),
        other => Err(format!(
            "unknown channel kind {other:?}; discord, slack, ntfy(s), json(s), mailto(s), tgram, pover, gotify(s), mmost(s), gchat, pagerduty, workflows or matrix(s)"
        )),
    }
}

/// A Telegram chat: a chat id (digits, `-` first for groups and channels) or a public
/// `@username` (the `@` may be left out, as Apprise allows).
fn telegram_chat(id: &str) -> Option<Value> {
    let digits = id.strip_prefix('-').unwrap_or(id);
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return id.parse::<i64>().ok().map(Value::from);
    }
    let name = id.strip_prefix('@').unwrap_or(id);
    let ok = name.len() >= 4
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then(|| Value::from(format!("@{name}")))
}

/// A Telegram forum topic's thread id.
fn thread_id(t: &str) -> Result<i64, String> {
    t.parse::<i64>().ok().filter(|t| *t > 0).ok_or_else(|| format!("{t:?} is not a topic's thread id (digits)"))
}

/// `pagerduty://INTEGRATION_KEY@API_KEY[/SOURCE[/COMPONENT]][?region=us|eu&group=…&class=…&click=…]`.
/// The Events API needs only the integration (routing) key; the API key is read, as Apprise
/// writes it, and never sent.
fn parse_pagerduty(
    rest: &str,
    base: Option<String>,
    mut query: Query<'_>,
    plain: impl Fn(Kind, String, String) -> Channel,
) -> Result<Channel, String> {
    const FORM: &str = "pagerduty://INTEGRATION_KEY@API_KEY[/SOURCE[/COMPONENT]]";
    let (routing, after) =
        rest.split_once('@').ok_or_else(|| format!("name the integration key and the API key: {FORM}"))?;
    let mut after = after.split('/');
    let api_key = after.next().unwrap_or_default();
    let key_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_+".contains(c));
    if !key_ok(routing) || !key_ok(api_key) {
        return Err(format!("the integration key and the API key are letters and digits: {FORM}"));
    }
    let decoded = |what: &str, v: &str| -> Result<String, String> {
        let v = crate::url::decode_component(v).map_err(|e| format!("the {what}: {e}"))?;
        if v.trim().is_empty() || v.len() > 255 || v.chars().any(char::is_control) {
            return Err(format!("the {what} is 1 to 255 characters without control characters"));
        }
        Ok(v)
    };
    let mut source = after.next().filter(|s| !s.is_empty()).map(|s| decoded("source", s)).transpose()?;
    let mut component = after.next().filter(|s| !s.is_empty()).map(|s| decoded("component", s)).transpose()?;
    if after.any(|s| !s.is_empty()) {
        return Err(format!("too many parts: {FORM}"));
    }
    if let Some(s) = query.take("source") {
        source = Some(decoded("source", &s)?);
    }
    if let Some(c) = query.take("component") {
        component = Some(decoded("component", &c)?);
    }
    let region = query.take("region").map(|r| r.to_ascii_lowercase());
    let host = match region.as_deref() {
        None | Some("us") => "https://events.pagerduty.com",
        Some("eu") => "https://events.eu.pagerduty.com",
        Some(other) => return Err(format!("region={other:?}: write region=us (the default) or region=eu")),
    };
    let mut event = Map::new();
    for (key, value) in [("source", source.clone()), ("component", component.clone())] {
        if let Some(v) = value {
            event.insert(key.into(), json!(v));
        }
    }
    for key in ["group", "class"] {
        if let Some(v) = query.take(key) {
            event.insert(key.into(), json!(decoded(key, &v)?));
        }
    }
    let mut fields = Map::new();
    fields.insert("routing_key".into(), json!(routing));
    if let Some(click) = query.take("click") {
        if !has_host(&click) {
            return Err(format!("click={click:?}: an http(s):// address to link the alert to"));
        }
        fields.insert("links".into(), json!([{ "href": click, "text": "Agent OS" }]));
    }
    if let Some(image) = query.take("image") {
        // Apprise's own URLs carry it; no image is sent either way.
        yes_no("image", &image)?;
    }
    query.done("region=us|eu, source=, component=, group=, class=, click=http(s)://… and base=http(s)://…")?;
    if !event.is_empty() {
        fields.insert("payload".into(), Value::Object(event));
    }
    let base = base.unwrap_or_else(|| host.into());
    let mut shown = format!("pagerduty://{}@{}", mask(routing), mask(api_key));
    for part in [source, component].into_iter().flatten() {
        shown.push('/');
        shown.push_str(&crate::url::encode_component(&part));
    }
    if region.as_deref() == Some("eu") {
        shown.push_str("?region=eu");
    }
    Ok(Channel { fields, ..plain(Kind::PagerDuty, format!("{base}/v2/enqueue"), shown) })
}

/// `workflows://HOST[:PORT]/WORKFLOW/SIGNATURE[?pa=yes&ver=…]`: a Power Automate workflow
/// ("When a Teams webhook request is received"), from its URL
/// `https://HOST[:PORT]/workflows/WORKFLOW/triggers/manual/paths/invoke?…&sig=SIGNATURE`.
fn parse_workflows(
    scheme: &str,
    rest: &str,
    base: Option<String>,
    mut query: Query<'_>,
    plain: impl Fn(Kind, String, String) -> Channel,
) -> Result<Channel, String> {
    const FORM: &str = "workflows://HOST[:PORT]/WORKFLOW/SIGNATURE";
    let id_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let mut parts = rest.trim_end_matches('/').split('/');
    let host = parts.next().unwrap_or_default();
    let mut workflow = parts.next().map(str::to_string);
    let mut signature = parts.next().map(str::to_string);
    if parts.next().is_some() {
        return Err(format!("too many parts: {FORM}, the workflow's id and the sig= of its URL"));
    }
    if let Some(w) = query.take("id") {
        workflow = Some(w);
    }
    if let Some(s) = query.take("sig") {
        signature = Some(s);
    }
    let (Some(workflow), Some(signature)) = (workflow, signature) else {
        return Err(format!("name the workflow's id and the sig= of its URL: {FORM}"));
    };
    if host.contains('@') || !id_ok(&workflow) || !id_ok(&signature) {
        return Err(format!("{FORM}: the workflow and the signature are letters, digits, - and _"));
    }
    let (h, port) = split_host_port(host).map_err(|e| format!("{e}: {FORM}"))?;
    let power_automate = match query.take("pa").or_else(|| query.take("powerautomate")) {
        Some(v) => yes_no("pa", &v)?,
        None => false,
    };
    let version = query.take("ver").or_else(|| query.take("api-version"));
    let version = version.unwrap_or_else(|| if power_automate { "2022-03-01-preview" } else { "2016-06-01" }.into());
    if !id_ok(&version.replace('.', "")) {
        return Err(format!("ver={version:?} is not an API version (like 2016-06-01)"));
    }
    if let Some(wrap) = query.take("wrap")
        && !yes_no("wrap", &wrap)?
    {
        return Err("wrap=no is not read: the card always wraps its text; remove it".into());
    }
    if let Some(image) = query.take("image") {
        // Apprise's own URLs carry it; no image is sent either way.
        yes_no("image", &image)?;
    }
    if query.take("template").is_some() {
        return Err("template= is not read: Agent OS sends its own Adaptive Card; remove it".into());
    }
    query.done("pa=yes|no, ver=API_VERSION, wrap=yes, id=, sig= and base=http(s)://…")?;
    let h = if h.contains(':') { format!("[{h}]") } else { h };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let base = base.unwrap_or_else(|| format!("https://{h}{port}"));
    let direct = if power_automate { "/powerautomate/automations/direct" } else { "" };
    Ok(plain(
        Kind::Teams,
        format!(
            "{base}{direct}/workflows/{workflow}/triggers/manual/paths/invoke?api-version={}&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={signature}",
            crate::url::encode_component(&version)
        ),
        format!("{scheme}://{h}{port}/{}/{}", mask(&workflow), mask(&signature)),
    ))
}

/// `matrix(s)://ACCESS_TOKEN@HOST[:PORT]/ROOM[/ROOM…]`: rooms by id (`!id[:server]`) or
/// alias (`#alias[:server]`, looked up when sending); without `:server` the host's own.
fn parse_matrix(
    scheme: &str,
    rest: &str,
    base: Option<String>,
    mut query: Query<'_>,
    plain: impl Fn(Kind, String, String) -> Channel,
) -> Result<Channel, String> {
    const FORM: &str = "matrixs://ACCESS_TOKEN@HOST[:PORT]/!ROOM_ID:SERVER (or #ALIAS:SERVER)";
    let mut parts = rest.split('/');
    let authority = parts.next().unwrap_or_default();
    let Some((token, hostport)) = authority.rsplit_once('@') else {
        return Err(format!("name the access token and the homeserver: {FORM}"));
    };
    if token.contains(':') {
        return Err(format!(
            "a log-in with USER:PASSWORD, and Apprise's webhook modes, are not supported; write an access token: {FORM}"
        ));
    }
    let token = crate::url::decode_component(token).map_err(|e| format!("the access token: {e}"))?;
    if token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!("the access token is printable ASCII without spaces: {FORM}"));
    }
    let (host, port) = split_host_port(hostport).map_err(|e| format!("{e}: {FORM}"))?;
    let mut written: Vec<String> = parts.filter(|p| !p.is_empty()).map(str::to_string).collect();
    if let Some(to) = query.take("to") {
        written.extend(to.split(',').map(|r| r.trim().to_string()).filter(|r| !r.is_empty()));
    }
    let mut rooms = Vec::new();
    for room in &written {
        let room = crate::url::decode_component(room).map_err(|e| format!("room {room:?}: {e}"))?;
        let (sigil, name) = match room.chars().next() {
            Some(c @ ('!' | '#')) => (c, &room[1..]),
            Some('@') => return Err(format!("{room:?} is a user: direct messages are not sent; name a room: {FORM}")),
            _ => ('#', room.as_str()),
        };
        let (local, server) = name.split_once(':').unwrap_or((name, host.as_str()));
        let local_ok = !local.is_empty() && local.chars().all(|c| c.is_ascii_graphic() && c != ':');
        if !local_ok || split_host_port(server).is_err() {
            return Err(format!("room {room:?} is not a room id (!id:server) or alias (#alias:server): {FORM}"));
        }
        rooms.push(json!({ "room": format!("{sigil}{local}:{server}") }));
    }
    if rooms.is_empty() {
        return Err(format!("name at least one room: {FORM}"));
    }
    let mut fields = Map::new();
    match query.take("msgtype").as_deref() {
        None | Some("text") => {}
        Some("notice") => {
            fields.insert("msgtype".into(), json!("m.notice"));
        }
        Some(other) => return Err(format!("msgtype={other:?}: write msgtype=text (the default) or msgtype=notice")),
    }
    match query.take("mode").as_deref() {
        None | Some("off") => {}
        Some(other) => return Err(format!("mode={other}: Apprise's webhook modes are not supported; write {FORM}")),
    }
    match query.take("version").or_else(|| query.take("v")).as_deref() {
        None | Some("3") => {}
        Some(other) => return Err(format!("version={other}: only the v3 client API is spoken; remove it")),
    }
    for key in ["discovery", "image"] {
        if let Some(v) = query.take(key) {
            // Read as Apprise writes them; no discovery is made and no image is sent.
            yes_no(key, &v)?;
        }
    }
    query.done("to=ROOM, msgtype=text|notice, version=3, discovery=, image= and base=http(s)://…")?;
    let shown_host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let http = if scheme == "matrixs" { "https" } else { "http" };
    let base = base.unwrap_or_else(|| format!("{http}://{shown_host}{port}"));
    let shown_rooms: Vec<&str> = rooms.iter().filter_map(|r| r["room"].as_str()).collect();
    Ok(Channel {
        authorization: Some(format!("Bearer {token}")),
        fields,
        targets: rooms.clone(),
        ..plain(Kind::Matrix, base, format!("{scheme}://{}@{shown_host}{port}/{}", mask(&token), shown_rooms.join("/")))
    })
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
        headers: Vec::new(),
        fields: Map::new(),
        targets: Vec::new(),
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

/// What ends a text cut to fit a channel.
const CUT: &str = "\n… (cut: too long for this channel)";

/// `text` cut to `limit` characters, saying so at its end.
fn fit(text: &str, limit: usize) -> String {
    fit_by(text, limit, |_| 1)
}

/// `text` cut to `limit` UTF-16 code units (how Telegram counts), saying so at its end.
fn fit_utf16(text: &str, limit: usize) -> String {
    fit_by(text, limit, char::len_utf16)
}

/// `text` cut to `limit`, each character counted as `size` says, saying so at its end.
fn fit_by(text: &str, limit: usize, size: fn(char) -> usize) -> String {
    let length = |t: &str| t.chars().map(size).sum::<usize>();
    if length(text) <= limit {
        return text.to_string();
    }
    let room = limit - length(CUT);
    let mut used = 0;
    let mut out: String = text
        .chars()
        .take_while(|c| {
            used += size(*c);
            used <= room
        })
        .collect();
    out.push_str(CUT);
    out
}

/// ` · project` after a title, when the message has a project.
fn from_suffix(m: &Message) -> String {
    m.project.map(|p| format!(" · {p}")).unwrap_or_default()
}

/// The tags on a line of their own after the text, when the message has any.
fn tags_suffix(m: &Message) -> String {
    if m.tags.is_empty() { String::new() } else { format!("\n{}", m.tags.join(" ")) }
}

/// A chat message's text: the severity's mark, the title between `strong` (the service's bold
/// markup, or nothing), the project, then the body and the tags.
fn chat_text(m: &Message, strong: &str) -> String {
    let from = from_suffix(m);
    let tags = tags_suffix(m);
    format!("{} {strong}{}{strong}{from}\n{}{tags}", severity_mark(m.severity), m.title, m.body)
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
    let from = from_suffix(m);
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

/// A message's body with its tags, or its title when it has no body (Pushover and Gotify
/// refuse an empty message).
fn details(m: &Message) -> String {
    let tags = tags_suffix(m);
    if m.body.trim().is_empty() { format!("{}{tags}", m.title) } else { format!("{}{tags}", m.body) }
}

/// A Teams message holding one Adaptive Card (version 1.4, which Teams renders): the title in
/// the severity's colour, the body, and the tags in small print.
fn teams_card(m: &Message) -> Value {
    let from = from_suffix(m);
    let color = match m.severity {
        "critical" => "Attention",
        "warning" => "Warning",
        _ => "Accent",
    };
    let mut blocks = vec![json!({
        "type": "TextBlock", "text": format!("{} {}{from}", severity_mark(m.severity), m.title),
        "weight": "Bolder", "size": "Large", "color": color, "wrap": true,
    })];
    if !m.body.trim().is_empty() {
        blocks.push(json!({ "type": "TextBlock", "text": m.body, "wrap": true }));
    }
    if !m.tags.is_empty() {
        blocks.push(
            json!({ "type": "TextBlock", "text": m.tags.join(" "), "isSubtle": true, "size": "Small", "wrap": true }),
        );
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": blocks,
                "msteams": { "width": "Full" },
            },
        }],
    })
}

/// Sets each of `fields` in the object `body`; an object in both is merged, one level deep.
fn merge(body: &mut Value, fields: &Map<String, Value>) {
    let Value::Object(obj) = body else { return };
    for (key, value) in fields {
        match (obj.get_mut(key), value) {
            (Some(Value::Object(inner)), Value::Object(more)) => {
                inner.extend(more.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            _ => {
                obj.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The HTTP requests that send `m` to `ch`: the service's body with the channel's own fields,
/// once per target (a Telegram chat, a Mattermost channel) or once. Not for e-mail channels.
///
/// A Matrix channel's targets are rooms (`{"room": "!id:server"}`, aliases already looked up):
/// each gets a `PUT` to the room's send endpoint, whose transaction id is `key` (the delivery's
/// id) and the room's place in the list, the same on every retry, so the homeserver stores a
/// retried message once.
pub fn requests(ch: &Channel, m: &Message, key: &str) -> Vec<Request> {
    let mut body = payload(ch.kind, ch.topic.as_deref(), m);
    merge(&mut body, &ch.fields);
    if ch.kind == Kind::Matrix {
        let enc = crate::url::encode_component;
        return ch
            .targets
            .iter()
            .enumerate()
            .map(|(i, target)| Request {
                method: Method::Put,
                url: format!(
                    "{}/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                    ch.endpoint,
                    enc(target["room"].as_str().unwrap_or_default()),
                    enc(&format!("{key}.{i}"))
                ),
                body: body.clone(),
            })
            .collect();
    }
    let one = |body: Value| Request { method: Method::Post, url: ch.endpoint.clone(), body };
    if ch.targets.is_empty() {
        return vec![one(body)];
    }
    ch.targets
        .iter()
        .map(|target| {
            let mut body = body.clone();
            if let Value::Object(t) = target {
                merge(&mut body, t);
            }
            one(body)
        })
        .collect()
}

/// The body the channel's service expects (`topic`: the ntfy topic), before the channel's own
/// fields ([`requests`] adds them). E-mail channels are sent through [`mail_text`]; their
/// payload is the generic JSON form.
pub fn payload(kind: Kind, topic: Option<&str>, m: &Message) -> Value {
    let from = from_suffix(m);
    match kind {
        Kind::Discord => json!({
            "content": fit(&chat_text(m, "**"), DISCORD_LIMIT),
            "allowed_mentions": { "parse": [] },
        }),
        Kind::Slack => json!({
            "text": fit(&chat_text(m, "*"), SLACK_LIMIT),
        }),
        Kind::Ntfy => json!({
            "topic": topic,
            "title": format!("{}{from}", m.title),
            "message": m.body,
            "priority": match m.severity { "critical" => 5, "warning" => 4, _ => 3 },
            "tags": m.tags,
        }),
        Kind::Telegram => json!({
            "text": fit_utf16(&chat_text(m, ""), TELEGRAM_LIMIT),
        }),
        Kind::Pushover => json!({
            "title": fit(&format!("{}{from}", m.title), PUSHOVER_TITLE_LIMIT),
            "message": fit(&details(m), PUSHOVER_MESSAGE_LIMIT),
            "priority": match m.severity { "critical" => 1, "warning" => 0, _ => -1 },
        }),
        Kind::Gotify => json!({
            "title": format!("{}{from}", m.title),
            "message": details(m),
            "priority": match m.severity { "critical" => 10, "warning" => 8, _ => 5 },
        }),
        Kind::Mattermost => json!({
            "text": fit(&chat_text(m, "**"), MATTERMOST_LIMIT),
        }),
        Kind::GoogleChat => json!({
            "text": fit(&chat_text(m, "*"), GOOGLE_CHAT_LIMIT),
        }),
        Kind::PagerDuty => {
            let mut event = json!({
                "summary": fit(&format!("{}{from}", m.title), PAGERDUTY_SUMMARY_LIMIT),
                "source": m.project.unwrap_or("agent-os"),
                "severity": match m.severity { "critical" => "critical", "warning" => "warning", _ => "info" },
                "custom_details": { "body": m.body, "project": m.project, "tags": m.tags, "notification": m.id },
            });
            if !m.at.is_empty() {
                event["timestamp"] = json!(m.at);
            }
            json!({
                "event_action": if m.resolves { "resolve" } else { "trigger" },
                "dedup_key": m.incident.unwrap_or(m.id),
                "payload": event,
                "client": "Agent OS",
            })
        }
        Kind::Teams => teams_card(m),
        Kind::Matrix => json!({
            "msgtype": "m.text",
            "body": fit(&chat_text(m, ""), MATRIX_LIMIT),
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
            incident: None,
            resolves: false,
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
            incident: None,
            resolves: false,
        };
        let content = payload(Kind::Discord, None, &m)["content"].as_str().unwrap().to_string();
        assert_eq!(content.chars().count(), DISCORD_LIMIT);
        assert!(content.ends_with("(cut: too long for this channel)"));
        assert!(content.starts_with("🟠 **Spike** · trading\n"));
        assert_eq!(payload(Kind::Json, None, &m)["severity"], "warning");
        let ntfy = payload(Kind::Ntfy, Some("alerts"), &m);
        assert_eq!((ntfy["topic"].as_str(), ntfy["priority"].as_i64()), (Some("alerts"), Some(4)));
    }

    fn note<'a>(body: &'a str, severity: &'a str) -> Message<'a> {
        Message {
            id: "n1",
            project: Some("trading"),
            title: "Spike",
            body,
            severity,
            tags: &[],
            at: "2025-01-02T03:04:05.000Z",
            incident: None,
            resolves: false,
        }
    }

    #[test]
    fn telegram_urls_name_a_bot_and_its_chats_and_send_once_per_chat() {
        let t = parse("tg", "tgram://bot123456789:AAE-x_yz/-1001234/%40ops_room:7/42?silent=yes").unwrap();
        assert_eq!(t.kind, Kind::Telegram);
        assert_eq!(t.endpoint, "https://api.telegram.org/bot123456789:AAE-x_yz/sendMessage");
        assert_eq!(t.display, "tgram://123456789:…/-1001234/@ops_room:7/42", "the token's secret is never shown");
        let rs = requests(&t, &note("ETH moved", "critical"), "d1");
        assert_eq!(rs.len(), 3, "one request per chat");
        assert_eq!(rs[0].body["chat_id"], -1001234);
        assert_eq!(
            (rs[1].body["chat_id"].as_str(), rs[1].body["message_thread_id"].as_i64()),
            (Some("@ops_room"), Some(7))
        );
        assert_eq!(rs[2].body["disable_notification"], true);
        assert_eq!(rs[2].body["link_preview_options"], json!({"is_disabled": true}));
        assert_eq!(rs[2].body["text"], "🔴 Spike · trading\nETH moved");
        let to = parse("tg", "tgram://1:s?to=5,%40ops_room&to=-7").unwrap();
        assert_eq!(to.targets, [json!({"chat_id": 5}), json!({"chat_id": "@ops_room"}), json!({"chat_id": -7})]);
        let topic = parse("tg", "tgram://1:s/5?topic=9&preview=yes&base=http://127.0.0.1:9").unwrap();
        assert_eq!(topic.endpoint, "http://127.0.0.1:9/bot1:s/sendMessage");
        let r = &requests(&topic, &note("x", "info"), "d1")[0];
        assert_eq!(
            (r.body["message_thread_id"].as_i64(), &r.body["link_preview_options"]),
            (Some(9), &json!({"is_disabled": false}))
        );
        for (bad, says) in [
            ("tgram://123456789:AAE", "at least one chat"),
            ("tgram://abc:def/1", "DIGITS:SECRET"),
            ("tgram://123/1", "DIGITS:SECRET"),
            ("tgram://1:s/not a chat", "neither a chat id"),
            ("tgram://1:s/1?format=html", "unknown or bad parameter \"format=html\"; read are to="),
            ("tgram://1:s/1?silent=maybe", "silent=yes or silent=no"),
            ("tgram://1:s/1:x", "thread id"),
        ] {
            let e = parse("c", bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn telegram_text_is_cut_at_4096_utf16_units() {
        let long = "😀".repeat(3000);
        let text = requests(&parse("tg", "tgram://1:s/1").unwrap(), &note(&long, "info"), "d1")[0].body["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.encode_utf16().count() <= TELEGRAM_LIMIT, "{}", text.encode_utf16().count());
        assert!(text.encode_utf16().count() >= TELEGRAM_LIMIT - 1, "as much as fits is kept");
        assert!(text.ends_with("(cut: too long for this channel)"));
    }

    #[test]
    fn pushover_urls_carry_the_keys_and_devices_and_the_priority_follows_the_severity() {
        let (user, app) = ("u".repeat(30), "a".repeat(30));
        let p = parse("po", &format!("pover://{user}@{app}/phone/desk?sound=siren")).unwrap();
        assert_eq!((p.kind, p.endpoint.as_str()), (Kind::Pushover, "https://api.pushover.net/1/messages.json"));
        assert_eq!(p.display, "pover://uuu…@aaa…/phone/desk");
        let long = "x".repeat(3000);
        let r = &requests(&p, &note(&long, "critical"), "d1")[0];
        assert_eq!((r.body["token"].as_str(), r.body["user"].as_str()), (Some(app.as_str()), Some(user.as_str())));
        assert_eq!((r.body["device"].as_str(), r.body["sound"].as_str()), (Some("phone,desk"), Some("siren")));
        assert_eq!((r.body["title"].as_str(), r.body["priority"].as_i64()), (Some("Spike · trading"), Some(1)));
        assert_eq!(r.body["message"].as_str().unwrap().chars().count(), PUSHOVER_MESSAGE_LIMIT);
        assert_eq!(requests(&p, &note("", "info"), "d1")[0].body["message"], "Spike", "no body: the title");
        let title = "t".repeat(300);
        let cut = &requests(&p, &Message { title: &title, ..note("", "info") }, "d1")[0].body["title"];
        assert_eq!(cut.as_str().map(|t| t.chars().count()), Some(PUSHOVER_TITLE_LIMIT));
        assert_eq!(requests(&p, &note("", "info"), "d1")[0].body["priority"], -1);
        for (bad, says) in [
            (format!("pover://{app}"), "USER_KEY@APP_TOKEN"),
            (format!("pover://short@{app}"), "30 letters and digits"),
            (format!("pover://{user}@{app}?priority=high"), "priority= is not read"),
            (format!("pover://{user}@{app}/{}", "d".repeat(26)), "up to 25"),
        ] {
            let e = parse("c", &bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn gotify_and_mattermost_urls_name_their_server_path_and_token() {
        let g = parse("g", "gotifys://push.example.com:8443/gotify/AbC.d-e_F").unwrap();
        assert_eq!((g.kind, g.endpoint.as_str()), (Kind::Gotify, "https://push.example.com:8443/gotify/message"));
        assert_eq!(g.headers, [("X-Gotify-Key", "AbC.d-e_F".to_string())]);
        assert_eq!(g.display, "gotifys://push.example.com:8443/gotify/AbC…");
        let r = &requests(&g, &note("", "warning"), "d1")[0];
        assert_eq!(r.body, json!({"title": "Spike · trading", "message": "Spike", "priority": 8}));
        assert_eq!(parse("g", "gotify://127.0.0.1:9/tok").unwrap().endpoint, "http://127.0.0.1:9/message");

        let m = parse("m", "mmosts://agent%20os@chat.example.com/mm/abcdef123?channel=ops&channel=%23alerts").unwrap();
        assert_eq!((m.kind, m.endpoint.as_str()), (Kind::Mattermost, "https://chat.example.com/mm/hooks/abcdef123"));
        assert_eq!(m.display, "mmosts://chat.example.com/mm/abc…");
        let rs = requests(&m, &note("body", "info"), "d1");
        assert_eq!(rs.len(), 2, "one post per channel");
        assert_eq!(
            (rs[1].body["channel"].as_str(), rs[1].body["username"].as_str()),
            (Some("alerts"), Some("agent os"))
        );
        assert_eq!(rs[0].body["text"], "🔵 **Spike** · trading\nbody");
        assert_eq!(requests(&parse("m", "mmost://h/t").unwrap(), &note("", "info"), "d1").len(), 1);
        for (bad, says) in [
            ("gotify://host", "HOST[:PORT][/PATH]/APP_TOKEN"),
            ("gotify://host/tok?priority=8", "priority= is not read"),
            ("gotify://host/tok?x=1", "unknown parameter \"x=1\": gotify(s):// reads none"),
            ("gotify://host/tok?base=http://127.0.0.1:9", "write the server itself"),
            ("gotify:///tok", "name the server"),
            ("mmost://host", "WEBHOOK_TOKEN"),
            ("mmost://host/t/?x=1", "unknown or bad parameter \"x=1\"; read are channel="),
            ("mmost://host:99999/t", "not a port number"),
        ] {
            let e = parse("c", bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn google_chat_and_pagerduty_urls_become_their_api_addresses() {
        let c = parse("c", "gchat://AAAAbcd/AIzaSy-key_1/tok-EN_x%3D").unwrap();
        assert_eq!(
            c.endpoint,
            "https://chat.googleapis.com/v1/spaces/AAAAbcd/messages?key=AIzaSy-key_1&token=tok-EN_x%3D"
        );
        assert_eq!(c.display, "gchat://AAAAbcd/AIz…/tok…");
        assert!(parse("c", "gchat://a/b/c/thread").unwrap_err().contains("no thread key"));

        let p = parse(
            "pd",
            "pagerduty://R0uting-key@api+key/db%20host/disk?region=eu&group=prod&click=https://ops.example.com",
        )
        .unwrap();
        assert_eq!((p.kind, p.endpoint.as_str()), (Kind::PagerDuty, "https://events.eu.pagerduty.com/v2/enqueue"));
        assert_eq!(p.display, "pagerduty://R0u…@api…/db%20host/disk?region=eu");
        let m = Message { incident: Some("inc-1"), ..note("details", "warning") };
        let r = &requests(&p, &m, "d1")[0];
        assert_eq!((r.body["event_action"].as_str(), r.body["dedup_key"].as_str()), (Some("trigger"), Some("inc-1")));
        assert_eq!(r.body["routing_key"], "R0uting-key");
        assert_eq!(r.body["links"], json!([{"href": "https://ops.example.com", "text": "Agent OS"}]));
        let e = &r.body["payload"];
        assert_eq!((e["summary"].as_str(), e["severity"].as_str()), (Some("Spike · trading"), Some("warning")));
        assert_eq!(
            (e["source"].as_str(), e["component"].as_str(), e["group"].as_str()),
            (Some("db host"), Some("disk"), Some("prod"))
        );
        let resolved = Message { resolves: true, ..m };
        assert_eq!(requests(&p, &resolved, "d1")[0].body["event_action"], "resolve");
        let plain = parse("pd", "pagerduty://key@api").unwrap();
        assert_eq!(plain.endpoint, "https://events.pagerduty.com/v2/enqueue");
        let r = &requests(&plain, &note("", "info"), "d1")[0];
        assert_eq!((r.body["dedup_key"].as_str(), r.body["payload"]["source"].as_str()), (Some("n1"), Some("trading")));
        let long = "t".repeat(2000);
        let m = Message { title: &long, ..note("", "critical") };
        let summary = requests(&plain, &m, "d1")[0].body["payload"]["summary"].as_str().unwrap().chars().count();
        assert_eq!(summary, PAGERDUTY_SUMMARY_LIMIT);
        for (bad, says) in [
            ("pagerduty://key", "INTEGRATION_KEY@API_KEY"),
            ("pagerduty://key@api?region=ap", "region=us (the default) or region=eu"),
            ("pagerduty://key@api/s/c/x", "too many parts"),
            ("pagerduty://key@api?%2Bx=1", "unknown or bad parameter"),
            ("pagerduty://key@api?click=nowhere", "an http(s):// address"),
        ] {
            let e = parse("c", bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn teams_workflow_urls_become_the_workflow_trigger_and_an_adaptive_card() {
        let t = parse("t", "workflows://prod-01.westus.logic.azure.com:443/abc123def/S1g-na_ture?image=yes&wrap=yes")
            .unwrap();
        assert_eq!(t.kind, Kind::Teams);
        assert_eq!(
            t.endpoint,
            "https://prod-01.westus.logic.azure.com:443/workflows/abc123def/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=S1g-na_ture"
        );
        assert_eq!(t.display, "workflows://prod-01.westus.logic.azure.com:443/abc…/S1g…");
        let pa = parse("t", "workflow://h.example.com/w1?sig=s1&pa=yes").unwrap();
        assert_eq!(
            pa.endpoint,
            "https://h.example.com/powerautomate/automations/direct/workflows/w1/triggers/manual/paths/invoke?api-version=2022-03-01-preview&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=s1"
        );
        let tags = vec!["disk".to_string()];
        let m = Message { tags: &tags, ..note("ETH moved", "critical") };
        let card = &requests(&t, &m, "d1")[0].body;
        assert_eq!(card["type"], "message");
        let a = &card["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(
            (a["content"]["type"].as_str(), a["content"]["version"].as_str()),
            (Some("AdaptiveCard"), Some("1.4"))
        );
        let blocks = a["content"]["body"].as_array().unwrap();
        assert_eq!(
            (blocks[0]["text"].as_str(), blocks[0]["color"].as_str()),
            (Some("🔴 Spike · trading"), Some("Attention"))
        );
        assert_eq!((blocks[1]["text"].as_str(), blocks[2]["text"].as_str()), (Some("ETH moved"), Some("disk")));
        for (bad, says) in [
            ("workflows://h.example.com/w1", "name the workflow's id and the sig="),
            ("workflows://h.example.com/w1/s1/x", "too many parts"),
            ("workflows://h.example.com/w!/s1", "letters, digits, - and _"),
            ("workflows://h.example.com/w1/s1?template=/x.json", "template= is not read"),
            ("workflows://h.example.com/w1/s1?wrap=no", "wrap=no is not read"),
            ("workflows://h.example.com/w1/s1?pa=maybe", "pa=yes or pa=no"),
        ] {
            let e = parse("c", bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn matrix_urls_name_a_token_a_homeserver_and_rooms_each_sent_a_put_with_a_stable_transaction() {
        let c = parse(
            "mx",
            "matrixs://syt_FAKE_token@matrix.example.com/!abc:example.com/%23ops/alerts:other.org?msgtype=notice",
        )
        .unwrap();
        assert_eq!((c.kind, c.endpoint.as_str()), (Kind::Matrix, "https://matrix.example.com"));
        assert_eq!(c.authorization.as_deref(), Some("Bearer syt_FAKE_token"));
        assert_eq!(
            c.display,
            "matrixs://syt…@matrix.example.com/!abc:example.com/#ops:matrix.example.com/#alerts:other.org"
        );
        let rs = requests(&c, &note("ETH moved", "warning"), "dlv-1");
        assert_eq!(rs.len(), 3);
        assert_eq!(rs[0].method, Method::Put);
        assert_eq!(
            rs[0].url,
            "https://matrix.example.com/_matrix/client/v3/rooms/%21abc%3Aexample.com/send/m.room.message/dlv-1.0"
        );
        assert!(rs[2].url.ends_with("/rooms/%23alerts%3Aother.org/send/m.room.message/dlv-1.2"), "{}", rs[2].url);
        assert_eq!(rs[0].body, json!({"msgtype": "m.notice", "body": "🟠 Spike · trading\nETH moved"}));
        let local = parse("mx", "matrix://tok@127.0.0.1:8008/!r?to=%21s:h.example").unwrap();
        assert_eq!(local.endpoint, "http://127.0.0.1:8008");
        assert_eq!(local.targets, [json!({"room": "!r:127.0.0.1"}), json!({"room": "!s:h.example"})]);
        for (bad, says) in [
            ("matrixs://matrix.example.com/!r", "access token and the homeserver"),
            ("matrixs://user:pass@matrix.example.com/!r", "USER:PASSWORD"),
            ("matrixs://tok@matrix.example.com", "at least one room"),
            ("matrixs://tok@matrix.example.com/@bob:example.com", "direct messages are not sent"),
            ("matrixs://tok@matrix.example.com/!r?mode=slack", "webhook modes"),
            ("matrixs://tok@matrix.example.com/!r?version=2", "only the v3 client API"),
            ("matrixs://tok@matrix.example.com/!r?msgtype=image", "msgtype=text (the default) or msgtype=notice"),
        ] {
            let e = parse("c", bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    proptest::proptest! {
        /// Any text after any scheme is parsed without a panic, and what parses builds its
        /// requests without one.
        #[test]
        fn any_channel_url_parses_or_is_refused_without_a_panic(
            scheme in proptest::sample::select(vec![
                "discord", "slack", "json", "ntfys", "mailto", "tgram", "pover", "gotify", "gotifys", "mmost",
                "mmosts", "gchat", "pagerduty", "workflows", "matrix", "matrixs", "nope",
            ]),
            rest in "[a-zA-Z0-9:@/?&=#!%._~+é😀\\[\\]-]{0,60}",
        ) {
            if let Ok(c) = parse("c", &format!("{scheme}://{rest}")) {
                let _ = requests(&c, &note("body", "critical"), "d1");
            }
        }
    }
}
