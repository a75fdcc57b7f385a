-- When a run queued behind its concurrency key stops waiting (INTEGER
-- microseconds); NULL: no limit, or never queued. Twin of
-- migrations/postgres/0011_queue_ttl.sql.
ALTER TABLE runs ADD COLUMN queue_expires_at INTEGER;
CREATE INDEX runs_queue_expiry ON runs (queue_expires_at)
    WHERE state = 'PENDING' AND next_run_at IS NULL AND queue_expires_at IS NOT NULL;
