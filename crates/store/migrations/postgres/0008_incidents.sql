-- Incidents: one open incident per (source, subject), opened when something breaks and
-- resolved when it recovers; notifications say where they came from; deliveries can be held
-- (quiet hours, throttle) to go out later in one digest; maintenance windows set over the API.

CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    subject TEXT NOT NULL,
    project TEXT,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    resolved_at BIGINT,
    acked_at BIGINT,
    acked_by TEXT,
    changes BIGINT NOT NULL DEFAULT 1,
    flapping BIGINT NOT NULL DEFAULT 0,
    notified BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX incidents_one_open ON incidents(source, subject) WHERE status = 'open';
CREATE INDEX incidents_subject ON incidents(source, subject, updated_at);
CREATE INDEX incidents_opened ON incidents(opened_at);

ALTER TABLE notifications ADD COLUMN source TEXT;
ALTER TABLE notifications ADD COLUMN incident_id TEXT;
ALTER TABLE notifications ADD COLUMN suppressed TEXT;

ALTER TABLE deliveries ADD COLUMN held TEXT;
CREATE INDEX deliveries_channel ON deliveries(channel, status);

CREATE TABLE maintenance_windows (
    id TEXT PRIMARY KEY,
    project TEXT,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX maintenance_windows_ends ON maintenance_windows(ends_at);
