//! Agent OS's own settings, `HOME/config.yaml` (docs/config.md). Every field is optional;
//! command-line flags override what the file says.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::alerting::{
    Alerting, ChannelRules, Flapping, IncidentSource, Maintenance, QuietHours, Route, Severity, Throttle, Window,
    parse_clock,
};
use crate::budget::OnExceed;
use crate::duration::parse_duration;
use crate::manifest::ManifestError;
use crate::resource::{Limits, Rate, parse_rate};
use crate::retention::{Keep, Retention};
use crate::text::text_enum;
use crate::yaml::{self, SourceError};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    bind: Option<Spanned<String>>,
    #[serde(default)]
    public_url: Option<Spanned<String>>,
    #[serde(default)]
    database_url: Option<String>,
    #[serde(default)]
    durability: Option<Spanned<String>>,
    #[serde(default)]
    runs: Option<RawRuns>,
    #[serde(default)]
    api: Option<RawApi>,
    #[serde(default)]
    resources: Option<std::collections::BTreeMap<String, Spanned<RawResource>>>,
    #[serde(default)]
    budgets: Option<Vec<Spanned<RawBudget>>>,
    #[serde(default)]
    notifications: Option<RawNotifications>,
    #[serde(default)]
    maintenance: Option<Vec<Spanned<RawMaintenance>>>,
    #[serde(default)]
    keys: Option<RawKeys>,
    #[serde(default)]
    workers: Option<RawWorkers>,
    #[serde(default)]
    prices: Option<std::collections::BTreeMap<String, Spanned<RawPrice>>>,
    /// How long each kind of history is kept, by key (`runs: 90d`, `costs: forever`).
    #[serde(default)]
    retention: Option<std::collections::BTreeMap<String, Spanned<String>>>,
}

/// A model's price in config.yaml: US dollars per million tokens.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: Spanned<Amount>,
    output: Spanned<Amount>,
    #[serde(default)]
    cached_input: Option<Spanned<Amount>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWorkers {
    #[serde(default)]
    poll_wait: Option<Spanned<String>>,
    #[serde(default)]
    lost_after: Option<Spanned<String>>,
    #[serde(default)]
    grace: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    #[serde(default)]
    shared: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotifications {
    #[serde(default)]
    channels: std::collections::BTreeMap<String, Spanned<RawChannel>>,
    #[serde(default)]
    allow_private_targets: Option<bool>,
    #[serde(default)]
    routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    default: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    flapping: Option<Spanned<RawFlapping>>,
}

/// A channel: its URL, or a mapping with the URL and the channel's own rules.
enum RawChannel {
    Url(String),
    Full(RawChannelFull),
}

impl<'de> Deserialize<'de> for RawChannel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawChannel;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a channel URL, or a mapping with url, quiet_hours and throttle")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawChannel, E> {
                Ok(RawChannel::Url(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawChannel, A::Error> {
                RawChannelFull::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(RawChannel::Full)
            }
        }
        d.deserialize_any(Visit)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannelFull {
    url: String,
    #[serde(default)]
    quiet_hours: Option<RawQuiet>,
    #[serde(default)]
    throttle: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuiet {
    from: String,
    to: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    except: Option<String>,
}

/// One name or a list of names.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Names {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Names {
    fn list(self) -> Vec<String> {
        match self {
            Names::None => Vec::new(),
            Names::One(n) => vec![n],
            Names::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(rename = "match", default)]
    when: RawMatch,
    channels: Vec<String>,
    #[serde(rename = "continue", default)]
    continue_matching: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    project: Names,
    #[serde(default)]
    source: Names,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    tags: Names,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlapping {
    changes: u32,
    window: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    project: String,
    #[serde(default)]
    service: Option<String>,
    period: Spanned<String>,
    amount: Spanned<Amount>,
    #[serde(default)]
    currency: Option<Spanned<String>>,
    #[serde(default)]
    thresholds: Option<Spanned<Vec<i64>>>,
    #[serde(default)]
    on_exceed: Option<Spanned<String>>,
}

/// An amount as YAML gives it: `"50.00"`, `50` or `50.5`, kept as decimal text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Amount {
    Text(String),
    Whole(u64),
    Float(f64),
}

impl Amount {
    fn text(&self) -> String {
        match self {
            Amount::Text(t) => t.clone(),
            Amount::Whole(n) => n.to_string(),
            Amount::Float(f) => f.to_string(),
        }
    }
}

/// A budget from the config.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetDecl {
    pub project: String,
    /// `""` for all of the project's services.
    pub service: String,
    pub period: crate::budget::Period,
    pub amount_nanos: i64,
    pub currency: String,
    pub thresholds: Vec<i64>,
    pub on_exceed: OnExceed,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawResource {
    #[serde(default)]
    concurrency: Option<Spanned<u32>>,
    #[serde(default)]
    rate: Option<Spanned<String>>,
    #[serde(default)]
    burst: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRuns {
    #[serde(default)]
    max_concurrent: Option<Spanned<u32>>,
    #[serde(default)]
    default_timeout: Option<Spanned<String>>,
    #[serde(default)]
    kill_grace: Option<Spanned<String>>,
    #[serde(default)]
    max_retry_delay: Option<Spanned<String>>,
    #[serde(default)]
    log_max_bytes: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    max_body_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    trusted_proxies: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    request_timeout: Option<Spanned<String>>,
}

text_enum! {
    /// How SQLite commits: `normal` survives a crash of Agent OS, `full` also a power loss.
    pub enum Durability("durability") {
        Normal = "normal",
        Full = "full",
    }
}

/// How the server treats the workers (`agent-os worker`) that serve projects (`workers:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workers {
    /// How long a worker's poll is held open when there is no work for it.
    pub poll_wait: Duration,
    /// A worker silent this long has lost the attempts it was running; also how long a
    /// worker counts as connected after its last contact.
    pub lost_after: Duration,
    /// How long a worker project may go without a connected worker before it is a health
    /// problem (an incident).
    pub grace: Duration,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            poll_wait: Duration::from_secs(25),
            lost_after: Duration::from_secs(60),
            grace: Duration::from_secs(600),
        }
    }
}

/// Validated settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The listen address the file names; `None` when it names none (then `PORT` from a hosting
    /// platform, else [`DEFAULT_BIND`]: docs/config.md#precedence).
    pub bind: Option<String>,
    pub public_url: Option<String>,
    pub database_url: Option<String>,
    /// SQLite only.
    pub durability: Durability,
    pub max_concurrent_runs: u32,
    pub default_timeout: Duration,
    pub kill_grace: Duration,
    pub max_retry_delay: Duration,
    pub log_max_bytes: u64,
    pub max_body_bytes: u64,
    /// Proxies whose `X-Forwarded-For` names the client (empty: the TCP peer is the client).
    pub trusted_proxies: Vec<crate::net::IpRange>,
    /// How long an API call or page may take before the server stops it (`api.request_timeout`).
    pub request_timeout: Duration,
    /// Named resources and their limits.
    pub resources: std::collections::BTreeMap<String, Limits>,
    pub budgets: Vec<BudgetDecl>,
    /// Notification channels by name: their URLs as written (`${VAR}` not yet resolved).
    pub channels: std::collections::BTreeMap<String, String>,
    /// Where each channel is written in the file (line, column), for the errors only the
    /// server can find (a `${VAR}` it lacks, an address it refuses).
    pub channel_places: std::collections::BTreeMap<String, (u64, u64)>,
    pub allow_private_targets: bool,
    /// Routes, channel rules, flapping and maintenance windows.
    pub alerting: Alerting,
    /// Shared env files `agent-os keys audit` compares the projects' keys with (`keys.shared`):
    /// absolute paths, or `~/…` for the user's home, as written.
    pub shared_env_files: Vec<String>,
    /// How workers are waited for and judged (`workers:`).
    pub workers: Workers,
    /// Token prices from `prices:`, over the built-in ones.
    pub prices: crate::price::PriceTable,
    /// How long history is kept (`retention:`).
    pub retention: Retention,
}

pub const DEFAULT_BIND: &str = "127.0.0.1:7700";

/// How long a request may take by default (`api.request_timeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: None,
            public_url: None,
            database_url: None,
            durability: Durability::Normal,
            max_concurrent_runs: 16,
            default_timeout: Duration::from_secs(3600),
            kill_grace: Duration::from_secs(10),
            max_retry_delay: Duration::from_secs(600),
            log_max_bytes: 1024 * 1024,
            max_body_bytes: 1024 * 1024,
            trusted_proxies: Vec::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            resources: Default::default(),
            budgets: Vec::new(),
            channels: Default::default(),
            channel_places: Default::default(),
            allow_private_targets: false,
            alerting: Alerting::default(),
            shared_env_files: Vec::new(),
            workers: Workers::default(),
            prices: crate::price::PriceTable::built_in(),
            retention: Retention::default(),
        }
    }
}

impl Config {
    /// Parses `config.yaml`; an empty file gives the defaults.
    pub fn parse(file: &str, text: &str) -> Result<Config, ManifestError> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            yaml::parse(file, text).map_err(|e| ManifestError(vec![e]))?
        };
        let mut errors = Vec::new();
        let mut at = |loc: serde_saphyr::Location, path: &str, message: String, hint: &str| {
            errors.push(SourceError {
                file: file.into(),
                line: loc.line().max(1),
                column: loc.column().max(1),
                path: path.into(),
                message,
                hint: Some(hint.into()),
            });
        };
        let mut c = Config::default();
        if let Some(b) = raw.bind {
            if b.value.parse::<std::net::SocketAddr>().is_err() {
                at(
                    b.referenced,
                    "bind",
                    format!("{:?} is not an address:port", b.value),
                    "e.g. bind: 127.0.0.1:7700 (use 0.0.0.0:7700 to listen on every interface)",
                );
            }
            c.bind = Some(b.value);
        }
        if let Some(u) = raw.public_url {
            if !(u.value.starts_with("http://") || u.value.starts_with("https://")) {
                at(
                    u.referenced,
                    "public_url",
                    format!("{:?} is not an http(s) URL", u.value),
                    "the URL tasks use to reach Agent OS, e.g. http://127.0.0.1:7700",
                );
            }
            c.public_url = Some(u.value.trim_end_matches('/').to_string());
        }
        c.database_url = raw.database_url;
        if let Some(d) = raw.durability {
            match d.value.parse() {
                Ok(durability) => c.durability = durability,
                Err(_) => at(
                    d.referenced,
                    "durability",
                    format!("unknown durability {:?}", d.value),
                    "normal (survives a crash of Agent OS) or full (also survives power loss, slower)",
                ),
            }
        }
        let mut duration = |v: &Option<Spanned<String>>, path: &str, target: &mut Duration| {
            if let Some(v) = v {
                match parse_duration(&v.value) {
                    Ok(d) if !d.is_zero() => *target = d,
                    Ok(_) => at(v.referenced, path, "must be more than zero".into(), "e.g. 30s, 5m or 1h"),
                    Err(e) => at(v.referenced, path, e, "e.g. 30s, 5m or 1h"),
                }
            }
        };
        let runs = raw.runs.unwrap_or_default();
        duration(&runs.default_timeout, "runs.default_timeout", &mut c.default_timeout);
        duration(&runs.kill_grace, "runs.kill_grace", &mut c.kill_grace);
        duration(&runs.max_retry_delay, "runs.max_retry_delay", &mut c.max_retry_delay);
        let api = raw.api.unwrap_or_default();
        duration(&api.request_timeout, "api.request_timeout", &mut c.request_timeout);
        let workers = raw.workers.unwrap_or_default();
        duration(&workers.poll_wait, "workers.poll_wait", &mut c.workers.poll_wait);
        duration(&workers.lost_after, "workers.lost_after", &mut c.workers.lost_after);
        duration(&workers.grace, "workers.grace", &mut c.workers.grace);
        if let Some(p) = &workers.poll_wait
            && c.workers.poll_wait > Duration::from_secs(300)
        {
            at(p.referenced, "workers.poll_wait", "must be at most 5m".into(), "e.g. poll_wait: 25s");
        }
        // Only a setting given can break this (the defaults keep it).
        if c.workers.lost_after <= c.workers.poll_wait
            && let Some(place) = workers.lost_after.as_ref().or(workers.poll_wait.as_ref()).map(|v| v.referenced)
        {
            at(
                place,
                if workers.lost_after.is_some() { "workers.lost_after" } else { "workers.poll_wait" },
                format!(
                    "lost_after ({}) must be longer than poll_wait ({}): a worker waiting in a poll is still there",
                    crate::format_duration(c.workers.lost_after),
                    crate::format_duration(c.workers.poll_wait)
                ),
                "e.g. workers: { poll_wait: 25s, lost_after: 60s }",
            );
        }
        if let Some(m) = runs.max_concurrent {
            if m.value == 0 || m.value > 1024 {
                errors.push(SourceError {
                    file: file.into(),
                    line: m.referenced.line(),
                    column: m.referenced.column(),
                    path: "runs.max_concurrent".into(),
                    message: format!("{} is out of range", m.value),
                    hint: Some("between 1 and 1024".into()),
                });
            }
            c.max_concurrent_runs = m.value;
        }
        if let Some(l) = runs.log_max_bytes {
            if l.value < 1024 {
                errors.push(SourceError {
                    file: file.into(),
                    line: l.referenced.line(),
                    column: l.referenced.column(),
                    path: "runs.log_max_bytes".into(),
                    message: "must be at least 1024".into(),
                    hint: None,
                });
            }
            c.log_max_bytes = l.value;
        }
        for p in api.trusted_proxies.unwrap_or_default() {
            match crate::net::IpRange::parse(&p.value) {
                Ok(r) => c.trusted_proxies.push(r),
                Err(message) => errors.push(SourceError {
                    file: file.into(),
                    line: p.referenced.line(),
                    column: p.referenced.column(),
                    path: "api.trusted_proxies".into(),
                    message,
                    hint: Some("list only the proxies in front of Agent OS, e.g. [127.0.0.1, 10.0.0.0/8]".into()),
                }),
            }
        }
        if let Some(b) = api.max_body_bytes {
            if b.value < 1024 {
                errors.push(SourceError {
                    file: file.into(),
                    line: b.referenced.line(),
                    column: b.referenced.column(),
                    path: "api.max_body_bytes".into(),
                    message: "must be at least 1024".into(),
                    hint: None,
                });
            }
            c.max_body_bytes = b.value;
        }
        for (name, r) in raw.resources.unwrap_or_default() {
            let path = format!("resources.{name}");
            let mut err = |loc: serde_saphyr::Location, path: String, message: String, hint: &str| {
                errors.push(SourceError {
                    file: file.into(),
                    line: loc.line().max(1),
                    column: loc.column().max(1),
                    path,
                    message,
                    hint: Some(hint.into()),
                })
            };
            if let Err(e) = crate::name::check_task_name(&name) {
                err(r.referenced, path.clone(), e.replace("task name", "resource name"), "e.g. openai or gpu");
            }
            let v = r.value;
            let concurrency = v.concurrency.map(|c| {
                if c.value == 0 || c.value > 10_000 {
                    err(
                        c.referenced,
                        format!("{path}.concurrency"),
                        format!("{} is out of range", c.value),
                        "1 to 10000",
                    );
                }
                c.value
            });
            let burst = v.burst.as_ref().map(|b| {
                if b.value == 0 || b.value > 100_000 {
                    err(b.referenced, format!("{path}.burst"), format!("{} is out of range", b.value), "1 to 100000");
                }
                b.value
            });
            let rate = match &v.rate {
                Some(t) => match parse_rate(&t.value) {
                    Ok((count, per)) => Some(Rate { count, per, burst: burst.unwrap_or(1) }),
                    Err(e) => {
                        err(t.referenced, format!("{path}.rate"), e, "e.g. rate: 60/min");
                        None
                    }
                },
                None => {
                    if let Some(b) = &v.burst {
                        err(b.referenced, format!("{path}.burst"), "burst needs a rate".into(), "add rate: 60/min");
                    }
                    None
                }
            };
            if concurrency.is_none() && v.rate.is_none() {
                err(
                    r.referenced,
                    path.clone(),
                    "a resource needs a concurrency, a rate or both".into(),
                    "e.g. openai: { concurrency: 1, rate: 60/min }",
                );
            }
            c.resources.insert(name, Limits { concurrency, rate });
        }
        let mut budget_places = Vec::new();
        for (i, b) in raw.budgets.unwrap_or_default().into_iter().enumerate() {
            budget_places.push(b.referenced);
            let path = format!("budgets[{i}]");
            let mut err = |loc: serde_saphyr::Location, field: &str, message: String, hint: &str| {
                errors.push(SourceError {
                    file: file.into(),
                    line: loc.line().max(1),
                    column: loc.column().max(1),
                    path: format!("{path}.{field}"),
                    message,
                    hint: Some(hint.into()),
                })
            };
            let v = b.value;
            let period = crate::budget::Period::parse(&v.period.value).unwrap_or_else(|e| {
                err(v.period.referenced, "period", e, "period: monthly");
                crate::budget::Period::Monthly
            });
            let amount_nanos = crate::cost::parse_amount(&v.amount.value.text()).unwrap_or_else(|e| {
                err(v.amount.referenced, "amount", e, "e.g. amount: \"50.00\"");
                0
            });
            let currency = match &v.currency {
                Some(c) => {
                    if let Err(e) = crate::cost::check_currency(&c.value) {
                        err(c.referenced, "currency", e, "an ISO 4217 code such as USD or EUR");
                    }
                    c.value.clone()
                }
                None => "USD".into(),
            };
            let thresholds = match &v.thresholds {
                Some(t) => crate::budget::check_thresholds(&t.value).unwrap_or_else(|e| {
                    err(t.referenced, "thresholds", e, "e.g. thresholds: [50, 80, 100]");
                    crate::budget::DEFAULT_THRESHOLDS.to_vec()
                }),
                None => crate::budget::DEFAULT_THRESHOLDS.to_vec(),
            };
            let on_exceed = match &v.on_exceed {
                Some(o) => o.value.parse().unwrap_or_else(|_| {
                    err(o.referenced, "on_exceed", format!("unknown action {:?}", o.value), "alert or pause");
                    OnExceed::Alert
                }),
                None => OnExceed::Alert,
            };
            if let Err(e) = crate::name::check_project_name(&v.project) {
                err(b.referenced, "project", e, "the name of a registered project");
            }
            c.budgets.push(BudgetDecl {
                project: v.project,
                service: v.service.unwrap_or_default(),
                period,
                amount_nanos,
                currency,
                thresholds,
                on_exceed,
            });
        }
        for (model, p) in raw.prices.unwrap_or_default() {
            let path = format!("prices.{model}");
            let mut err = |loc: serde_saphyr::Location, field: &str, message: String| {
                errors.push(SourceError {
                    file: file.into(),
                    line: loc.line().max(1),
                    column: loc.column().max(1),
                    path: if field.is_empty() { path.clone() } else { format!("{path}.{field}") },
                    message,
                    hint: Some(format!(
                        "US dollars per million tokens, e.g. {model}: {{ input: \"0.15\", output: \"0.60\", cached_input: \"0.075\" }}"
                    )),
                })
            };
            if model.trim().is_empty() || model.len() > 128 {
                err(p.referenced, "", "a model name is 1 to 128 characters".into());
            }
            let v = p.value;
            let mut nanos = |field: &str, a: &Spanned<Amount>| {
                crate::cost::parse_amount(&a.value.text()).unwrap_or_else(|e| {
                    err(a.referenced, field, e.replacen("amount", "price", 1));
                    0
                })
            };
            let input = nanos("input", &v.input);
            let output = nanos("output", &v.output);
            let cached_input = v.cached_input.as_ref().map_or(input, |c| nanos("cached_input", c));
            c.prices.set(crate::price::Price {
                model: model.trim().to_string(),
                input,
                cached_input,
                output,
                source: crate::price::PriceSource::Config,
            });
        }
        for (key, v) in raw.retention.unwrap_or_default() {
            let (message, hint) = match c.retention.key_mut(&key) {
                Some(keep) => match Keep::parse(&v.value) {
                    Ok(k) => {
                        *keep = k;
                        continue;
                    }
                    Err(e) => (e, "a duration such as 90d or 720h, or forever".to_string()),
                },
                None => (
                    format!("unknown retention key {key:?}"),
                    format!("one of {}", crate::text::one_of(&Retention::KEYS)),
                ),
            };
            errors.push(SourceError {
                file: file.into(),
                line: v.referenced.line().max(1),
                column: v.referenced.column().max(1),
                path: format!("retention.{key}"),
                message,
                hint: Some(hint),
            });
        }
        let notifications = raw.notifications.unwrap_or_default();
        c.allow_private_targets = notifications.allow_private_targets.unwrap_or(false);
        for (name, entry) in notifications.channels {
            let path = format!("notifications.channels.{name}");
            let (url, rules) = match entry.value {
                RawChannel::Url(u) => (u, ChannelRules::default()),
                RawChannel::Full(f) => {
                    let mut rules = ChannelRules::default();
                    if let Some(q) = f.quiet_hours {
                        let timezone = q.timezone.unwrap_or_else(|| "UTC".into());
                        let parsed = parse_clock(&q.from)
                            .and_then(|from| parse_clock(&q.to).map(|to| (from, to)))
                            .and_then(|ft| crate::cron::Zone::parse(&timezone).map(|tz| (ft, tz)))
                            .and_then(|ft| q.except.as_deref().map(Severity::parse).transpose().map(|e| (ft, e)));
                        match parsed {
                            Ok((((from, to), timezone), except)) => {
                                rules.quiet_hours = Some(QuietHours { from, to, timezone, except })
                            }
                            Err(e) => push_err(
                                &mut errors,
                                file,
                                entry.referenced,
                                format!("{path}.quiet_hours"),
                                e,
                                "e.g. quiet_hours: { from: \"22:00\", to: \"07:00\", timezone: Europe/Berlin, except: critical }",
                            ),
                        }
                    }
                    if let Some(t) = f.throttle {
                        match parse_rate(&t) {
                            Ok((count, per)) => rules.throttle = Some(Throttle { count, per }),
                            Err(e) => push_err(
                                &mut errors,
                                file,
                                entry.referenced,
                                format!("{path}.throttle"),
                                e,
                                "e.g. throttle: 10/h",
                            ),
                        }
                    }
                    (f.url, rules)
                }
            };
            // Checked with placeholder values: the real ones are read from the environment
            // when the server starts, and never written anywhere.
            let probe = check_channel_url(&name, &url);
            let named = crate::name::check_task_name(&name).map_err(|e| e.replace("task name", "channel name"));
            if let Err(e) = named.and(probe) {
                push_err(
                    &mut errors,
                    file,
                    entry.referenced,
                    path,
                    e,
                    "see docs/alerting.md#channels for the URL of each kind",
                );
            }
            c.alerting.channels.insert(name.clone(), rules);
            c.channel_places.insert(name.clone(), (entry.referenced.line().max(1), entry.referenced.column().max(1)));
            c.channels.insert(name, url);
        }
        let known: Vec<String> = c.channels.keys().cloned().collect();
        for (i, r) in notifications.routes.into_iter().enumerate() {
            let path = format!("notifications.routes[{i}]");
            let v = r.value;
            check_channels(&mut errors, file, &known, r.referenced, &format!("{path}.channels"), &v.channels);
            let severity = match v.when.severity.as_deref().map(Severity::parse).transpose() {
                Ok(s) => s,
                Err(e) => {
                    push_err(&mut errors, file, r.referenced, format!("{path}.match.severity"), e, "");
                    None
                }
            };
            let mut sources = Vec::new();
            for s in v.when.source.list() {
                match s.parse::<IncidentSource>() {
                    Ok(source) => sources.push(source),
                    Err(_) => push_err(
                        &mut errors,
                        file,
                        r.referenced,
                        format!("{path}.match.source"),
                        format!("unknown source {s:?}"),
                        &format!("one of {}", IncidentSource::SPELLINGS.join(", ")),
                    ),
                }
            }
            c.alerting.routing.routes.push(Route {
                projects: v.when.project.list(),
                sources,
                severity,
                tags: v.when.tags.list(),
                channels: v.channels,
                continue_matching: v.continue_matching,
            });
        }
        if let Some(d) = notifications.default {
            check_channels(&mut errors, file, &known, d.referenced, "notifications.default", &d.value);
            c.alerting.routing.default = Some(d.value);
        }
        if let Some(f) = notifications.flapping {
            match parse_duration(&f.value.window) {
                Ok(window) if f.value.changes >= 2 => {
                    c.alerting.flapping = Flapping { changes: f.value.changes, window };
                }
                Ok(_) => push_err(
                    &mut errors,
                    file,
                    f.referenced,
                    "notifications.flapping.changes".into(),
                    "flapping needs at least 2 changes".into(),
                    "e.g. flapping: { changes: 4, window: 1h }",
                ),
                Err(e) => push_err(
                    &mut errors,
                    file,
                    f.referenced,
                    "notifications.flapping.window".into(),
                    e,
                    "e.g. window: 1h",
                ),
            }
        }
        for (i, m) in raw.maintenance.unwrap_or_default().into_iter().enumerate() {
            let path = format!("maintenance[{i}]");
            match maintenance_window(m.value) {
                Ok(w) => c.alerting.maintenance.push(w),
                Err(e) => {
                    push_err(&mut errors, file, m.referenced, path, e, "see docs/alerting.md#maintenance-windows")
                }
            }
        }
        let mut scopes = std::collections::HashSet::new();
        for (i, b) in c.budgets.iter().enumerate() {
            if !scopes.insert((b.project.clone(), b.service.clone(), b.period)) {
                let place = budget_places.get(i);
                errors.push(SourceError {
                    file: file.into(),
                    line: place.map_or(1, |p| p.line().max(1)),
                    column: place.map_or(1, |p| p.column().max(1)),
                    path: format!("budgets[{i}]"),
                    message: format!(
                        "two {} budgets for project {:?}{}",
                        b.period.as_str(),
                        b.project,
                        if b.service.is_empty() { String::new() } else { format!(", service {:?}", b.service) }
                    ),
                    hint: Some("keep one".into()),
                });
            }
        }
        for (i, f) in raw.keys.unwrap_or_default().shared.into_iter().enumerate() {
            if !(f.value.starts_with('/') || f.value.starts_with("~/")) {
                errors.push(SourceError {
                    file: file.into(),
                    line: f.referenced.line().max(1),
                    column: f.referenced.column().max(1),
                    path: format!("keys.shared[{i}]"),
                    message: format!("{:?} is not an absolute path", f.value),
                    hint: Some(
                        "write the shared env file's full path, or ~/… from your home, e.g. ~/agent_os/.env".into(),
                    ),
                });
            }
            c.shared_env_files.push(f.value);
        }
        if errors.is_empty() { Ok(c) } else { Err(ManifestError(errors)) }
    }
}

fn push_err(
    errors: &mut Vec<SourceError>,
    file: &str,
    loc: serde_saphyr::Location,
    path: String,
    message: String,
    hint: &str,
) {
    errors.push(SourceError {
        file: file.into(),
        line: loc.line().max(1),
        column: loc.column().max(1),
        path,
        message,
        hint: (!hint.is_empty()).then(|| hint.to_string()),
    })
}

/// Checks a channel URL as written, before its `${VAR}`s are known: it must parse with some
/// plausible value for them (digits for a Discord id, a `whsec_` secret for `secret=`).
fn check_channel_url(name: &str, url: &str) -> Result<(), String> {
    let mut first_error = None;
    for placeholder in ["0", "whsec_cGxhY2Vob2xkZXIta2V5"] {
        match crate::channel::expand(url, &|_| Some(placeholder.into())).and_then(|u| crate::channel::parse(name, &u)) {
            Ok(_) => return Ok(()),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        if !url.contains("${") {
            break;
        }
    }
    Err(first_error.unwrap_or_default())
}

/// Reports each name in `names` that is not a declared channel.
fn check_channels(
    errors: &mut Vec<SourceError>,
    file: &str,
    known: &[String],
    loc: serde_saphyr::Location,
    path: &str,
    names: &[String],
) {
    for n in names {
        if !known.contains(n) {
            let refs: Vec<&str> = known.iter().map(String::as_str).collect();
            let hint = match crate::manifest::suggest(n, &refs) {
                Some(s) => format!("did you mean `{s}`?"),
                None if known.is_empty() => "declare it under notifications.channels".to_string(),
                None => format!("declared channels: {}", known.join(", ")),
            };
            push_err(errors, file, loc, path.to_string(), format!("unknown channel {n:?}"), &hint);
        }
    }
}

/// A maintenance window from config.yaml: `cron` + `duration` (+ `timezone`), or `start` + `end`.
fn maintenance_window(m: RawMaintenance) -> Result<Maintenance, String> {
    if let Some(p) = &m.project {
        crate::name::check_project_name(p)?;
    }
    let window = match (m.cron, m.duration, m.start, m.end) {
        (Some(cron), Some(duration), None, None) => {
            let cron = crate::cron::Cron::parse(&cron).map_err(|e| format!("cron: {e}"))?;
            let timezone = crate::cron::Zone::parse(m.timezone.as_deref().unwrap_or("UTC"))?;
            let duration = parse_duration(&duration).map_err(|e| format!("duration: {e}"))?;
            Window::Recurring { cron, timezone, duration }
        }
        (None, None, Some(start), Some(end)) => {
            let at = |t: &str| {
                t.parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|_| format!("{t:?} is not a UTC time; write e.g. 2026-12-01T02:00:00Z"))
            };
            let (start, end) = (at(&start)?, at(&end)?);
            if end <= start {
                return Err("end is not after start".into());
            }
            Window::Fixed { start, end }
        }
        _ => {
            return Err(
                "a window is either cron + duration (e.g. cron: \"0 3 * * *\", duration: 1h) or start + end".into()
            );
        }
    };
    Ok(Maintenance { project: m.project, window, reason: m.reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default() {
        assert_eq!(Config::parse("c.yaml", "").unwrap(), Config::default());
        assert_eq!(Config::parse("c.yaml", "# nothing\n").unwrap(), Config::default());
    }

    #[test]
    fn reads_every_field() {
        let c = Config::parse("c.yaml", "bind: 0.0.0.0:8000\npublic_url: https://aos.example.com/\ndurability: full\nruns:\n  max_concurrent: 4\n  default_timeout: 2h\n  kill_grace: 3s\n  log_max_bytes: 4096\napi:\n  max_body_bytes: 2048\n").unwrap();
        assert_eq!(c.bind.as_deref(), Some("0.0.0.0:8000"));
        assert_eq!(Config::parse("c.yaml", "").unwrap().bind, None, "an empty file names no address");
        assert_eq!(c.public_url.as_deref(), Some("https://aos.example.com"));
        assert_eq!(c.max_concurrent_runs, 4);
        assert_eq!(c.default_timeout, Duration::from_secs(7200));
        assert_eq!(c.kill_grace, Duration::from_secs(3));
        assert_eq!(c.log_max_bytes, 4096);
        assert_eq!(c.max_body_bytes, 2048);
    }

    #[test]
    fn shared_env_files_to_audit_against_are_absolute_or_from_home() {
        let c =
            Config::parse("c.yaml", "keys:\n  shared:\n    - ~/agent_os/.env\n    - '/srv/old shared/.env'\n").unwrap();
        assert_eq!(c.shared_env_files, vec!["~/agent_os/.env".to_string(), "/srv/old shared/.env".to_string()]);
        let e = Config::parse("c.yaml", "keys:\n  shared: [agent_os/.env]\n").unwrap_err().to_string();
        assert!(e.contains("keys.shared[0]") && e.contains("not an absolute path"), "{e}");
    }

    #[test]
    fn reads_the_workers_settings_and_names_bad_ones() {
        let d = Config::default().workers;
        assert_eq!(
            (d.poll_wait, d.lost_after, d.grace),
            (Duration::from_secs(25), Duration::from_secs(60), Duration::from_secs(600))
        );
        let c = Config::parse("c.yaml", "workers:\n  poll_wait: 5s\n  lost_after: 20s\n  grace: 2m\n").unwrap();
        assert_eq!(
            c.workers,
            Workers {
                poll_wait: Duration::from_secs(5),
                lost_after: Duration::from_secs(20),
                grace: Duration::from_secs(120)
            }
        );
        let e = Config::parse("c.yaml", "workers:\n  lost_after: 10s\n").unwrap_err().to_string();
        assert!(
            e.contains("c.yaml:2:15: workers.lost_after: lost_after (10s) must be longer than poll_wait (25s)"),
            "{e}"
        );
        let e = Config::parse("c.yaml", "workers:\n  poll_wait: 10m\n  lost_after: 1h\n").unwrap_err().to_string();
        assert!(e.contains("workers.poll_wait: must be at most 5m"), "{e}");
        let e = Config::parse("c.yaml", "workers:\n  grace: soon\n").unwrap_err().to_string();
        assert!(e.contains("workers.grace"), "{e}");
        let e = Config::parse("c.yaml", "workers:\n  wait: 1s\n").unwrap_err().to_string();
        assert!(e.contains("wait"), "{e}");
    }

    #[test]
    fn reads_the_request_timeout_and_refuses_zero() {
        assert_eq!(Config::default().request_timeout, Duration::from_secs(30));
        let c = Config::parse("c.yaml", "api:\n  request_timeout: 2m\n").unwrap();
        assert_eq!(c.request_timeout, Duration::from_secs(120));
        let e = Config::parse("c.yaml", "api:\n  request_timeout: 0s\n").unwrap_err().to_string();
        assert!(e.contains("c.yaml:2:20: api.request_timeout: must be more than zero"), "{e}");
    }

    #[test]
    fn reads_trusted_proxies_and_names_a_bad_one() {
        let c = Config::parse("c.yaml", "api:\n  trusted_proxies: [127.0.0.1, 10.0.0.0/8]\n").unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.1/32", "10.0.0.0/8"]);
        let e = Config::parse("c.yaml", "api:\n  trusted_proxies: [10.0.0.0/33]\n").unwrap_err().to_string();
        assert!(e.contains("c.yaml:2:21: api.trusted_proxies:"), "{e}");
        assert!(e.contains("prefix length"), "{e}");
    }

    #[test]
    fn reads_resources_and_names_bad_ones() {
        let c = Config::parse(
            "c.yaml",
            "resources:\n  openai: { concurrency: 1, rate: 60/min, burst: 5 }\n  gpu: { concurrency: 2 }\n",
        )
        .unwrap();
        assert_eq!(c.resources["gpu"], Limits { concurrency: Some(2), rate: None });
        let rate = c.resources["openai"].rate.clone().unwrap();
        assert_eq!((rate.count, rate.per, rate.burst), (60, Duration::from_secs(60), 5));
        let e = Config::parse(
            "c.yaml",
            "resources:\n  openai: { rate: 60/fortnight }\n  gpu: {}\n  Big: { concurrency: 0 }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("resources.openai.rate: unknown unit"), "{e}");
        assert!(e.contains("resources.gpu: a resource needs a concurrency, a rate or both"), "{e}");
        assert!(e.contains("resources.Big: resource name"), "{e}");
        assert!(e.contains("resources.Big.concurrency: 0 is out of range"), "{e}");
    }

    #[test]
    fn reads_budgets_with_defaults_and_names_bad_ones() {
        let c = Config::parse(
            "c.yaml",
            "budgets:\n  - { project: trading, period: monthly, amount: 50 }\n  - { project: cortana, service: openai, period: daily, amount: \"2.50\", currency: EUR, thresholds: [90, 100], on_exceed: pause }\n",
        )
        .unwrap();
        assert_eq!(c.budgets[0].amount_nanos, 50 * crate::cost::NANOS_PER_UNIT);
        assert_eq!((c.budgets[0].currency.as_str(), c.budgets[0].on_exceed.as_str()), ("USD", "alert"));
        assert_eq!(c.budgets[0].thresholds, vec![50, 80, 100]);
        assert_eq!(c.budgets[1].amount_nanos, 2_500_000_000);
        assert_eq!((c.budgets[1].service.as_str(), c.budgets[1].period), ("openai", crate::budget::Period::Daily));
        let e = Config::parse(
            "c.yaml",
            "budgets:\n  - { project: trading, period: weekly, amount: -3, currency: XYZ, on_exceed: stop }\n",
        )
        .unwrap_err()
        .to_string();
        for want in ["budgets[0].period", "budgets[0].amount", "budgets[0].currency", "budgets[0].on_exceed"] {
            assert!(e.contains(want), "{want} missing in {e}");
        }
    }

    #[test]
    fn reads_prices_over_the_built_in_ones_and_names_bad_ones() {
        let c = Config::parse(
            "c.yaml",
            "prices:\n  gpt-4o-mini: { input: \"0.10\", output: 0.5 }\n  my-finetune: { input: 3, output: 12, cached_input: \"1.5\" }\n",
        )
        .unwrap();
        let mini = c.prices.lookup("gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!((mini.input, mini.cached_input, mini.output), (100_000_000, 100_000_000, 500_000_000));
        assert_eq!(mini.source, crate::price::PriceSource::Config);
        assert_eq!(c.prices.lookup("my-finetune").unwrap().cached_input, 1_500_000_000);
        assert_eq!(c.prices.lookup("gpt-4o").unwrap().source, crate::price::PriceSource::BuiltIn);
        let e = Config::parse("c.yaml", "prices:\n  x: { input: \"-1\", output: cheap }\n").unwrap_err().to_string();
        for want in ["prices.x.input", "prices.x.output", "per million tokens"] {
            assert!(e.contains(want), "{want} missing in {e}");
        }
        let e = Config::parse("c.yaml", "prices:\n  y: { input: 1 }\n").unwrap_err().to_string();
        assert!(e.contains("prices.y") && e.contains("output"), "{e}");
    }

    #[test]
    fn errors_name_the_place() {
        let e = Config::parse("config.yaml", "bind: localhost\nruns:\n  kill_grace: 10\n").unwrap_err().to_string();
        assert!(e.contains("config.yaml:1:7: bind:"), "{e}");
        assert!(e.contains("config.yaml:3:15: runs.kill_grace:"), "{e}");
        let e = Config::parse("config.yaml", "runs:\n  max_concurent: 3\n").unwrap_err().to_string();
        assert!(e.contains("did you mean `max_concurrent`?"), "{e}");
    }

    #[test]
    fn reads_routes_channel_rules_flapping_and_maintenance_and_names_bad_ones() {
        let c = Config::parse(
            "c.yaml",
            r#"notifications:
  channels:
    team: "discord://1/${TOKEN}"
    phone:
      url: "ntfys://ntfy.example.com/alerts"
      quiet_hours: { from: "22:00", to: "07:00", timezone: Europe/Berlin, except: critical }
      throttle: 10/h
  routes:
    - { match: { severity: critical }, channels: [phone], continue: true }
    - { match: { project: [trading, cortana], source: check, tags: eth }, channels: [team] }
  default: [team]
  flapping: { changes: 3, window: 30m }
maintenance:
  - { project: trading, cron: "0 3 * * *", duration: 1h, timezone: Europe/Berlin, reason: backups }
  - { start: "2026-12-01T00:00:00Z", end: "2026-12-01T06:00:00Z" }
"#,
        )
        .unwrap();
        let a = &c.alerting;
        assert_eq!(c.channels["phone"], "ntfys://ntfy.example.com/alerts");
        let phone = &a.channels["phone"];
        assert_eq!(phone.throttle, Some(Throttle { count: 10, per: Duration::from_secs(3600) }));
        assert_eq!(
            phone.quiet_hours.as_ref().map(|q| (q.from, q.to, q.except)),
            Some((1320, 420, Some(Severity::Critical)))
        );
        assert_eq!(a.channels["team"], ChannelRules::default());
        assert_eq!(a.routing.routes.len(), 2);
        assert!(a.routing.routes[0].continue_matching);
        assert_eq!(a.routing.routes[1].projects, ["trading", "cortana"]);
        assert_eq!(
            (a.routing.routes[1].sources.clone(), a.routing.routes[1].tags.clone()),
            (vec![IncidentSource::Check], vec!["eth".to_string()])
        );
        assert_eq!(a.routing.default.as_deref(), Some(&["team".to_string()][..]));
        assert_eq!(a.flapping, Flapping { changes: 3, window: Duration::from_secs(1800) });
        assert_eq!(a.maintenance.len(), 2);
        assert_eq!(a.maintenance[0].reason.as_deref(), Some("backups"));

        let e = Config::parse(
            "c.yaml",
            r#"notifications:
  channels:
    team: "discord://1/x"
    phone: { url: "ntfy://h/t", quiet_hours: { from: "10pm", to: "07:00" }, throttle: 10/fortnight }
  routes:
    - { match: { severity: urgent, source: cron }, channels: [teem] }
  default: [nobody]
  flapping: { changes: 1, window: 1h }
maintenance:
  - { cron: "0 3 * * *" }
  - { start: "2026-12-01T06:00:00Z", end: "2026-12-01T00:00:00Z" }
"#,
        )
        .unwrap_err()
        .to_string();
        for want in [
            "notifications.channels.phone.quiet_hours: \"10pm\" is not a time of day",
            "notifications.channels.phone.throttle: unknown unit",
            "notifications.routes[0].channels: unknown channel \"teem\"",
            "did you mean `team`?",
            "notifications.routes[0].match.severity: unknown severity \"urgent\"",
            "notifications.routes[0].match.source: unknown source \"cron\"",
            "notifications.default: unknown channel \"nobody\"",
            "notifications.flapping.changes",
            "maintenance[0]: a window is either cron + duration",
            "maintenance[1]: end is not after start",
        ] {
            assert!(e.contains(want), "{want} missing in {e}");
        }
    }

    #[test]
    fn reads_retention_with_defaults_for_keys_not_given_and_names_bad_ones() {
        use crate::retention::{Keep, Retention};
        let c = Config::parse("c.yaml", "retention:\n  runs: 30d\n  logs: 720h\n  costs: 2000d\n  pings: forever\n")
            .unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(c.retention.runs, Keep::For(day * 30));
        assert_eq!(c.retention.logs, Keep::For(day * 30));
        assert_eq!(c.retention.costs, Keep::For(day * 2000));
        assert_eq!(c.retention.pings, Keep::Forever);
        assert_eq!(c.retention.events, Retention::default().events);
        assert_eq!(Config::parse("c.yaml", "").unwrap().retention.costs, Keep::Forever);
        let e = Config::parse("c.yaml", "retention:\n  runs: 90\n  logz: 30d\n  pings: 10s\n").unwrap_err().to_string();
        for want in [
            "c.yaml:2:9: retention.runs:",
            "needs a unit",
            "c.yaml:3:9: retention.logz: unknown retention key \"logz\"",
            "runs, logs, events",
            "retention.pings: \"10s\" is too short",
        ] {
            assert!(e.contains(want), "{want} missing in {e}");
        }
    }
}
