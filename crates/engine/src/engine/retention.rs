//! Retention: the loop that prunes old history (`retention:` in config.yaml) and gives the
//! space back, and the pass an admin starts over the API (`POST /api/v1/prune`).
//!
//! A pass works through every [`PruneKind`] with a retention, a batch at a time until a batch
//! comes back short, sleeping [`PAUSE_BETWEEN_BATCHES`] between batches so that other writers
//! take the lock in turn (on SQLite there is one writer: a long delete would hold every run's
//! log lines back). It never runs at start (a purge at start is what locked other schedulers
//! out of their own database), but [`EngineConfig::prune_first_after`] later, then every
//! [`EngineConfig::prune_every`]. After a pass that deleted anything, SQLite's freed pages go
//! back to the file system [`RECLAIM_PAGES`] at a time. The policy is read through
//! [`Engine::retention`] only, so that a configuration reloaded live takes effect at the next
//! pass.
//!
//! [`EngineConfig::prune_first_after`]: crate::config::EngineConfig::prune_first_after
//! [`EngineConfig::prune_every`]: crate::config::EngineConfig::prune_every

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_os_core::retention::{PruneKind, Retention};

use agent_os_store::{Store, StoreError};

use super::{Engine, EngineError};

/// Records deleted per batch: a few milliseconds of writing on a small machine.
pub const BATCH: i64 = 500;

/// Runs whose log lines one batch prunes: a run's log is up to `runs.log_max_bytes` in chunks,
/// so a batch of runs is many rows.
pub const LOG_BATCH: i64 = 50;

/// The pause between two batches, in which other writers get the lock.
pub const PAUSE_BETWEEN_BATCHES: Duration = Duration::from_millis(20);

/// Free pages handed back to the file system per step (4 MB at SQLite's 4 KB pages).
pub const RECLAIM_PAGES: i64 = 1024;

/// What a pass did (or, dry, would do) to one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindPass {
    pub kind: PruneKind,
    /// Records older than this went (ms); `None`: the kind is kept forever.
    pub cutoff: Option<i64>,
    /// Records deleted (a dry run: that would be).
    pub rows: u64,
    /// Batches it took.
    pub batches: u64,
    /// The longest batch's duration.
    pub longest_batch: Duration,
}

/// What a prune pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrunePass {
    pub dry_run: bool,
    pub started_at: i64,
    pub finished_at: i64,
    pub kinds: Vec<KindPass>,
    /// SQLite pages given back to the file system after the pass.
    pub pages_reclaimed: u64,
}

impl PrunePass {
    /// The longest batch of the pass, over every kind.
    pub fn longest_batch(&self) -> Duration {
        self.kinds.iter().map(|k| k.longest_batch).max().unwrap_or_default()
    }

    pub fn rows(&self) -> u64 {
        self.kinds.iter().map(|k| k.rows).sum()
    }
}

/// The last passes, kept for `GET /api/v1/retention`.
#[derive(Default)]
pub(super) struct PruneState {
    /// Held by a running pass: the loop's and an admin's passes take turns.
    pub turn: tokio::sync::Mutex<()>,
    /// The last pass that deleted (not a dry run).
    pub last: std::sync::Mutex<Option<PrunePass>>,
}

impl Engine {
    /// The retention policy in force. Everything that prunes reads it here, once per pass: a
    /// configuration reloaded live is swapped in behind this one accessor.
    pub fn retention(&self) -> Retention {
        self.cfg().retention.clone()
    }

    /// The last prune pass that deleted, if one ran since this node started.
    pub fn last_prune(&self) -> Option<PrunePass> {
        self.prune.last.lock().ok().and_then(|l| l.clone())
    }

    pub(super) async fn retention_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        let mut wait = self.cfg().prune_first_after;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopping.changed() => return,
            }
            wait = self.cfg().prune_every;
            match self.prune_pass(false).await {
                Ok(pass) if pass.rows() > 0 => tracing::info!(
                    rows = pass.rows(),
                    longest_batch_ms = pass.longest_batch().as_millis() as u64,
                    pages_reclaimed = pass.pages_reclaimed,
                    "pruned old history"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the prune pass failed; it runs again within the hour"),
            }
        }
    }

    /// Prunes every kind with a retention now (or, `dry_run`, counts what would go). Passes take
    /// turns; one that waits for another starts after it.
    pub async fn prune_pass(&self, dry_run: bool) -> Result<PrunePass, EngineError> {
        let _turn = self.prune.turn.lock().await;
        let policy = self.retention();
        let stopping = || *self.stopping.borrow();
        let mut pass = prune_pass(self.store.as_ref(), &policy, &|| self.now(), dry_run, &stopping).await?;
        let tokens = pass.kinds.iter_mut().find(|k| k.kind == PruneKind::Tokens);
        if let Some(k) = tokens
            && let Some(cutoff) = k.cutoff
        {
            k.rows += self.prune_used_links(cutoff, dry_run).await?;
        }
        if !dry_run {
            if pass.rows() > 0 {
                self.touch();
            }
            if let Ok(mut last) = self.prune.last.lock() {
                *last = Some(pass.clone());
            }
        }
        Ok(pass)
    }
}

impl Engine {
    /// Deletes the records of used signed links ([`links`](super::links)) whose link expired
    /// before `cutoff` (the run tokens' cutoff: they are kept as long after expiry as run
    /// tokens are); answers how many went (or, `dry_run`, would). Until then a used link is
    /// refused as used; after, as expired. Only people make them, a click at a time, so they
    /// are few and read whole.
    async fn prune_used_links(&self, cutoff: i64, dry_run: bool) -> Result<u64, EngineError> {
        let ttl = super::links::LINK_TTL.as_millis() as i64;
        let gone: Vec<String> = self
            .store
            .settings_with_prefix(super::links::USED_PREFIX)
            .await?
            .into_iter()
            .filter(|(_, value)| super::links::used_at(value).is_some_and(|at| at.saturating_add(ttl) < cutoff))
            .map(|(key, _)| key)
            .collect();
        if dry_run {
            return Ok(gone.len() as u64);
        }
        Ok(self.store.delete_settings(&gone).await?)
    }
}

/// One prune pass over `store` under `policy` (the engine's, and the retention benchmark's):
/// each kind with a retention, batch after batch until one comes back short, with a pause
/// between batches; then, after a pass that deleted anything, SQLite's free pages back in
/// steps. `now` is the clock; `stopping` ends the pass early (at a batch's end).
pub async fn prune_pass(
    store: &dyn Store,
    policy: &Retention,
    now: &(dyn Fn() -> i64 + Sync),
    dry_run: bool,
    stopping: &(dyn Fn() -> bool + Sync),
) -> Result<PrunePass, StoreError> {
    let started_at = now();
    let mut kinds = Vec::with_capacity(PruneKind::ALL.len());
    for &kind in PruneKind::ALL {
        let cutoff = policy.keep(kind).cutoff(started_at);
        let mut k = KindPass { kind, cutoff, rows: 0, batches: 0, longest_batch: Duration::ZERO };
        if let Some(cutoff) = cutoff {
            if dry_run {
                k.rows = store.prune(kind, cutoff, started_at, BATCH, true).await?;
            } else {
                let batch = if kind == PruneKind::Logs { LOG_BATCH } else { BATCH };
                while !stopping() {
                    let began = Instant::now();
                    let n = store.prune(kind, cutoff, now(), batch, false).await?;
                    k.longest_batch = k.longest_batch.max(began.elapsed());
                    k.batches += 1;
                    k.rows += n;
                    if n < batch as u64 {
                        break;
                    }
                    tokio::time::sleep(PAUSE_BETWEEN_BATCHES).await;
                }
            }
        }
        kinds.push(k);
    }
    let mut pass = PrunePass { dry_run, started_at, finished_at: 0, kinds, pages_reclaimed: 0 };
    if !dry_run && pass.rows() > 0 {
        pass.pages_reclaimed = reclaim_space(store, stopping).await?;
    }
    pass.finished_at = now();
    Ok(pass)
}

/// Gives SQLite's free pages back to the file system in small steps, pausing between them
/// like the batches do; answers the pages given back.
async fn reclaim_space(store: &dyn Store, stopping: &(dyn Fn() -> bool + Sync)) -> Result<u64, StoreError> {
    let mut reclaimed = 0;
    loop {
        let n = store.reclaim_space(RECLAIM_PAGES).await?;
        reclaimed += n;
        if n < RECLAIM_PAGES as u64 || stopping() {
            return Ok(reclaimed);
        }
        tokio::time::sleep(PAUSE_BETWEEN_BATCHES).await;
    }
}
