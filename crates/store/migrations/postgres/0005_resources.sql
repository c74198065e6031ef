-- Named resources. A run lists the resources it needs (space-separated) and its priority; it
-- holds them, one row per resource, from its claim to the end of its attempt. A lease is a
-- hold taken over the API by a job Agent OS does not run, with an expiry renewed by its holder.
-- Lease requests still waiting are rows too, so runs and leases queue in one order on every
-- node. Rate limits are token buckets whose level is stored, so they hold across restarts.

ALTER TABLE runs ADD COLUMN resources TEXT;
ALTER TABLE runs ADD COLUMN priority BIGINT NOT NULL DEFAULT 50;

CREATE TABLE resource_holds (
    holder TEXT NOT NULL,
    resource TEXT NOT NULL,
    kind TEXT NOT NULL,
    project TEXT,
    label TEXT NOT NULL,
    priority BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at BIGINT,
    ttl_ms BIGINT,
    PRIMARY KEY (holder, resource)
);
CREATE INDEX resource_holds_resource ON resource_holds(resource);

CREATE TABLE resource_waiters (
    id TEXT PRIMARY KEY,
    resources TEXT NOT NULL,
    project TEXT,
    label TEXT NOT NULL,
    priority BIGINT NOT NULL,
    since BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE resource_buckets (
    resource TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    at BIGINT NOT NULL
);
