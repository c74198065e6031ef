-- Heartbeat checks of schedules kept elsewhere, their pings, and the events state changes
-- raise. A check's id is its ping URL: it survives manifest reloads (kept by project and slug).

ALTER TABLE projects ADD COLUMN ping_key TEXT;
CREATE UNIQUE INDEX projects_ping_key ON projects(ping_key);

CREATE TABLE checks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    slug TEXT NOT NULL,
    kind TEXT NOT NULL,
    period_ms BIGINT,
    cron TEXT,
    timezone TEXT,
    grace_ms BIGINT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'new',
    last_finish_at BIGINT,
    last_failed BIGINT NOT NULL DEFAULT 0,
    running_since BIGINT,
    last_ping_at BIGINT,
    last_duration_ms BIGINT,
    state_changed_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, slug)
);

CREATE TABLE pings (
    id TEXT PRIMARY KEY,
    check_id TEXT NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    rid TEXT,
    duration_ms BIGINT,
    body TEXT,
    remote TEXT
);
CREATE INDEX pings_check ON pings(check_id, at);

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    project TEXT,
    subject TEXT,
    data TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX events_at ON events(at);
