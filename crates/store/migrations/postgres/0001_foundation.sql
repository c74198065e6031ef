-- Foundation: projects, schedules, task runs, attempts, logs, tokens, probes, costs, nodes.
-- Released migrations are never edited; add a new file instead.
-- Timestamps are integer milliseconds since the Unix epoch, UTC.

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    transport TEXT NOT NULL,
    root TEXT,
    plugin_url TEXT,
    manifest TEXT NOT NULL,
    signing_secret TEXT,
    cost_cursor TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    managed_by TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    position BIGINT NOT NULL
);
CREATE INDEX schedules_project ON schedules(project_id, position);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    project TEXT NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    outputs TEXT,
    attempt BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    exit_code BIGINT,
    error TEXT,
    trigger TEXT NOT NULL,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    queued_at BIGINT NOT NULL,
    not_before BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    log_bytes BIGINT NOT NULL DEFAULT 0,
    log_dropped BIGINT NOT NULL DEFAULT 0,
    log_seq BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX runs_queue ON runs(status, not_before);
CREATE INDEX runs_project ON runs(project, id);

CREATE TABLE run_attempts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    status TEXT NOT NULL,
    node_id TEXT NOT NULL,
    pid BIGINT,
    pgid BIGINT,
    proc_start BIGINT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    exit_code BIGINT,
    error TEXT,
    PRIMARY KEY (run_id, attempt)
);
CREATE INDEX run_attempts_running ON run_attempts(status);

CREATE TABLE run_logs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    stream TEXT NOT NULL,
    at BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    project_id TEXT,
    run_id TEXT,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX tokens_run ON tokens(run_id);

CREATE TABLE probe_results (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    ok BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status TEXT,
    message TEXT,
    body TEXT,
    error TEXT
);
CREATE INDEX probe_results_project ON probe_results(project_id, kind, at);

CREATE TABLE cost_records (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    project TEXT NOT NULL,
    run_id TEXT,
    service TEXT NOT NULL,
    key_name TEXT,
    amount_nanos BIGINT NOT NULL,
    currency TEXT NOT NULL,
    tokens_in BIGINT,
    tokens_out BIGINT,
    model TEXT,
    at BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL,
    source TEXT NOT NULL,
    metadata TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX cost_records_idempotency ON cost_records(project, idempotency_key);
CREATE INDEX cost_records_at ON cost_records(project, at);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
