//! Heartbeat checks of schedules kept elsewhere, and the pings that feed them. A ping and the
//! check's new state (with its event) are written together.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use agent_os_core::check::CheckState;

use super::events::insert_event_tx;
use super::{SqlStore, Tx, all, flag};
use crate::model::{CheckRecord, NewCheck, NewEvent, PingUpdate, RidPings, Snooze};
use crate::{Result, StoreError};

/// Checks and pings. Every method commits before it returns.
#[async_trait]
pub trait CheckStore: Send + Sync {
    /// The project's ping key (for slug ping URLs), set to `candidate` if it has none.
    async fn ensure_ping_key(&self, project_id: &str, candidate: &str) -> Result<String>;
    /// Makes the project's checks exactly `checks`: existing ones (by slug) keep their id,
    /// state and pings; others are added; checks no longer declared are removed.
    async fn sync_checks(&self, project_id: &str, checks: &[NewCheck], now: i64) -> Result<()>;
    async fn list_checks(&self, project: Option<&str>) -> Result<Vec<CheckRecord>>;
    /// The checks carrying `tag`, across projects (or of `project` alone), by project and slug.
    async fn list_tagged_checks(&self, tag: &str, project: Option<&str>) -> Result<Vec<CheckRecord>>;
    async fn get_check(&self, id: &str) -> Result<Option<CheckRecord>>;
    async fn find_check_by_slug(&self, ping_key: &str, slug: &str) -> Result<Option<CheckRecord>>;
    /// What the check's pings with run id `rid` say, in one read: when the newest `start`
    /// arrived (pairs start and finish), and whether a ping of `kind` (as stored) is already
    /// recorded (a resend).
    async fn rid_pings(&self, check_id: &str, rid: &str, kind: &str) -> Result<RidPings>;
    /// Stores several pings, in order, in one transaction (a group commit).
    async fn record_pings(&self, pings: &[PingUpdate]) -> Result<()>;
    /// How many success pings (`success`, `exit 0`) the check has at `since` or later.
    async fn count_successes(&self, check_id: &str, since: i64) -> Result<i64>;
    /// Moves a check to `state` (with its event) unless it is already there.
    async fn set_check_state(&self, check_id: &str, state: CheckState, event: &NewEvent) -> Result<bool>;
    /// Records why the check's alert is held (`None`: nothing holds it), with `event` when
    /// given (`check.held`), in one transaction.
    async fn set_check_held(&self, check_id: &str, held_by: Option<&str>, event: Option<&NewEvent>) -> Result<()>;
    /// Snoozes the check (`None`: wakes it). False when there is no such check.
    async fn set_check_snooze(&self, check_id: &str, snooze: Option<&Snooze>) -> Result<bool>;
    /// Snoozes the project (`None`: wakes it).
    async fn set_project_snooze(&self, project_id: &str, snooze: Option<&Snooze>, now: i64) -> Result<()>;
    /// Every project snooze as stored (ended ones too), by project name.
    async fn project_snoozes(&self) -> Result<Vec<(String, Snooze)>>;
}

/// A check's columns with its project's name and ping key, from `checks c JOIN projects p`.
macro_rules! check_columns {
    () => {
        "c.id, c.project_id, p.name AS project, p.ping_key, c.slug, c.kind, c.period_ms, c.cron, c.timezone,
         c.grace_ms, c.start_grace_ms, c.min_duration_ms, c.max_duration_ms, c.max_pings_count,
         c.max_pings_within_ms, c.description, c.tags, c.state, c.last_finish_at, c.last_failed, c.running_since,
         c.last_ping_at, c.last_duration_ms, c.state_changed_at, c.created_at, c.depends_on, c.held_by, c.snoozed_until,
         c.snooze_reason, c.snoozed_by
         FROM checks c JOIN projects p ON p.id = c.project_id"
    };
}

fn check_from(row: &AnyRow) -> Result<CheckRecord, sqlx::Error> {
    Ok(CheckRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        project: row.try_get("project")?,
        ping_key: row.try_get("ping_key")?,
        slug: row.try_get("slug")?,
        kind: row.try_get("kind")?,
        period_ms: row.try_get("period_ms")?,
        cron: row.try_get("cron")?,
        timezone: row.try_get("timezone")?,
        grace_ms: row.try_get("grace_ms")?,
        start_grace_ms: row.try_get("start_grace_ms")?,
        min_duration_ms: row.try_get("min_duration_ms")?,
        max_duration_ms: row.try_get("max_duration_ms")?,
        max_pings: row
            .try_get::<Option<i64>, _>("max_pings_count")?
            .zip(row.try_get::<Option<i64>, _>("max_pings_within_ms")?),
        description: row.try_get("description")?,
        tags: tags_from(&row.try_get::<String, _>("tags")?),
        state: row.try_get("state")?,
        last_finish_at: row.try_get("last_finish_at")?,
        last_failed: flag(row, "last_failed")?,
        running_since: row.try_get("running_since")?,
        last_ping_at: row.try_get("last_ping_at")?,
        last_duration_ms: row.try_get("last_duration_ms")?,
        state_changed_at: row.try_get("state_changed_at")?,
        created_at: row.try_get("created_at")?,
        depends_on: row.try_get::<String, _>("depends_on")?.lines().map(str::to_string).collect(),
        held_by: row.try_get("held_by")?,
        snooze: row
            .try_get::<Option<i64>, _>("snoozed_until")?
            .map(|until| -> Result<Snooze, sqlx::Error> {
                Ok(Snooze { until, reason: row.try_get("snooze_reason")?, by: row.try_get("snoozed_by")? })
            })
            .transpose()?,
    })
}

/// Tags as stored: joined by single spaces (a tag holds none), `''` for none.
fn tags_column(tags: &[String]) -> String {
    tags.join(" ")
}

fn tags_from(column: &str) -> Vec<String> {
    column.split(' ').filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// The LIKE pattern that finds `tag` in `' ' || tags || ' '`: the tag between spaces, with the
/// characters LIKE gives meaning to (`_` is one a tag may hold) escaped by `\`.
fn tag_pattern(tag: &str) -> String {
    let mut p = String::from("% ");
    for c in tag.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push_str(" %");
    p
}

/// Most ping rows one multi-row insert carries (8 values each).
const PING_ROWS_PER_INSERT: usize = 200;

/// A check's row after a ping: its last ping, finish, state and (when the ping had one) duration.
async fn update_check_after_ping(tx: &mut Tx, p: &PingUpdate, duration: Option<i64>) -> Result<()> {
    sqlx::query(
        "UPDATE checks
         SET last_ping_at = $2, last_finish_at = $3, last_failed = $4, running_since = $5,
             last_duration_ms = COALESCE($6, last_duration_ms),
             state_changed_at = CASE WHEN state <> $7 THEN $2 ELSE state_changed_at END,
             state = $7
         WHERE id = $1",
    )
    .bind(&p.check_id)
    .bind(p.at)
    .bind(p.last_finish_at)
    .bind(i64::from(p.last_failed))
    .bind(p.running_since)
    .bind(duration)
    .bind(&p.state)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts pings as one multi-row statement.
async fn insert_pings(tx: &mut Tx, pings: &[PingUpdate]) -> Result<()> {
    let mut sql = String::from("INSERT INTO pings (id, check_id, at, kind, rid, duration_ms, body, remote) VALUES ");
    for i in 0..pings.len() {
        let b = i * 8;
        if i > 0 {
            sql.push_str(", ");
        }
        let params: Vec<String> = (1..=8).map(|k| format!("${}", b + k)).collect();
        sql.push_str(&format!("({})", params.join(", ")));
    }
    // Only numbered placeholders go into the text; every value is bound.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for p in pings {
        q = q
            .bind(&p.id)
            .bind(&p.check_id)
            .bind(p.at)
            .bind(&p.kind)
            .bind(&p.rid)
            .bind(p.duration_ms)
            .bind(&p.body)
            .bind(&p.remote);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

#[async_trait]
impl CheckStore for SqlStore {
    async fn ensure_ping_key(&self, project_id: &str, candidate: &str) -> Result<String> {
        sqlx::query("UPDATE projects SET ping_key = $2 WHERE id = $1 AND ping_key IS NULL")
            .bind(project_id)
            .bind(candidate)
            .execute(&self.write)
            .await?;
        let row = sqlx::query("SELECT ping_key FROM projects WHERE id = $1")
            .bind(project_id)
            .fetch_optional(&self.write)
            .await?;
        row.and_then(|row| row.try_get::<Option<String>, _>("ping_key").ok().flatten())
            .ok_or_else(|| StoreError::NotFound(format!("project {project_id:?}")))
    }

    async fn sync_checks(&self, project_id: &str, checks: &[NewCheck], now: i64) -> Result<()> {
        let mut tx = self.tx().await?;
        let existing =
            sqlx::query("SELECT slug FROM checks WHERE project_id = $1").bind(project_id).fetch_all(&mut *tx).await?;
        for row in &existing {
            let slug: String = row.try_get("slug")?;
            if !checks.iter().any(|c| c.slug == slug) {
                sqlx::query("DELETE FROM checks WHERE project_id = $1 AND slug = $2")
                    .bind(project_id)
                    .bind(&slug)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for c in checks {
            sqlx::query(
                "INSERT INTO checks
                     (id, project_id, slug, kind, period_ms, cron, timezone, grace_ms, description, created_at,
                      start_grace_ms, min_duration_ms, max_duration_ms, max_pings_count, max_pings_within_ms, tags,
                      depends_on)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
                 ON CONFLICT (project_id, slug) DO UPDATE SET
                     kind = excluded.kind, period_ms = excluded.period_ms, cron = excluded.cron,
                     timezone = excluded.timezone, grace_ms = excluded.grace_ms, description = excluded.description,
                     start_grace_ms = excluded.start_grace_ms, min_duration_ms = excluded.min_duration_ms,
                     max_duration_ms = excluded.max_duration_ms, max_pings_count = excluded.max_pings_count,
                     max_pings_within_ms = excluded.max_pings_within_ms, tags = excluded.tags,
                     depends_on = excluded.depends_on",
            )
            .bind(agent_os_core::id::new_id())
            .bind(project_id)
            .bind(&c.slug)
            .bind(&c.kind)
            .bind(c.period_ms)
            .bind(&c.cron)
            .bind(&c.timezone)
            .bind(c.grace_ms)
            .bind(&c.description)
            .bind(now)
            .bind(c.start_grace_ms)
            .bind(c.min_duration_ms)
            .bind(c.max_duration_ms)
            .bind(c.max_pings.map(|m| m.0))
            .bind(c.max_pings.map(|m| m.1))
            .bind(tags_column(&c.tags))
            .bind(c.depends_on.join("\n"))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_checks(&self, project: Option<&str>) -> Result<Vec<CheckRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            check_columns!(),
            " WHERE ($1 IS NULL OR p.name = $1) ORDER BY p.name, c.slug"
        ))
        .bind(project)
        .fetch_all(&self.read)
        .await?;
        all(rows, check_from)
    }

    async fn list_tagged_checks(&self, tag: &str, project: Option<&str>) -> Result<Vec<CheckRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            check_columns!(),
            " WHERE (' ' || c.tags || ' ') LIKE $1 ESCAPE '\\' AND ($2 IS NULL OR p.name = $2)
             ORDER BY p.name, c.slug"
        ))
        .bind(tag_pattern(tag))
        .bind(project)
        .fetch_all(&self.read)
        .await?;
        all(rows, check_from)
    }

    async fn get_check(&self, id: &str) -> Result<Option<CheckRecord>> {
        let row = sqlx::query(concat!("SELECT ", check_columns!(), " WHERE c.id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(check_from).transpose()?)
    }

    async fn find_check_by_slug(&self, ping_key: &str, slug: &str) -> Result<Option<CheckRecord>> {
        let row = sqlx::query(concat!("SELECT ", check_columns!(), " WHERE p.ping_key = $1 AND c.slug = $2"))
            .bind(ping_key)
            .bind(slug)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(check_from).transpose()?)
    }

    async fn rid_pings(&self, check_id: &str, rid: &str, kind: &str) -> Result<RidPings> {
        let row = sqlx::query(
            "SELECT MAX(CASE WHEN kind = 'start' THEN at END) AS started,
                    COUNT(CASE WHEN kind = $3 THEN 1 END) AS seen
             FROM pings WHERE check_id = $1 AND rid = $2",
        )
        .bind(check_id)
        .bind(rid)
        .bind(kind)
        .fetch_one(&self.write)
        .await?;
        Ok(RidPings { started: row.try_get("started")?, recorded: row.try_get::<i64, _>("seen")? > 0 })
    }

    async fn record_pings(&self, pings: &[PingUpdate]) -> Result<()> {
        let mut tx = self.tx().await?;
        // A group (often of one): the ping rows in multi-row inserts, then each check's row once
        // (its last ping's fields; each ping was computed from the row as it was before the
        // group), then the events. A few statements instead of two per ping.
        for chunk in pings.chunks(PING_ROWS_PER_INSERT) {
            insert_pings(&mut tx, chunk).await?;
        }
        let mut checks: Vec<&str> = Vec::new();
        for p in pings {
            if !checks.contains(&p.check_id.as_str()) {
                checks.push(&p.check_id);
            }
        }
        for check in checks {
            let group: Vec<&PingUpdate> = pings.iter().filter(|p| p.check_id == check).collect();
            let duration = group.iter().rev().find_map(|p| p.duration_ms);
            update_check_after_ping(&mut tx, group[group.len() - 1], duration).await?;
        }
        for e in pings.iter().filter_map(|p| p.event.as_ref()) {
            insert_event_tx(&mut tx, e).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn count_successes(&self, check_id: &str, since: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM pings WHERE check_id = $1 AND at >= $2 AND kind IN ('success', 'exit 0')",
        )
        .bind(check_id)
        .bind(since)
        .fetch_one(&self.write)
        .await?;
        Ok(row.try_get("n")?)
    }

    async fn set_check_state(&self, check_id: &str, state: CheckState, event: &NewEvent) -> Result<bool> {
        let mut tx = self.tx().await?;
        let changed = sqlx::query("UPDATE checks SET state = $2, state_changed_at = $3 WHERE id = $1 AND state <> $2")
            .bind(check_id)
            .bind(state)
            .bind(event.at)
            .execute(&mut *tx)
            .await?;
        if changed.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event_tx(&mut tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_check_held(&self, check_id: &str, held_by: Option<&str>, event: Option<&NewEvent>) -> Result<()> {
        let mut tx = self.tx().await?;
        sqlx::query("UPDATE checks SET held_by = $2 WHERE id = $1")
            .bind(check_id)
            .bind(held_by)
            .execute(&mut *tx)
            .await?;
        if let Some(e) = event {
            insert_event_tx(&mut tx, e).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_check_snooze(&self, check_id: &str, snooze: Option<&Snooze>) -> Result<bool> {
        let done =
            sqlx::query("UPDATE checks SET snoozed_until = $2, snooze_reason = $3, snoozed_by = $4 WHERE id = $1")
                .bind(check_id)
                .bind(snooze.map(|s| s.until))
                .bind(snooze.and_then(|s| s.reason.clone()))
                .bind(snooze.and_then(|s| s.by.clone()))
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_project_snooze(&self, project_id: &str, snooze: Option<&Snooze>, now: i64) -> Result<()> {
        match snooze {
            None => {
                sqlx::query("DELETE FROM project_snoozes WHERE project_id = $1")
                    .bind(project_id)
                    .execute(&self.write)
                    .await?;
            }
            Some(s) => {
                sqlx::query(
                    "INSERT INTO project_snoozes (project_id, snoozed_until, reason, snoozed_by, created_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (project_id) DO UPDATE SET
                         snoozed_until = excluded.snoozed_until, reason = excluded.reason,
                         snoozed_by = excluded.snoozed_by, created_at = excluded.created_at",
                )
                .bind(project_id)
                .bind(s.until)
                .bind(&s.reason)
                .bind(&s.by)
                .bind(now)
                .execute(&self.write)
                .await?;
            }
        }
        Ok(())
    }

    async fn project_snoozes(&self) -> Result<Vec<(String, Snooze)>> {
        let rows = sqlx::query(
            "SELECT p.name, s.snoozed_until, s.reason, s.snoozed_by
             FROM project_snoozes s JOIN projects p ON p.id = s.project_id ORDER BY p.name",
        )
        .fetch_all(&self.read)
        .await?;
        all(rows, |row| {
            Ok((
                row.try_get("name")?,
                Snooze {
                    until: row.try_get("snoozed_until")?,
                    reason: row.try_get("reason")?,
                    by: row.try_get("snoozed_by")?,
                },
            ))
        })
    }
}
