-- When a run queued behind its concurrency key stops waiting (the
-- workflow's concurrency.queue_ttl_ms after it was queued); NULL: no limit,
-- or never queued. The executor ends queued runs past it CANCELLED. The
-- SQLite twin is migrations/sqlite/0011_queue_ttl.sql.
ALTER TABLE runs ADD COLUMN queue_expires_at TIMESTAMPTZ;
-- Queued runs with a time-to-live, soonest first (a small set).
CREATE INDEX runs_queue_expiry ON runs (queue_expires_at)
    WHERE state = 'PENDING' AND next_run_at IS NULL AND queue_expires_at IS NOT NULL;
