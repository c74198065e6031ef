//! Resources: leases, their holders and waiters.

use super::runs::RunRecord;
use agent_os_core::resource::HolderKind;

/// A request for a lease on a resource, from a job Agent OS does not run.
#[derive(Clone, Debug)]
pub struct LeaseRequest {
    pub id: String,
    pub resource: String,
    /// The project of the token that asked, if any.
    pub project: Option<String>,
    pub label: String,
    pub priority: i64,
    pub ttl_ms: i64,
    /// When it started waiting (kept across attempts, so it keeps its place).
    pub since: i64,
}

/// Why a waiter cannot go yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// Every slot is held.
    Concurrency,
    /// The rate bucket is empty.
    Rate,
    /// Others who came first (or rank higher) wait for it.
    Queue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LeaseAttempt {
    Granted(HoldRecord),
    Waiting { blocked_by: Blocked, retry_at: Option<i64> },
}

/// One holder of one resource: a run or a lease.
#[derive(Clone, Debug, PartialEq)]
pub struct HoldRecord {
    /// The run id or the lease id.
    pub holder: String,
    pub resource: String,
    pub kind: HolderKind,
    pub project: Option<String>,
    /// `project.task` for a run; the caller's label for a lease.
    pub label: String,
    pub priority: i64,
    pub acquired_at: i64,
    /// Leases only: reclaimed at this time unless renewed.
    pub expires_at: Option<i64>,
    /// Leases only: how far a renewal extends it.
    pub ttl_ms: Option<i64>,
}

/// A run or a lease request waiting for resources.
#[derive(Clone, Debug, PartialEq)]
pub struct WaiterRecord {
    pub id: String,
    pub kind: HolderKind,
    pub resources: Vec<String>,
    pub project: Option<String>,
    pub label: String,
    pub priority: i64,
    pub since: i64,
}

impl WaiterRecord {
    /// The waiter as `core::resource::allocate` sees it.
    pub fn waiter(&self) -> agent_os_core::resource::Waiter {
        agent_os_core::resource::Waiter {
            id: self.id.clone(),
            resources: self.resources.clone(),
            priority: self.priority,
            since: self.since,
        }
    }
}

/// What is in use: holders per resource, and the bucket levels.
pub fn usage_of(
    holds: &[HoldRecord],
    buckets: std::collections::HashMap<String, agent_os_core::resource::Bucket>,
) -> agent_os_core::resource::Usage {
    let mut held: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    for h in holds {
        *held.entry(h.resource.clone()).or_insert(0) += 1;
    }
    agent_os_core::resource::Usage { held, buckets }
}

impl ResourceSnapshot {
    pub fn usage(&self) -> agent_os_core::resource::Usage {
        usage_of(&self.holds, self.buckets.clone())
    }

    pub fn waiters(&self) -> Vec<agent_os_core::resource::Waiter> {
        self.waiters.iter().map(WaiterRecord::waiter).collect()
    }
}

/// Holders, waiters and bucket levels of every resource.
#[derive(Clone, Debug, Default)]
pub struct ResourceSnapshot {
    pub holds: Vec<HoldRecord>,
    pub waiters: Vec<WaiterRecord>,
    pub buckets: std::collections::HashMap<String, agent_os_core::resource::Bucket>,
}

/// What a resource claim took, and when to look again (a rate refills, a retry comes due).
#[derive(Clone, Debug, Default)]
pub struct ResourceClaim {
    pub runs: Vec<RunRecord>,
    pub wake_at: Option<i64>,
}
