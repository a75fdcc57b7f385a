-- Signals delivered to runs (SignalWorkflow). A signal is kept until a step
-- waiting for its name takes it; the checkpoint that completes that step
-- marks it consumed in the same transaction. Idempotent on
-- (run, name, key) when the caller gives a key. Twin of
-- migrations/engine/sqlite/0013_run_signals.sql.
CREATE TABLE run_signals (
    id               BIGSERIAL PRIMARY KEY,
    run_id           UUID NOT NULL,
    tenant_id        TEXT NOT NULL,
    name             TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL DEFAULT '',
    payload          JSONB NOT NULL,
    actor            TEXT NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    consumed_by_step TEXT,
    consumed_at      TIMESTAMPTZ
);
CREATE UNIQUE INDEX run_signals_key ON run_signals (run_id, name, idempotency_key)
    WHERE idempotency_key <> '';
-- A run's signals not yet taken, oldest first.
CREATE INDEX run_signals_pending ON run_signals (run_id, id) WHERE consumed_at IS NULL;
