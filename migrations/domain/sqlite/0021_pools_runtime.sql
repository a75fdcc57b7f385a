-- Pools as run-time objects and reservations by an operator: a retired
-- pool takes no new allocations (its records are kept); every change to a
-- pool is audited in pool_audit; address_audit also records reservations
-- made and released by hand. The PostgreSQL twin is
-- migrations/domain/postgres/0017_pools_runtime.sql.

ALTER TABLE ip_pools ADD COLUMN retired_at TEXT;

CREATE TABLE pool_audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    pool_id   BIGINT NOT NULL REFERENCES ip_pools (id) ON DELETE CASCADE,
    pool_name TEXT NOT NULL,
    action    TEXT NOT NULL CHECK (action IN ('CREATED', 'UPDATED', 'RETIRED')),
    -- Who asked: the caller's subject, or `config` for the seeded pools.
    actor     TEXT NOT NULL,
    -- What changed: {cidr, prefix_length, warning_percent, critical_percent, ...}.
    detail    TEXT NOT NULL,
    at        TEXT NOT NULL
);
CREATE INDEX pool_audit_pool ON pool_audit (tenant_id, pool_id, id);

-- SQLite cannot change a CHECK constraint: the table is rebuilt.
CREATE TABLE address_audit_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT NOT NULL,
    record_id       BIGINT NOT NULL,
    subscriber_id   TEXT NOT NULL,
    address         TEXT NOT NULL,
    action          TEXT NOT NULL
        CHECK (action IN ('RESERVATION_EXPIRED', 'RESERVED', 'RESERVATION_RELEASED')),
    -- The step that did it.
    idempotency_key TEXT NOT NULL,
    at              TEXT NOT NULL,
    -- When the owner was told; NULL until then.
    notified_at     TEXT,
    -- Who made or released a reservation by hand, and why.
    actor           TEXT,
    reason          TEXT,
    UNIQUE (record_id, action)
);
INSERT INTO address_audit_new (id, tenant_id, record_id, subscriber_id, address, action,
    idempotency_key, at, notified_at)
    SELECT id, tenant_id, record_id, subscriber_id, address, action, idempotency_key, at, notified_at
    FROM address_audit;
DROP TABLE address_audit;
ALTER TABLE address_audit_new RENAME TO address_audit;
CREATE INDEX address_audit_key ON address_audit (idempotency_key);
