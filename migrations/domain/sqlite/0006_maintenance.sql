-- The maintenance workflows' tables: lifecycle snapshots, each pool's last
-- capacity level (so a crossing is notified once, not on every check), the
-- audit of released reservations, and the progress of maintenance steps by
-- idempotency key (so a repeated step reports what its first attempt did).
-- See migrations/postgres/0006_maintenance.sql; timestamps are RFC 3339
-- text (UTC), JSON is text.

-- Purging old REVOKED records in batches: the oldest first, by index.
CREATE INDEX address_records_revoked_at ON address_records (tenant_id, revoked_at, id)
    WHERE state = 'REVOKED';

CREATE TABLE lifecycle_snapshots (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT NOT NULL,
    -- The step that took it: one snapshot per step, however often it runs.
    idempotency_key TEXT NOT NULL UNIQUE,
    taken_at        TEXT NOT NULL,
    -- [{family, state, count}]
    records         TEXT NOT NULL,
    -- [{pool, family, capacity, in_use, utilization}]
    pools           TEXT NOT NULL
);
CREATE INDEX lifecycle_snapshots_tenant_taken ON lifecycle_snapshots (tenant_id, taken_at);

CREATE TABLE pool_capacity_levels (
    pool_id    BIGINT PRIMARY KEY REFERENCES ip_pools (id) ON DELETE CASCADE,
    level      TEXT NOT NULL CHECK (level IN ('OK', 'WARNING', 'CRITICAL')),
    percent    REAL NOT NULL,
    changed_at TEXT NOT NULL
);

CREATE TABLE address_audit (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT NOT NULL,
    record_id       BIGINT NOT NULL,
    subscriber_id   TEXT NOT NULL,
    address         TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('RESERVATION_EXPIRED')),
    -- The step that did it.
    idempotency_key TEXT NOT NULL,
    at              TEXT NOT NULL,
    -- When the owner was told; NULL until then.
    notified_at     TEXT,
    UNIQUE (record_id, action)
);
CREATE INDEX address_audit_key ON address_audit (idempotency_key);

CREATE TABLE maintenance_progress (
    idempotency_key TEXT PRIMARY KEY,
    job             TEXT NOT NULL,
    output          TEXT NOT NULL,
    done            INTEGER NOT NULL,
    updated_at      TEXT NOT NULL
);
