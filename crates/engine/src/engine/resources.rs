//! Named resources as the API and runs see them: leases for jobs Agent OS does not run, and
//! the reasons a waiter waits. The decisions themselves are `core::resource::allocate`, taken
//! by the store inside the transaction that records them.

use std::time::Duration;

use agent_os_core::id::new_id;
use agent_os_core::resource::{DEFAULT_PRIORITY, MAX_PRIORITY, ResourceScope, allocate};
use agent_os_core::run::RunStatus;
use agent_os_store::{Blocked, HoldRecord, LeaseAttempt, LeaseRequest, ResourceSnapshot, RunRecord};

use super::{Engine, EngineError};

/// Bounds of a lease's time to live and of how long a request may wait.
pub const MIN_TTL: Duration = Duration::from_secs(1);
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// How often a waiting lease request looks again without being woken (other nodes' releases).
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// How often a waiting lease request refreshes its row in line (the row lives 10 s).
const KEEP_PLACE_MS: i64 = 3_000;

/// A lease request as the API takes it.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    pub resource: String,
    pub ttl: Duration,
    pub wait: Duration,
    pub priority: Option<i64>,
    pub project: Option<String>,
    pub label: Option<String>,
}

impl Engine {
    fn known_resource(&self, name: &str) -> Result<(), EngineError> {
        if self.cfg().resources.contains_key(name) {
            return Ok(());
        }
        Err(EngineError::NotFound(format!("no resource {name:?}; {}", self.resource_hint(name))))
    }

    /// What config.yaml declares, to help with an unknown resource name.
    pub(crate) fn resource_hint(&self, name: &str) -> String {
        let cfg = self.cfg();
        let known: Vec<&str> = cfg.resources.keys().map(String::as_str).collect();
        match agent_os_core::manifest::suggest(name, &known) {
            Some(k) => format!("did you mean {k:?}?"),
            None if known.is_empty() => "config.yaml declares no resources".into(),
            None => format!("config.yaml declares: {}", known.join(", ")),
        }
    }

    /// Takes a lease on `resource`, waiting in line up to `wait`. Runs and other leases keep
    /// their order: the request waits as a row every node sees.
    pub async fn acquire_lease(&self, o: LeaseOptions) -> Result<HoldRecord, EngineError> {
        self.known_resource(&o.resource)?;
        if o.ttl < MIN_TTL || o.ttl > MAX_TTL {
            return Err(EngineError::Invalid {
                field: Some("ttl".into()),
                message: "ttl must be between 1s and 24h".into(),
            });
        }
        if o.wait > MAX_WAIT {
            return Err(EngineError::Invalid { field: Some("wait".into()), message: "wait must be at most 1h".into() });
        }
        let priority = o.priority.unwrap_or(DEFAULT_PRIORITY);
        if !(0..=MAX_PRIORITY).contains(&priority) {
            return Err(EngineError::Invalid {
                field: Some("priority".into()),
                message: format!("priority {priority} is out of range: 0 to 100, higher goes first"),
            });
        }
        if let Some(p) = &o.project {
            self.refuse_if_paused(p).await?;
        }
        let label = o.label.clone().unwrap_or_else(|| o.project.clone().unwrap_or_else(|| "lease".into()));
        if label.len() > 200 {
            return Err(EngineError::Invalid { field: Some("label".into()), message: "at most 200 bytes".into() });
        }
        let req = LeaseRequest {
            id: new_id(),
            resource: o.resource.clone(),
            project: o.project.clone(),
            label,
            priority,
            ttl_ms: o.ttl.as_millis() as i64,
            since: self.now(),
        };
        let deadline = tokio::time::Instant::now() + o.wait;
        let mut kept_place_at: Option<i64> = None;
        loop {
            let woken = self.resources_changed.notified();
            let now = self.now();
            // Woken with others, most waiters cannot go yet: a read tells them so without the
            // write transaction, which is taken when this request's turn may have come, or to
            // keep its place in line (its row expires unless refreshed).
            let refresh_due = kept_place_at.is_none_or(|t| now - t >= KEEP_PLACE_MS);
            if !refresh_due && !self.might_be_granted(&req, now).await? {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if !left.is_zero() {
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep(left.min(RETRY_EVERY)) => {}
                    }
                    continue;
                }
            }
            kept_place_at = Some(now);
            match self.store.acquire_lease(&req, &self.cfg().resources, now).await? {
                LeaseAttempt::Granted(hold) => {
                    // Runs behind the lease may be able to go now that the line moved.
                    self.wake.notify_one();
                    return Ok(hold);
                }
                LeaseAttempt::Waiting { blocked_by, retry_at } => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        self.store.drop_lease_waiter(&req.id).await?;
                        self.wake.notify_one();
                        let scope = o.project.clone().map_or(ResourceScope::Admin, ResourceScope::Project);
                        let why = self.explain(std::slice::from_ref(&o.resource), &req.id, &scope).await;
                        return Err(match blocked_by {
                            Blocked::Rate => EngineError::RateLimited(why),
                            Blocked::Concurrency | Blocked::Queue => EngineError::Conflict(why),
                        });
                    }
                    let until_token =
                        retry_at.map(|t| Duration::from_millis((t - now).max(1) as u64)).unwrap_or(RETRY_EVERY);
                    let nap = left.min(RETRY_EVERY).min(until_token);
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep(nap) => {}
                    }
                }
            }
        }
    }

    /// Whether `req` would be granted now, judged from a read of the line (no lock taken).
    async fn might_be_granted(&self, req: &LeaseRequest, now: i64) -> Result<bool, EngineError> {
        let snap = self.store.resource_snapshot(now).await?;
        Ok(allocate(&snap.waiters(), &self.cfg().resources, &snap.usage(), now).granted.contains(&req.id))
    }

    /// Extends a lease `scope` owns by `ttl` (default: its own) from now. Another's lease
    /// answers as an unknown one, so its id is no use to anyone else.
    pub async fn renew_lease(
        &self,
        resource: &str,
        id: &str,
        scope: &ResourceScope,
        ttl: Option<Duration>,
    ) -> Result<HoldRecord, EngineError> {
        self.known_resource(resource)?;
        if ttl.is_some_and(|t| t < MIN_TTL || t > MAX_TTL) {
            return Err(EngineError::Invalid {
                field: Some("ttl".into()),
                message: "ttl must be between 1s and 24h".into(),
            });
        }
        match self.store.renew_lease(id, resource, scope, ttl.map(|t| t.as_millis() as i64), self.now()).await? {
            Some(h) => Ok(h),
            None => Err(EngineError::NotFound(format!(
                "no lease {id:?} on {resource:?}{}: it expired or was released; take a new one",
                held_by(scope)
            ))),
        }
    }

    /// Ends a lease `scope` owns; another's answers as an unknown one.
    pub async fn release_lease(&self, resource: &str, id: &str, scope: &ResourceScope) -> Result<(), EngineError> {
        self.known_resource(resource)?;
        if !self.store.release_lease(id, resource, scope, self.now()).await? {
            return Err(EngineError::NotFound(format!(
                "no lease {id:?} on {resource:?}{}: it expired or was released",
                held_by(scope)
            )));
        }
        self.resources_changed.notify_waiters();
        self.wake.notify_one();
        Ok(())
    }

    pub async fn resource_snapshot(&self) -> Result<ResourceSnapshot, EngineError> {
        Ok(self.store.resource_snapshot(self.now()).await?)
    }

    /// Why a waiter (a queued run or a lease request) waits, e.g. "waiting for openai: 1/1
    /// held by trading.rebalance", as `scope` may read it.
    pub async fn explain(&self, resources: &[String], waiter: &str, scope: &ResourceScope) -> String {
        let Ok(snap) = self.resource_snapshot().await else { return "waiting for resources".into() };
        explain_wait(&snap, &self.cfg().resources, resources, waiter, self.now(), scope)
    }

    /// The reason a queued run waits, if it waits for resources, as `scope` may read it.
    pub async fn run_wait_reason(&self, run: &RunRecord, scope: &ResourceScope) -> Option<String> {
        (run.status == RunStatus::Queued && !run.resources.is_empty() && run.not_before <= self.now()).then_some(())?;
        Some(self.explain(&run.resources, &run.id, scope).await)
    }
}

/// Says whose leases were looked at, for a project's "not found".
fn held_by(scope: &ResourceScope) -> String {
    scope.project().map(|p| format!(" held by project {p:?}")).unwrap_or_default()
}

/// How a holder is named to `scope`: by its label when it is the reader's, otherwise only by
/// what it is (another project's label could name its machines or jobs).
fn holder_name(h: &HoldRecord, scope: &ResourceScope) -> String {
    if scope.owns(h.project.as_deref()) {
        h.label.clone()
    } else if h.project.is_some() {
        format!("another project's {}", h.kind)
    } else {
        "an admin lease".into()
    }
}

/// Names what holds each busy resource, or what is ahead in line.
pub fn explain_wait(
    snap: &ResourceSnapshot,
    limits: &std::collections::HashMap<String, agent_os_core::resource::Limits>,
    resources: &[String],
    waiter: &str,
    now: i64,
    scope: &ResourceScope,
) -> String {
    let mut parts = Vec::new();
    for r in resources {
        let Some(l) = limits.get(r) else {
            parts.push(format!("{r}: not declared in config.yaml"));
            continue;
        };
        let holders: Vec<&HoldRecord> = snap.holds.iter().filter(|h| &h.resource == r).collect();
        if let Some(c) = l.concurrency
            && holders.len() as u32 >= c
        {
            let names: Vec<String> = holders.iter().map(|h| holder_name(h, scope)).collect();
            parts.push(format!("{r}: {}/{c} held by {}", holders.len(), names.join(", ")));
            continue;
        }
        if let Some(rate) = &l.rate {
            let level = snap.buckets.get(r).map_or(f64::from(rate.burst), |b| b.level(rate, now));
            if level < 1.0 {
                let wait_ms = ((1.0 - level) / rate.per_ms()).ceil() as i64;
                parts.push(format!("{r}: rate {} used up, next in {:.1}s", rate.describe(), wait_ms as f64 / 1000.0));
                continue;
            }
        }
        let ahead = snap.waiters.iter().filter(|w| w.id != waiter && w.resources.contains(r)).count();
        if ahead > 0 {
            parts.push(format!("{r}: {ahead} other waiter(s) in line"));
        }
    }
    if parts.is_empty() { "about to start".into() } else { format!("waiting for {}", parts.join("; ")) }
}
