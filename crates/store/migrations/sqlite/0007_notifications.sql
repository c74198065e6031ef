-- Notifications and their delivery outbox. A notification is stored with one delivery row per
-- channel in the same transaction; a delivery is retried from its row until it succeeds or
-- runs out of attempts, so a crash between the two loses nothing. The delivery's id is the
-- idempotency key receivers see, the same on every retry.

CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    project TEXT,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    severity TEXT NOT NULL,
    tags TEXT NOT NULL,
    dedup_key TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX notifications_dedup ON notifications(project, dedup_key, created_at);

CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    delivered_at INTEGER,
    claimed_until INTEGER
);
CREATE INDEX deliveries_due ON deliveries(status, next_at);
