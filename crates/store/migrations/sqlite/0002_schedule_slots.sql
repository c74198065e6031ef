-- Managed schedules: one row per (schedule, slot) makes "fire each slot exactly once" a
-- unique-key fact, across restarts and across nodes. The key names the schedule by what it is
-- (project id, task, cron, zone), so editing the expression starts a new schedule.

CREATE TABLE schedule_state (
    schedule_key TEXT PRIMARY KEY,
    last_slot INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE schedule_slots (
    schedule_key TEXT NOT NULL,
    slot INTEGER NOT NULL,
    run_id TEXT,
    outcome TEXT NOT NULL,
    fired_at INTEGER NOT NULL,
    PRIMARY KEY (schedule_key, slot)
);
