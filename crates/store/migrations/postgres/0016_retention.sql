-- Retention: prune passes delete old history in small batches, each batch an index range scan
-- (runs by when they finished, pings and probe results by time, tokens by expiry, …). A run
-- whose log lines were pruned keeps its row and says when (`logs_pruned_at`). A probe result
-- now stands for a stretch of identical answers: `since` is when the stretch began, `at` the
-- latest answer, `repeats` how many answers it counts.

ALTER TABLE runs ADD COLUMN logs_pruned_at BIGINT;
CREATE INDEX runs_finished ON runs(finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX runs_logs_kept ON runs(finished_at) WHERE finished_at IS NOT NULL AND logs_pruned_at IS NULL;
CREATE INDEX workflow_steps_task_run ON workflow_steps(task_run_id) WHERE task_run_id IS NOT NULL;
CREATE INDEX workflow_runs_finished ON workflow_runs(finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX schedule_slots_fired ON schedule_slots(fired_at);
CREATE INDEX pings_at ON pings(at);
CREATE INDEX probe_results_at ON probe_results(at);
CREATE INDEX incidents_resolved ON incidents(resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX tokens_run_expiry ON tokens(expires_at) WHERE kind = 'run';
CREATE INDEX tokens_run_revoked ON tokens(revoked_at) WHERE kind = 'run';
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions(expires_at);

ALTER TABLE probe_results ADD COLUMN since BIGINT;
ALTER TABLE probe_results ADD COLUMN repeats BIGINT NOT NULL DEFAULT 1;
UPDATE probe_results SET since = at;
