//! Runs and their attempts, the nodes that run them, and their logs: a run is queued, claimed
//! by one node (its attempt opened in the same transaction), and ended or sent back to the
//! queue for a retry.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use agent_os_core::run::RunStatus;

use super::{Claimer, SqlStore, Tx, all, fetch_filtered, filtered, flag, join_names, split_names};
use crate::model::{
    AttemptRecord, ClaimHere, FinishAttempt, LogChunk, NewLogChunk, NewRun, NodeRecord, Queued, RunFilter, RunRecord,
    TokenRecord,
};
use crate::{Result, StoreError};

/// Task runs, their attempts and logs, and the nodes that run them. Every method commits
/// before it returns.
#[async_trait]
pub trait RunStore: Send + Sync {
    async fn insert_run(&self, run: &NewRun) -> Result<RunRecord>;
    /// Queues runs and, with `here`, claims as many of them as it has tokens for on that node in
    /// the same transaction (as [`RunStore::claim_runs`] would: due, needing no resource, first
    /// of their concurrency key, not a worker project's). Returns them as stored: a claimed
    /// run is `running` with its attempt open.
    async fn queue_runs(&self, runs: &[NewRun], here: Option<&ClaimHere>) -> Result<Queued>;
    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>>;
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;
    async fn list_attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>>;
    /// Moves up to `limit` due queued runs to running for `node_id`, opening their next
    /// attempt. Two nodes never claim the same run. Runs of worker projects are left to their
    /// workers. The i-th claimed run (in the returned
    /// order) gets `run_tokens[i]`, with its run and project filled in, in the same transaction.
    async fn claim_runs(
        &self,
        node_id: &str,
        now: i64,
        limit: i64,
        run_tokens: &[TokenRecord],
    ) -> Result<Vec<RunRecord>>;
    /// Records the process of a running attempt, so it can be killed after a crash.
    async fn set_attempt_process(&self, run_id: &str, attempt: i64, pid: i64, proc_start: Option<i64>) -> Result<()>;
    /// Ends an attempt and moves the run on: back to queued (a retry) or to its final state.
    async fn finish_attempt(&self, f: &FinishAttempt) -> Result<RunRecord>;
    /// Cancels a queued run at once, or flags a running one for its runner.
    async fn request_cancel(&self, run_id: &str, now: i64) -> Result<RunRecord>;
    /// Attempts still marked running on the server's nodes (for crash recovery): attempts that
    /// workers run are not among them.
    async fn running_attempts(&self) -> Result<Vec<(RunRecord, AttemptRecord)>>;
    /// Runs per status, for metrics.
    async fn count_runs_by_status(&self) -> Result<Vec<(RunStatus, i64)>>;
    /// The earliest `not_before` of queued runs the server's nodes run (not those of worker
    /// projects), so the dispatcher knows when to wake.
    async fn next_due(&self) -> Result<Option<i64>>;

    /// Appends output to a run's log, keeping at most `cap_bytes` (the oldest chunks go).
    async fn append_log(&self, run_id: &str, chunks: &[NewLogChunk], cap_bytes: i64) -> Result<()>;
    /// Log chunks after `after_seq`, oldest first.
    async fn read_log(&self, run_id: &str, after_seq: i64, limit: i64) -> Result<Vec<LogChunk>>;

    async fn upsert_node(&self, node: &NodeRecord) -> Result<()>;
    async fn get_node(&self, id: &str) -> Result<Option<NodeRecord>>;
}

pub(crate) fn run_from(row: &AnyRow) -> Result<RunRecord, sqlx::Error> {
    Ok(RunRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        project: row.try_get("project")?,
        task: row.try_get("task")?,
        status: row.try_get("status")?,
        input: row.try_get("input")?,
        outputs: row.try_get("outputs")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        exit_code: row.try_get("exit_code")?,
        error: row.try_get("error")?,
        trigger: row.try_get("trigger")?,
        cancel_requested: flag(row, "cancel_requested")?,
        queued_at: row.try_get("queued_at")?,
        not_before: row.try_get("not_before")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        log_bytes: row.try_get("log_bytes")?,
        log_dropped: row.try_get("log_dropped")?,
        concurrency_key: row.try_get("concurrency_key")?,
        scheduled_for: row.try_get("scheduled_for")?,
        resources: split_names(row.try_get::<Option<String>, _>("resources")?.as_deref()),
        priority: row.try_get("priority")?,
        logs_pruned_at: row.try_get("logs_pruned_at")?,
    })
}

pub(crate) fn attempt_from(row: &AnyRow) -> Result<AttemptRecord, sqlx::Error> {
    Ok(AttemptRecord {
        run_id: row.try_get("run_id")?,
        attempt: row.try_get("attempt")?,
        status: row.try_get("status")?,
        node_id: row.try_get("node_id")?,
        pid: row.try_get("pid")?,
        proc_start: row.try_get("proc_start")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        exit_code: row.try_get("exit_code")?,
        error: row.try_get("error")?,
        worker_id: row.try_get("worker_id")?,
        seen_at: row.try_get("seen_at")?,
        worker_seq: row.try_get("worker_seq")?,
    })
}

/// The attempt of a row of [`RUNNING_ATTEMPTS`], whose attempt columns are named `a_…` so
/// they do not meet the run's own.
fn running_attempt_from(row: &AnyRow) -> Result<AttemptRecord, sqlx::Error> {
    Ok(AttemptRecord {
        run_id: row.try_get("a_run_id")?,
        attempt: row.try_get("a_attempt")?,
        status: row.try_get("a_status")?,
        node_id: row.try_get("a_node_id")?,
        pid: row.try_get("a_pid")?,
        proc_start: row.try_get("a_proc_start")?,
        started_at: row.try_get("a_started_at")?,
        finished_at: row.try_get("a_finished_at")?,
        exit_code: row.try_get("a_exit_code")?,
        error: row.try_get("a_error")?,
        worker_id: row.try_get("a_worker_id")?,
        seen_at: row.try_get("a_seen_at")?,
        worker_seq: row.try_get("a_worker_seq")?,
    })
}

/// The running attempts with their runs, `$on` saying whose: the nodes' (`a.worker_id IS NULL`)
/// or the workers'.
macro_rules! running_attempts {
    ($on:literal) => {
        concat!(
            "SELECT r.id, r.project_id, r.project, r.task, r.status, r.input, r.outputs, r.attempt, r.max_attempts,
                    r.exit_code, r.error, r.trigger, r.cancel_requested, r.queued_at, r.not_before, r.started_at,
                    r.finished_at, r.log_bytes, r.log_dropped, r.concurrency_key, r.scheduled_for, r.resources,
                    r.priority, r.logs_pruned_at,
                    a.run_id AS a_run_id, a.attempt AS a_attempt, a.status AS a_status, a.node_id AS a_node_id,
                    a.pid AS a_pid, a.proc_start AS a_proc_start, a.started_at AS a_started_at,
                    a.finished_at AS a_finished_at, a.exit_code AS a_exit_code, a.error AS a_error,
                    a.worker_id AS a_worker_id, a.seen_at AS a_seen_at, a.worker_seq AS a_worker_seq
             FROM run_attempts a JOIN runs r ON r.id = a.run_id
             WHERE a.status = 'running' AND ",
            $on,
            " ORDER BY a.run_id"
        )
    };
}

const RUNNING_ATTEMPTS: &str = running_attempts!("a.worker_id IS NULL");

/// The attempts workers run.
pub(crate) const RUNNING_WORKER_ATTEMPTS: &str = running_attempts!("a.worker_id IS NOT NULL");

/// A row of the running attempts: the run and its attempt.
pub(crate) fn running_pair(row: &AnyRow) -> Result<(RunRecord, AttemptRecord), sqlx::Error> {
    Ok((run_from(row)?, running_attempt_from(row)?))
}

/// Queues a run inside `tx`: due at `run.now`, queued at `queued_at` (a schedule's jitter can
/// make a run due later than it was queued).
pub(crate) async fn queue_run(tx: &mut Tx, run: &NewRun, queued_at: i64) -> Result<RunRecord> {
    insert_queued(tx, run, queued_at, None).await
}

/// Inserts a queued run; with `claim_at`, one that may start at once (see [`queue_and_claim`])
/// is inserted as claimed at that time instead, its first attempt to be opened by the caller.
async fn insert_queued(tx: &mut Tx, run: &NewRun, queued_at: i64, claim_at: Option<i64>) -> Result<RunRecord> {
    let row = sqlx::query(concat!(
        "INSERT INTO runs
             (id, project_id, project, task, status, input, max_attempts, trigger, queued_at, not_before,
              concurrency_key, scheduled_for, resources, priority, attempt, started_at)
         SELECT $1, $2, $3, $4, CASE WHEN c.now IS NULL THEN 'queued' ELSE 'running' END, $5, $6, $7, $8, $9,
                $10, $11, $12, $13, CASE WHEN c.now IS NULL THEN 0 ELSE 1 END, c.now
         FROM (SELECT CASE WHEN $14 >= $9 AND $12 IS NULL AND $10 IS NULL
                            AND NOT EXISTS (SELECT 1 FROM projects wp WHERE wp.id = $2 AND wp.transport = 'worker')
                       THEN $14 END AS now) c
         RETURNING ",
        run_columns!()
    ))
    .bind(&run.id)
    .bind(&run.project_id)
    .bind(&run.project)
    .bind(&run.task)
    .bind(&run.input)
    .bind(run.max_attempts)
    .bind(&run.trigger)
    .bind(queued_at)
    .bind(run.now)
    .bind(&run.concurrency_key)
    .bind(run.scheduled_for)
    .bind(join_names(&run.resources))
    .bind(run.priority)
    .bind(claim_at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(run_from(&row)?)
}

/// Ends an attempt in `tx` (see [`RunStore::finish_attempt`]); a `Conflict` when the attempt
/// is not running any more.
pub(crate) async fn finish_in(tx: &mut Tx, f: &FinishAttempt) -> Result<RunRecord> {
    let ended = sqlx::query(
        "UPDATE run_attempts SET status = $3, finished_at = $4, exit_code = $5, error = $6
             WHERE run_id = $1 AND attempt = $2 AND status = 'running'",
    )
    .bind(&f.run_id)
    .bind(f.attempt)
    .bind(&f.attempt_status)
    .bind(f.now)
    .bind(f.exit_code)
    .bind(&f.error)
    .execute(&mut **tx)
    .await?;
    if ended.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("attempt {} of run {} is not running any more", f.attempt, f.run_id)));
    }
    let row = match f.retry_at {
        // A cancel that arrived while the attempt ran wins over the retry.
        Some(at) => {
            sqlx::query(concat!(
                "UPDATE runs
                 SET status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END,
                     finished_at = CASE WHEN cancel_requested = 1 THEN $5 ELSE NULL END,
                     not_before = $2, exit_code = $3, error = $4, max_attempts = max_attempts + $6
                 WHERE id = $1
                 RETURNING ",
                run_columns!()
            ))
            .bind(&f.run_id)
            .bind(at)
            .bind(f.exit_code)
            .bind(&f.error)
            .bind(f.now)
            .bind(i64::from(f.extra_attempt))
            .fetch_one(&mut **tx)
            .await?
        }
        None => {
            sqlx::query(concat!(
                "UPDATE runs SET status = $2, finished_at = $3, exit_code = $4, error = $5, outputs = $6
                 WHERE id = $1
                 RETURNING ",
                run_columns!()
            ))
            .bind(&f.run_id)
            .bind(&f.attempt_status)
            .bind(f.now)
            .bind(f.exit_code)
            .bind(&f.error)
            .bind(&f.outputs)
            .fetch_one(&mut **tx)
            .await?
        }
    };
    sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE run_id = $1 AND revoked_at IS NULL")
        .bind(&f.run_id)
        .bind(f.now)
        .execute(&mut **tx)
        .await?;
    // The attempt's resources are free again, whatever comes next (a retry queues anew).
    // Only a run that needs resources holds any.
    let run = run_from(&row)?;
    if !run.resources.is_empty() {
        sqlx::query("DELETE FROM resource_holds WHERE holder = $1 AND kind = 'run'")
            .bind(&f.run_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(run)
}

/// Queues `runs` in `tx` and claims what `here` has tokens for (see [`RunStore::queue_runs`]);
/// returns every run as it now stands, in the order given. A run is claimed as it is inserted,
/// by the claim's rule for a run nobody else has seen yet: due, needing no resource, with no
/// concurrency key (a keyed run waits for the dispatcher, which orders it behind its key), and
/// not of a worker project.
pub(crate) async fn queue_and_claim(tx: &mut Tx, runs: &[NewRun], here: Option<&ClaimHere>) -> Result<Queued> {
    let mut queued = Queued { runs: Vec::with_capacity(runs.len()), claimed: Vec::new() };
    for run in runs {
        let claim = here.filter(|h| queued.claimed.len() < h.tokens.len()).map(|h| h.now);
        let stored = insert_queued(tx, run, run.now, claim).await?;
        if stored.status == RunStatus::Running
            && let Some(h) = here
        {
            start_attempts(
                tx,
                std::slice::from_ref(&stored),
                &h.node_id,
                None,
                h.now,
                &h.tokens[queued.claimed.len()..],
            )
            .await?;
            queued.claimed.push(stored.clone());
        }
        queued.runs.push(stored);
    }
    Ok(queued)
}

/// The run token and attempt row of each freshly claimed run, in the claim's transaction. An
/// attempt a worker claimed names it, and counts as seen by it now.
pub(crate) async fn start_attempts(
    tx: &mut Tx,
    runs: &[RunRecord],
    node_id: &str,
    worker_id: Option<&str>,
    now: i64,
    run_tokens: &[TokenRecord],
) -> Result<()> {
    for (i, run) in runs.iter().enumerate() {
        if let Some(t) = run_tokens.get(i) {
            let t = TokenRecord { project_id: Some(run.project_id.clone()), run_id: Some(run.id.clone()), ..t.clone() };
            super::tokens::insert_token(&mut **tx, &t).await?;
        }
        sqlx::query(
            "INSERT INTO run_attempts (run_id, attempt, status, node_id, started_at, worker_id, seen_at)
             VALUES ($1, $2, 'running', $3, $4, $5, $6)",
        )
        .bind(&run.id)
        .bind(run.attempt)
        .bind(node_id)
        .bind(now)
        .bind(worker_id)
        .bind(worker_id.map(|_| now))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Moves up to `limit` due queued runs of `claimer` that need no resources to running, in
/// `tx`, oldest first; their attempts are opened by [`start_attempts`].
pub(crate) async fn claim_plain(
    tx: &mut Tx,
    backend: super::Backend,
    claimer: Claimer<'_>,
    now: i64,
    limit: i64,
) -> Result<Vec<RunRecord>> {
    let claim = format!(
        concat!(
            "UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = COALESCE(started_at, $1)
             WHERE id IN (
                 SELECT q.id FROM runs q
                 WHERE q.status = 'queued' AND q.not_before <= $1 AND q.resources IS NULL AND {whose}
                   AND ",
            first_of_its_key!(),
            "
                 ORDER BY q.not_before, q.id
                 LIMIT $2 {skip_locked})
             RETURNING ",
            run_columns!()
        ),
        whose = claimer.condition(3),
        skip_locked = backend.skip_locked()
    );
    let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(claim)).bind(now).bind(limit);
    for name in claimer.names() {
        query = query.bind(name);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    let mut runs = all(rows, run_from)?;
    runs.sort_by(|a, b| (a.not_before, &a.id).cmp(&(b.not_before, &b.id)));
    Ok(runs)
}

/// Adds `chunks` to the log of `run_id` in `tx`, keeping at most `cap_bytes` (the oldest
/// chunks go).
pub(crate) async fn append_chunks(tx: &mut Tx, run_id: &str, chunks: &[NewLogChunk], cap_bytes: i64) -> Result<()> {
    if chunks.is_empty() {
        return Ok(());
    }
    let cap = cap_bytes.max(1);
    let row = sqlx::query("SELECT log_seq, log_bytes, log_dropped FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("run {run_id:?}")))?;
    let mut seq: i64 = row.try_get("log_seq")?;
    let mut bytes: i64 = row.try_get("log_bytes")?;
    let mut dropped: i64 = row.try_get("log_dropped")?;
    for c in chunks {
        let data = tail_bytes(&c.data, cap as usize);
        dropped += (c.data.len() - data.len()) as i64;
        seq += 1;
        bytes += data.len() as i64;
        sqlx::query("INSERT INTO run_logs (run_id, seq, stream, at, bytes, data) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(run_id)
            .bind(seq)
            .bind(&c.stream)
            .bind(c.at)
            .bind(data.len() as i64)
            .bind(data)
            .execute(&mut **tx)
            .await?;
    }
    if bytes > cap {
        // Drop the oldest chunks until the log fits again: the tail is what explains a failure.
        let sizes = sqlx::query("SELECT seq, bytes FROM run_logs WHERE run_id = $1 ORDER BY seq")
            .bind(run_id)
            .fetch_all(&mut **tx)
            .await?;
        let mut cut = 0;
        for row in &sizes {
            if bytes <= cap {
                break;
            }
            let size: i64 = row.try_get("bytes")?;
            cut = row.try_get("seq")?;
            bytes -= size;
            dropped += size;
        }
        sqlx::query("DELETE FROM run_logs WHERE run_id = $1 AND seq <= $2")
            .bind(run_id)
            .bind(cut)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("UPDATE runs SET log_seq = $2, log_bytes = $3, log_dropped = $4 WHERE id = $1")
        .bind(run_id)
        .bind(seq)
        .bind(bytes)
        .bind(dropped)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Keeps the tail of `s` that fits in `max` bytes, on a character boundary.
fn tail_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[async_trait]
impl RunStore for SqlStore {
    async fn insert_run(&self, run: &NewRun) -> Result<RunRecord> {
        let mut tx = self.tx().await?;
        let stored = queue_run(&mut tx, run, run.now).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn queue_runs(&self, runs: &[NewRun], here: Option<&ClaimHere>) -> Result<Queued> {
        let mut tx = self.tx().await?;
        let stored = queue_and_claim(&mut tx, runs, here).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        let row = sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(run_from).transpose()?)
    }

    async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRecord>> {
        let status = f.status.map(|s| s.to_string());
        let conditions =
            [("project = ", &f.project), ("task = ", &f.task), ("status = ", &status), ("id < ", &f.before)];
        let select = filtered(concat!("SELECT ", run_columns!(), " FROM runs"), &conditions, "ORDER BY id DESC");
        all(fetch_filtered(&self.read, select, f.limit.clamp(1, 1000)).await?, run_from)
    }

    async fn list_attempts(&self, run_id: &str) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM run_attempts WHERE run_id = $1 ORDER BY attempt"
        ))
        .bind(run_id)
        .fetch_all(&self.read)
        .await?;
        all(rows, attempt_from)
    }

    async fn claim_runs(
        &self,
        node_id: &str,
        now: i64,
        limit: i64,
        run_tokens: &[TokenRecord],
    ) -> Result<Vec<RunRecord>> {
        let mut tx = self.tx().await?;
        let runs = claim_plain(&mut tx, self.backend, Claimer::Node, now, limit).await?;
        start_attempts(&mut tx, &runs, node_id, None, now, run_tokens).await?;
        tx.commit().await?;
        Ok(runs)
    }

    async fn set_attempt_process(&self, run_id: &str, attempt: i64, pid: i64, proc_start: Option<i64>) -> Result<()> {
        let update = sqlx::query(
            "UPDATE run_attempts SET pid = $3, pgid = $3, proc_start = $4 WHERE run_id = $1 AND attempt = $2",
        )
        .bind(run_id)
        .bind(attempt)
        .bind(pid)
        .bind(proc_start);
        if self.backend == super::Backend::Postgres {
            // What this guards against is Agent OS dying, not the database: the row is visible
            // at once either way, and the commit need not wait for the WAL to reach the disk
            // (the next synchronous commit, such as the attempt's end, flushes it anyway).
            let mut tx = self.tx().await?;
            sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
            update.execute(&mut *tx).await?;
            tx.commit().await?;
        } else {
            // One statement is atomic by itself: autocommit saves SQLite two round trips.
            update.execute(&self.write).await?;
        }
        Ok(())
    }

    async fn finish_attempt(&self, f: &FinishAttempt) -> Result<RunRecord> {
        let mut tx = self.tx().await?;
        let run = finish_in(&mut tx, f).await?;
        tx.commit().await?;
        Ok(run)
    }

    async fn request_cancel(&self, run_id: &str, now: i64) -> Result<RunRecord> {
        let mut tx = self.tx().await?;
        sqlx::query(
            "UPDATE runs SET status = 'cancelled', cancel_requested = 1, finished_at = $2,
                             error = 'cancelled before it started'
             WHERE id = $1 AND status = 'queued'",
        )
        .bind(run_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = $1 AND status = 'running'")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1"))
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("run {run_id:?}")))?;
        tx.commit().await?;
        Ok(run_from(&row)?)
    }

    async fn running_attempts(&self) -> Result<Vec<(RunRecord, AttemptRecord)>> {
        let rows = sqlx::query(RUNNING_ATTEMPTS).fetch_all(&self.write).await?;
        all(rows, running_pair)
    }

    async fn count_runs_by_status(&self) -> Result<Vec<(RunStatus, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS runs FROM runs GROUP BY status ORDER BY status")
            .fetch_all(&self.read)
            .await?;
        all(rows, |row| Ok((row.try_get("status")?, row.try_get("runs")?)))
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        // A run waiting for another of its concurrency key is not due: the end of that run
        // wakes the dispatcher.
        let due = format!(
            concat!(
                "SELECT MIN(q.not_before) AS due FROM runs q
                 WHERE q.status = 'queued' AND q.resources IS NULL AND {whose} AND ",
                first_of_its_key!()
            ),
            whose = Claimer::Node.condition(1)
        );
        let row = sqlx::query::<Any>(sqlx::AssertSqlSafe(due)).fetch_one(&self.read).await?;
        Ok(row.try_get("due")?)
    }

    async fn append_log(&self, run_id: &str, chunks: &[NewLogChunk], cap_bytes: i64) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut tx = self.tx().await?;
        append_chunks(&mut tx, run_id, chunks, cap_bytes).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn read_log(&self, run_id: &str, after_seq: i64, limit: i64) -> Result<Vec<LogChunk>> {
        let rows = sqlx::query(
            "SELECT seq, stream, at, data FROM run_logs WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after_seq)
        .bind(limit.clamp(1, 100_000))
        .fetch_all(&self.read)
        .await?;
        all(rows, |row| {
            Ok(LogChunk {
                seq: row.try_get("seq")?,
                stream: row.try_get("stream")?,
                at: row.try_get("at")?,
                data: row.try_get("data")?,
            })
        })
    }

    async fn upsert_node(&self, n: &NodeRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (id, hostname, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&n.id)
        .bind(&n.hostname)
        .bind(n.pid)
        .bind(n.started_at)
        .bind(n.heartbeat_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn get_node(&self, id: &str) -> Result<Option<NodeRecord>> {
        let row = sqlx::query("SELECT id, hostname, pid, started_at, heartbeat_at FROM nodes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|row| {
            Ok(NodeRecord {
                id: row.try_get("id")?,
                hostname: row.try_get("hostname")?,
                pid: row.try_get("pid")?,
                started_at: row.try_get("started_at")?,
                heartbeat_at: row.try_get("heartbeat_at")?,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_keeps_its_tail_on_a_character_boundary() {
        assert_eq!(tail_bytes("héllo", 4), "llo");
    }
}
