//! Retention: deleting old history a small batch at a time, and giving SQLite's freed pages
//! back to the file system.
//!
//! Each kind's batch is one statement, `DELETE … WHERE key IN (SELECT key … ORDER BY time
//! LIMIT n)`: the inner select walks an index on the kind's time column (migration 0016), so a
//! batch touches only what it deletes and the write lock (SQLite's one writer, PostgreSQL's row
//! locks) is held for milliseconds. What must stay is part of each statement's condition:
//! queued and running runs, the latest run of each (project, task), runs a step of an active
//! workflow run points at, the latest slot of each schedule, open incidents, the latest
//! workflow run of each workflow (and children of active ones), unrouted events, notifications
//! with a delivery pending or held, the latest probe result of each (project, kind), and every
//! token that is not a run token. Attempts, logs, steps and deliveries go with their parent
//! (`ON DELETE CASCADE`, migrations 0001, 0007, 0009).

use async_trait::async_trait;
use sqlx::Row;

use agent_os_core::retention::PruneKind;

use super::{Backend, SqlStore};
use crate::Result;

/// Deletes old history in batches. Every method commits before it returns.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes at most `batch` records of `kind` older than `cutoff` (ms) that nothing still
    /// needs, oldest first, in one short write transaction, and answers how many went; fewer
    /// than `batch` means nothing more is due. `now` stamps runs whose logs are pruned. With
    /// `dry_run` nothing is deleted: the answer is how many records would go in all (every
    /// batch of a pass), read without taking the write lock.
    async fn prune(&self, kind: PruneKind, cutoff: i64, now: i64, batch: i64, dry_run: bool) -> Result<u64>;

    /// SQLite: returns at most `pages` free pages of the file to the file system
    /// (`PRAGMA incremental_vacuum`) in one short step, and answers how many went; fewer than
    /// `pages` means none are left. A database made without incremental auto-vacuum, and
    /// PostgreSQL (whose autovacuum makes the space reusable), answer 0 and do nothing.
    async fn reclaim_space(&self, pages: i64) -> Result<u64>;
}

/// A finished run `x` older than the cutoff `$1` that is not the latest run of its task (which
/// keeps its row and its log, so every task shows how it last went).
macro_rules! finished_run_due {
    () => {
        "x.finished_at IS NOT NULL AND x.finished_at < $1
         AND x.status NOT IN ('queued', 'running')
         AND x.id <> (SELECT MAX(l.id) FROM runs l WHERE l.project = x.project AND l.task = x.task)"
    };
}

/// The table, key and condition of a kind; `x` is the row considered, `$1` the cutoff. Every
/// kind's batch is a plain delete but the logs', whose rows stay ([`SqlStore::prune_logs`]).
struct Plan {
    table: &'static str,
    /// The key the batch is selected and deleted by (a column, or a row value).
    key: &'static str,
    /// The key as selected from `x`.
    select: &'static str,
    condition: &'static str,
    order: &'static str,
}

fn plan(kind: PruneKind) -> Plan {
    match kind {
        PruneKind::WorkflowRuns => Plan {
            table: "workflow_runs",
            key: "id",
            select: "x.id",
            condition: "x.finished_at IS NOT NULL AND x.finished_at < $1
                AND x.status NOT IN ('queued', 'running')
                AND x.id <> (SELECT l.id FROM workflow_runs l WHERE l.workflow = x.workflow
                             ORDER BY l.created_at DESC, l.id DESC LIMIT 1)
                AND NOT EXISTS (SELECT 1 FROM workflow_runs p
                                WHERE p.id = x.parent_run_id AND p.status IN ('queued', 'running'))",
            order: "x.finished_at",
        },
        PruneKind::Runs => Plan {
            table: "runs",
            key: "id",
            select: "x.id",
            condition: concat!(
                finished_run_due!(),
                " AND NOT EXISTS (SELECT 1 FROM workflow_steps s JOIN workflow_runs w ON w.id = s.run_id
                                 WHERE s.task_run_id = x.id AND w.status IN ('queued', 'running'))"
            ),
            order: "x.finished_at",
        },
        PruneKind::ScheduleSlots => Plan {
            table: "schedule_slots",
            key: "(schedule_key, slot)",
            select: "x.schedule_key, x.slot",
            condition: "x.fired_at < $1
                AND x.slot <> (SELECT MAX(l.slot) FROM schedule_slots l WHERE l.schedule_key = x.schedule_key)",
            order: "x.fired_at",
        },
        // The runs whose log lines are due.
        PruneKind::Logs => Plan {
            table: "runs",
            key: "id",
            select: "x.id",
            condition: concat!(finished_run_due!(), " AND x.logs_pruned_at IS NULL"),
            order: "x.finished_at",
        },
        PruneKind::Events => Plan {
            table: "events",
            key: "id",
            select: "x.id",
            condition: "x.at < $1 AND x.routed_at IS NOT NULL",
            order: "x.at",
        },
        PruneKind::Pings => Plan { table: "pings", key: "id", select: "x.id", condition: "x.at < $1", order: "x.at" },
        PruneKind::Health => Plan {
            table: "probe_results",
            key: "id",
            select: "x.id",
            condition: "x.at < $1
                AND x.id <> (SELECT l.id FROM probe_results l WHERE l.project_id = x.project_id AND l.kind = x.kind
                             ORDER BY l.at DESC, l.id DESC LIMIT 1)",
            order: "x.at",
        },
        PruneKind::Notifications => Plan {
            table: "notifications",
            key: "id",
            select: "x.id",
            condition: "x.created_at < $1
                AND NOT EXISTS (SELECT 1 FROM deliveries d
                                WHERE d.notification_id = x.id AND d.status IN ('pending', 'held'))",
            order: "x.created_at",
        },
        PruneKind::Incidents => Plan {
            table: "incidents",
            key: "id",
            select: "x.id",
            condition: "x.resolved_at IS NOT NULL AND x.resolved_at < $1 AND x.status <> 'open'",
            order: "x.resolved_at",
        },
        // Run tokens only: the others are kept even revoked, as start-up looks for revoked
        // admin tokens. A run token goes a while after it expired or was revoked, whichever
        // came first; the two conditions each walk their own index.
        PruneKind::Tokens => Plan {
            table: "tokens",
            key: "id",
            select: "x.id",
            condition: "x.kind = 'run'
                AND ((x.expires_at IS NOT NULL AND x.expires_at < $1)
                     OR (x.revoked_at IS NOT NULL AND x.revoked_at < $1))",
            order: "x.id",
        },
        PruneKind::Sessions => Plan {
            table: "dashboard_sessions",
            key: "id",
            select: "x.id",
            condition: "x.expires_at < $1",
            order: "x.expires_at",
        },
        PruneKind::Costs => {
            Plan { table: "cost_records", key: "id", select: "x.id", condition: "x.at < $1", order: "x.at" }
        }
    }
}

#[async_trait]
impl RetentionStore for SqlStore {
    async fn prune(&self, kind: PruneKind, cutoff: i64, now: i64, batch: i64, dry_run: bool) -> Result<u64> {
        let batch = batch.clamp(1, 10_000);
        let p = plan(kind);
        if dry_run {
            let sql = format!("SELECT COUNT(*) AS n FROM {} x WHERE {}", p.table, p.condition);
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(cutoff).fetch_one(&self.read).await?;
            return Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0));
        }
        if kind == PruneKind::Logs {
            return self.prune_logs(&p, cutoff, now, batch).await;
        }
        let sql = format!(
            "DELETE FROM {table} WHERE {key} IN (
                 SELECT {select} FROM {table} x WHERE {condition} ORDER BY {order} LIMIT $2)",
            table = p.table,
            key = p.key,
            select = p.select,
            condition = p.condition,
            order = p.order,
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(cutoff).bind(batch).execute(&self.write).await?;
        Ok(done.rows_affected())
    }

    async fn reclaim_space(&self, pages: i64) -> Result<u64> {
        if self.backend != Backend::Sqlite {
            return Ok(0);
        }
        let mode: i64 = sqlx::query("PRAGMA auto_vacuum").fetch_one(&self.write).await?.try_get(0)?;
        // NONE keeps free pages inside the file (new rows reuse them); FULL gives them back at
        // each commit by itself.
        if mode != super::auto_vacuum::INCREMENTAL {
            return Ok(0);
        }
        let pages = pages.clamp(1, 100_000);
        let free = "PRAGMA freelist_count";
        let before: i64 = sqlx::query(free).fetch_one(&self.write).await?.try_get(0)?;
        if before == 0 {
            return Ok(0);
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA incremental_vacuum({pages})"))).fetch_all(&self.write).await?;
        let after: i64 = sqlx::query(free).fetch_one(&self.write).await?.try_get(0)?;
        Ok(u64::try_from(before.saturating_sub(after)).unwrap_or(0))
    }
}

impl SqlStore {
    /// One batch of log pruning: the log lines of up to `batch` runs go, and the runs say when.
    async fn prune_logs(&self, p: &Plan, cutoff: i64, now: i64, batch: i64) -> Result<u64> {
        let mut tx = self.tx().await?;
        let select =
            format!("SELECT {} FROM {} x WHERE {} ORDER BY {} LIMIT $2", p.select, p.table, p.condition, p.order);
        let ids: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(select))
            .bind(cutoff)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(0);
        }
        // `$1…$n` are the ids; the mark's `$n+1` is the time.
        let list: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let list = list.join(", ");
        let mut delete = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM run_logs WHERE run_id IN ({list})")));
        let mut mark = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE runs SET logs_pruned_at = ${} WHERE id IN ({list})",
            ids.len() + 1
        )));
        for id in &ids {
            delete = delete.bind(id);
            mark = mark.bind(id);
        }
        mark = mark.bind(now);
        delete.execute(&mut *tx).await?;
        mark.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }
}
