-- The effect ledger of the `ledger.*` verification handlers: one row per
-- effect applied. The handlers are idempotent on the key (check, then
-- insert), and the table deliberately has no unique constraint on it, so a
-- step executed twice at the same time would show up as a duplicate row.
CREATE TABLE effect_ledger (
    id              BIGSERIAL PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    run_id          UUID NOT NULL,
    step            TEXT NOT NULL,
    compensation    BOOLEAN NOT NULL,
    applied_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX effect_ledger_key ON effect_ledger (idempotency_key);
CREATE INDEX effect_ledger_run ON effect_ledger (run_id);

-- Every call of a `ledger.*` handler, effect or not.
CREATE TABLE effect_calls (
    id              BIGSERIAL PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    called_at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
