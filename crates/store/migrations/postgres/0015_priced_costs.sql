-- Costs Agent OS prices from token counts, and what a project's client may send twice.
-- A cost record may carry tokens without an amount: Agent OS prices them from its price table
-- and keeps the price it used (`price`, JSON), or stores the record as unpriced (amount 0,
-- `unpriced` 1) until a price for its model is configured. The daily rollup counts the unpriced
-- records, so a total says how many records it could not count.
-- A notification may carry an idempotency key: a client that resends it after a lost answer
-- stores and sends it once. (A ping that repeats its run id and kind is recorded once; the
-- index pings_rid of 0004 finds the earlier one.)

ALTER TABLE cost_records ADD COLUMN tokens_cached_in BIGINT;
ALTER TABLE cost_records ADD COLUMN price TEXT;
ALTER TABLE cost_records ADD COLUMN unpriced BIGINT NOT NULL DEFAULT 0;
CREATE INDEX cost_records_unpriced ON cost_records(model) WHERE unpriced = 1;
ALTER TABLE cost_daily ADD COLUMN unpriced BIGINT NOT NULL DEFAULT 0;

ALTER TABLE notifications ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX notifications_idempotency ON notifications(COALESCE(project, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
