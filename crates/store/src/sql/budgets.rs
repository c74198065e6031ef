//! Budgets, the thresholds each has crossed per period, and the projects a budget paused.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::events::insert_event_tx;
use super::{SqlStore, Tx, all};
use crate::Result;
use crate::model::{BudgetRecord, NewEvent, PauseRecord};

/// Budgets, their marks and pauses. Every method commits before it returns.
#[async_trait]
pub trait BudgetStore: Send + Sync {
    /// Creates or replaces the budget of its (project, service, period).
    async fn upsert_budget(&self, b: &BudgetRecord) -> Result<BudgetRecord>;
    /// Makes the budgets from config.yaml exactly `budgets` (API-made ones are kept).
    async fn sync_config_budgets(&self, budgets: &[BudgetRecord]) -> Result<()>;
    async fn list_budgets(&self, project: Option<&str>) -> Result<Vec<BudgetRecord>>;
    async fn delete_budget(&self, id: &str) -> Result<bool>;
    /// Records that a budget crossed each of `thresholds` (ascending) in the period starting at
    /// `period_start`. The event (and the pause) belong to the highest, the last: they are stored
    /// and true returned only when that one is new, so one cost that crosses several thresholds
    /// is told once, at the highest.
    async fn mark_budget(
        &self,
        budget_id: &str,
        period_start: i64,
        thresholds: &[i64],
        event: &NewEvent,
        pause: Option<&PauseRecord>,
    ) -> Result<bool>;
    async fn get_pause(&self, project: &str) -> Result<Option<PauseRecord>>;
    async fn list_pauses(&self) -> Result<Vec<PauseRecord>>;
    /// Lifts a project's pause; false when it had none.
    async fn clear_pause(&self, project: &str) -> Result<bool>;
}

macro_rules! budget_columns {
    () => {
        "id, project, service, period, amount_nanos, currency, thresholds, on_exceed, source, created_at"
    };
}

fn budget_from(row: &AnyRow) -> Result<BudgetRecord, sqlx::Error> {
    Ok(BudgetRecord {
        id: row.try_get("id")?,
        project: row.try_get("project")?,
        service: row.try_get("service")?,
        period: row.try_get("period")?,
        amount_nanos: row.try_get("amount_nanos")?,
        currency: row.try_get("currency")?,
        thresholds: parse_thresholds(&row.try_get::<String, _>("thresholds")?),
        on_exceed: row.try_get("on_exceed")?,
        source: row.try_get("source")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Thresholds as stored: percentages separated by commas.
fn parse_thresholds(text: &str) -> Vec<i64> {
    text.split(',').filter_map(|t| t.trim().parse().ok()).collect()
}

fn pause_from(row: &AnyRow) -> Result<PauseRecord, sqlx::Error> {
    Ok(PauseRecord {
        project: row.try_get("project")?,
        reason: row.try_get("reason")?,
        budget_id: row.try_get("budget_id")?,
        since: row.try_get("since")?,
        until: row.try_get("until")?,
    })
}

async fn insert_budget(tx: &mut Tx, b: &BudgetRecord) -> Result<()> {
    let thresholds: Vec<String> = b.thresholds.iter().map(i64::to_string).collect();
    sqlx::query(concat!(
        "INSERT INTO budgets (",
        budget_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&b.id)
    .bind(&b.project)
    .bind(&b.service)
    .bind(&b.period)
    .bind(b.amount_nanos)
    .bind(&b.currency)
    .bind(thresholds.join(","))
    .bind(&b.on_exceed)
    .bind(&b.source)
    .bind(b.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl BudgetStore for SqlStore {
    async fn upsert_budget(&self, b: &BudgetRecord) -> Result<BudgetRecord> {
        let mut tx = self.tx().await?;
        let existing =
            sqlx::query("SELECT id, created_at FROM budgets WHERE project = $1 AND service = $2 AND period = $3")
                .bind(&b.project)
                .bind(&b.service)
                .bind(&b.period)
                .fetch_optional(&mut *tx)
                .await?;
        let (id, created_at) = match existing {
            Some(row) => (row.try_get::<String, _>("id")?, row.try_get::<i64, _>("created_at")?),
            None => (b.id.clone(), b.created_at),
        };
        sqlx::query("DELETE FROM budgets WHERE id = $1").bind(&id).execute(&mut *tx).await?;
        let stored = BudgetRecord { id, created_at, ..b.clone() };
        insert_budget(&mut tx, &stored).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn sync_config_budgets(&self, budgets: &[BudgetRecord]) -> Result<()> {
        let mut tx = self.startup_tx().await?;
        let kept = sqlx::query(concat!("SELECT ", budget_columns!(), " FROM budgets WHERE source = 'config'"))
            .fetch_all(&mut *tx)
            .await?;
        let kept = all(kept, budget_from)?;
        sqlx::query("DELETE FROM budgets WHERE source = 'config'").execute(&mut *tx).await?;
        for b in budgets {
            // A budget that stays in the file keeps its id, and so its marks.
            let id = kept
                .iter()
                .find(|k| k.project == b.project && k.service == b.service && k.period == b.period)
                .map_or_else(|| b.id.clone(), |k| k.id.clone());
            sqlx::query("DELETE FROM budgets WHERE project = $1 AND service = $2 AND period = $3")
                .bind(&b.project)
                .bind(&b.service)
                .bind(&b.period)
                .execute(&mut *tx)
                .await?;
            insert_budget(&mut tx, &BudgetRecord { id, ..b.clone() }).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_budgets(&self, project: Option<&str>) -> Result<Vec<BudgetRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            budget_columns!(),
            " FROM budgets WHERE ($1 IS NULL OR project = $1) ORDER BY project, service, period"
        ))
        .bind(project)
        .fetch_all(&self.read)
        .await?;
        all(rows, budget_from)
    }

    async fn delete_budget(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM budgets WHERE id = $1").bind(id).execute(&self.write).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn mark_budget(
        &self,
        budget_id: &str,
        period_start: i64,
        thresholds: &[i64],
        event: &NewEvent,
        pause: Option<&PauseRecord>,
    ) -> Result<bool> {
        let Some(highest) = thresholds.last() else { return Ok(false) };
        let mut tx = self.tx().await?;
        let mut highest_is_new = false;
        for threshold in thresholds {
            let marked = sqlx::query(
                "INSERT INTO budget_marks (budget_id, period_start, threshold, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (budget_id, period_start, threshold) DO NOTHING",
            )
            .bind(budget_id)
            .bind(period_start)
            .bind(threshold)
            .bind(event.at)
            .execute(&mut *tx)
            .await?;
            highest_is_new = threshold == highest && marked.rows_affected() == 1;
        }
        if !highest_is_new {
            // Lower thresholds newly marked (thresholds edited) are not news after a higher one.
            tx.commit().await?;
            return Ok(false);
        }
        insert_event_tx(&mut tx, event).await?;
        if let Some(p) = pause {
            sqlx::query(
                "INSERT INTO project_pauses (project, reason, budget_id, since, until) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (project) DO UPDATE SET
                     reason = excluded.reason, budget_id = excluded.budget_id, since = excluded.since,
                     until = excluded.until",
            )
            .bind(&p.project)
            .bind(&p.reason)
            .bind(&p.budget_id)
            .bind(p.since)
            .bind(p.until)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn get_pause(&self, project: &str) -> Result<Option<PauseRecord>> {
        let row = sqlx::query("SELECT project, reason, budget_id, since, until FROM project_pauses WHERE project = $1")
            .bind(project)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(pause_from).transpose()?)
    }

    async fn list_pauses(&self) -> Result<Vec<PauseRecord>> {
        let rows = sqlx::query("SELECT project, reason, budget_id, since, until FROM project_pauses ORDER BY project")
            .fetch_all(&self.read)
            .await?;
        all(rows, pause_from)
    }

    async fn clear_pause(&self, project: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM project_pauses WHERE project = $1").bind(project).execute(&self.write).await?;
        Ok(done.rows_affected() > 0)
    }
}
