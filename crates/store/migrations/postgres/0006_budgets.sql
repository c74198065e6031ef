-- Budgets: a spending limit per project (and optionally per service; '' is all) for a UTC day or month.
-- A mark per (budget, period, threshold) makes "each threshold raises its event once per
-- period" a unique-key fact. A project paused by a budget stays paused until the period ends
-- or a user resumes it.

CREATE TABLE budgets (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    service TEXT NOT NULL,
    period TEXT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    currency TEXT NOT NULL,
    thresholds TEXT NOT NULL,
    on_exceed TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX budgets_scope ON budgets(project, service, period);

CREATE TABLE budget_marks (
    budget_id TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    threshold BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (budget_id, period_start, threshold)
);

CREATE TABLE project_pauses (
    project TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    budget_id TEXT,
    since BIGINT NOT NULL,
    until BIGINT
);
