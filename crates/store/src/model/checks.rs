//! Checks and their pings, and events.

use agent_os_core::check::{CheckKind, CheckState, PingKind};

/// A check as declared (synced from the manifest).
#[derive(Clone, Debug, PartialEq)]
pub struct NewCheck {
    pub slug: String,
    pub kind: CheckKind,
    pub period_ms: Option<i64>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub grace_ms: i64,
    /// A start ping is expected within this long of each due time.
    pub start_grace_ms: Option<i64>,
    /// A success sooner than this after its start counts as a failure.
    pub min_duration_ms: Option<i64>,
    /// A run going longer than this after its start is late.
    pub max_duration_ms: Option<i64>,
    /// More success pings than `.0` within `.1` ms is a warning.
    pub max_pings: Option<(i64, i64)>,
    pub description: String,
    /// Labels grouping checks across projects (valid tags, see `core::name::check_tag`).
    pub tags: Vec<String>,
    /// Checks upstream of this one (`slug` or `project/slug`): while one is late or down, this
    /// one's alert is held under the upstream's incident.
    pub depends_on: Vec<String>,
}

/// A check or a project whose alerts are quiet until `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snooze {
    pub until: i64,
    pub reason: Option<String>,
    /// Who snoozed it (the token's or the dashboard's name).
    pub by: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckRecord {
    /// Also the secret part of its ping URL.
    pub id: String,
    pub project_id: String,
    pub project: String,
    pub ping_key: Option<String>,
    pub slug: String,
    pub kind: CheckKind,
    pub period_ms: Option<i64>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub grace_ms: i64,
    pub start_grace_ms: Option<i64>,
    pub min_duration_ms: Option<i64>,
    pub max_duration_ms: Option<i64>,
    /// At most this many success pings (`.0`) within this many ms (`.1`).
    pub max_pings: Option<(i64, i64)>,
    pub description: String,
    pub tags: Vec<String>,
    pub state: CheckState,
    pub last_finish_at: Option<i64>,
    pub last_failed: bool,
    pub running_since: Option<i64>,
    pub last_ping_at: Option<i64>,
    pub last_duration_ms: Option<i64>,
    pub state_changed_at: Option<i64>,
    pub created_at: i64,
    pub depends_on: Vec<String>,
    /// Why its late/down alert is held: `PROJECT/SLUG` of a late or down upstream, or `snooze`.
    pub held_by: Option<String>,
    /// The check's own snooze, as stored (it may have ended; compare `until` with now).
    pub snooze: Option<Snooze>,
}

/// A ping to store, with the check's fields after it.
#[derive(Clone, Debug)]
pub struct PingUpdate {
    pub id: String,
    pub check_id: String,
    pub at: i64,
    pub kind: PingKind,
    pub rid: Option<String>,
    pub duration_ms: Option<i64>,
    pub body: Option<String>,
    pub remote: Option<String>,
    pub last_finish_at: Option<i64>,
    pub last_failed: bool,
    pub running_since: Option<i64>,
    pub state: CheckState,
    /// Set when the state changed.
    pub event: Option<NewEvent>,
}

/// Something that happened (`check.down`, `run.failed`, …), stored for alerting and workflows.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub id: String,
    pub kind: String,
    pub project: Option<String>,
    pub subject: Option<String>,
    /// A JSON object.
    pub data: String,
    pub at: i64,
}

pub type EventRecord = NewEvent;

/// What a check's pings with one run id say (`CheckStore::rid_pings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RidPings {
    /// When the newest `start` with the run id arrived.
    pub started: Option<i64>,
    /// Whether a ping of the kind asked about is already recorded.
    pub recorded: bool,
}
