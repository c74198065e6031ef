-- Workflows: events become routable (an idempotency key, and whether the workflow router has
-- seen them), workflow runs keep the definition they started with, and each step (and each
-- for_each item) has a row whose state survives a crash.

ALTER TABLE events ADD COLUMN idempotency_key TEXT;
ALTER TABLE events ADD COLUMN routed_at BIGINT;
UPDATE events SET routed_at = at;
CREATE UNIQUE INDEX events_idempotency ON events(idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_unrouted ON events(at) WHERE routed_at IS NULL;

CREATE TABLE workflow_runs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    definition TEXT NOT NULL,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    trigger_key TEXT,
    event TEXT,
    inputs TEXT NOT NULL,
    outputs TEXT,
    error TEXT,
    concurrency_key TEXT,
    parent_run_id TEXT,
    parent_step TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    deadline_at BIGINT
);
CREATE UNIQUE INDEX workflow_runs_trigger ON workflow_runs(workflow, trigger_key) WHERE trigger_key IS NOT NULL;
CREATE INDEX workflow_runs_status ON workflow_runs(status, created_at);
CREATE INDEX workflow_runs_workflow ON workflow_runs(workflow, created_at);

CREATE TABLE workflow_steps (
    run_id TEXT NOT NULL REFERENCES workflow_runs(id) ON DELETE CASCADE,
    step_id TEXT NOT NULL,
    item BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 0,
    task_run_id TEXT,
    child_run_id TEXT,
    outputs TEXT,
    error TEXT,
    wake_at BIGINT,
    started_at BIGINT,
    finished_at BIGINT,
    PRIMARY KEY (run_id, step_id, item)
);

CREATE TABLE webhook_receipts (
    workflow TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (workflow, webhook_id)
);
