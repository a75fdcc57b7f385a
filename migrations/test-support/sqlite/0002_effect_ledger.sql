-- See migrations/postgres/0002_effect_ledger.sql.
CREATE TABLE effect_ledger (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    step            TEXT NOT NULL,
    compensation    INTEGER NOT NULL,
    applied_at      INTEGER NOT NULL
);
CREATE INDEX effect_ledger_key ON effect_ledger (idempotency_key);

CREATE TABLE effect_calls (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    called_at       INTEGER NOT NULL
);
