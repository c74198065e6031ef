//! Events as workflows see them, workflow runs and their steps, on SQLite and PostgreSQL.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::sql::{SqlStore, all, is_unique_violation};
use crate::{EventRecord, NewEvent, NewRun, Result, RunRecord, StepRecord, WorkflowRunRecord};

macro_rules! wf_run_cols {
    () => {
        "id, workflow, definition, status, trigger, trigger_key, event, inputs, outputs, error, concurrency_key, parent_run_id, parent_step, created_at, started_at, finished_at, deadline_at"
    };
}

macro_rules! step_cols {
    () => {
        "run_id, step_id, item, status, attempt, task_run_id, child_run_id, outputs, error, wake_at, started_at, finished_at"
    };
}

fn wf_run_from(r: &AnyRow) -> Result<WorkflowRunRecord, sqlx::Error> {
    Ok(WorkflowRunRecord {
        id: r.try_get(0)?,
        workflow: r.try_get(1)?,
        definition: r.try_get(2)?,
        status: r.try_get(3)?,
        trigger: r.try_get(4)?,
        trigger_key: r.try_get(5)?,
        event: r.try_get(6)?,
        inputs: r.try_get(7)?,
        outputs: r.try_get(8)?,
        error: r.try_get(9)?,
        concurrency_key: r.try_get(10)?,
        parent_run_id: r.try_get(11)?,
        parent_step: r.try_get(12)?,
        created_at: r.try_get(13)?,
        started_at: r.try_get(14)?,
        finished_at: r.try_get(15)?,
        deadline_at: r.try_get(16)?,
    })
}

fn step_from(r: &AnyRow) -> Result<StepRecord, sqlx::Error> {
    Ok(StepRecord {
        run_id: r.try_get(0)?,
        step_id: r.try_get(1)?,
        item: r.try_get(2)?,
        status: r.try_get(3)?,
        attempt: r.try_get(4)?,
        task_run_id: r.try_get(5)?,
        child_run_id: r.try_get(6)?,
        outputs: r.try_get(7)?,
        error: r.try_get(8)?,
        wake_at: r.try_get(9)?,
        started_at: r.try_get(10)?,
        finished_at: r.try_get(11)?,
    })
}

/// An `events` row selected as `id, type, project, subject, data, at`.
pub(crate) fn event_from(r: &AnyRow) -> Result<EventRecord, sqlx::Error> {
    Ok(EventRecord {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        project: r.try_get(2)?,
        subject: r.try_get(3)?,
        data: r.try_get(4)?,
        at: r.try_get(5)?,
    })
}

async fn put_step(tx: &mut Transaction<'static, Any>, s: &StepRecord) -> Result<()> {
    sqlx::query(concat!(
        "INSERT INTO workflow_steps (",
        step_cols!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ",
        "ON CONFLICT (run_id, step_id, item) DO UPDATE SET status = $4, attempt = $5, task_run_id = $6, child_run_id = $7, outputs = $8, error = $9, wake_at = $10, started_at = $11, finished_at = $12"
    ))
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
    .bind(s.finished_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl SqlStore {
    pub(crate) async fn wf_emit_events(
        &self,
        events: &[(NewEvent, Option<String>)],
    ) -> Result<Vec<(EventRecord, bool)>> {
        let mut tx = self.tx().await?;
        let mut out = Vec::with_capacity(events.len());
        for (e, key) in events {
            if let Some(k) = key {
                let earlier =
                    sqlx::query("SELECT id, type, project, subject, data, at FROM events WHERE idempotency_key = $1")
                        .bind(k)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(row) = earlier {
                    out.push((event_from(&row)?, false));
                    continue;
                }
            }
            sqlx::query("INSERT INTO events (id, type, project, subject, data, at, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7)")
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

    pub(crate) async fn wf_unrouted_events(&self, limit: i64) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT id, type, project, subject, data, at FROM events WHERE routed_at IS NULL ORDER BY at, id LIMIT $1",
        )
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.read)
        .await?;
        all(rows, event_from)
    }

    pub(crate) async fn wf_mark_routed(&self, ids: &[String], at: i64) -> Result<()> {
        let mut tx = self.tx().await?;
        for id in ids {
            sqlx::query("UPDATE events SET routed_at = $2 WHERE id = $1").bind(id).bind(at).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn wf_events_since(
        &self,
        since: i64,
        type_prefix: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query("SELECT id, type, project, subject, data, at FROM events WHERE at >= $1 AND ($3 IS NULL OR type LIKE $3 || '%') ORDER BY at, id LIMIT $2")
            .bind(since)
            .bind(limit.clamp(1, 10_000))
            .bind(type_prefix)
            .fetch_all(&self.read)
            .await?;
        all(rows, event_from)
    }

    pub(crate) async fn wf_insert_run(&self, r: &WorkflowRunRecord) -> Result<(WorkflowRunRecord, bool)> {
        let done = sqlx::query(concat!(
            "INSERT INTO workflow_runs (",
            wf_run_cols!(),
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
                    wf_run_cols!(),
                    " FROM workflow_runs WHERE workflow = $1 AND trigger_key = $2"
                ))
                .bind(&r.workflow)
                .bind(&r.trigger_key)
                .fetch_one(&self.write)
                .await?;
                Ok((wf_run_from(&row)?, false))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn wf_get_run(&self, id: &str) -> Result<Option<WorkflowRunRecord>> {
        let row = sqlx::query(concat!("SELECT ", wf_run_cols!(), " FROM workflow_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(wf_run_from).transpose()?)
    }

    pub(crate) async fn wf_list_runs(
        &self,
        workflow: Option<&str>,
        active_only: bool,
        limit: i64,
    ) -> Result<Vec<WorkflowRunRecord>> {
        // One statement per shape, without `($1 IS NULL OR …)`, so each reads its index newest
        // first (SQLite cannot use an index through such an `OR`).
        let active = if active_only { " AND status IN ('queued', 'running')" } else { "" };
        let rows = match workflow {
            Some(w) => {
                let sql = format!(
                    concat!(
                        "SELECT ",
                        wf_run_cols!(),
                        " FROM workflow_runs WHERE workflow = $1{} ORDER BY created_at DESC, id DESC LIMIT $2"
                    ),
                    active
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(w).bind(limit.clamp(1, 10_000)).fetch_all(&self.read).await?
            }
            None => {
                let sql = format!(
                    concat!(
                        "SELECT ",
                        wf_run_cols!(),
                        " FROM workflow_runs WHERE 1 = 1{} ORDER BY created_at DESC, id DESC LIMIT $1"
                    ),
                    active
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit.clamp(1, 10_000)).fetch_all(&self.read).await?
            }
        };
        all(rows, wf_run_from)
    }

    pub(crate) async fn wf_update_run(&self, r: &WorkflowRunRecord) -> Result<bool> {
        let done = sqlx::query("UPDATE workflow_runs SET status = $2, outputs = $3, error = $4, started_at = $5, finished_at = $6, deadline_at = $7 WHERE id = $1 AND status IN ('queued', 'running')")
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

    pub(crate) async fn wf_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            step_cols!(),
            " FROM workflow_steps WHERE run_id = $1 ORDER BY started_at, step_id, item"
        ))
        .bind(run_id)
        .fetch_all(&self.read)
        .await?;
        all(rows, step_from)
    }

    pub(crate) async fn wf_put_steps(&self, steps: &[StepRecord]) -> Result<()> {
        let mut tx = self.tx().await?;
        for s in steps {
            put_step(&mut tx, s).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn wf_start_step_task(&self, step: &StepRecord, run: &NewRun) -> Result<RunRecord> {
        let mut tx = self.tx().await?;
        let stored = crate::sql::insert_run_tx(&mut tx, run).await?;
        let mut s = step.clone();
        s.task_run_id = Some(stored.id.clone());
        put_step(&mut tx, &s).await?;
        tx.commit().await?;
        Ok(stored)
    }
}
