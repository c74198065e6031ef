-- The dashboard at scale (a million runs and cost records): every combination of the runs
-- page's filters (project, task, status, each with the `before` cursor) reads its page from an
-- index in id order, whatever few runs match; 0001 and 0011 cover project, status and
-- project + task. And a run's page lists the run's costs.
CREATE INDEX runs_task_id ON runs(task, id);
CREATE INDEX runs_project_status ON runs(project, status, id);
CREATE INDEX runs_task_status ON runs(task, status, id);
CREATE INDEX runs_project_task_status ON runs(project, task, status, id);
CREATE INDEX cost_records_run ON cost_records(run_id, at) WHERE run_id IS NOT NULL;
-- The open incidents (every project's health and the overview read them), apart from the
-- resolved ones that pile up over the years.
CREATE INDEX incidents_open ON incidents(opened_at, id) WHERE status = 'open';
