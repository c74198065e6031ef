//! Workers (`agent-os worker`): the worker tokens' projects, the workers as last heard from,
//! the claim of runs for a worker, and the log a worker sends, stored once per sequence number.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use agent_os_core::resource::Limits;
use agent_os_core::run::RunStatus;

use super::runs::{RUNNING_WORKER_ATTEMPTS, append_chunks, claim_plain, running_pair, start_attempts};
use super::{Claimer, SqlStore, all, join_names, split_names};
use crate::model::{AttemptRecord, NewLogChunk, RunRecord, TokenRecord, WorkerLog, WorkerLogChunk, WorkerRecord};
use crate::{Result, StoreError};

/// Workers and what they run. Every method commits before it returns.
#[async_trait]
pub trait WorkerStore: Send + Sync {
    /// Stores a worker token with the projects it may serve (by name; they need not exist).
    async fn insert_worker_token(&self, t: &TokenRecord, projects: &[String]) -> Result<()>;
    /// The projects a worker token may serve, by name.
    async fn token_projects(&self, token_id: &str) -> Result<Vec<String>>;
    /// Records a worker's hello: a new worker, or the one of the same token and name with what
    /// it says now (its id and first sighting kept).
    async fn upsert_worker(&self, w: &WorkerRecord) -> Result<WorkerRecord>;
    async fn get_worker(&self, id: &str) -> Result<Option<WorkerRecord>>;
    /// Every worker ever heard from, by name.
    async fn list_workers(&self) -> Result<Vec<WorkerRecord>>;
    /// Records a contact from worker `id` at `now`, and that it runs the attempts `seen` (run
    /// id, attempt) of those the store has running on it.
    async fn touch_worker(&self, id: &str, seen: &[(String, i64)], now: i64) -> Result<()>;
    /// Claims up to `limit` due queued runs of the worker projects `projects` (by name) for
    /// worker `worker_id`, as [`RunStore::claim_runs`](super::RunStore::claim_runs) and
    /// [`ResourceStore::claim_resource_runs`](super::ResourceStore::claim_resource_runs) do
    /// for a node: one transaction each, run tokens stored with them, never twice.
    #[allow(clippy::too_many_arguments, reason = "the claim's own inputs, each passed through")]
    async fn claim_worker_runs(
        &self,
        worker_id: &str,
        node_id: &str,
        projects: &[String],
        now: i64,
        limit: i64,
        run_tokens: &[TokenRecord],
        limits: &HashMap<String, Limits>,
    ) -> Result<Vec<RunRecord>>;
    /// The attempts workers are running, with their runs.
    async fn running_worker_attempts(&self) -> Result<Vec<(RunRecord, AttemptRecord)>>;
    async fn get_attempt(&self, run_id: &str, attempt: i64) -> Result<Option<AttemptRecord>>;
    /// Stores the chunks of a worker's attempt whose sequence number is above the highest
    /// stored, moving that mark in the same transaction, within the log's cap. `NotFound` when
    /// the attempt is not `worker_id`'s.
    async fn append_worker_log(
        &self,
        run_id: &str,
        attempt: i64,
        worker_id: &str,
        chunks: &[WorkerLogChunk],
        cap_bytes: i64,
        now: i64,
    ) -> Result<WorkerLog>;
}

macro_rules! worker_columns {
    () => {
        "id, token_id, name, hostname, version, capacity, projects, first_seen, last_contact"
    };
}

fn worker_from(row: &AnyRow) -> Result<WorkerRecord, sqlx::Error> {
    Ok(WorkerRecord {
        id: row.try_get("id")?,
        token_id: row.try_get("token_id")?,
        name: row.try_get("name")?,
        hostname: row.try_get("hostname")?,
        version: row.try_get("version")?,
        capacity: row.try_get("capacity")?,
        projects: split_names(row.try_get::<Option<String>, _>("projects")?.as_deref()),
        first_seen: row.try_get("first_seen")?,
        last_contact: row.try_get("last_contact")?,
    })
}

#[async_trait]
impl WorkerStore for SqlStore {
    async fn insert_worker_token(&self, t: &TokenRecord, projects: &[String]) -> Result<()> {
        let mut tx = self.tx().await?;
        super::tokens::insert_token(&mut *tx, t).await?;
        let mut names: Vec<&String> = projects.iter().collect();
        names.sort();
        names.dedup();
        for p in names {
            sqlx::query("INSERT INTO token_projects (token_id, project) VALUES ($1, $2)")
                .bind(&t.id)
                .bind(p)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn token_projects(&self, token_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT project FROM token_projects WHERE token_id = $1 ORDER BY project")
            .bind(token_id)
            .fetch_all(&self.read)
            .await?;
        all(rows, |row| row.try_get("project"))
    }

    async fn upsert_worker(&self, w: &WorkerRecord) -> Result<WorkerRecord> {
        let row = sqlx::query(concat!(
            "INSERT INTO workers (",
            worker_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (token_id, name) DO UPDATE SET hostname = excluded.hostname, version = excluded.version,
                 capacity = excluded.capacity, projects = excluded.projects, last_contact = excluded.last_contact
             RETURNING ",
            worker_columns!()
        ))
        .bind(&w.id)
        .bind(&w.token_id)
        .bind(&w.name)
        .bind(&w.hostname)
        .bind(&w.version)
        .bind(w.capacity)
        .bind(join_names(&w.projects))
        .bind(w.first_seen)
        .bind(w.last_contact)
        .fetch_one(&self.write)
        .await?;
        Ok(worker_from(&row)?)
    }

    async fn get_worker(&self, id: &str) -> Result<Option<WorkerRecord>> {
        let row = sqlx::query(concat!("SELECT ", worker_columns!(), " FROM workers WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(worker_from).transpose()?)
    }

    async fn list_workers(&self) -> Result<Vec<WorkerRecord>> {
        let rows = sqlx::query(concat!("SELECT ", worker_columns!(), " FROM workers ORDER BY name, id"))
            .fetch_all(&self.read)
            .await?;
        all(rows, worker_from)
    }

    async fn touch_worker(&self, id: &str, seen: &[(String, i64)], now: i64) -> Result<()> {
        let mut tx = self.tx().await?;
        sqlx::query("UPDATE workers SET last_contact = $2 WHERE id = $1 AND last_contact < $2")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        for (run_id, attempt) in seen {
            sqlx::query(
                "UPDATE run_attempts SET seen_at = $4
                 WHERE run_id = $1 AND attempt = $2 AND worker_id = $3 AND status = 'running'",
            )
            .bind(run_id)
            .bind(attempt)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_worker_runs(
        &self,
        worker_id: &str,
        node_id: &str,
        projects: &[String],
        now: i64,
        limit: i64,
        run_tokens: &[TokenRecord],
        limits: &HashMap<String, Limits>,
    ) -> Result<Vec<RunRecord>> {
        if projects.is_empty() || limit <= 0 {
            return Ok(Vec::new());
        }
        let claimer = Claimer::Worker(projects);
        // A worker asks every second while it waits: most times nothing is due, which a read
        // finds without taking the write lock.
        let due = format!(
            "SELECT MIN(q.not_before) AS due FROM runs q WHERE q.status = 'queued' AND {}",
            claimer.condition(1)
        );
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(due));
        for name in claimer.names() {
            query = query.bind(name);
        }
        let due: Option<i64> = query.fetch_one(&self.read).await?.try_get("due")?;
        if due.is_none_or(|d| d > now) {
            return Ok(Vec::new());
        }
        let mut tx = self.tx().await?;
        let mut runs = claim_plain(&mut tx, self.backend, claimer, now, limit).await?;
        start_attempts(&mut tx, &runs, node_id, Some(worker_id), now, run_tokens).await?;
        tx.commit().await?;
        let room = limit - runs.len() as i64;
        if room > 0 && !limits.is_empty() {
            let tokens = run_tokens.get(runs.len()..).unwrap_or_default();
            let got = self.claim_with_resources(claimer, node_id, Some(worker_id), now, room, tokens, limits).await?;
            runs.extend(got.runs);
        }
        Ok(runs)
    }

    async fn running_worker_attempts(&self) -> Result<Vec<(RunRecord, AttemptRecord)>> {
        let rows = sqlx::query(RUNNING_WORKER_ATTEMPTS).fetch_all(&self.read).await?;
        all(rows, running_pair)
    }

    async fn get_attempt(&self, run_id: &str, attempt: i64) -> Result<Option<AttemptRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM run_attempts WHERE run_id = $1 AND attempt = $2"
        ))
        .bind(run_id)
        .bind(attempt)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(super::runs::attempt_from).transpose()?)
    }

    async fn append_worker_log(
        &self,
        run_id: &str,
        attempt: i64,
        worker_id: &str,
        chunks: &[WorkerLogChunk],
        cap_bytes: i64,
        now: i64,
    ) -> Result<WorkerLog> {
        let mut tx = self.tx().await?;
        // The attempt's row is held to the commit, so two deliveries of the same chunks take
        // turns and the second finds them stored.
        let read = format!(
            "SELECT status, worker_id, worker_seq FROM run_attempts WHERE run_id = $1 AND attempt = $2 {}",
            self.backend.for_update()
        );
        let row =
            sqlx::query::<Any>(sqlx::AssertSqlSafe(read)).bind(run_id).bind(attempt).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("attempt {attempt} of run {run_id:?}")));
        };
        let owner: Option<String> = row.try_get("worker_id")?;
        if owner.as_deref() != Some(worker_id) {
            return Err(StoreError::NotFound(format!("attempt {attempt} of run {run_id:?} on this worker")));
        }
        let mark: i64 = row.try_get("worker_seq")?;
        let status: RunStatus = row.try_get("status")?;
        if status != RunStatus::Running {
            return Ok(WorkerLog::Ended { acked_seq: mark });
        }
        let fresh: Vec<&WorkerLogChunk> = chunks.iter().filter(|c| c.seq > mark).collect();
        let Some(last) = fresh.iter().map(|c| c.seq).max() else {
            tx.commit().await?;
            return Ok(WorkerLog::Stored { acked_seq: mark });
        };
        let new: Vec<NewLogChunk> =
            fresh.iter().map(|c| NewLogChunk { stream: c.stream, at: c.at, data: c.data.clone() }).collect();
        append_chunks(&mut tx, run_id, &new, cap_bytes).await?;
        sqlx::query("UPDATE run_attempts SET worker_seq = $3, seen_at = $4 WHERE run_id = $1 AND attempt = $2")
            .bind(run_id)
            .bind(attempt)
            .bind(last)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(WorkerLog::Stored { acked_seq: last })
    }
}
