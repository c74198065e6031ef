//! Where a cron slot becomes a run: the scheduler of managed schedules (`managed_by:
//! agent-os`). It computes each schedule's slots from its *last slot*, not from "now", and
//! claims each slot through the store's unique (schedule, slot) record in the same transaction
//! that queues the run — so a slot fires once across restarts and nodes. Between slots it
//! sleeps until the earliest next slot; nothing polls.

use std::sync::Arc;
use std::time::Duration;

use agent_os_core::cron::{Cron, zone};
use agent_os_core::id::new_id;
use agent_os_core::manifest::{CatchUp, MAX_CATCH_UP, Overlap};
use agent_os_store::NewRun;
use jiff::Timestamp;

use super::{Engine, EngineError};
use crate::secrets::random_fraction;

/// With `catch_up: skip`, a slot still counts as on time this long after it passed (the tick
/// that fires it may run a little late).
const ON_TIME: i64 = 60_000;

/// The longest the scheduler sleeps without looking again (a safety net for clock jumps).
const MAX_SLEEP: Duration = Duration::from_secs(60);

impl Engine {
    /// Fires every due slot of every managed schedule once. Returns the time (ms) of the next
    /// slot to come, if any.
    pub async fn schedule_tick(&self) -> Result<Option<i64>, EngineError> {
        let now = self.now();
        let mut next_wake: Option<i64> = None;
        let mut fired = 0;
        for p in self.projects().await? {
            for s in p.manifest.schedules.iter().filter(|s| s.managed_by == "agent-os") {
                let (Ok(cron), Ok(tz)) = (Cron::parse(&s.cron), zone(&s.timezone)) else { continue };
                let Some(task) = p.manifest.task(&s.task) else { continue };
                let key = format!("{}:{}:{}:{}", p.record.id, s.task, s.cron, s.timezone);
                let last = match self.store.schedule_last_slot(&key).await? {
                    Some(last) => last,
                    None => {
                        // A new schedule starts now: nothing before it was ever due.
                        self.store.init_schedule(&key, now).await?;
                        now
                    }
                };
                // The slots in (last, now], counted from the last slot, never from "now".
                let mut due: Vec<i64> = Vec::new();
                let mut cursor =
                    Timestamp::from_millisecond(last).map_err(|e| EngineError::Unavailable(e.to_string()))?;
                while let Some(slot) = cron.next_after(&tz, cursor) {
                    let ms = slot.as_millisecond();
                    if ms > now {
                        next_wake = Some(next_wake.map_or(ms, |w: i64| w.min(ms)));
                        break;
                    }
                    due.push(ms);
                    if due.len() > 2 * MAX_CATCH_UP {
                        due.drain(..MAX_CATCH_UP);
                    }
                    cursor = slot;
                }
                let Some(&newest) = due.last() else { continue };
                let to_fire: Vec<i64> = match s.catch_up {
                    CatchUp::Skip => due.iter().copied().filter(|slot| now - slot <= ON_TIME).collect(),
                    CatchUp::Latest => vec![newest],
                    CatchUp::All => due.iter().rev().take(MAX_CATCH_UP).rev().copied().collect(),
                };
                if to_fire.last() != Some(&newest) {
                    // Remember how far we got, so missed slots are not looked at again.
                    self.store.fire_slot(&key, newest, None, "missed", now).await?;
                }
                for slot in to_fire {
                    let busy = s.overlap == Overlap::Skip
                        && matches!(
                            self.store.last_schedule_run_status(&key).await?.as_deref(),
                            Some("queued" | "running")
                        );
                    if busy {
                        self.store.fire_slot(&key, slot, None, "skipped: the previous run is still going", now).await?;
                        continue;
                    }
                    let jitter = s.jitter.map_or(0, |j| (j.as_millis() as f64 * random_fraction()) as i64);
                    let run = NewRun {
                        id: new_id(),
                        project_id: p.record.id.clone(),
                        project: p.record.name.clone(),
                        task: task.name.clone(),
                        input: "{}".into(),
                        max_attempts: i64::from(task.retries) + 1,
                        trigger: "schedule".into(),
                        now: now.max(slot) + jitter,
                    };
                    if self.store.fire_slot(&key, slot, Some(&run), "started", now).await? {
                        fired += 1;
                    }
                }
            }
        }
        if fired > 0 {
            self.runs_changed.send_modify(|v| *v += 1);
            self.wake.notify_one();
        }
        Ok(next_wake)
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
}
