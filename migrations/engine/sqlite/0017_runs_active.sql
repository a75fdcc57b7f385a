-- The runs in the active states only, which the `sagaflow_runs` gauge
-- counts. Twin of migrations/engine/postgres/0017_runs_active.sql.
CREATE INDEX runs_active ON runs (state)
    WHERE state IN ('PENDING', 'RUNNING', 'FAILED', 'COMPENSATING', 'COMPENSATION_FAILED');
