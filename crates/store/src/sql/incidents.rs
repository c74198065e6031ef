//! Incidents, keyed by (source, subject) with at most one open per key (a partial unique
//! index), and maintenance windows. The engine decides what raising or resolving an incident
//! does; the store reads the incident as it is and writes the engine's decision only if it is
//! still so, so two nodes (or tasks) acting on one incident cannot both act on one state.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use agent_os_core::alerting::IncidentSource;

use super::{SqlStore, all, flag, is_unique_violation};
use crate::Result;
use crate::model::{IncidentRecord, MaintenanceRecord};

/// Incidents and maintenance windows. Every method commits before it returns.
#[async_trait]
pub trait IncidentStore: Send + Sync {
    /// The open incident of `source` and `subject`, if there is one.
    async fn find_open_incident(&self, source: IncidentSource, subject: &str) -> Result<Option<IncidentRecord>>;
    /// The incident of `source` and `subject` resolved last, if it was resolved at or after
    /// `since`.
    async fn last_resolved_incident(
        &self,
        source: IncidentSource,
        subject: &str,
        since: i64,
    ) -> Result<Option<IncidentRecord>>;
    /// Stores a new incident; false (nothing stored) when one of its source and subject is
    /// already open.
    async fn insert_incident(&self, incident: &IncidentRecord) -> Result<bool>;
    /// Writes `incident` (its status, severity, title, reason, times, acknowledgement, changes
    /// and flapping) over the stored one, if that is still as `seen` was read: the same status,
    /// changes, severity and acknowledgement. False (nothing written) when it changed meanwhile,
    /// or when `incident` is open and another of its source and subject already is.
    async fn replace_incident(&self, incident: &IncidentRecord, seen: &IncidentRecord) -> Result<bool>;
    /// Marks an incident acknowledged (once; the first acknowledgement stays).
    async fn ack_incident(&self, id: &str, by: &str, at: i64) -> Result<Option<IncidentRecord>>;
    async fn get_incident(&self, id: &str) -> Result<Option<IncidentRecord>>;
    /// Newest first; `open_only` leaves resolved ones out.
    async fn list_incidents(&self, open_only: bool, project: Option<&str>, limit: i64) -> Result<Vec<IncidentRecord>>;
    async fn set_incident_notified(&self, id: &str, notified: bool) -> Result<()>;
    /// Marks an incident told if it was not: whether this call did. Whoever gets `true` sends
    /// the opening notification, so two tellers at once (a raise and the sweep) send one.
    async fn claim_incident_notice(&self, id: &str) -> Result<bool>;
    /// The channels the notifications about an incident went (or are going) to.
    async fn incident_channels(&self, incident_id: &str) -> Result<Vec<String>>;

    async fn insert_maintenance(&self, m: &MaintenanceRecord) -> Result<()>;
    /// Windows that have not ended at `now`.
    async fn list_maintenance(&self, now: i64) -> Result<Vec<MaintenanceRecord>>;
    /// Ends a window at `at` (if it had not ended); returns it.
    async fn end_maintenance(&self, id: &str, at: i64) -> Result<Option<MaintenanceRecord>>;
}

macro_rules! incident_columns {
    () => {
        "id, source, subject, project, severity, title, reason, status, opened_at, resolved_at, acked_at, acked_by,
         changes, flapping, notified, updated_at"
    };
}

macro_rules! maintenance_columns {
    () => {
        "id, project, starts_at, ends_at, reason, created_at"
    };
}

fn incident_from(row: &AnyRow) -> Result<IncidentRecord, sqlx::Error> {
    Ok(IncidentRecord {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        subject: row.try_get("subject")?,
        project: row.try_get("project")?,
        severity: row.try_get("severity")?,
        title: row.try_get("title")?,
        reason: row.try_get("reason")?,
        status: row.try_get("status")?,
        opened_at: row.try_get("opened_at")?,
        resolved_at: row.try_get("resolved_at")?,
        acked_at: row.try_get("acked_at")?,
        acked_by: row.try_get("acked_by")?,
        changes: row.try_get("changes")?,
        flapping: flag(row, "flapping")?,
        notified: flag(row, "notified")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn maintenance_from(row: &AnyRow) -> Result<MaintenanceRecord, sqlx::Error> {
    Ok(MaintenanceRecord {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl IncidentStore for SqlStore {
    async fn find_open_incident(&self, source: IncidentSource, subject: &str) -> Result<Option<IncidentRecord>> {
        // On the writer, as the write that follows will be: on SQLite it sees every commit.
        let row = sqlx::query(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents WHERE source = $1 AND subject = $2 AND status = 'open'"
        ))
        .bind(source)
        .bind(subject)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.as_ref().map(incident_from).transpose()?)
    }

    async fn last_resolved_incident(
        &self,
        source: IncidentSource,
        subject: &str,
        since: i64,
    ) -> Result<Option<IncidentRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents
              WHERE source = $1 AND subject = $2 AND status = 'resolved' AND resolved_at >= $3
              ORDER BY resolved_at DESC
              LIMIT 1"
        ))
        .bind(source)
        .bind(subject)
        .bind(since)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.as_ref().map(incident_from).transpose()?)
    }

    async fn insert_incident(&self, i: &IncidentRecord) -> Result<bool> {
        let done = sqlx::query(concat!(
            "INSERT INTO incidents (",
            incident_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .bind(&i.id)
        .bind(&i.source)
        .bind(&i.subject)
        .bind(&i.project)
        .bind(&i.severity)
        .bind(&i.title)
        .bind(&i.reason)
        .bind(&i.status)
        .bind(i.opened_at)
        .bind(i.resolved_at)
        .bind(i.acked_at)
        .bind(&i.acked_by)
        .bind(i.changes)
        .bind(i64::from(i.flapping))
        .bind(i64::from(i.notified))
        .bind(i.updated_at)
        .execute(&self.write)
        .await;
        match done {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn replace_incident(&self, i: &IncidentRecord, seen: &IncidentRecord) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE incidents
             SET status = $2, severity = $3, title = $4, reason = $5, opened_at = $6, resolved_at = $7,
                 acked_at = $8, acked_by = $9, changes = $10, flapping = $11, updated_at = $12
             WHERE id = $1 AND status = $13 AND changes = $14 AND severity = $15
               AND COALESCE(acked_at, -1) = COALESCE($16, -1)",
        )
        .bind(&i.id)
        .bind(&i.status)
        .bind(&i.severity)
        .bind(&i.title)
        .bind(&i.reason)
        .bind(i.opened_at)
        .bind(i.resolved_at)
        .bind(i.acked_at)
        .bind(&i.acked_by)
        .bind(i.changes)
        .bind(i64::from(i.flapping))
        .bind(i.updated_at)
        .bind(&seen.status)
        .bind(seen.changes)
        .bind(&seen.severity)
        .bind(seen.acked_at)
        .execute(&self.write)
        .await;
        match done {
            Ok(done) => Ok(done.rows_affected() == 1),
            // Opened again while another of its key was opened meanwhile.
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn ack_incident(&self, id: &str, by: &str, at: i64) -> Result<Option<IncidentRecord>> {
        sqlx::query(
            "UPDATE incidents SET acked_at = $2, acked_by = $3, updated_at = $2 WHERE id = $1 AND acked_at IS NULL",
        )
        .bind(id)
        .bind(at)
        .bind(by)
        .execute(&self.write)
        .await?;
        self.get_incident(id).await
    }

    async fn get_incident(&self, id: &str) -> Result<Option<IncidentRecord>> {
        let row = sqlx::query(concat!("SELECT ", incident_columns!(), " FROM incidents WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(incident_from).transpose()?)
    }

    async fn list_incidents(&self, open_only: bool, project: Option<&str>, limit: i64) -> Result<Vec<IncidentRecord>> {
        // The open ones in a statement of their own, which the partial index of open incidents
        // serves however many resolved ones have piled up (`($1 = 0 OR status = 'open')` would
        // read them all).
        let sql = if open_only {
            concat!(
                "SELECT ",
                incident_columns!(),
                " FROM incidents WHERE status = 'open' AND ($1 IS NULL OR project = $1)
                  ORDER BY opened_at DESC, id DESC
                  LIMIT $2"
            )
        } else {
            concat!(
                "SELECT ",
                incident_columns!(),
                " FROM incidents WHERE ($1 IS NULL OR project = $1)
                  ORDER BY opened_at DESC, id DESC
                  LIMIT $2"
            )
        };
        let rows = sqlx::query(sql).bind(project).bind(limit.clamp(1, 1000)).fetch_all(&self.read).await?;
        all(rows, incident_from)
    }

    async fn set_incident_notified(&self, id: &str, notified: bool) -> Result<()> {
        sqlx::query("UPDATE incidents SET notified = $2 WHERE id = $1")
            .bind(id)
            .bind(i64::from(notified))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn claim_incident_notice(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE incidents SET notified = 1 WHERE id = $1 AND notified = 0")
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn incident_channels(&self, incident_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT d.channel FROM deliveries d JOIN notifications n ON n.id = d.notification_id
             WHERE n.incident_id = $1
             ORDER BY d.channel",
        )
        .bind(incident_id)
        .fetch_all(&self.read)
        .await?;
        all(rows, |row| row.try_get("channel"))
    }

    async fn insert_maintenance(&self, m: &MaintenanceRecord) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO maintenance_windows (",
            maintenance_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&m.id)
        .bind(&m.project)
        .bind(m.starts_at)
        .bind(m.ends_at)
        .bind(&m.reason)
        .bind(m.created_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn list_maintenance(&self, now: i64) -> Result<Vec<MaintenanceRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            maintenance_columns!(),
            " FROM maintenance_windows WHERE ends_at > $1 ORDER BY starts_at, id"
        ))
        .bind(now)
        .fetch_all(&self.read)
        .await?;
        all(rows, maintenance_from)
    }

    async fn end_maintenance(&self, id: &str, at: i64) -> Result<Option<MaintenanceRecord>> {
        let row = sqlx::query(concat!(
            "UPDATE maintenance_windows SET ends_at = CASE WHEN ends_at > $2 THEN $2 ELSE ends_at END
             WHERE id = $1
             RETURNING ",
            maintenance_columns!()
        ))
        .bind(id)
        .bind(at)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.as_ref().map(maintenance_from).transpose()?)
    }
}
