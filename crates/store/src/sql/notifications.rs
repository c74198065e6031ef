//! The notification outbox: a notification and one delivery row per channel, written together
//! before anything is sent; deliveries are claimed (out of other nodes' reach for a while),
//! attempted and their outcome recorded.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use agent_os_core::alerting::DeliveryStatus;

use super::{SqlStore, all, fetch_filtered, filtered};
use crate::Result;
use crate::model::{DeliveryOutcome, DeliveryRecord, NotificationRecord, PlannedDelivery};

/// Notifications and their deliveries. Every method commits before it returns.
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// The newest notification of `project` with `dedup_key` created at or after `since`.
    async fn find_recent_notification(
        &self,
        project: Option<&str>,
        dedup_key: &str,
        since: i64,
    ) -> Result<Option<NotificationRecord>>;
    /// The notification of `project` sent with `idempotency_key`, if any.
    async fn find_notification_by_key(
        &self,
        project: Option<&str>,
        idempotency_key: &str,
    ) -> Result<Option<NotificationRecord>>;
    /// Stores a notification with its deliveries (pending, or held for a digest), in one
    /// transaction. A second notification of a project with the same idempotency key is
    /// refused by the database.
    async fn insert_notification(
        &self,
        n: &NotificationRecord,
        deliveries: &[PlannedDelivery],
    ) -> Result<Vec<DeliveryRecord>>;
    /// How many deliveries to `channel` of notifications created after `since` were not held,
    /// and when the oldest of them was created (for a channel's throttle).
    async fn channel_sends_since(&self, channel: &str, since: i64) -> Result<(i64, Option<i64>)>;
    async fn list_notifications(&self, project: Option<&str>, limit: i64) -> Result<Vec<NotificationRecord>>;
    async fn get_notification(&self, id: &str) -> Result<Option<NotificationRecord>>;
    async fn list_deliveries(&self, notification_id: Option<&str>, limit: i64) -> Result<Vec<DeliveryRecord>>;
    /// Takes up to `limit` pending or held deliveries due at `now`, counting the attempt and holding
    /// them until `lease_until` so no other node takes them meanwhile.
    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<DeliveryRecord>>;
    async fn finish_delivery(&self, outcome: &DeliveryOutcome) -> Result<()>;
    /// Lets go of every delivery attempt in flight (at startup, when no other node can be
    /// making them: on SQLite); returns how many.
    async fn release_deliveries(&self) -> Result<u64>;
    /// When the earliest pending or held delivery is due; one whose attempt is in flight at
    /// `now` counts when its hold ends.
    async fn next_delivery_due(&self, now: i64) -> Result<Option<i64>>;
}

macro_rules! notification_columns {
    () => {
        "id, project, title, body, severity, tags, dedup_key, created_at, source, incident_id, suppressed,
         idempotency_key"
    };
}

macro_rules! delivery_columns {
    () => {
        "id, notification_id, channel, status, attempts, next_at, last_status, last_error, delivered_at, held"
    };
}

fn notification_from(row: &AnyRow) -> Result<NotificationRecord, sqlx::Error> {
    let tags: String = row.try_get("tags")?;
    Ok(NotificationRecord {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        severity: row.try_get("severity")?,
        // One tag a line.
        tags: tags.lines().filter(|t| !t.is_empty()).map(str::to_string).collect(),
        dedup_key: row.try_get("dedup_key")?,
        created_at: row.try_get("created_at")?,
        source: row.try_get("source")?,
        incident_id: row.try_get("incident_id")?,
        suppressed: row.try_get("suppressed")?,
        idempotency_key: row.try_get("idempotency_key")?,
    })
}

fn delivery_from(row: &AnyRow) -> Result<DeliveryRecord, sqlx::Error> {
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        notification_id: row.try_get("notification_id")?,
        channel: row.try_get("channel")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        next_at: row.try_get("next_at")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        delivered_at: row.try_get("delivered_at")?,
        held: row.try_get("held")?,
    })
}

#[async_trait]
impl NotificationStore for SqlStore {
    async fn find_recent_notification(
        &self,
        project: Option<&str>,
        dedup_key: &str,
        since: i64,
    ) -> Result<Option<NotificationRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            notification_columns!(),
            " FROM notifications
              WHERE ((project IS NULL AND $1 IS NULL) OR project = $1) AND dedup_key = $2 AND created_at >= $3
              ORDER BY created_at DESC
              LIMIT 1"
        ))
        .bind(project)
        .bind(dedup_key)
        .bind(since)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.as_ref().map(notification_from).transpose()?)
    }

    async fn find_notification_by_key(
        &self,
        project: Option<&str>,
        idempotency_key: &str,
    ) -> Result<Option<NotificationRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            notification_columns!(),
            " FROM notifications WHERE COALESCE(project, '') = $1 AND idempotency_key = $2"
        ))
        .bind(project.unwrap_or(""))
        .bind(idempotency_key)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.as_ref().map(notification_from).transpose()?)
    }

    async fn insert_notification(
        &self,
        n: &NotificationRecord,
        planned: &[PlannedDelivery],
    ) -> Result<Vec<DeliveryRecord>> {
        let mut tx = self.tx().await?;
        sqlx::query(concat!(
            "INSERT INTO notifications (",
            notification_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&n.id)
        .bind(&n.project)
        .bind(&n.title)
        .bind(&n.body)
        .bind(&n.severity)
        .bind(n.tags.join("\n"))
        .bind(&n.dedup_key)
        .bind(n.created_at)
        .bind(&n.source)
        .bind(&n.incident_id)
        .bind(&n.suppressed)
        .bind(&n.idempotency_key)
        .execute(&mut *tx)
        .await?;
        let mut out = Vec::new();
        for p in planned {
            let d = DeliveryRecord {
                id: agent_os_core::id::new_id(),
                notification_id: n.id.clone(),
                channel: p.channel.clone(),
                status: if p.held.is_some() { DeliveryStatus::Held } else { DeliveryStatus::Pending },
                attempts: 0,
                next_at: p.held.as_ref().map_or(n.created_at, |(until, _)| *until),
                last_status: None,
                last_error: None,
                delivered_at: None,
                held: p.held.map(|(_, why)| why),
            };
            sqlx::query(
                "INSERT INTO deliveries (id, notification_id, channel, status, attempts, next_at, held)
                 VALUES ($1, $2, $3, $4, 0, $5, $6)",
            )
            .bind(&d.id)
            .bind(&d.notification_id)
            .bind(&d.channel)
            .bind(&d.status)
            .bind(d.next_at)
            .bind(&d.held)
            .execute(&mut *tx)
            .await?;
            out.push(d);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn channel_sends_since(&self, channel: &str, since: i64) -> Result<(i64, Option<i64>)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS sends, MIN(n.created_at) AS oldest
             FROM deliveries d JOIN notifications n ON n.id = d.notification_id
             WHERE d.channel = $1 AND n.created_at > $2 AND d.held IS NULL",
        )
        .bind(channel)
        .bind(since)
        .fetch_one(&self.read)
        .await?;
        Ok((row.try_get("sends")?, row.try_get("oldest")?))
    }

    async fn list_notifications(&self, project: Option<&str>, limit: i64) -> Result<Vec<NotificationRecord>> {
        let project = project.map(str::to_string);
        let select = filtered(
            concat!("SELECT ", notification_columns!(), " FROM notifications"),
            &[("project = ", &project)],
            "ORDER BY created_at DESC, id DESC",
        );
        all(fetch_filtered(&self.read, select, limit.clamp(1, 1000)).await?, notification_from)
    }

    async fn get_notification(&self, id: &str) -> Result<Option<NotificationRecord>> {
        let row = sqlx::query(concat!("SELECT ", notification_columns!(), " FROM notifications WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(notification_from).transpose()?)
    }

    async fn list_deliveries(&self, notification_id: Option<&str>, limit: i64) -> Result<Vec<DeliveryRecord>> {
        let notification_id = notification_id.map(str::to_string);
        let select = filtered(
            concat!("SELECT ", delivery_columns!(), " FROM deliveries"),
            &[("notification_id = ", &notification_id)],
            "ORDER BY id DESC",
        );
        all(fetch_filtered(&self.read, select, limit.clamp(1, 1000)).await?, delivery_from)
    }

    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<DeliveryRecord>> {
        let claim = format!(
            concat!(
                "UPDATE deliveries SET attempts = attempts + 1, claimed_until = $2
                 WHERE id IN (
                     SELECT id FROM deliveries
                     WHERE status IN ('pending', 'held') AND next_at <= $1
                       AND (claimed_until IS NULL OR claimed_until <= $1)
                     ORDER BY next_at, id
                     LIMIT $3 {skip_locked})
                 RETURNING ",
                delivery_columns!()
            ),
            skip_locked = self.backend.skip_locked()
        );
        let mut tx = self.tx().await?;
        let rows = sqlx::query::<Any>(sqlx::AssertSqlSafe(claim))
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        all(rows, delivery_from)
    }

    async fn finish_delivery(&self, o: &DeliveryOutcome) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries
             SET status = $2, next_at = $3, last_status = $4, last_error = $5, delivered_at = $6,
                 claimed_until = NULL
             WHERE id = $1",
        )
        .bind(&o.id)
        .bind(&o.status)
        .bind(o.next_at)
        .bind(o.last_status)
        .bind(&o.last_error)
        .bind(o.delivered_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn release_deliveries(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE deliveries SET claimed_until = NULL
             WHERE status IN ('pending', 'held') AND claimed_until IS NOT NULL",
        )
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    async fn next_delivery_due(&self, now: i64) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until > $1 THEN claimed_until
                             ELSE next_at END) AS due
             FROM deliveries
             WHERE status IN ('pending', 'held')",
        )
        .bind(now)
        .fetch_one(&self.read)
        .await?;
        Ok(row.try_get("due")?)
    }
}
