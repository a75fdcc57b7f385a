-- no-transaction
-- The `sagaflow_runs` gauge counts the runs in the active states (those
-- not over: PENDING, RUNNING, FAILED, COMPENSATING, COMPENSATION_FAILED)
-- every few seconds on every replica. This partial index holds only those
-- runs, so the count reads a small index whatever the number of finished
-- runs kept. Built CONCURRENTLY (one statement, no transaction). Twin of
-- migrations/engine/sqlite/0017_runs_active.sql.
CREATE INDEX CONCURRENTLY IF NOT EXISTS runs_active ON runs (state)
    WHERE state IN ('PENDING', 'RUNNING', 'FAILED', 'COMPENSATING', 'COMPENSATION_FAILED');
