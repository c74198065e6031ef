//! Schedules, their state and the slots they fire.

use super::runs::NewRun;
use agent_os_core::manifest::{ManagedBy, ScheduleSource};
use agent_os_core::run::RunStatus;

/// A schedule declared by a project (manifest or plugin `get_schedule`).
#[derive(Clone, Debug, PartialEq)]
pub struct NewSchedule {
    pub task: String,
    pub cron: String,
    pub timezone: String,
    pub managed_by: ManagedBy,
    pub description: String,
    pub source: ScheduleSource,
    /// The check watching a schedule kept elsewhere (its slug).
    pub check_slug: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleRecord {
    pub id: String,
    pub project_id: String,
    pub project: String,
    pub task: String,
    pub cron: String,
    pub timezone: String,
    pub managed_by: ManagedBy,
    pub description: String,
    pub source: ScheduleSource,
    pub check_slug: Option<String>,
}

/// What the scheduler remembers of a managed schedule, with its latest fired run.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleState {
    pub key: String,
    pub last_slot: i64,
    pub paused: bool,
    pub paused_at: Option<i64>,
    /// The run of the newest slot that started one.
    pub last_run: Option<SlotRun>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SlotRun {
    pub slot: i64,
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// One slot of a managed schedule, as the scheduler decided it: fired with a run, or recorded
/// as skipped or missed.
#[derive(Clone, Debug)]
pub struct SlotFire {
    pub key: String,
    pub slot: i64,
    pub run: Option<NewRun>,
    pub outcome: String,
}
