-- Retention deletes a purged run's search attributes with it, by run id.
-- Twin of migrations/engine/postgres/0023_run_search_run.sql.
CREATE INDEX run_search_run ON run_search (run_id);
