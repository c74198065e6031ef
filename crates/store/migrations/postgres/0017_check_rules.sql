-- Timing rules of heartbeat checks beyond period/cron and grace, all optional (NULL: not set):
-- the window for a start ping after each due time, and the shortest and longest a run may take
-- from its start ping to its finish; and how many success pings a window may hold before the
-- check is pinged too often.

ALTER TABLE checks ADD COLUMN start_grace_ms BIGINT;
ALTER TABLE checks ADD COLUMN min_duration_ms BIGINT;
ALTER TABLE checks ADD COLUMN max_duration_ms BIGINT;
ALTER TABLE checks ADD COLUMN max_pings_count BIGINT;
ALTER TABLE checks ADD COLUMN max_pings_within_ms BIGINT;
