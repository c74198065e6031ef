//! Schedules as projects declare them, and what the scheduler remembers of each managed one:
//! its last slot, its pause, and one record per slot it ever claimed.

use async_trait::async_trait;
use sqlx::Row;

use agent_os_core::run::RunStatus;

use super::runs::queue_run;
use super::{SqlStore, Tx, all, flag};
use crate::Result;
use crate::model::{NewSchedule, ScheduleRecord, ScheduleState, SlotFire, SlotRun};

/// Declared schedules and the scheduler's slots. Every method commits before it returns.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Every project's schedules (or one project's), in manifest order.
    async fn list_schedules(&self, project: Option<&str>) -> Result<Vec<ScheduleRecord>>;
    /// Claims each slot of a schedule once ever, in one transaction: the slot record, its run
    /// (if any) and the schedule's last slot moved forward. Says which slots were claimed here
    /// (false, with nothing written, when this node or another already had).
    async fn fire_slots(&self, fires: &[SlotFire], now: i64) -> Result<Vec<bool>>;
    /// The id and status of the run started by the schedule's most recent fired slot, if any.
    async fn last_schedule_run(&self, key: &str) -> Result<Option<(String, RunStatus)>>;
    /// Every schedule the scheduler has seen, with its newest run.
    async fn schedule_states(&self) -> Result<Vec<ScheduleState>>;
    /// Records that new schedules start counting from `slot` (existing ones are not moved).
    async fn init_schedules(&self, keys: &[String], slot: i64) -> Result<()>;
    /// Pauses or resumes a schedule. Resuming moves its last slot to `now`: slots that passed
    /// while it was paused are not caught up.
    async fn set_schedule_paused(&self, key: &str, paused: bool, now: i64) -> Result<()>;
    /// Adds schedules found by discovery to a project (replacing ones of the same name). They
    /// survive manifest reloads.
    async fn add_discovered_schedules(&self, project_id: &str, schedules: &[NewSchedule]) -> Result<()>;
    async fn remove_discovered_schedule(&self, project_id: &str, name: &str) -> Result<bool>;
}

/// Replaces a project's schedules with those of its manifest, inside `tx`. Registered
/// discovered schedules are not part of the manifest: a reload keeps them.
pub(crate) async fn replace_manifest_schedules(tx: &mut Tx, project_id: &str, schedules: &[NewSchedule]) -> Result<()> {
    sqlx::query("DELETE FROM schedules WHERE project_id = $1 AND source <> 'discovered'")
        .bind(project_id)
        .execute(&mut **tx)
        .await?;
    for (i, s) in schedules.iter().enumerate() {
        insert_schedule(tx, project_id, s, i as i64).await?;
    }
    Ok(())
}

async fn insert_schedule(tx: &mut Tx, project_id: &str, s: &NewSchedule, position: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO schedules
             (id, project_id, task, cron, timezone, managed_by, description, source, position, check_slug)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(agent_os_core::id::new_id())
    .bind(project_id)
    .bind(&s.task)
    .bind(&s.cron)
    .bind(&s.timezone)
    .bind(&s.managed_by)
    .bind(&s.description)
    .bind(&s.source)
    .bind(position)
    .bind(&s.check_slug)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Claims a schedule slot, once ever, with its run, and moves the schedule's last slot forward;
/// false (and nothing written) when the slot was already claimed, by this node or another.
async fn write_slot(tx: &mut Tx, f: &SlotFire, now: i64) -> Result<bool> {
    let claimed = sqlx::query(
        "INSERT INTO schedule_slots (schedule_key, slot, run_id, outcome, fired_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (schedule_key, slot) DO NOTHING",
    )
    .bind(&f.key)
    .bind(f.slot)
    .bind(f.run.as_ref().map(|r| r.id.as_str()))
    .bind(&f.outcome)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if claimed.rows_affected() == 0 {
        return Ok(false);
    }
    if let Some(run) = &f.run {
        queue_run(tx, run, now).await?;
    }
    sqlx::query(
        "INSERT INTO schedule_state (schedule_key, last_slot) VALUES ($1, $2)
         ON CONFLICT (schedule_key) DO UPDATE SET last_slot = CASE
             WHEN schedule_state.last_slot > excluded.last_slot THEN schedule_state.last_slot
             ELSE excluded.last_slot
         END",
    )
    .bind(&f.key)
    .bind(f.slot)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// Each schedule's state with the run of its newest slot that started one.
const SCHEDULE_STATES: &str = r#"
    SELECT st.schedule_key, st.last_slot, st.paused, st.paused_at, sl.slot, r.id AS run_id,
           r.status AS run_status, r.started_at, r.finished_at
    FROM schedule_state st
    LEFT JOIN schedule_slots sl
           ON sl.schedule_key = st.schedule_key
          AND sl.slot = (SELECT MAX(x.slot) FROM schedule_slots x
                         WHERE x.schedule_key = st.schedule_key AND x.run_id IS NOT NULL)
    LEFT JOIN runs r ON r.id = sl.run_id"#;

#[async_trait]
impl ScheduleStore for SqlStore {
    async fn list_schedules(&self, project: Option<&str>) -> Result<Vec<ScheduleRecord>> {
        let rows = sqlx::query(
            "SELECT s.id, p.name AS project, s.task, s.cron, s.timezone, s.managed_by, s.description, s.source,
                    s.project_id, s.check_slug
             FROM schedules s JOIN projects p ON p.id = s.project_id
             WHERE ($1 IS NULL OR p.name = $1)
             ORDER BY p.name, s.position",
        )
        .bind(project)
        .fetch_all(&self.read)
        .await?;
        all(rows, |row| {
            Ok(ScheduleRecord {
                id: row.try_get("id")?,
                project: row.try_get("project")?,
                task: row.try_get("task")?,
                cron: row.try_get("cron")?,
                timezone: row.try_get("timezone")?,
                managed_by: row.try_get("managed_by")?,
                description: row.try_get("description")?,
                source: row.try_get("source")?,
                project_id: row.try_get("project_id")?,
                check_slug: row.try_get("check_slug")?,
            })
        })
    }

    async fn fire_slots(&self, fires: &[SlotFire], now: i64) -> Result<Vec<bool>> {
        let mut tx = self.tx().await?;
        let mut claimed = Vec::with_capacity(fires.len());
        for f in fires {
            claimed.push(write_slot(&mut tx, f, now).await?);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn last_schedule_run(&self, key: &str) -> Result<Option<(String, RunStatus)>> {
        let row = sqlx::query(
            "SELECT r.id, r.status FROM schedule_slots s JOIN runs r ON r.id = s.run_id
             WHERE s.schedule_key = $1
             ORDER BY s.slot DESC
             LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&self.read)
        .await?;
        Ok(match row {
            Some(row) => Some((row.try_get("id")?, row.try_get("status")?)),
            None => None,
        })
    }

    async fn schedule_states(&self) -> Result<Vec<ScheduleState>> {
        let rows = sqlx::query(SCHEDULE_STATES).fetch_all(&self.read).await?;
        all(rows, |row| {
            let run_id: Option<String> = row.try_get("run_id")?;
            Ok(ScheduleState {
                key: row.try_get("schedule_key")?,
                last_slot: row.try_get("last_slot")?,
                paused: flag(row, "paused")?,
                paused_at: row.try_get("paused_at")?,
                last_run: match run_id {
                    Some(run_id) => Some(SlotRun {
                        slot: row.try_get("slot")?,
                        run_id,
                        status: row.try_get("run_status")?,
                        started_at: row.try_get("started_at")?,
                        finished_at: row.try_get("finished_at")?,
                    }),
                    None => None,
                },
            })
        })
    }

    async fn init_schedules(&self, keys: &[String], slot: i64) -> Result<()> {
        let mut tx = self.tx().await?;
        for key in keys {
            sqlx::query(
                "INSERT INTO schedule_state (schedule_key, last_slot) VALUES ($1, $2)
                 ON CONFLICT (schedule_key) DO NOTHING",
            )
            .bind(key)
            .bind(slot)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_schedule_paused(&self, key: &str, paused: bool, now: i64) -> Result<()> {
        let sql = if paused {
            "INSERT INTO schedule_state (schedule_key, last_slot, paused, paused_at) VALUES ($1, $2, 1, $2)
             ON CONFLICT (schedule_key) DO UPDATE SET paused = 1, paused_at = excluded.paused_at"
        } else {
            // Slots that passed while paused are not caught up: counting starts again now.
            "INSERT INTO schedule_state (schedule_key, last_slot, paused) VALUES ($1, $2, 0)
             ON CONFLICT (schedule_key) DO UPDATE SET paused = 0, paused_at = NULL, last_slot = CASE
                 WHEN schedule_state.last_slot > excluded.last_slot THEN schedule_state.last_slot
                 ELSE excluded.last_slot
             END"
        };
        sqlx::query(sql).bind(key).bind(now).execute(&self.write).await?;
        Ok(())
    }

    async fn add_discovered_schedules(&self, project_id: &str, schedules: &[NewSchedule]) -> Result<()> {
        let mut tx = self.tx().await?;
        for s in schedules {
            sqlx::query("DELETE FROM schedules WHERE project_id = $1 AND source = 'discovered' AND task = $2")
                .bind(project_id)
                .bind(&s.task)
                .execute(&mut *tx)
                .await?;
            insert_schedule(&mut tx, project_id, s, 1_000_000).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn remove_discovered_schedule(&self, project_id: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM schedules WHERE project_id = $1 AND source = 'discovered' AND task = $2")
            .bind(project_id)
            .bind(name)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
