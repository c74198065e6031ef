//! Notifications fan out to the channels in Agent OS's config through a durable outbox: a
//! notification and one delivery row per channel are stored in one transaction, and the
//! delivery loop works the rows until each is delivered or has used up its attempts. The
//! delivery's id travels as `Idempotency-Key`, the same on every retry, so a receiver can drop
//! a duplicate sent after a crash.
//!
//! Outbound addresses are resolved and refused when they point at this machine or a private
//! network (unless `allow_private_targets`), the checked address is the one connected to, and
//! redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use agent_os_core::channel::{self, Channel, Message};
use agent_os_core::id::new_id;
use agent_os_store::{DeliveryOutcome, DeliveryRecord, NewEvent, NotificationRecord};
use serde_json::json;

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

/// How long a claimed delivery is out of other nodes' reach while it is attempted.
const ATTEMPT_LEASE_MS: i64 = 60_000;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A notification as a project or a user sends it.
#[derive(Clone, Debug, Default)]
pub struct NotifyInput {
    pub title: String,
    pub body: String,
    pub severity: Option<String>,
    pub tags: Vec<String>,
    pub dedup_key: Option<String>,
}

/// What `notify` did.
pub struct Notified {
    pub notification: NotificationRecord,
    pub deliveries: Vec<DeliveryRecord>,
    /// True when an earlier notification with the same `dedup_key` stood for this one.
    pub deduplicated: bool,
}

fn invalid(field: &str, message: impl Into<String>) -> EngineError {
    EngineError::Invalid { field: Some(field.into()), message: message.into() }
}

/// The setting that marks a channel whose receiver answered 410 Gone: no notification goes
/// there until `agent-os channel test` shows it works again.
fn gone_key(channel: &str) -> String {
    format!("channel.gone.{channel}")
}

/// Whether an address is this machine, a private network or otherwise not the internet.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

impl Engine {
    /// Stores a notification for every channel (or `only` one) and wakes the delivery loop.
    pub async fn notify(
        &self,
        project: Option<&str>,
        input: NotifyInput,
        only: Option<&str>,
    ) -> Result<Notified, EngineError> {
        let title = input.title.trim().to_string();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(invalid("title", "a title of 1 to 200 characters"));
        }
        if input.body.len() > 4000 {
            return Err(invalid("body", "at most 4000 bytes"));
        }
        let severity = input.severity.unwrap_or_else(|| "info".into());
        if !matches!(severity.as_str(), "info" | "warning" | "critical") {
            return Err(invalid("severity", format!("unknown severity {severity:?}; info, warning or critical")));
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
        let channels: Vec<String> = match only {
            Some(name) => {
                // Testing a channel is how a user says it works again.
                self.channel(name)?;
                self.store.set_setting(&gone_key(name), "").await?;
                vec![name.to_string()]
            }
            None => {
                let mut live = Vec::new();
                for c in &self.cfg.channels {
                    if self.store.get_setting(&gone_key(&c.name)).await?.is_none_or(|v| v.is_empty()) {
                        live.push(c.name.clone());
                    }
                }
                live
            }
        };
        let now = self.now();
        if only.is_none()
            && let Some(key) = &input.dedup_key
            && let Some(earlier) = self.store.find_recent_notification(project, key, now - DEDUP_WINDOW_MS).await?
        {
            let deliveries = self.store.list_deliveries(Some(&earlier.id), 100).await?;
            return Ok(Notified { notification: earlier, deliveries, deduplicated: true });
        }
        let n = NotificationRecord {
            id: new_id(),
            project: project.map(str::to_string),
            title,
            body: input.body,
            severity,
            tags: input.tags,
            dedup_key: input.dedup_key,
            created_at: now,
        };
        let deliveries = self.store.insert_notification(&n, &channels).await?;
        self.deliveries_changed.notify_one();
        Ok(Notified { notification: n, deliveries, deduplicated: false })
    }

    fn channel(&self, name: &str) -> Result<&Channel, EngineError> {
        self.cfg.channels.iter().find(|c| c.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.cfg.channels.iter().map(|c| c.name.as_str()).collect();
            EngineError::NotFound(if known.is_empty() {
                format!("no channel {name:?}: config.yaml declares none (notifications.channels)")
            } else {
                format!("no channel {name:?}; config.yaml declares: {}", known.join(", "))
            })
        })
    }

    pub(super) async fn delivery_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        loop {
            let now = self.now();
            match self.store.claim_deliveries(now, now + ATTEMPT_LEASE_MS, 16).await {
                Ok(batch) => {
                    for d in batch {
                        let outcome = self.attempt_delivery(&d).await;
                        if let Err(e) = self.store.finish_delivery(&outcome).await {
                            tracing::warn!(error = %e, delivery = %d.id, "delivery outcome not stored; it is tried again");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not claim deliveries"),
            }
            let sleep = match self.store.next_delivery_due().await {
                Ok(Some(at)) => Duration::from_millis((at - self.now()).clamp(0, 30_000) as u64),
                _ => Duration::from_secs(30),
            };
            if sleep.is_zero() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.deliveries_changed.notified() => {}
                _ = stopping.changed() => return,
            }
        }
    }

    /// One attempt at one delivery.
    async fn attempt_delivery(&self, d: &DeliveryRecord) -> DeliveryOutcome {
        let now = self.now();
        let mut outcome = DeliveryOutcome {
            id: d.id.clone(),
            status: "pending".into(),
            next_at: now,
            last_status: None,
            last_error: None,
            delivered_at: None,
        };
        // `attempts` counts this one: after the last pause of RETRY_AFTER it has failed for good.
        let retry = |o: &mut DeliveryOutcome, wait: Option<Duration>, why: String| {
            o.last_error = Some(why);
            match RETRY_AFTER.get((d.attempts.max(1) - 1) as usize) {
                Some(after) => {
                    let pause = wait.unwrap_or(*after).min(RETRY_AFTER[RETRY_AFTER.len() - 1]);
                    o.next_at = now + pause.as_millis() as i64;
                }
                None => o.status = "failed".into(),
            }
        };
        let Ok(ch) = self.channel(&d.channel) else {
            outcome.status = "failed".into();
            outcome.last_error = Some(format!("channel {:?} is no longer in config.yaml", d.channel));
            return outcome;
        };
        let Ok(Some(n)) = self.store.get_notification(&d.notification_id).await else {
            retry(&mut outcome, None, "the notification could not be read".into());
            return outcome;
        };
        let tags = n.tags.clone();
        let at = jiff::Timestamp::from_millisecond(n.created_at).map(|t| format!("{t:.3}")).unwrap_or_default();
        let body = channel::payload(
            ch.kind,
            ch.topic.as_deref(),
            &Message {
                id: &n.id,
                project: n.project.as_deref(),
                title: &n.title,
                body: &n.body,
                severity: &n.severity,
                tags: &tags,
                at: &at,
            },
        );
        match self.post(ch, &d.id, &body).await {
            Ok(status) if (200..300).contains(&status) => {
                outcome.status = "delivered".into();
                outcome.last_status = Some(i64::from(status));
                outcome.delivered_at = Some(self.now());
            }
            Ok(410) => {
                // The receiver says the endpoint is gone for good: stop sending there.
                outcome.status = "disabled".into();
                outcome.last_status = Some(410);
                outcome.last_error = Some("the receiver answered 410 Gone".into());
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
            }
            Ok(status) => {
                outcome.last_status = Some(i64::from(status));
                retry(&mut outcome, None, format!("the receiver answered {status}"));
            }
            Err(Refused::RetryAfter(wait)) => {
                outcome.last_status = Some(429);
                retry(&mut outcome, Some(wait), "the receiver answered 429 Too Many Requests".into());
            }
            Err(Refused::Private(why)) => {
                outcome.status = "failed".into();
                outcome.last_error = Some(why);
            }
            Err(Refused::Network(why)) => retry(&mut outcome, None, why),
        }
        outcome
    }

    /// POSTs `body` to the channel: resolves its host, refuses private addresses unless allowed,
    /// and connects to the very address it checked.
    async fn post(&self, ch: &Channel, key: &str, body: &serde_json::Value) -> Result<u16, Refused> {
        let url = reqwest::Url::parse(&ch.endpoint).map_err(|e| Refused::Private(format!("bad endpoint: {e}")))?;
        let host = url.host_str().ok_or_else(|| Refused::Private("the endpoint names no host".into()))?.to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| Refused::Network(format!("cannot resolve {host}: {e}")))?
            .collect();
        let Some(addr) = addrs.first().copied() else {
            return Err(Refused::Network(format!("{host} resolves to no address")));
        };
        if !self.cfg.allow_private_targets && addrs.iter().any(|a| is_private(a.ip())) {
            return Err(Refused::Private(format!(
                "{} resolves to {}, a private or local address; set notifications.allow_private_targets: true to allow it",
                ch.display,
                addr.ip()
            )));
        }
        crate::plugin::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("agent-os/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .resolve(&host, addr)
            .build()
            .map_err(|e| Refused::Network(e.to_string()))?;
        let bytes = serde_json::to_vec(body).map_err(|e| Refused::Private(e.to_string()))?;
        let mut req =
            client.post(url).header("Idempotency-Key", key).header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(auth) = &ch.authorization {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        if let Some(secret) = &ch.signing_secret {
            // Standard Webhooks: the delivery id is the message id, stable across retries.
            let ts = jiff::Timestamp::now().as_second();
            let signature = crate::secrets::sign_webhook(secret, key, ts, &bytes).map_err(Refused::Private)?;
            req = req
                .header("webhook-id", key)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signature);
        }
        let resp = req.body(bytes).send().await.map_err(|e| {
            Refused::Network(format!(
                "{}: {}",
                ch.display,
                if e.is_timeout() { "timed out".to_string() } else { e.to_string() }
            ))
        })?;
        let status = resp.status().as_u16();
        if status == 429 {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(RETRY_AFTER[0]);
            return Err(Refused::RetryAfter(wait));
        }
        Ok(status)
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

    #[test]
    fn local_and_private_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["162.159.128.233", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
