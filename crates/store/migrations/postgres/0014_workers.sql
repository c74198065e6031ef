-- Workers: `agent-os worker` processes on other machines, which connect out to the server and
-- serve projects from their own directories. A worker token names the projects it may serve
-- (one row each: the projects need not exist yet). A worker is keyed by its token and name, so
-- one that restarts is the same worker. An attempt run by a worker names it, the highest log
-- sequence number the worker sent for it (so a chunk sent twice is stored once), and when the
-- worker last said it was running it.

CREATE TABLE token_projects (
    token_id TEXT NOT NULL,
    project TEXT NOT NULL,
    PRIMARY KEY (token_id, project)
);

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    name TEXT NOT NULL,
    hostname TEXT NOT NULL,
    version TEXT NOT NULL,
    capacity BIGINT NOT NULL,
    projects TEXT,
    first_seen BIGINT NOT NULL,
    last_contact BIGINT NOT NULL,
    UNIQUE (token_id, name)
);

ALTER TABLE run_attempts ADD COLUMN worker_id TEXT;
ALTER TABLE run_attempts ADD COLUMN worker_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE run_attempts ADD COLUMN seen_at BIGINT;
CREATE INDEX run_attempts_worker ON run_attempts(worker_id, status);
