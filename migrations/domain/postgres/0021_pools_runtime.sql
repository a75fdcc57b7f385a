-- Pools as run-time objects and reservations by an operator: a retired
-- pool takes no new allocations (its records are kept); every change to a
-- pool is audited in pool_audit; address_audit also records reservations
-- made and released by hand. The SQLite twin is
-- migrations/domain/sqlite/0017_pools_runtime.sql.

ALTER TABLE ip_pools ADD COLUMN retired_at TIMESTAMPTZ;

CREATE TABLE pool_audit (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    pool_id   BIGINT NOT NULL REFERENCES ip_pools (id) ON DELETE CASCADE,
    pool_name TEXT NOT NULL,
    action    TEXT NOT NULL CHECK (action IN ('CREATED', 'UPDATED', 'RETIRED')),
    -- Who asked: the caller's subject, or `config` for the seeded pools.
    actor     TEXT NOT NULL,
    -- What changed: {cidr, prefix_length, warning_percent, critical_percent, ...}.
    detail    JSONB NOT NULL,
    at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX pool_audit_pool ON pool_audit (tenant_id, pool_id, id);

ALTER TABLE address_audit DROP CONSTRAINT address_audit_action_check;
ALTER TABLE address_audit ADD CONSTRAINT address_audit_action_check
    CHECK (action IN ('RESERVATION_EXPIRED', 'RESERVED', 'RESERVATION_RELEASED'));
-- Who made or released a reservation by hand, and why.
ALTER TABLE address_audit ADD COLUMN actor TEXT;
ALTER TABLE address_audit ADD COLUMN reason TEXT;
