-- A replayed webhook is recognised by the run its id started (the run's trigger key), so the
-- separate receipts table is not needed.

DROP TABLE webhook_receipts;
