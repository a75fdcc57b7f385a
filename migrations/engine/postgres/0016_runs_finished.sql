-- no-transaction
-- Retention (the `run_retention` maintenance workflow) deletes a tenant's
-- oldest finished runs in batches: this index finds them without reading
-- the runs still active or those of other tenants. Built CONCURRENTLY so
-- writes to `runs` go on while it is built on a large table (a migration
-- without a transaction, hence one statement). Twin of
-- migrations/engine/sqlite/0016_runs_finished.sql.
CREATE INDEX CONCURRENTLY IF NOT EXISTS runs_finished ON runs (tenant_id, finished_at)
    WHERE finished_at IS NOT NULL;
