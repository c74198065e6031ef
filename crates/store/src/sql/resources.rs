//! Named resources: who holds them (runs and leases), who waits for them, and the level of each
//! rate bucket. `core::resource::allocate` decides who goes; the store runs it inside the
//! transaction that records the holds, with nodes taking turns on PostgreSQL.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use agent_os_core::resource::{Bucket, HolderKind, Limits, ResourceScope, Usage, Waiter, allocate};

use super::runs::{run_from, start_attempts};
use super::{Backend, Claimer, SqlStore, Tx, all, split_names};
use crate::Result;
use crate::model::{
    Blocked, HoldRecord, LeaseAttempt, LeaseRequest, ResourceClaim, ResourceSnapshot, TokenRecord, WaiterRecord,
    usage_of,
};

/// Holders and waiters of resources. Every method commits before it returns.
#[async_trait]
pub trait ResourceStore: Send + Sync {
    /// Claims up to `limit` due runs that need resources, deciding who goes with
    /// `core::resource::allocate` inside the claim's transaction (PostgreSQL nodes take turns),
    /// so the limits hold across nodes. Also says when to look again. Runs of worker projects
    /// are left to their workers (and do not wait in this line).
    async fn claim_resource_runs(
        &self,
        node_id: &str,
        now: i64,
        limit: i64,
        run_tokens: &[TokenRecord],
        limits: &HashMap<String, Limits>,
    ) -> Result<ResourceClaim>;
    /// One attempt to take a lease: joins the line (or keeps its place), and takes the lease if
    /// its turn has come and the resource has room.
    async fn acquire_lease(
        &self,
        req: &LeaseRequest,
        limits: &HashMap<String, Limits>,
        now: i64,
    ) -> Result<LeaseAttempt>;
    /// Leaves the line (a lease request that gave up).
    async fn drop_lease_waiter(&self, id: &str) -> Result<()>;
    /// Extends lease `id` on `resource`, if it has not expired and `scope` owns it, by `ttl_ms`
    /// (default: the lease's own) from `now`; `None` otherwise (expired, never was, another's).
    async fn renew_lease(
        &self,
        id: &str,
        resource: &str,
        scope: &ResourceScope,
        ttl_ms: Option<i64>,
        now: i64,
    ) -> Result<Option<HoldRecord>>;
    /// Ends lease `id` on `resource` if it has not expired and `scope` owns it; `false` otherwise.
    async fn release_lease(&self, id: &str, resource: &str, scope: &ResourceScope, now: i64) -> Result<bool>;
    async fn resource_snapshot(&self, now: i64) -> Result<ResourceSnapshot>;
}

/// A lease request that stops asking is forgotten after this long.
const WAITER_TTL_MS: i64 = 10_000;

macro_rules! hold_columns {
    () => {
        "holder, resource, kind, project, label, priority, acquired_at, expires_at, ttl_ms"
    };
}

fn hold_from(row: &AnyRow) -> Result<HoldRecord, sqlx::Error> {
    Ok(HoldRecord {
        holder: row.try_get("holder")?,
        resource: row.try_get("resource")?,
        kind: row.try_get("kind")?,
        project: row.try_get("project")?,
        label: row.try_get("label")?,
        priority: row.try_get("priority")?,
        acquired_at: row.try_get("acquired_at")?,
        expires_at: row.try_get("expires_at")?,
        ttl_ms: row.try_get("ttl_ms")?,
    })
}

/// Queued runs of `claimer` (all runs when none) that wait for resources and could start now
/// but for them (due, and not held back by a run of their concurrency key); `$1` is now.
fn resource_runs(claimer: Option<Claimer<'_>>) -> String {
    let whose = claimer.map(|c| format!("AND {}", c.condition(2))).unwrap_or_default();
    format!(
        concat!(
            "SELECT q.id, q.resources, q.priority, q.not_before, q.project, q.task FROM runs q
             WHERE q.status = 'queued' AND q.resources IS NOT NULL AND q.not_before <= $1 {whose} AND ",
            first_of_its_key!(),
            "
             ORDER BY q.not_before, q.id
             LIMIT 1000"
        ),
        whose = whose
    )
}

/// Everyone waiting for resources: the runs of `claimer` (every run when none) and lease
/// requests. A claim weighs its own runs against the leases: a worker's runs wait in their
/// worker's line, so a worker project with no worker connected holds no one else back.
async fn load_waiters(tx: &mut Tx, now: i64, claimer: Option<Claimer<'_>>) -> Result<Vec<WaiterRecord>> {
    let mut out = Vec::new();
    let sql = resource_runs(claimer);
    let mut query = sqlx::query::<sqlx::Any>(sqlx::AssertSqlSafe(sql)).bind(now);
    for name in claimer.map(Claimer::names).unwrap_or_default() {
        query = query.bind(name);
    }
    for row in query.fetch_all(&mut **tx).await? {
        let project: String = row.try_get("project")?;
        let task: String = row.try_get("task")?;
        out.push(WaiterRecord {
            id: row.try_get("id")?,
            kind: HolderKind::Run,
            resources: split_names(row.try_get::<Option<String>, _>("resources")?.as_deref()),
            label: format!("{project}.{task}"),
            project: Some(project),
            priority: row.try_get("priority")?,
            since: row.try_get("not_before")?,
        });
    }
    let rows = sqlx::query(
        "SELECT id, resources, project, label, priority, since FROM resource_waiters WHERE expires_at > $1",
    )
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    for row in rows {
        out.push(WaiterRecord {
            id: row.try_get("id")?,
            kind: HolderKind::Lease,
            resources: split_names(Some(&row.try_get::<String, _>("resources")?)),
            project: row.try_get("project")?,
            label: row.try_get("label")?,
            priority: row.try_get("priority")?,
            since: row.try_get("since")?,
        });
    }
    Ok(out)
}

async fn load_holds(tx: &mut Tx) -> Result<Vec<HoldRecord>> {
    let rows = sqlx::query(concat!("SELECT ", hold_columns!(), " FROM resource_holds ORDER BY resource, acquired_at"))
        .fetch_all(&mut **tx)
        .await?;
    all(rows, hold_from)
}

async fn load_buckets(tx: &mut Tx) -> Result<HashMap<String, Bucket>> {
    let rows = sqlx::query("SELECT resource, tokens, at FROM resource_buckets").fetch_all(&mut **tx).await?;
    let mut out = HashMap::new();
    for row in rows {
        out.insert(row.try_get("resource")?, Bucket { tokens: row.try_get("tokens")?, at: row.try_get("at")? });
    }
    Ok(out)
}

async fn insert_hold(tx: &mut Tx, h: &HoldRecord) -> Result<()> {
    sqlx::query(concat!(
        "INSERT INTO resource_holds (",
        hold_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&h.holder)
    .bind(&h.resource)
    .bind(&h.kind)
    .bind(&h.project)
    .bind(&h.label)
    .bind(h.priority)
    .bind(h.acquired_at)
    .bind(h.expires_at)
    .bind(h.ttl_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Takes `taken` tokens from each rated resource's bucket at `now`.
async fn draw_tokens(
    tx: &mut Tx,
    taken: &HashMap<String, u32>,
    limits: &HashMap<String, Limits>,
    usage: &Usage,
    now: i64,
) -> Result<()> {
    for (resource, n) in taken {
        let Some(rate) = limits.get(resource).and_then(|l| l.rate.as_ref()) else { continue };
        // A bucket's time never goes back: a caller whose clock reading is older than the last
        // draw (it read the clock before waiting for the lock) draws at the bucket's time, or
        // the refill since then would be counted twice.
        let (level, at) = match usage.buckets.get(resource) {
            Some(b) => (b.level(rate, now.max(b.at)), now.max(b.at)),
            None => (f64::from(rate.burst), now),
        };
        sqlx::query(
            "INSERT INTO resource_buckets (resource, tokens, at) VALUES ($1, $2, $3)
             ON CONFLICT (resource) DO UPDATE SET tokens = excluded.tokens, at = excluded.at",
        )
        .bind(resource)
        .bind(level - f64::from(*n))
        .bind(at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl SqlStore {
    /// Claims up to `limit` due runs of `claimer` that need resources (see
    /// [`ResourceStore::claim_resource_runs`]); a worker's attempts name it.
    #[allow(clippy::too_many_arguments, reason = "the claim's own inputs, each passed through")]
    pub(crate) async fn claim_with_resources(
        &self,
        claimer: Claimer<'_>,
        node_id: &str,
        worker_id: Option<&str>,
        now: i64,
        limit: i64,
        run_tokens: &[TokenRecord],
        limits: &HashMap<String, Limits>,
    ) -> Result<ResourceClaim> {
        // Most of the time no run waits for a resource: find that out without a write lock.
        let waiting = format!(
            "SELECT MIN(q.not_before) AS due FROM runs q
             WHERE q.status = 'queued' AND q.resources IS NOT NULL AND {}",
            claimer.condition(1)
        );
        let mut query = sqlx::query::<sqlx::Any>(sqlx::AssertSqlSafe(waiting));
        for name in claimer.names() {
            query = query.bind(name);
        }
        let waiting: Option<i64> = query.fetch_one(&self.read).await?.try_get("due")?;
        let Some(first_due) = waiting else { return Ok(ResourceClaim::default()) };
        if first_due > now {
            return Ok(ResourceClaim { runs: Vec::new(), wake_at: Some(first_due) });
        }
        let mut tx = self.resource_tx(now).await?;
        let waiters = load_waiters(&mut tx, now, Some(claimer)).await?;
        let holds = load_holds(&mut tx).await?;
        let usage = usage_of(&holds, load_buckets(&mut tx).await?);
        let plan: Vec<Waiter> = waiters.iter().map(WaiterRecord::waiter).collect();
        let alloc = allocate(&plan, limits, &usage, now);
        let mut runs = Vec::new();
        let mut taken: HashMap<String, u32> = HashMap::new();
        for id in &alloc.granted {
            if runs.len() as i64 >= limit {
                break;
            }
            let Some(w) = waiters.iter().find(|w| &w.id == id && w.kind == HolderKind::Run) else { continue };
            let row = sqlx::query(concat!(
                "UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = COALESCE(started_at, $1)
                 WHERE id = $2 AND status = 'queued'
                 RETURNING ",
                run_columns!()
            ))
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { continue };
            for resource in &w.resources {
                let hold = HoldRecord {
                    holder: id.clone(),
                    resource: resource.clone(),
                    kind: HolderKind::Run,
                    project: w.project.clone(),
                    label: w.label.clone(),
                    priority: w.priority,
                    acquired_at: now,
                    expires_at: None,
                    ttl_ms: None,
                };
                insert_hold(&mut tx, &hold).await?;
                *taken.entry(resource.clone()).or_insert(0) += 1;
            }
            runs.push(run_from(&row)?);
        }
        draw_tokens(&mut tx, &taken, limits, &usage, now).await?;
        start_attempts(&mut tx, &runs, node_id, worker_id, now, run_tokens).await?;
        let later = format!(
            "SELECT MIN(q.not_before) AS due FROM runs q
             WHERE q.status = 'queued' AND q.resources IS NOT NULL AND q.not_before > $1 AND {}",
            claimer.condition(2)
        );
        let mut query = sqlx::query::<sqlx::Any>(sqlx::AssertSqlSafe(later)).bind(now);
        for name in claimer.names() {
            query = query.bind(name);
        }
        let later: Option<i64> = query.fetch_one(&mut *tx).await?.try_get("due")?;
        tx.commit().await?;
        let wake_at = [alloc.retry_at, later].into_iter().flatten().min();
        Ok(ResourceClaim { runs, wake_at })
    }

    /// A write transaction for resource decisions: on PostgreSQL, nodes take turns (an
    /// advisory lock held to the commit); SQLite's single writer already makes them. Expired
    /// leases and abandoned lease requests are cleared first.
    async fn resource_tx(&self, now: i64) -> Result<Tx> {
        let mut tx = self.tx().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7370001)").execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM resource_holds WHERE expires_at IS NOT NULL AND expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM resource_waiters WHERE expires_at <= $1").bind(now).execute(&mut *tx).await?;
        Ok(tx)
    }
}

#[async_trait]
impl ResourceStore for SqlStore {
    async fn claim_resource_runs(
        &self,
        node_id: &str,
        now: i64,
        limit: i64,
        run_tokens: &[TokenRecord],
        limits: &HashMap<String, Limits>,
    ) -> Result<ResourceClaim> {
        self.claim_with_resources(Claimer::Node, node_id, None, now, limit, run_tokens, limits).await
    }

    async fn acquire_lease(
        &self,
        req: &LeaseRequest,
        limits: &HashMap<String, Limits>,
        now: i64,
    ) -> Result<LeaseAttempt> {
        let mut tx = self.resource_tx(now).await?;
        // The request waits in line as a row, so runs and other nodes see it.
        sqlx::query(
            "INSERT INTO resource_waiters (id, resources, project, label, priority, since, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(&req.id)
        .bind(&req.resource)
        .bind(&req.project)
        .bind(&req.label)
        .bind(req.priority)
        .bind(req.since)
        .bind(now + WAITER_TTL_MS)
        .execute(&mut *tx)
        .await?;
        let waiters = load_waiters(&mut tx, now, Some(Claimer::Node)).await?;
        let holds = load_holds(&mut tx).await?;
        let usage = usage_of(&holds, load_buckets(&mut tx).await?);
        let plan: Vec<Waiter> = waiters.iter().map(WaiterRecord::waiter).collect();
        let alloc = allocate(&plan, limits, &usage, now);
        if !alloc.granted.contains(&req.id) {
            let limit = limits.get(&req.resource);
            let held = usage.held.get(&req.resource).copied().unwrap_or(0);
            let blocked_by = match limit {
                Some(l) if l.concurrency.is_some_and(|c| held >= c) => Blocked::Concurrency,
                Some(Limits { rate: Some(rate), .. })
                    if usage.buckets.get(&req.resource).is_some_and(|b| b.level(rate, now) < 1.0) =>
                {
                    Blocked::Rate
                }
                _ => Blocked::Queue,
            };
            tx.commit().await?;
            return Ok(LeaseAttempt::Waiting { blocked_by, retry_at: alloc.retry_at });
        }
        let hold = HoldRecord {
            holder: req.id.clone(),
            resource: req.resource.clone(),
            kind: HolderKind::Lease,
            project: req.project.clone(),
            label: req.label.clone(),
            priority: req.priority,
            acquired_at: now,
            expires_at: Some(now + req.ttl_ms),
            ttl_ms: Some(req.ttl_ms),
        };
        insert_hold(&mut tx, &hold).await?;
        draw_tokens(&mut tx, &HashMap::from([(req.resource.clone(), 1)]), limits, &usage, now).await?;
        sqlx::query("DELETE FROM resource_waiters WHERE id = $1").bind(&req.id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(LeaseAttempt::Granted(hold))
    }

    async fn drop_lease_waiter(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM resource_waiters WHERE id = $1").bind(id).execute(&self.write).await?;
        Ok(())
    }

    async fn renew_lease(
        &self,
        id: &str,
        resource: &str,
        scope: &ResourceScope,
        ttl_ms: Option<i64>,
        now: i64,
    ) -> Result<Option<HoldRecord>> {
        // The owner is part of the match, so a check and its write cannot come apart.
        let row = sqlx::query(concat!(
            "UPDATE resource_holds SET ttl_ms = COALESCE($3, ttl_ms), expires_at = $2 + COALESCE($3, ttl_ms)
             WHERE holder = $1 AND kind = 'lease' AND expires_at > $2 AND resource = $4
               AND ($5 IS NULL OR project = $5)
             RETURNING ",
            hold_columns!()
        ))
        .bind(id)
        .bind(now)
        .bind(ttl_ms)
        .bind(resource)
        .bind(scope.project())
        .fetch_optional(&self.write)
        .await?;
        Ok(row.as_ref().map(hold_from).transpose()?)
    }

    async fn release_lease(&self, id: &str, resource: &str, scope: &ResourceScope, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM resource_holds
             WHERE holder = $1 AND kind = 'lease' AND expires_at > $2 AND resource = $3
               AND ($4 IS NULL OR project = $4)",
        )
        .bind(id)
        .bind(now)
        .bind(resource)
        .bind(scope.project())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn resource_snapshot(&self, now: i64) -> Result<ResourceSnapshot> {
        let mut tx = self.read.begin().await?;
        let holds = load_holds(&mut tx).await?.into_iter().filter(|h| h.expires_at.is_none_or(|e| e > now)).collect();
        let waiters = load_waiters(&mut tx, now, None).await?;
        let buckets = load_buckets(&mut tx).await?;
        tx.commit().await?;
        Ok(ResourceSnapshot { holds, waiters, buckets })
    }
}
