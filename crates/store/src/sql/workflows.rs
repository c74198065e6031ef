//! Workflow runs and their steps: a run keeps the definition it started with, and each step's
//! state is a row the engine decides from again on every pass.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use super::{SqlStore, Tx, all, is_unique_violation};
use crate::Result;
use crate::model::{ApprovalRecord, StepCommit, StepCommitted, StepRecord, WorkflowRunRecord};

/// Workflow runs and steps. Every method commits before it returns.
#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Stores a workflow run, unless one of the workflow has the same trigger key: then that
    /// one is returned with `false`.
    async fn insert_workflow_run(&self, r: &WorkflowRunRecord) -> Result<(WorkflowRunRecord, bool)>;
    async fn get_workflow_run(&self, id: &str) -> Result<Option<WorkflowRunRecord>>;
    /// Newest first; `active_only`: queued and running.
    async fn list_workflow_runs(
        &self,
        workflow: Option<&str>,
        active_only: bool,
        limit: i64,
    ) -> Result<Vec<WorkflowRunRecord>>;
    /// Stores a run's status, outputs, error and times, unless it has already ended (a run
    /// ends once); false when it had.
    async fn update_workflow_run(&self, r: &WorkflowRunRecord) -> Result<bool>;
    async fn workflow_steps(&self, run_id: &str) -> Result<Vec<StepRecord>>;
    /// Stores step states (insert or replace), in one transaction.
    async fn put_steps(&self, steps: &[StepRecord]) -> Result<()>;
    /// Stores what one pass over a run decided, all or nothing (see [`StepCommit`]).
    async fn commit_steps(&self, c: &StepCommit) -> Result<StepCommitted>;
    /// Stores the decision on an approval step unless one is stored: `None` when this one
    /// was, else the decision that stands (the first one wins, also across nodes).
    async fn decide_approval(&self, d: &ApprovalRecord) -> Result<Option<ApprovalRecord>>;
    /// The decisions on a run's approval steps.
    async fn workflow_approvals(&self, run_id: &str) -> Result<Vec<ApprovalRecord>>;
}

fn approval_from(row: &AnyRow) -> Result<ApprovalRecord, sqlx::Error> {
    Ok(ApprovalRecord {
        run_id: row.try_get("run_id")?,
        step_id: row.try_get("step_id")?,
        decision: row.try_get("decision")?,
        decided_by: row.try_get("decided_by")?,
        decided_at: row.try_get("decided_at")?,
        comment: row.try_get("comment")?,
        inputs: row.try_get("inputs")?,
    })
}

macro_rules! workflow_run_columns {
    () => {
        "id, workflow, definition, status, trigger, trigger_key, event, inputs, outputs, error, concurrency_key,
         parent_run_id, parent_step, created_at, started_at, finished_at, deadline_at"
    };
}

macro_rules! step_columns {
    () => {
        "run_id, step_id, item, status, attempt, task_run_id, child_run_id, outputs, error, wake_at, started_at,
         finished_at"
    };
}

fn workflow_run_from(row: &AnyRow) -> Result<WorkflowRunRecord, sqlx::Error> {
    Ok(WorkflowRunRecord {
        id: row.try_get("id")?,
        workflow: row.try_get("workflow")?,
        definition: row.try_get("definition")?,
        status: row.try_get("status")?,
        trigger: row.try_get("trigger")?,
        trigger_key: row.try_get("trigger_key")?,
        event: row.try_get("event")?,
        inputs: row.try_get("inputs")?,
        outputs: row.try_get("outputs")?,
        error: row.try_get("error")?,
        concurrency_key: row.try_get("concurrency_key")?,
        parent_run_id: row.try_get("parent_run_id")?,
        parent_step: row.try_get("parent_step")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        deadline_at: row.try_get("deadline_at")?,
    })
}

fn step_from(row: &AnyRow) -> Result<StepRecord, sqlx::Error> {
    Ok(StepRecord {
        run_id: row.try_get("run_id")?,
        step_id: row.try_get("step_id")?,
        item: row.try_get("item")?,
        status: row.try_get("status")?,
        attempt: row.try_get("attempt")?,
        task_run_id: row.try_get("task_run_id")?,
        child_run_id: row.try_get("child_run_id")?,
        outputs: row.try_get("outputs")?,
        error: row.try_get("error")?,
        wake_at: row.try_get("wake_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// Stores step rows in `tx`, many to a statement.
async fn put_steps_in(tx: &mut Tx, steps: &[StepRecord]) -> Result<()> {
    // 12 values a row; SQLite allows 32,766 in a statement.
    for chunk in steps.chunks(500) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let p: Vec<String> = (1..=12).map(|c| format!("${}", r * 12 + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!(
            concat!(
                "INSERT INTO workflow_steps (",
                step_columns!(),
                ") VALUES {}
                 ON CONFLICT (run_id, step_id, item) DO UPDATE SET
                     status = excluded.status, attempt = excluded.attempt, task_run_id = excluded.task_run_id,
                     child_run_id = excluded.child_run_id, outputs = excluded.outputs, error = excluded.error,
                     wake_at = excluded.wake_at, started_at = excluded.started_at, finished_at = excluded.finished_at"
            ),
            rows.join(", ")
        );
        let mut q = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for s in chunk {
            q = q
                .bind(&s.run_id)
                .bind(&s.step_id)
                .bind(s.item)
                .bind(&s.status)
                .bind(s.attempt)
                .bind(&s.task_run_id)
                .bind(&s.child_run_id)
                .bind(&s.outputs)
                .bind(&s.error)
                .bind(s.wake_at)
                .bind(s.started_at)
                .bind(s.finished_at);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

#[async_trait]
impl WorkflowStore for SqlStore {
    async fn insert_workflow_run(&self, r: &WorkflowRunRecord) -> Result<(WorkflowRunRecord, bool)> {
        let done = sqlx::query(concat!(
            "INSERT INTO workflow_runs (",
            workflow_run_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ))
        .bind(&r.id)
        .bind(&r.workflow)
        .bind(&r.definition)
        .bind(&r.status)
        .bind(&r.trigger)
        .bind(&r.trigger_key)
        .bind(&r.event)
        .bind(&r.inputs)
        .bind(&r.outputs)
        .bind(&r.error)
        .bind(&r.concurrency_key)
        .bind(&r.parent_run_id)
        .bind(&r.parent_step)
        .bind(r.created_at)
        .bind(r.started_at)
        .bind(r.finished_at)
        .bind(r.deadline_at)
        .execute(&self.write)
        .await;
        match done {
            Ok(_) => Ok((r.clone(), true)),
            Err(e) if is_unique_violation(&e) => {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    workflow_run_columns!(),
                    " FROM workflow_runs WHERE workflow = $1 AND trigger_key = $2"
                ))
                .bind(&r.workflow)
                .bind(&r.trigger_key)
                .fetch_one(&self.write)
                .await?;
                Ok((workflow_run_from(&row)?, false))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn get_workflow_run(&self, id: &str) -> Result<Option<WorkflowRunRecord>> {
        let row = sqlx::query(concat!("SELECT ", workflow_run_columns!(), " FROM workflow_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(workflow_run_from).transpose()?)
    }

    async fn list_workflow_runs(
        &self,
        workflow: Option<&str>,
        active_only: bool,
        limit: i64,
    ) -> Result<Vec<WorkflowRunRecord>> {
        // One statement per shape, without `($1 IS NULL OR …)`, so each reads its index newest
        // first (SQLite cannot use an index through such an `OR`).
        let active = if active_only { "AND status IN ('queued', 'running')" } else { "" };
        let limit = limit.clamp(1, 10_000);
        let rows = match workflow {
            Some(w) => {
                let sql = format!(
                    concat!(
                        "SELECT ",
                        workflow_run_columns!(),
                        " FROM workflow_runs WHERE workflow = $1 {active}
                          ORDER BY created_at DESC, id DESC
                          LIMIT $2"
                    ),
                    active = active
                );
                sqlx::query::<Any>(sqlx::AssertSqlSafe(sql)).bind(w).bind(limit).fetch_all(&self.read).await?
            }
            None => {
                let sql = format!(
                    concat!(
                        "SELECT ",
                        workflow_run_columns!(),
                        " FROM workflow_runs WHERE 1 = 1 {active}
                          ORDER BY created_at DESC, id DESC
                          LIMIT $1"
                    ),
                    active = active
                );
                sqlx::query::<Any>(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(&self.read).await?
            }
        };
        all(rows, workflow_run_from)
    }

    async fn update_workflow_run(&self, r: &WorkflowRunRecord) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE workflow_runs
             SET status = $2, outputs = $3, error = $4, started_at = $5, finished_at = $6, deadline_at = $7
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(&r.id)
        .bind(&r.status)
        .bind(&r.outputs)
        .bind(&r.error)
        .bind(r.started_at)
        .bind(r.finished_at)
        .bind(r.deadline_at)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn workflow_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            step_columns!(),
            " FROM workflow_steps WHERE run_id = $1 ORDER BY started_at, step_id, item"
        ))
        .bind(run_id)
        .fetch_all(&self.read)
        .await?;
        all(rows, step_from)
    }

    async fn put_steps(&self, steps: &[StepRecord]) -> Result<()> {
        let mut tx = self.tx().await?;
        put_steps_in(&mut tx, steps).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn commit_steps(&self, c: &StepCommit) -> Result<StepCommitted> {
        let mut tx = self.tx().await?;
        let mut finished = Vec::with_capacity(c.finish.len());
        for f in &c.finish {
            finished.push(super::runs::finish_in(&mut tx, f).await?);
        }
        let queued = super::runs::queue_and_claim(&mut tx, &c.runs, c.claim.as_ref()).await?;
        put_steps_in(&mut tx, &c.steps).await?;
        tx.commit().await?;
        Ok(StepCommitted { finished, queued })
    }

    async fn decide_approval(&self, d: &ApprovalRecord) -> Result<Option<ApprovalRecord>> {
        let done = sqlx::query(
            "INSERT INTO workflow_approvals (run_id, step_id, decision, decided_by, decided_at, comment, inputs)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (run_id, step_id) DO NOTHING",
        )
        .bind(&d.run_id)
        .bind(&d.step_id)
        .bind(&d.decision)
        .bind(&d.decided_by)
        .bind(d.decided_at)
        .bind(&d.comment)
        .bind(&d.inputs)
        .execute(&self.write)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(None);
        }
        let stands = self.workflow_approvals(&d.run_id).await?.into_iter().find(|a| a.step_id == d.step_id);
        Ok(stands)
    }

    async fn workflow_approvals(&self, run_id: &str) -> Result<Vec<ApprovalRecord>> {
        let rows = sqlx::query(
            "SELECT run_id, step_id, decision, decided_by, decided_at, comment, inputs
             FROM workflow_approvals WHERE run_id = $1 ORDER BY decided_at, step_id",
        )
        .bind(run_id)
        .fetch_all(&self.read)
        .await?;
        all(rows, approval_from)
    }
}
