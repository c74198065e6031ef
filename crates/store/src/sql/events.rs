//! Events: what happened (`check.down`, `run.failed`, a project's own), stored once and routed
//! to workflows from the table.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::{Backend, SqlStore, Tx, all};
use crate::Result;
use crate::model::{EventRecord, NewEvent};

/// Events. Every method commits before it returns.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores an event on its own.
    async fn insert_event(&self, e: &NewEvent) -> Result<()>;
    /// Stores events; one whose idempotency key was seen before is not stored again, and the
    /// earlier one is returned with `false`.
    async fn emit_events(&self, events: &[(NewEvent, Option<String>)]) -> Result<Vec<(EventRecord, bool)>>;
    /// Newest first; `project` keeps that project's events only. `before` (an event's id) is a
    /// keyset cursor: only events older than that one come back (none for an unknown id).
    async fn list_events(
        &self,
        kind_prefix: Option<&str>,
        project: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventRecord>>;
    /// Events the workflow router has not looked at yet, oldest first.
    async fn unrouted_events(&self, limit: i64) -> Result<Vec<EventRecord>>;
    async fn mark_routed(&self, ids: &[String], at: i64) -> Result<()>;
    /// Events whose type starts with `type_prefix` (any, without one) stored at or after `since`,
    /// oldest first (for steps waiting for one).
    async fn events_since(&self, since: i64, type_prefix: Option<&str>, limit: i64) -> Result<Vec<EventRecord>>;
}

macro_rules! event_columns {
    () => {
        "id, type, project, subject, data, at"
    };
}

fn event_from(row: &AnyRow) -> Result<EventRecord, sqlx::Error> {
    Ok(EventRecord {
        id: row.try_get("id")?,
        kind: row.try_get("type")?,
        project: row.try_get("project")?,
        subject: row.try_get("subject")?,
        data: row.try_get("data")?,
        at: row.try_get("at")?,
    })
}

/// Stores an event inside `tx`, with whatever it comes from (a check's new state, a budget's
/// threshold).
pub(crate) async fn insert_event_tx(tx: &mut Tx, e: &NewEvent) -> Result<()> {
    sqlx::query("INSERT INTO events (id, type, project, subject, data, at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&e.id)
        .bind(&e.kind)
        .bind(&e.project)
        .bind(&e.subject)
        .bind(&e.data)
        .bind(e.at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl EventStore for SqlStore {
    async fn insert_event(&self, e: &NewEvent) -> Result<()> {
        let mut tx = self.tx().await?;
        insert_event_tx(&mut tx, e).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn emit_events(&self, events: &[(NewEvent, Option<String>)]) -> Result<Vec<(EventRecord, bool)>> {
        let mut tx = self.tx().await?;
        let mut out = Vec::with_capacity(events.len());
        for (e, key) in events {
            if let Some(k) = key {
                let earlier =
                    sqlx::query(concat!("SELECT ", event_columns!(), " FROM events WHERE idempotency_key = $1"))
                        .bind(k)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(row) = earlier {
                    out.push((event_from(&row)?, false));
                    continue;
                }
            }
            sqlx::query(
                "INSERT INTO events (id, type, project, subject, data, at, idempotency_key)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&e.id)
            .bind(&e.kind)
            .bind(&e.project)
            .bind(&e.subject)
            .bind(&e.data)
            .bind(e.at)
            .bind(key)
            .execute(&mut *tx)
            .await?;
            out.push((e.clone(), true));
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn list_events(
        &self,
        kind_prefix: Option<&str>,
        project: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventRecord>> {
        let cursor = match before {
            None => None,
            Some(id) => {
                let row =
                    sqlx::query("SELECT at FROM events WHERE id = $1").bind(id).fetch_optional(&self.read).await?;
                match row {
                    Some(row) => Some((row.try_get::<i64, _>("at")?, id)),
                    None => return Ok(Vec::new()),
                }
            }
        };
        // Only the filters given are written, so each combination reads from its index (see
        // `filtered`). The type prefix is exact and case-sensitive, which `LIKE` (case-insensitive,
        // with `_` and `%` as wildcards) was not; on SQLite it is a range an index can serve.
        let prefix = kind_prefix.filter(|p| !p.is_empty());
        let mut sql = String::from(concat!("SELECT ", event_columns!(), " FROM events WHERE 1 = 1"));
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        // SQLite compares text byte by byte, so the range is exact there; PostgreSQL's collation
        // may not be, so it compares the type's start instead.
        let range = self.backend == Backend::Sqlite;
        if prefix.is_some() {
            if range {
                sql.push_str(&format!(" AND type >= ${} AND type < ${}", next(), next()));
            } else {
                let k = next();
                sql.push_str(&format!(" AND left(type, length(${k})) = ${k}"));
            }
        }
        if project.is_some() {
            sql.push_str(&format!(" AND project = ${}", next()));
        }
        if cursor.is_some() {
            // After the cursor event in (at, id) order; `at <= cursor` on its own lets the index
            // start the scan at the cursor instead of walking every newer event.
            let (a, b, c) = (next(), next(), next());
            sql.push_str(&format!(" AND at <= ${a} AND (at < ${b} OR id < ${c})"));
        }
        sql.push_str(&format!(" ORDER BY at DESC, id DESC LIMIT ${}", next()));
        let mut q = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        if let Some(p) = prefix {
            q = q.bind(p.to_string());
            if range {
                q = q.bind(format!("{p}\u{10FFFF}"));
            }
        }
        if let Some(p) = project {
            q = q.bind(p.to_string());
        }
        if let Some((at, id)) = cursor {
            q = q.bind(at).bind(at).bind(id.to_string());
        }
        let q = q.bind(limit.clamp(1, 1000));
        let rows = q.fetch_all(&self.read).await?;
        all(rows, event_from)
    }

    async fn unrouted_events(&self, limit: i64) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE routed_at IS NULL ORDER BY at, id LIMIT $1"
        ))
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.read)
        .await?;
        all(rows, event_from)
    }

    async fn mark_routed(&self, ids: &[String], at: i64) -> Result<()> {
        let mut tx = self.tx().await?;
        for id in ids {
            sqlx::query("UPDATE events SET routed_at = $2 WHERE id = $1").bind(id).bind(at).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn events_since(&self, since: i64, type_prefix: Option<&str>, limit: i64) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events
              WHERE at >= $1 AND ($3 IS NULL OR type LIKE $3 || '%')
              ORDER BY at, id
              LIMIT $2"
        ))
        .bind(since)
        .bind(limit.clamp(1, 10_000))
        .bind(type_prefix)
        .fetch_all(&self.read)
        .await?;
        all(rows, event_from)
    }
}
