-- Heartbeat checks of schedules kept elsewhere, their pings, and the events state changes
-- raise. A check's id is its ping URL: it survives manifest reloads (kept by project and slug).

ALTER TABLE projects ADD COLUMN ping_key TEXT;
CREATE UNIQUE INDEX projects_ping_key ON projects(ping_key);

CREATE TABLE checks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    slug TEXT NOT NULL,
    kind TEXT NOT NULL,
    period_ms INTEGER,
    cron TEXT,
    timezone TEXT,
    grace_ms INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'new',
    last_finish_at INTEGER,
    last_failed INTEGER NOT NULL DEFAULT 0,
    running_since INTEGER,
    last_ping_at INTEGER,
    last_duration_ms INTEGER,
    state_changed_at INTEGER,
    created_at INTEGER NOT NULL,
    UNIQUE (project_id, slug)
);

CREATE TABLE pings (
    id TEXT PRIMARY KEY,
    check_id TEXT NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    rid TEXT,
    duration_ms INTEGER,
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
    at INTEGER NOT NULL
);
CREATE INDEX events_at ON events(at);
