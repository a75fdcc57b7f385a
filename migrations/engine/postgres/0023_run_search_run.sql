-- no-transaction
-- Retention deletes a purged run's search attributes with it, by run id:
-- this index finds them (`run_search_value` leads with the tenant and the
-- key). Built CONCURRENTLY so writes go on while it is built on a large
-- table (a migration without a transaction, hence one statement). Twin of
-- migrations/engine/sqlite/0023_run_search_run.sql.
CREATE INDEX CONCURRENTLY IF NOT EXISTS run_search_run ON run_search (run_id);
