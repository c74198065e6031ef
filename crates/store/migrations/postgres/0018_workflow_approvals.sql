-- The decision on a workflow's approval step: one row per (run, step), written once. The first
-- decision stored (a person through the API, the CLI, the dashboard or a signed link, or the
-- step's timeout) stands; a later one finds the row and is refused with who decided.

CREATE TABLE workflow_approvals (
    run_id TEXT NOT NULL REFERENCES workflow_runs(id) ON DELETE CASCADE,
    step_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    decided_by TEXT NOT NULL,
    decided_at BIGINT NOT NULL,
    comment TEXT,
    inputs TEXT NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
