-- Checks that wait on other checks, and snoozes.
--
-- depends_on: the checks upstream of this one, as the manifest names them (`slug` or
-- `project/slug`), one per line; empty for none. held_by: why the alert of a late or down
-- check was kept back, `PROJECT/SLUG` of an upstream check that was late or down (it is
-- listed under that check's incident) or `snooze`; NULL when nothing is held. The monitor
-- pages a held check once nothing holds it any more and it is still late or down.
-- snoozed_until/snooze_reason/snoozed_by: a check's alerts are quiet until then.

ALTER TABLE checks ADD COLUMN depends_on TEXT NOT NULL DEFAULT '';
ALTER TABLE checks ADD COLUMN held_by TEXT;
ALTER TABLE checks ADD COLUMN snoozed_until BIGINT;
ALTER TABLE checks ADD COLUMN snooze_reason TEXT;
ALTER TABLE checks ADD COLUMN snoozed_by TEXT;

-- A project snoozed: the alerts of all its checks are quiet until then. Its own table, so a
-- project row (and everything that reads one) does not change.
CREATE TABLE project_snoozes (
    project_id TEXT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    snoozed_until BIGINT NOT NULL,
    reason TEXT,
    snoozed_by TEXT,
    created_at BIGINT NOT NULL
);
