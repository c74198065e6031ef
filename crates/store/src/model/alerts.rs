//! Notifications, their deliveries, incidents and maintenance windows.

use agent_os_core::alerting::{
    DeliveryStatus, HoldReason, IncidentSource, IncidentStatus, NotificationSource, Severity,
};

/// A notification, from a project or from Agent OS itself.
#[derive(Clone, Debug, PartialEq)]
pub struct NotificationRecord {
    pub id: String,
    pub project: Option<String>,
    pub title: String,
    pub body: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    pub dedup_key: Option<String>,
    pub created_at: i64,
    pub source: Option<NotificationSource>,
    /// The incident it tells about.
    pub incident_id: Option<String>,
    /// Why it was kept back from every channel (a maintenance window).
    pub suppressed: Option<String>,
    /// The sender's key: a notification resent with it is stored and sent once.
    pub idempotency_key: Option<String>,
}

/// Where a new notification goes, and whether it waits (quiet hours, throttle) for a digest.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedDelivery {
    pub channel: String,
    /// `(until, why)`: held for a digest sent at `until`.
    pub held: Option<(i64, HoldReason)>,
}

/// One notification on its way to one channel.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRecord {
    /// Also the idempotency key the receiver sees, the same on every attempt.
    pub id: String,
    pub notification_id: String,
    pub channel: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_at: i64,
    /// The receiver's last HTTP status.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    /// Why it was held for a digest, if it was.
    pub held: Option<HoldReason>,
}

/// What an attempt came to.
#[derive(Clone, Debug)]
pub struct DeliveryOutcome {
    pub id: String,
    pub status: DeliveryStatus,
    pub next_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

/// Something broken, open until it recovers; one open incident per `(source, subject)`.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentRecord {
    pub id: String,
    pub source: IncidentSource,
    /// What it is about within the source, e.g. `trading/rebalance`.
    pub subject: String,
    pub project: Option<String>,
    pub severity: Severity,
    pub title: String,
    /// The latest reason given.
    pub reason: String,
    pub status: IncidentStatus,
    pub opened_at: i64,
    pub resolved_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub acked_by: Option<String>,
    /// State changes (opened, resolved, opened again…) while it kept coming back.
    pub changes: i64,
    /// Changing too often to alert about each change.
    pub flapping: bool,
    /// Whether its opening was told to the channels.
    pub notified: bool,
    pub updated_at: i64,
}

impl IncidentRecord {
    /// A new open incident of `source` and `subject`, opened at `now`: one change, not yet
    /// told, not flapping.
    pub fn opened(
        source: IncidentSource,
        subject: &str,
        project: Option<&str>,
        severity: Severity,
        title: &str,
        reason: &str,
        now: i64,
    ) -> Self {
        IncidentRecord {
            id: agent_os_core::id::new_id(),
            source,
            subject: subject.into(),
            project: project.map(str::to_string),
            severity,
            title: title.into(),
            reason: reason.into(),
            status: IncidentStatus::Open,
            opened_at: now,
            resolved_at: None,
            acked_at: None,
            acked_by: None,
            changes: 1,
            flapping: false,
            notified: false,
            updated_at: now,
        }
    }
}

/// A maintenance window set over the API or the CLI.
#[derive(Clone, Debug, PartialEq)]
pub struct MaintenanceRecord {
    pub id: String,
    pub project: Option<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub reason: Option<String>,
    pub created_at: i64,
}
