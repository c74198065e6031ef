//! Where a cron slot becomes a run: the scheduler of managed schedules (`managed_by:
//! agent-os`). It computes each schedule's slots from its *last slot*, not from "now", and
//! claims each slot through the store's unique (schedule, slot) record in the same transaction
//! that queues the run — so a slot fires once across restarts and nodes.
//!
//! The schedules live in memory between changes: a tick looks only at the schedules whose next
//! slot has come, and the loop sleeps until the earliest next slot. The table is rebuilt from
//! the store when a project changes on this node, and once a minute for changes made through
//! another node.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agent_os_core::cron::{Cron, Zone};
use agent_os_core::id::{new_id, schedule_id, schedule_key};
use agent_os_core::manifest::{CatchUp, MAX_CATCH_UP, ManagedBy, Overlap, ScheduleSource};
use agent_os_core::run::RunStatus;
use agent_os_store::{NewRun, RunRecord, ScheduleRecord, SlotFire};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::{Engine, EngineError};
use crate::secrets::random_fraction;

/// With `catch_up: skip`, a slot still counts as on time this long after it passed (the tick
/// that fires it may run a little late).
const ON_TIME: i64 = 60_000;

/// The longest the scheduler sleeps without looking again (a safety net for clock jumps).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// How often the table is rebuilt even when nothing changed here (changes made on other nodes).
const RELOAD_EVERY: i64 = 60_000;

/// One managed schedule, as the scheduler keeps it between ticks.
struct Entry {
    key: String,
    project_id: String,
    project: String,
    task: String,
    max_attempts: i64,
    resources: Vec<String>,
    priority: i64,
    cron: Cron,
    tz: TimeZone,
    catch_up: CatchUp,
    overlap: Overlap,
    jitter: Option<Duration>,
    paused: bool,
    /// The last slot reached (fired, skipped or missed).
    last: i64,
    /// The first slot after `last`.
    next: Option<i64>,
}

impl Entry {
    fn set_last(&mut self, last: i64) {
        self.last = last;
        self.next = Timestamp::from_millisecond(last)
            .ok()
            .and_then(|t| self.cron.next_after(&self.tz, t))
            .map(|t| t.as_millisecond());
    }
}

/// The scheduler's in-memory table.
#[derive(Default)]
pub(super) struct ScheduleTable {
    entries: Vec<Entry>,
    loaded_at: Option<i64>,
}

/// A schedule as users name it, with what is needed to act on it.
pub struct ScheduleRef {
    pub id: String,
    pub key: String,
    pub record: ScheduleRecord,
}

/// The key and id of a stored schedule.
pub fn schedule_ident(s: &ScheduleRecord) -> (String, String) {
    let key = schedule_key(&s.project_id, &s.task, &s.cron, &s.timezone);
    let id = schedule_id(&key);
    (key, id)
}

impl Engine {
    /// Fires every due slot of every managed schedule once. Returns the time (ms) of the next
    /// slot to come, if any.
    pub async fn schedule_tick(&self) -> Result<Option<i64>, EngineError> {
        let now = self.now();
        let mut table = self.schedule_table.lock().await;
        // A change made here must be seen before firing; the periodic rebuild (for changes made
        // through other nodes) waits until the due slots have fired, so it never delays them.
        if self.schedules_dirty.swap(false, Ordering::AcqRel) || table.loaded_at.is_none() {
            *table = self.load_schedules(now).await?;
        }
        let due: Vec<usize> = (0..table.entries.len())
            .filter(|&i| !table.entries[i].paused && table.entries[i].next.is_some_and(|n| n <= now))
            .collect();
        if !due.is_empty() {
            let paused: HashSet<String> = self
                .store
                .list_pauses()
                .await?
                .into_iter()
                .filter(|p| p.until.is_none_or(|u| u > now))
                .map(|p| p.project)
                .collect();
            // Every due slot is decided first, then all are written in one transaction: fifty
            // schedules due at 10:00 cost one commit, not fifty.
            let mut fires = Vec::new();
            for i in due {
                self.decide_due(&mut table.entries[i], now, &paused, &mut fires).await?;
            }
            let claimed = self.store.fire_slots(&fires, now).await?;
            if fires.iter().zip(&claimed).any(|(f, c)| *c && f.run.is_some()) {
                self.runs_changed.send_modify(|v| *v += 1);
                self.wake.notify_one();
            }
        }
        if table.loaded_at.is_none_or(|t| now - t >= RELOAD_EVERY || now < t) {
            *table = self.load_schedules(now).await?;
        }
        Ok(table.entries.iter().filter(|e| !e.paused).filter_map(|e| e.next).min())
    }

    /// Marks the table stale and wakes the scheduler.
    pub(super) fn schedules_touched(&self) {
        self.schedules_dirty.store(true, Ordering::Release);
        self.schedules_changed.notify_one();
    }

    /// Builds the table: the managed schedules of every manifest and every plugin, with the
    /// last slot each reached. A schedule seen for the first time starts counting now.
    async fn load_schedules(&self, now: i64) -> Result<ScheduleTable, EngineError> {
        let states: HashMap<String, (i64, bool)> =
            self.store.schedule_states().await?.into_iter().map(|s| (s.key, (s.last_slot, s.paused))).collect();
        let projects = self.projects().await?;
        let by_id: HashMap<&str, &crate::project::LoadedProject> =
            projects.iter().map(|p| (p.record.id.as_str(), p.as_ref())).collect();
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        let mut fresh = Vec::new();
        let mut add = |p: &crate::project::LoadedProject,
                       task: &str,
                       cron: &Cron,
                       timezone: &Zone,
                       catch_up: CatchUp,
                       overlap: Overlap,
                       jitter: Option<Duration>| {
            let Some(t) = p.manifest.task(task) else { return };
            let key = schedule_key(&p.record.id, task, cron.source(), timezone.name());
            if !seen.insert(key.clone()) {
                return;
            }
            let (last, paused) = match states.get(&key) {
                Some(&(last, paused)) => (last, paused),
                None => {
                    fresh.push(key.clone());
                    (now, false)
                }
            };
            let mut entry = Entry {
                key,
                project_id: p.record.id.clone(),
                project: p.record.name.clone(),
                task: t.name.clone(),
                max_attempts: i64::from(t.retries) + 1,
                resources: t.resources.clone(),
                priority: t.priority,
                cron: cron.clone(),
                tz: timezone.tz().clone(),
                catch_up,
                overlap,
                jitter,
                paused,
                last,
                next: None,
            };
            entry.set_last(last);
            entries.push(entry);
        };
        for p in &projects {
            for s in p.manifest.schedules.iter().filter(|s| s.managed_by == ManagedBy::AgentOs) {
                add(p, &s.task, &s.cron, &s.timezone, s.catch_up, s.overlap, s.jitter);
            }
        }
        // Managed schedules a plugin reported through `get_schedule` take the defaults; their
        // stored text is read once, here, as the table is built.
        for s in self.store.list_schedules(None).await? {
            if s.source == ScheduleSource::Plugin
                && s.managed_by == ManagedBy::AgentOs
                && let Some(p) = by_id.get(s.project_id.as_str())
                && let (Ok(cron), Ok(timezone)) = (Cron::parse(&s.cron), Zone::parse(&s.timezone))
            {
                add(p, &s.task, &cron, &timezone, CatchUp::Latest, Overlap::Skip, None);
            }
        }
        if !fresh.is_empty() {
            self.store.init_schedules(&fresh, now).await?;
        }
        Ok(ScheduleTable { entries, loaded_at: Some(now) })
    }

    /// Decides the due slots of one schedule: a run for each slot to fire, or the reason it is
    /// skipped or missed.
    async fn decide_due(
        &self,
        entry: &mut Entry,
        now: i64,
        paused: &HashSet<String>,
        fires: &mut Vec<SlotFire>,
    ) -> Result<(), EngineError> {
        // The slots in (last, now], counted from the last slot, never from "now".
        let mut due: Vec<i64> = Vec::new();
        let mut cursor =
            Timestamp::from_millisecond(entry.last).map_err(|e| EngineError::Unavailable(e.to_string()))?;
        while let Some(slot) = entry.cron.next_after(&entry.tz, cursor) {
            let ms = slot.as_millisecond();
            if ms > now {
                break;
            }
            due.push(ms);
            if due.len() > 2 * MAX_CATCH_UP {
                due.drain(..MAX_CATCH_UP);
            }
            cursor = slot;
        }
        let Some(&newest) = due.last() else {
            entry.set_last(entry.last);
            return Ok(());
        };
        let to_fire: Vec<i64> = match entry.catch_up {
            CatchUp::Skip => due.iter().copied().filter(|slot| now - slot <= ON_TIME).collect(),
            CatchUp::Latest => vec![newest],
            CatchUp::All => due.iter().rev().take(MAX_CATCH_UP).rev().copied().collect(),
        };
        let skipped = |slot: i64, why: &str| SlotFire { key: entry.key.clone(), slot, run: None, outcome: why.into() };
        if to_fire.last() != Some(&newest) {
            // Remember how far we got, so missed slots are not looked at again.
            fires.push(skipped(newest, "missed"));
        }
        // A run queued by an earlier slot of this same decision counts as the previous run.
        let mut queued_here: Option<(String, RunStatus)> = None;
        for slot in to_fire {
            if paused.contains(&entry.project) {
                fires.push(skipped(slot, "skipped: the project is paused by its budget"));
                continue;
            }
            // Only the policies that look at the previous run ask for it.
            let previous = match (entry.overlap, &queued_here) {
                (Overlap::Allow, _) => None,
                (_, Some(q)) => Some(q.clone()),
                _ => self.store.last_schedule_run(&entry.key).await?,
            };
            let active =
                previous.as_ref().filter(|(_, status)| matches!(status, RunStatus::Queued | RunStatus::Running));
            let skip = match (entry.overlap, active) {
                (Overlap::Skip, Some(_)) => Some("skipped: the previous run is still going"),
                (Overlap::Queue, Some((_, RunStatus::Queued))) => Some("skipped: a run of this schedule already waits"),
                _ => None,
            };
            if let Some(why) = skip {
                fires.push(skipped(slot, why));
                continue;
            }
            if let (Overlap::Replace, Some((id, _))) = (entry.overlap, active) {
                match self.cancel_run(id).await {
                    Ok(_) | Err(EngineError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let jitter = entry.jitter.map_or(0, |j| (j.as_millis() as f64 * random_fraction()) as i64);
            let run = NewRun {
                id: new_id(),
                project_id: entry.project_id.clone(),
                project: entry.project.clone(),
                task: entry.task.clone(),
                input: "{}".into(),
                max_attempts: entry.max_attempts,
                trigger: "schedule".into(),
                // Queued and replacing runs wait for the previous run to end.
                concurrency_key: matches!(entry.overlap, Overlap::Queue | Overlap::Replace).then(|| entry.key.clone()),
                scheduled_for: Some(slot),
                resources: entry.resources.clone(),
                priority: entry.priority,
                now: now.max(slot) + jitter,
            };
            queued_here = Some((run.id.clone(), RunStatus::Queued));
            fires.push(SlotFire { key: entry.key.clone(), slot, run: Some(run), outcome: "started".into() });
        }
        entry.set_last(newest);
        Ok(())
    }

    pub(super) async fn schedule_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        loop {
            let sleep = match self.schedule_tick().await {
                Ok(Some(next)) => Duration::from_millis((next - self.now()).max(0) as u64).min(MAX_SLEEP),
                Ok(None) => MAX_SLEEP,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler tick failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.schedules_changed.notified() => {}
                _ = stopping.changed() => return,
            }
        }
    }

    // Acting on one schedule ---------------------------------------------------------------

    /// Finds a schedule by its id, or by `project/task` when that names exactly one.
    pub async fn find_schedule(&self, reference: &str) -> Result<ScheduleRef, EngineError> {
        let all = self.store.list_schedules(None).await?;
        let mut matches: Vec<ScheduleRef> = Vec::new();
        for record in all {
            let (key, id) = schedule_ident(&record);
            let named = format!("{}/{}", record.project, record.task);
            if id == reference || named == reference {
                matches.push(ScheduleRef { id, key, record });
            }
        }
        match matches.len() {
            1 => Ok(matches.remove(0)),
            0 => Err(EngineError::NotFound(format!(
                "no schedule {reference:?}; `agent-os schedules` lists them with their ids (PROJECT/TASK works when the task has one schedule)"
            ))),
            _ => Err(EngineError::Invalid {
                field: None,
                message: format!(
                    "{reference:?} names {} schedules; use one of their ids: {}",
                    matches.len(),
                    matches.iter().map(|m| format!("{} ({})", m.id, m.record.cron)).collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }

    /// Pauses or resumes a managed schedule. Slots that pass while it is paused are not fired,
    /// not even after it resumes.
    pub async fn pause_schedule(&self, reference: &str, paused: bool) -> Result<ScheduleRef, EngineError> {
        let s = self.find_schedule(reference).await?;
        if s.record.managed_by != ManagedBy::AgentOs {
            return Err(EngineError::Invalid {
                field: None,
                message: format!(
                    "schedule {} is kept by {}: Agent OS watches it but does not fire it, so there is nothing to {}; change it where it lives",
                    s.id,
                    s.record.managed_by,
                    if paused { "pause" } else { "resume" }
                ),
            });
        }
        self.store.set_schedule_paused(&s.key, paused, self.now()).await?;
        self.schedules_touched();
        Ok(s)
    }

    /// Starts a run of the schedule's task now, outside its slots ("run now"). It does not
    /// use up a slot; with `overlap: queue` or `replace` it waits for a run still going.
    pub async fn run_schedule_now(&self, reference: &str, trigger: &str) -> Result<RunRecord, EngineError> {
        let s = self.find_schedule(reference).await?;
        let project = self.project(&s.record.project).await?;
        let Some(task) = project.manifest.task(&s.record.task) else {
            return Err(EngineError::Invalid {
                field: None,
                message: format!(
                    "schedule {} runs {:?}, which is not a task of project {:?}; run it where it lives",
                    s.id, s.record.task, s.record.project
                ),
            });
        };
        self.check_resources(&project.record.name, task)?;
        self.refuse_if_paused(&project.record.name).await?;
        let overlap = project
            .manifest
            .schedules
            .iter()
            .find(|m| {
                m.task == s.record.task && m.cron.source() == s.record.cron && m.timezone.name() == s.record.timezone
            })
            .map_or(Overlap::Skip, |m| m.overlap);
        let run = NewRun {
            concurrency_key: matches!(overlap, Overlap::Queue | Overlap::Replace).then(|| s.key.clone()),
            ..super::task_run(&project, task, "{}".into(), trigger, self.now())
        };
        self.queue_run(run).await
    }
}
