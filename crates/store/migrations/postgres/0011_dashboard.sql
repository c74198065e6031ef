-- The dashboard: browser sessions, a daily cost rollup so totals over a month read a few
-- hundred rows instead of every record, and indexes for the runs table's filters.

CREATE TABLE dashboard_sessions (
    id TEXT PRIMARY KEY,
    csrf TEXT NOT NULL,
    via TEXT NOT NULL,
    token_id TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_token ON dashboard_sessions(token_id);

CREATE TABLE cost_daily (
    project TEXT NOT NULL,
    service TEXT NOT NULL,
    day BIGINT NOT NULL,
    currency TEXT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    records BIGINT NOT NULL,
    tokens_in BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    PRIMARY KEY (project, service, day, currency)
);
CREATE INDEX cost_daily_day ON cost_daily(day);

INSERT INTO cost_daily (project, service, day, currency, amount_nanos, records, tokens_in, tokens_out)
SELECT project, service, CAST(at / 86400000 AS BIGINT) * 86400000, currency, CAST(SUM(amount_nanos) AS BIGINT), COUNT(*),
       CAST(COALESCE(SUM(tokens_in), 0) AS BIGINT), CAST(COALESCE(SUM(tokens_out), 0) AS BIGINT)
FROM cost_records GROUP BY 1, 2, 3, 4;

CREATE INDEX cost_records_time ON cost_records(at);
CREATE INDEX runs_status_id ON runs(status, id);
CREATE INDEX runs_task ON runs(project, task, id);
