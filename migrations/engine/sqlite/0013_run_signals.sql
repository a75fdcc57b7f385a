-- Signals delivered to runs (SignalWorkflow); times are INTEGER
-- microseconds. Twin of migrations/engine/postgres/0013_run_signals.sql.
CREATE TABLE run_signals (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id           TEXT NOT NULL,
    tenant_id        TEXT NOT NULL,
    name             TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL DEFAULT '',
    payload          TEXT NOT NULL,
    actor            TEXT NOT NULL,
    received_at      INTEGER NOT NULL,
    consumed_by_step TEXT,
    consumed_at      INTEGER
);
CREATE UNIQUE INDEX run_signals_key ON run_signals (run_id, name, idempotency_key)
    WHERE idempotency_key <> '';
CREATE INDEX run_signals_pending ON run_signals (run_id, id) WHERE consumed_at IS NULL;
