-- Retention deletes a tenant's oldest finished runs in batches by this
-- index. Twin of migrations/engine/postgres/0016_runs_finished.sql.
CREATE INDEX runs_finished ON runs (tenant_id, finished_at)
    WHERE finished_at IS NOT NULL;
