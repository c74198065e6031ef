-- Schedule control. Runs sharing a concurrency key start one at a time, oldest first
-- (`overlap: queue`, later workflow concurrency). A scheduled run remembers the slot it was
-- fired for. A schedule kept elsewhere names the check that watches it, and schedules found
-- by discovery can be registered (source `discovered`) without touching the manifest.

ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
ALTER TABLE runs ADD COLUMN scheduled_for BIGINT;
CREATE INDEX runs_concurrency ON runs(concurrency_key, status);
ALTER TABLE schedules ADD COLUMN check_slug TEXT;
ALTER TABLE schedule_state ADD COLUMN paused_at BIGINT;
CREATE INDEX pings_rid ON pings(check_id, rid) WHERE rid IS NOT NULL;
