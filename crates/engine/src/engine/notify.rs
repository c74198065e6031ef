//! Notifications fan out to the channels in Agent OS's config through a durable outbox: a
//! notification and one delivery row per channel are stored in one transaction, and the
//! delivery loop works the rows until each is delivered or has used up its attempts. The
//! delivery's id travels as `Idempotency-Key`, the same on every retry, so a receiver can drop
//! a duplicate sent after a crash.
//!
//! Outbound addresses are resolved and refused when they are special-purpose addresses
//! (`core::address`: this machine, a private network, …) unless `allow_private_targets`; the
//! checked address is the one connected to (never through a proxy from the environment), and
//! redirects are not followed. `check_channel_targets` applies the same rule once at start.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use agent_os_core::alerting::{DeliveryStatus, HoldReason, IncidentSource, NotificationSource, Routed, Severity};
use agent_os_core::channel::{self, Channel, Message};
use agent_os_core::id::new_id;
use agent_os_core::redact::redact_shapes;
use agent_os_store::{DeliveryOutcome, DeliveryRecord, NewEvent, NotificationRecord, PlannedDelivery};
use serde_json::json;

use super::incidents::{Alert, IncidentChange};
use super::{Engine, EngineError};

/// When a failed delivery is tried again, after its 1st, 2nd, … attempt; after the last, it
/// has failed for good (about 10.5 hours in all).
pub const RETRY_AFTER: [Duration; 7] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(900),
    Duration::from_secs(3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(6 * 3600),
];

/// Notifications with the same `dedup_key` within this window count once.
pub const DEDUP_WINDOW_MS: i64 = 10 * 60_000;

/// Most delivery attempts in flight at once.
const MAX_IN_FLIGHT: usize = 32;

/// How long a claimed delivery is out of other nodes' reach while it is attempted (an attempt
/// takes at most TIMEOUT, an e-mail at most 30 s).
const ATTEMPT_LEASE_MS: i64 = 60_000;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A notification as a project or a user sends it.
#[derive(Clone, Debug, Default)]
pub struct NotifyInput {
    pub title: String,
    pub body: String,
    /// `info` when not given.
    pub severity: Option<Severity>,
    pub tags: Vec<String>,
    pub dedup_key: Option<String>,
    /// What raised it (`project` when not given: a project or user sent it).
    pub source: Option<NotificationSource>,
    /// The incident it tells about.
    pub incident_id: Option<String>,
    /// Channels it must also reach, whatever the routes say (those that heard an incident
    /// open hear it resolve).
    pub also_to: Vec<String>,
    /// The sender's key: the same key from the same project stores and sends it once.
    pub idempotency_key: Option<String>,
}

/// What `notify` did.
pub struct Notified {
    pub notification: NotificationRecord,
    pub deliveries: Vec<DeliveryRecord>,
    /// True when an earlier notification with the same `dedup_key` stood for this one.
    pub deduplicated: bool,
}

impl NotifyInput {
    /// The message with secret-shaped text in its title and body masked: a notification is
    /// stored, shown and sent out, so it is redacted like task output.
    fn redacted(mut self) -> Self {
        self.title = redact_shapes(&self.title);
        self.body = redact_shapes(&self.body);
        self
    }
}

fn invalid(field: &str, message: impl Into<String>) -> EngineError {
    EngineError::Invalid { field: Some(field.into()), message: message.into() }
}

/// The setting that marks a channel whose receiver answered 410 Gone: no notification goes
/// there until `agent-os channel test` shows it works again.
fn gone_key(channel: &str) -> String {
    format!("channel.gone.{channel}")
}

/// The first of `addrs` that a channel may not reach (this machine, a private network or
/// another special-purpose address: `core::address`), with what it is.
pub fn first_special(addrs: &[SocketAddr]) -> Option<(IpAddr, &'static str)> {
    addrs.iter().find_map(|a| agent_os_core::address::special_purpose(a.ip()).map(|kind| (a.ip(), kind)))
}

/// Why a channel that resolves to a special address is refused, and how to allow it.
pub fn refused_target(display: &str, ip: IpAddr, kind: &str) -> String {
    format!(
        "{display} resolves to {ip}, a private or local address ({kind}); set notifications.allow_private_targets: true to allow it"
    )
}

/// What the check at start found wrong with a channel's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetProblem {
    /// Its host is (or resolves to) an address channels may not reach: every delivery would
    /// be refused. The message says which address and how to allow it.
    Refused(String),
    /// Its host did not resolve now (the network may be down); deliveries resolve it again.
    Unresolved(String),
}

/// How long the check at start waits for one name to resolve.
const START_RESOLVE_WAIT: Duration = Duration::from_secs(5);

/// The host and port a channel connects to: its SMTP server, or its endpoint's host.
fn channel_target(ch: &Channel) -> Result<(String, u16), String> {
    if let Some(mail) = &ch.email {
        return Ok((mail.host.clone(), mail.port));
    }
    let url = reqwest::Url::parse(&ch.endpoint).map_err(|e| format!("bad endpoint: {e}"))?;
    let host = url.host_str().ok_or("the endpoint names no host")?;
    Ok((host.trim_matches(['[', ']']).to_string(), url.port_or_known_default().unwrap_or(443)))
}

/// Checks, once at start, every channel's address against the rule deliveries apply: each
/// host is resolved (all at once, each within a few seconds), and a channel whose host is or
/// resolves to a special-purpose address is `Refused` unless `allow_private`. A name that does
/// not resolve now is only `Unresolved`: a server must start while the network is down.
/// Deliveries check again, so a name that changes its address later is still refused.
pub async fn check_channel_targets(channels: &[Channel], allow_private: bool) -> Vec<(String, TargetProblem)> {
    if allow_private {
        return Vec::new();
    }
    let mut checks = tokio::task::JoinSet::new();
    for (i, ch) in channels.iter().enumerate() {
        let (display, target) = (ch.display.clone(), channel_target(ch));
        checks.spawn(async move { (i, check_target(&display, target).await) });
    }
    let mut found = Vec::new();
    while let Some(done) = checks.join_next().await {
        match done {
            Ok((i, Some(problem))) => found.push((i, problem)),
            Ok((_, None)) => {}
            Err(e) => found.push((usize::MAX, TargetProblem::Unresolved(format!("the check stopped: {e}")))),
        }
    }
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(i, p)| (channels.get(i).map(|c| c.name.clone()).unwrap_or_default(), p)).collect()
}

async fn check_target(display: &str, target: Result<(String, u16), String>) -> Option<TargetProblem> {
    let (host, port) = match target {
        Ok(t) => t,
        Err(e) => return Some(TargetProblem::Refused(format!("{display}: {e}"))),
    };
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(START_RESOLVE_WAIT, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => return Some(TargetProblem::Unresolved(format!("cannot resolve {host}: {e}"))),
            Err(_) => {
                return Some(TargetProblem::Unresolved(format!(
                    "cannot resolve {host}: no answer within {} s",
                    START_RESOLVE_WAIT.as_secs()
                )));
            }
        };
    if addrs.is_empty() {
        return Some(TargetProblem::Unresolved(format!("{host} resolves to no address")));
    }
    first_special(&addrs).map(|(ip, kind)| TargetProblem::Refused(refused_target(display, ip, kind)))
}

impl Engine {
    /// Stores a notification for every channel (or `only` one) and wakes the delivery loop.
    pub async fn notify(
        &self,
        project: Option<&str>,
        input: NotifyInput,
        only: Option<&str>,
    ) -> Result<Notified, EngineError> {
        self.validate(&input)?;
        let input = input.redacted();
        let title = input.title.trim().to_string();
        let severity = input.severity.unwrap_or(Severity::Info);
        let now = self.now();
        if only.is_none()
            && let Some(key) = &input.dedup_key
            && let Some(earlier) = self.store.find_recent_notification(project, key, now - DEDUP_WINDOW_MS).await?
        {
            return self.earlier(earlier).await;
        }
        let level = severity;
        let source = input.source.unwrap_or(NotificationSource::Project);
        // Incidents check maintenance themselves (and tell later); a project's own message is
        // kept back here.
        let suppressed = match only {
            None if source == NotificationSource::Project => {
                self.maintenance_at(project, now).await?.map(|m| format!("maintenance: {}", m.reason))
            }
            _ => None,
        };
        let planned: Vec<PlannedDelivery> = match (only, &suppressed) {
            (Some(name), _) => {
                // Testing a channel is how a user says it works again.
                self.channel(name)?;
                self.store.set_setting(&gone_key(name), "").await?;
                vec![PlannedDelivery { channel: name.to_string(), held: None }]
            }
            (None, Some(_)) => Vec::new(),
            (None, None) => {
                let mut live = Vec::new();
                for c in &self.cfg().channels {
                    if self.store.get_setting(&gone_key(&c.name)).await?.is_none_or(|v| v.is_empty()) {
                        live.push(c.name.clone());
                    }
                }
                let routed = Routed { project, source, severity: level, tags: &input.tags };
                let mut chosen = self.cfg().alerting.routing.channels(&live, &routed);
                for c in &input.also_to {
                    if live.contains(c) && !chosen.contains(c) {
                        chosen.push(c.clone());
                    }
                }
                let mut planned = Vec::new();
                for name in chosen {
                    let held = self.hold(&name, level, now).await?;
                    planned.push(PlannedDelivery { channel: name, held });
                }
                planned
            }
        };
        let n = NotificationRecord {
            id: new_id(),
            project: project.map(str::to_string),
            title,
            body: input.body,
            severity,
            tags: input.tags,
            dedup_key: input.dedup_key,
            created_at: now,
            source: Some(if only.is_some() { NotificationSource::Test } else { source }),
            incident_id: input.incident_id,
            suppressed,
            idempotency_key: input.idempotency_key,
        };
        let deliveries = match self.store.insert_notification(&n, &planned).await {
            Ok(d) => d,
            Err(e) => {
                // Another request with the same key may have been stored meanwhile.
                if let Some(key) = &n.idempotency_key
                    && let Some(earlier) = self.store.find_notification_by_key(project, key).await?
                {
                    return self.earlier(earlier).await;
                }
                return Err(e.into());
            }
        };
        self.touch();
        self.deliveries_changed.notify_one();
        Ok(Notified { notification: n, deliveries, deduplicated: false })
    }

    /// The answer for a notification that an earlier one stands for (a repeat of its dedup
    /// key, or a resend of its idempotency key).
    async fn earlier(&self, notification: NotificationRecord) -> Result<Notified, EngineError> {
        let deliveries = self.store.list_deliveries(Some(&notification.id), 100).await?;
        Ok(Notified { notification, deliveries, deduplicated: true })
    }

    /// Whether a new message to `channel` waits for a digest: inside the channel's quiet hours
    /// (until they end), or over its throttle (until the oldest counted message leaves the
    /// window). `None`: it goes now.
    async fn hold(
        &self,
        channel: &str,
        severity: Severity,
        now: i64,
    ) -> Result<Option<(i64, HoldReason)>, EngineError> {
        let cfg = self.cfg();
        let Some(rules) = cfg.alerting.channels.get(channel) else { return Ok(None) };
        if let Some(until) = rules.quiet_hours.as_ref().and_then(|q| q.held_until(now, severity)) {
            return Ok(Some((until, HoldReason::QuietHours)));
        }
        if let Some(t) = &rules.throttle {
            let per = t.per.as_millis() as i64;
            let (sent, oldest) = self.store.channel_sends_since(channel, now - per).await?;
            if sent >= i64::from(t.count) {
                return Ok(Some((oldest.unwrap_or(now) + per + 1, HoldReason::Throttle)));
            }
        }
        Ok(None)
    }

    /// Checks a notification's fields, naming the first bad one.
    fn validate(&self, input: &NotifyInput) -> Result<(), EngineError> {
        let title = input.title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(invalid("title", "a title of 1 to 200 characters"));
        }
        if input.body.len() > 4000 {
            return Err(invalid("body", "at most 4000 bytes"));
        }
        if input.tags.len() > 10 {
            return Err(invalid("tags", "at most 10 tags"));
        }
        if let Some(t) = input.tags.iter().find(|t| {
            t.is_empty() || t.len() > 50 || !t.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        }) {
            return Err(invalid("tags", format!("tag {t:?}: 1 to 50 letters, digits, - _ . :")));
        }
        if input.dedup_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 200) {
            return Err(invalid("dedup_key", "1 to 200 bytes"));
        }
        if input.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.chars().count() > 100) {
            return Err(invalid("idempotency_key", "1 to 100 characters"));
        }
        Ok(())
    }

    /// A project's (or a user's) own notification. A warning or critical one with a
    /// `dedup_key` is also an incident (source `project`, subject `PROJECT/KEY`), open until the
    /// project sends the same key with `resolve`: then the channels are told it is resolved.
    pub async fn project_notify(
        &self,
        project: Option<&str>,
        input: NotifyInput,
        resolve: bool,
    ) -> Result<Notified, EngineError> {
        let input = input.redacted();
        let subject = input.dedup_key.as_ref().map(|k| format!("{}/{k}", project.unwrap_or("-")));
        if resolve {
            let subject =
                subject.ok_or_else(|| invalid("dedup_key", "resolve needs the dedup_key of what it resolves"))?;
            let why =
                if input.body.trim().is_empty() { "resolved by the project".to_string() } else { input.body.clone() };
            return match self.resolve(IncidentSource::Project, &subject, &why).await? {
                Some((_, Some(told))) => Ok(told),
                Some((incident, None)) => Err(EngineError::Conflict(format!(
                    "incident {} is resolved; its opening was never sent (maintenance or flapping), so nothing was sent now",
                    incident.id
                ))),
                None => Err(EngineError::NotFound(format!(
                    "no open incident with dedup_key {:?}; only warning or critical notifications with a dedup_key open one",
                    input.dedup_key.unwrap_or_default()
                ))),
            };
        }
        // A resend of one already stored is answered with it.
        if let Some(key) = &input.idempotency_key
            && let Some(earlier) = self.store.find_notification_by_key(project, key).await?
        {
            self.validate(&input)?;
            return self.earlier(earlier).await;
        }
        // A repeat within the dedup window is the same message: it changes no incident.
        if let Some(key) = &input.dedup_key
            && let Some(earlier) =
                self.store.find_recent_notification(project, key, self.now() - DEDUP_WINDOW_MS).await?
        {
            self.validate(&input)?;
            return self.earlier(earlier).await;
        }
        let level = input.severity;
        let incident = match (subject, level) {
            (Some(subject), Some(level)) if level >= Severity::Warning => {
                let now = self.now();
                let reason = if input.body.is_empty() { input.title.clone() } else { input.body.clone() };
                let record = agent_os_store::IncidentRecord::opened(
                    IncidentSource::Project,
                    &subject,
                    project,
                    level,
                    input.title.trim(),
                    &reason,
                    now,
                );
                Some(self.validate(&input).map(|_| record)?)
            }
            _ => None,
        };
        let mut input = input;
        let stored = match incident {
            Some(record) => {
                let incident = match self.store_raise(&record).await? {
                    IncidentChange::Opened(i) | IncidentChange::Reopened(i) => i,
                    IncidentChange::Updated { incident, .. } => incident,
                };
                input.incident_id = Some(incident.id.clone());
                Some(incident)
            }
            None => None,
        };
        input.source = Some(NotificationSource::Project);
        // Claimed before it is sent, so the incident sweep does not tell the same opening.
        let claimed = match &stored {
            Some(i) => self.store.claim_incident_notice(&i.id).await?,
            None => false,
        };
        let done = self.notify(project, input, None).await;
        let told = done.as_ref().is_ok_and(|d| !d.deduplicated && d.notification.suppressed.is_none());
        if let Some(i) = stored.filter(|_| claimed && !told) {
            self.store.set_incident_notified(&i.id, false).await?;
        }
        done
    }

    /// The channel by that name in the settings in force (a reload may change it later; a
    /// delivery uses the version it found).
    fn channel(&self, name: &str) -> Result<Channel, EngineError> {
        let cfg = self.cfg();
        cfg.channels.iter().find(|c| c.name == name).cloned().ok_or_else(|| {
            let known: Vec<&str> = cfg.channels.iter().map(|c| c.name.as_str()).collect();
            EngineError::NotFound(if known.is_empty() {
                format!("no channel {name:?}: config.yaml declares none (notifications.channels)")
            } else {
                format!("no channel {name:?}; config.yaml declares: {}", known.join(", "))
            })
        })
    }

    /// Works the outbox: claims due deliveries and attempts each in its own task, so a
    /// receiver that hangs until its timeout holds back no other; each outcome is stored as
    /// soon as it is known. At most MAX_IN_FLIGHT attempts run at once.
    pub(super) async fn delivery_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        let mut jobs = tokio::task::JoinSet::new();
        loop {
            while jobs.try_join_next().is_some() {}
            let room = MAX_IN_FLIGHT.saturating_sub(jobs.len()) as i64;
            let now = self.now();
            let mut failing = false;
            if room > 0 {
                match self.store.claim_deliveries(now, now + ATTEMPT_LEASE_MS, room).await {
                    Ok(batch) => self.start_attempts(batch, &mut jobs),
                    Err(e) => {
                        failing = true;
                        tracing::warn!(error = %e, "could not claim deliveries");
                    }
                }
            }
            let sleep = match self.store.next_delivery_due(self.now()).await {
                _ if failing => Duration::from_secs(1),
                Ok(Some(at)) => Duration::from_millis((at - self.now()).clamp(0, 30_000) as u64),
                _ => Duration::from_secs(30),
            };
            if sleep.is_zero() && jobs.len() < MAX_IN_FLIGHT {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.deliveries_changed.notified() => {}
                Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
                _ = stopping.changed() => return,
            }
        }
    }

    /// One task per claimed delivery, and one per channel for its held deliveries (a digest).
    fn start_attempts(self: &Arc<Self>, batch: Vec<DeliveryRecord>, jobs: &mut tokio::task::JoinSet<()>) {
        let (held, single): (Vec<_>, Vec<_>) = batch.into_iter().partition(|d| d.status == DeliveryStatus::Held);
        for d in single {
            let engine = self.clone();
            jobs.spawn(async move {
                let outcome = engine.attempt_delivery(&d).await;
                engine.store_outcome(&outcome).await;
            });
        }
        let mut by_channel: std::collections::BTreeMap<String, Vec<DeliveryRecord>> = Default::default();
        for d in held {
            by_channel.entry(d.channel.clone()).or_default().push(d);
        }
        for (name, rows) in by_channel {
            let engine = self.clone();
            jobs.spawn(async move {
                let rows: Vec<&DeliveryRecord> = rows.iter().collect();
                for outcome in engine.attempt_digest(&name, &rows).await {
                    engine.store_outcome(&outcome).await;
                }
            });
        }
    }

    async fn store_outcome(&self, outcome: &DeliveryOutcome) {
        match self.store.finish_delivery(outcome).await {
            Ok(()) => self.touch(),
            Err(e) => {
                tracing::warn!(error = %e, delivery = %outcome.id, "delivery outcome not stored; it is tried again")
            }
        }
    }

    /// One attempt at one delivery.
    async fn attempt_delivery(&self, d: &DeliveryRecord) -> DeliveryOutcome {
        let Ok(ch) = self.channel(&d.channel) else {
            return gave_up(&d.id, format!("channel {:?} is no longer in config.yaml", d.channel));
        };
        let Ok(Some(n)) = self.store.get_notification(&d.notification_id).await else {
            let mut o = gave_up(&d.id, "the notification could not be read".into());
            self.retry_later(&mut o, d.attempts, None);
            return o;
        };
        let at = jiff::Timestamp::from_millisecond(n.created_at).map(|t| format!("{t:.3}")).unwrap_or_default();
        let message = Message {
            id: &n.id,
            project: n.project.as_deref(),
            title: &n.title,
            body: &n.body,
            severity: n.severity.as_str(),
            tags: &n.tags,
            at: &at,
            incident: n.incident_id.as_deref(),
            // The resolution of an incident says so with its tag (`tell`).
            resolves: n.incident_id.is_some() && n.tags.iter().any(|t| t == RESOLVED_TAG),
        };
        let outcome = self.deliver(&ch, &d.id, d.attempts, &message).await;
        if outcome.status == DeliveryStatus::Delivered && n.source == Some(NotificationSource::Test) {
            // A channel that answered a test works again.
            if let Err(e) = self.resolve(IncidentSource::Channel, &ch.name, "a test notification was delivered").await {
                tracing::warn!(error = %e, channel = %ch.name, "channel incident not resolved");
            }
        }
        outcome
    }

    /// One attempt at the digest of a channel's held deliveries: one message listing them
    /// all, whose outcome is each one's. It carries the idempotency key of its oldest delivery.
    async fn attempt_digest(&self, channel: &str, rows: &[&DeliveryRecord]) -> Vec<DeliveryOutcome> {
        let Ok(ch) = self.channel(channel) else {
            return rows
                .iter()
                .map(|d| gave_up(&d.id, format!("channel {channel:?} is no longer in config.yaml")))
                .collect();
        };
        if ch.kind == channel::Kind::PagerDuty {
            return self.attempt_held_events(rows).await;
        }
        let mut notes = Vec::new();
        for d in rows {
            if let Ok(Some(n)) = self.store.get_notification(&d.notification_id).await {
                notes.push(n);
            }
        }
        notes.sort_by_key(|n| n.created_at);
        let why = rows[0].held.map_or_else(|| "held".to_string(), |h| h.to_string());
        let worst = notes.iter().map(|n| n.severity).max();
        let mut body = String::new();
        for n in &notes {
            let at = jiff::Timestamp::from_millisecond(n.created_at).map(|t| t.strftime("%H:%M UTC").to_string());
            let line = format!(
                "• {} [{}] {}{}\n",
                at.unwrap_or_default(),
                n.severity,
                n.title,
                n.project.as_deref().map(|p| format!(" · {p}")).unwrap_or_default()
            );
            if body.len() + line.len() > 3500 {
                body.push_str(&format!("… and {} more (agent-os notifications)\n", notes.len() - body.lines().count()));
                break;
            }
            body.push_str(&line);
        }
        let key = rows.iter().map(|d| d.id.as_str()).min().unwrap_or_default().to_string();
        let title = format!("{} notifications held ({why})", rows.len());
        let at = jiff::Timestamp::now().to_string();
        let message = Message {
            id: &key,
            project: None,
            title: &title,
            body: body.trim_end(),
            severity: worst.unwrap_or(Severity::Info).as_str(),
            tags: &[],
            at: &at,
            incident: None,
            resolves: false,
        };
        let attempts = rows.iter().map(|d| d.attempts).max().unwrap_or(1);
        let outcome = self.deliver(&ch, &key, attempts, &message).await;
        rows.iter()
            .map(|d| {
                let mut o = outcome.clone();
                o.id = d.id.clone();
                if o.status == DeliveryStatus::Pending {
                    // Retried as a digest again.
                    o.status = DeliveryStatus::Held;
                }
                o
            })
            .collect()
    }

    /// A PagerDuty channel's held deliveries, each sent as its own event rather than in one
    /// digest (a digest would be a new alert, and an incident's resolution would never resolve
    /// its alert), oldest first; from the first that fails, the rest wait with it.
    async fn attempt_held_events(&self, rows: &[&DeliveryRecord]) -> Vec<DeliveryOutcome> {
        let mut by_age = Vec::new();
        for d in rows {
            let at = match self.store.get_notification(&d.notification_id).await {
                Ok(Some(n)) => n.created_at,
                _ => i64::MAX,
            };
            by_age.push((at, *d));
        }
        by_age.sort_by_key(|(at, d)| (*at, d.id.clone()));
        let mut outcomes: Vec<DeliveryOutcome> = Vec::new();
        let mut failed: Option<DeliveryOutcome> = None;
        for (_, d) in by_age {
            let mut o = match &failed {
                Some(f) => DeliveryOutcome { id: d.id.clone(), ..f.clone() },
                None => self.attempt_delivery(d).await,
            };
            if o.status == DeliveryStatus::Pending {
                // Still held: tried again when the others are.
                o.status = DeliveryStatus::Held;
                failed.get_or_insert_with(|| o.clone());
            }
            outcomes.push(o);
        }
        outcomes
    }

    /// Sets `o` up for the next attempt after attempt number `attempts`, or gives up after the
    /// last pause of RETRY_AFTER.
    fn retry_later(&self, o: &mut DeliveryOutcome, attempts: i64, wait: Option<Duration>) {
        match RETRY_AFTER.get((attempts.max(1) - 1) as usize) {
            Some(after) => {
                let pause = wait.unwrap_or(*after).min(RETRY_AFTER[RETRY_AFTER.len() - 1]);
                o.status = DeliveryStatus::Pending;
                o.next_at = self.now() + pause.as_millis() as i64;
            }
            None => o.status = DeliveryStatus::Failed,
        }
    }

    /// Sends `message` to `ch` once and says what came of it (`attempts` counts this one).
    async fn deliver(&self, ch: &Channel, key: &str, attempts: i64, message: &Message<'_>) -> DeliveryOutcome {
        let now = self.now();
        let mut outcome = DeliveryOutcome {
            id: key.to_string(),
            status: DeliveryStatus::Pending,
            next_at: now,
            last_status: None,
            last_error: None,
            delivered_at: None,
        };
        if ch.kind == channel::Kind::Email {
            match crate::mail::send_mail(ch, message, key, self.cfg().allow_private_targets).await {
                Ok(()) => {
                    outcome.status = DeliveryStatus::Delivered;
                    outcome.delivered_at = Some(self.now());
                }
                Err(e) if e.retryable => {
                    outcome.last_error = Some(e.message);
                    self.retry_later(&mut outcome, attempts, None);
                }
                Err(e) => {
                    outcome.status = DeliveryStatus::Failed;
                    outcome.last_error = Some(e.message);
                }
            }
            return outcome;
        }
        match self.send_all(ch, key, message).await {
            Ok(status) if (200..300).contains(&status) => {
                outcome.status = DeliveryStatus::Delivered;
                outcome.last_status = Some(i64::from(status));
                outcome.delivered_at = Some(self.now());
            }
            Ok(410) => {
                // The receiver says the endpoint is gone for good: stop sending there.
                outcome.status = DeliveryStatus::Disabled;
                outcome.last_status = Some(410);
                outcome.last_error = Some("the receiver answered 410 Gone".into());
                self.channel_gone(ch, now).await;
            }
            Ok(status) => {
                outcome.last_status = Some(i64::from(status));
                outcome.last_error = Some(format!("the receiver answered {status}"));
                self.retry_later(&mut outcome, attempts, None);
            }
            Err(Refused::RetryAfter(wait)) => {
                outcome.last_status = Some(429);
                outcome.last_error = Some("the receiver answered 429 Too Many Requests".into());
                self.retry_later(&mut outcome, attempts, Some(wait));
            }
            Err(Refused::Private(why)) => {
                outcome.status = DeliveryStatus::Failed;
                outcome.last_error = Some(why);
            }
            Err(Refused::Network(why)) => {
                outcome.last_error = Some(why);
                self.retry_later(&mut outcome, attempts, None);
            }
        }
        outcome
    }

    /// Sends every request that makes `message` to `ch` (one per Telegram chat, Mattermost
    /// channel or Matrix room), stopping at the first that fails: the delivery is then retried
    /// whole. The status is the last request's.
    async fn send_all(&self, ch: &Channel, key: &str, message: &Message<'_>) -> Result<u16, Refused> {
        let looked_up;
        let ch = if ch.kind == channel::Kind::Matrix {
            looked_up = self.matrix_rooms(ch, key).await?;
            &looked_up
        } else {
            ch
        };
        let mut answer = Ok(200);
        for request in channel::requests(ch, message, key) {
            answer = self.post(ch, key, &request).await;
            if !matches!(answer, Ok(status) if (200..300).contains(&status)) {
                break;
            }
        }
        answer
    }

    /// A receiver answered 410 Gone: the channel is marked gone (no more deliveries until a
    /// test works), with its event and an incident.
    async fn channel_gone(&self, ch: &Channel, now: i64) {
        let event = NewEvent {
            id: new_id(),
            kind: "channel.gone".into(),
            project: None,
            subject: Some(ch.name.clone()),
            data: json!({"channel": ch.name, "endpoint": ch.display}).to_string(),
            at: now,
        };
        if let Err(e) = self.store.insert_event(&event).await {
            tracing::warn!(error = %e, "channel.gone not stored");
        }
        if let Err(e) = self.store.set_setting(&gone_key(&ch.name), &now.to_string()).await {
            tracing::warn!(error = %e, "channel not marked gone");
        }
        tracing::warn!(channel = %ch.name, "channel answered 410 Gone");
        let alert = Alert {
            source: IncidentSource::Channel,
            subject: ch.name.clone(),
            project: None,
            severity: Severity::Warning,
            title: format!("Channel {} is gone", ch.name),
            reason: format!(
                "{} answered 410 Gone; nothing is sent there until `agent-os channel test {}` works",
                ch.display, ch.name
            ),
            tags: Vec::new(),
            worse: false,
        };
        if let Err(e) = Box::pin(self.raise(alert)).await {
            tracing::warn!(error = %e, "channel incident not raised");
        }
    }

    /// Sends one of the channel's requests and says the receiver's status.
    async fn post(&self, ch: &Channel, key: &str, request: &channel::Request) -> Result<u16, Refused> {
        Ok(self.send(ch, key, request).await?.status().as_u16())
    }

    /// Sends one of the channel's requests: resolves its host, refuses private addresses unless
    /// allowed, and connects to the very address it checked. A 429 answer is `RetryAfter`.
    async fn send(&self, ch: &Channel, key: &str, request: &channel::Request) -> Result<reqwest::Response, Refused> {
        let url = reqwest::Url::parse(&request.url).map_err(|e| Refused::Private(format!("bad endpoint: {e}")))?;
        let (host, port) = channel_target(ch).map_err(Refused::Private)?;
        // The address checked below is the endpoint's: a request elsewhere would go unchecked.
        if url.host_str().map(|h| h.trim_matches(['[', ']'])) != Some(host.as_str())
            || url.port_or_known_default() != Some(port)
        {
            return Err(Refused::Private(format!("{}: a request to another host than the channel's", ch.display)));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Refused::Network(format!("cannot resolve {host}: {e}")))?
            .collect();
        let Some(addr) = addrs.first().copied() else {
            return Err(Refused::Network(format!("{host} resolves to no address")));
        };
        if !self.cfg().allow_private_targets
            && let Some((ip, kind)) = first_special(&addrs)
        {
            return Err(Refused::Private(refused_target(&ch.display, ip, kind)));
        }
        crate::plugin::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("agent-os/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .resolve(&host, addr)
            // An HTTP(S)_PROXY from the environment would resolve the name again, after the
            // check: the checked address is the one connected to, so no proxy.
            .no_proxy()
            .build()
            .map_err(|e| Refused::Network(e.to_string()))?;
        let method = match request.method {
            channel::Method::Get => reqwest::Method::GET,
            channel::Method::Post => reqwest::Method::POST,
            channel::Method::Put => reqwest::Method::PUT,
        };
        let mut req = client.request(method, url).header("Idempotency-Key", key);
        if let Some(auth) = &ch.authorization {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        for (name, value) in &ch.headers {
            req = req.header(*name, value);
        }
        if request.method != channel::Method::Get {
            let bytes = serde_json::to_vec(&request.body).map_err(|e| Refused::Private(e.to_string()))?;
            if let Some(secret) = &ch.signing_secret {
                // Standard Webhooks: the delivery id is the message id, stable across retries.
                let ts = jiff::Timestamp::now().as_second();
                let signature = crate::secrets::sign_webhook(secret, key, ts, &bytes).map_err(Refused::Private)?;
                req = req
                    .header("webhook-id", key)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", signature);
            }
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes);
        }
        let resp = req.send().await.map_err(|e| {
            Refused::Network(format!(
                "{}: {}",
                ch.display,
                // Without the URL: a channel's path or query is often its secret.
                if e.is_timeout() { "timed out".to_string() } else { e.without_url().to_string() }
            ))
        })?;
        if resp.status().as_u16() == 429 {
            let header = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let wait = match header {
                Some(secs) => Some(secs),
                None => json_body(resp).await.and_then(|b| b.get("parameters")?.get("retry_after")?.as_u64()),
            };
            return Err(Refused::RetryAfter(wait.map_or(RETRY_AFTER[0], Duration::from_secs)));
        }
        Ok(resp)
    }

    /// A Matrix channel with each room alias (`#alias:server`) replaced by the room's id, as the
    /// homeserver's room directory names it (the send endpoint takes ids only).
    async fn matrix_rooms(&self, ch: &Channel, key: &str) -> Result<Channel, Refused> {
        let mut found = ch.clone();
        for (i, target) in ch.targets.iter().enumerate() {
            let Some(alias) = target["room"].as_str().filter(|r| r.starts_with('#')) else { continue };
            let lookup = channel::Request {
                method: channel::Method::Get,
                url: format!(
                    "{}/_matrix/client/v3/directory/room/{}",
                    ch.endpoint,
                    agent_os_core::url::encode_component(alias)
                ),
                body: serde_json::Value::Null,
            };
            let resp = self.send(ch, key, &lookup).await?;
            let status = resp.status().as_u16();
            let id = json_body(resp).await.and_then(|b| Some(b.get("room_id")?.as_str()?.to_string()));
            match (status, id) {
                (200..300, Some(id)) => found.targets[i] = json!({ "room": id }),
                _ => {
                    return Err(Refused::Network(format!(
                        "{}: the homeserver's room directory answered {status} for {alias}, with no room id",
                        ch.display
                    )));
                }
            }
        }
        Ok(found)
    }
}

/// The first 16 KiB of an answer, read as JSON (Telegram names its wait in a 429's body, a
/// Matrix room directory the room's id).
async fn json_body(mut resp: reqwest::Response) -> Option<serde_json::Value> {
    let mut body = Vec::new();
    while body.len() < 16 * 1024 {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    serde_json::from_slice(&body).ok()
}

/// The tag an incident's resolution carries (PagerDuty channels resolve their alert on it).
pub const RESOLVED_TAG: &str = "resolved";

/// An outcome that is final at once.
fn gave_up(id: &str, why: String) -> DeliveryOutcome {
    DeliveryOutcome {
        id: id.to_string(),
        status: DeliveryStatus::Failed,
        next_at: 0,
        last_status: None,
        last_error: Some(why),
        delivered_at: None,
    }
}

enum Refused {
    /// 429 with how long to wait.
    RetryAfter(Duration),
    /// Not sent: the address is not allowed (never retried).
    Private(String),
    /// Could not connect, timed out, or the answer broke off.
    Network(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channels_the_private_address_rule_refuses_are_found_at_start() {
        let channels: Vec<Channel> = [
            ("hook", "json://127.0.0.1:9/in"),
            ("mail", "mailto://localhost:2525?to=ops@example.com&tls=off"),
            ("meta", "jsons://169.254.169.254/latest"),
            ("nat64", "json://[64:ff9b::7f00:1]:8080/in"),
            ("later", "json://agent-os-test.invalid/in"),
        ]
        .iter()
        .map(|(name, url)| channel::parse(name, url).unwrap())
        .collect();
        let found = check_channel_targets(&channels, false).await;
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["hook", "mail", "meta", "nat64", "later"], "{found:?}");
        for (name, problem) in &found[..4] {
            let TargetProblem::Refused(why) = problem else { panic!("{name}: {problem:?}") };
            assert!(why.contains("a private or local address") && why.contains("allow_private_targets"), "{why}");
        }
        assert!(
            matches!(&found[0].1, TargetProblem::Refused(w) if w.contains("127.0.0.1, a private or local address (loopback"))
        );
        assert!(matches!(&found[2].1, TargetProblem::Refused(w) if w.contains("(link-local")));
        assert!(
            matches!(&found[4].1, TargetProblem::Unresolved(w) if w.contains("cannot resolve agent-os-test.invalid"))
        );
        assert!(check_channel_targets(&channels, true).await.is_empty(), "allowed: nothing to say");
    }
}
