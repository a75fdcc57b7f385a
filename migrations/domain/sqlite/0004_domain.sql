-- The ISP domain: address pools, the address lifecycle (which is also the
-- allocation table: a record in a held state holds its address), and the
-- provisioning system's own view of customers, subscribers and network
-- profiles. See migrations/postgres/0004_domain.sql; timestamps are RFC 3339
-- text (UTC), JSON is text.

CREATE TABLE ip_pools (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        TEXT NOT NULL,
    name             TEXT NOT NULL,
    family           TEXT NOT NULL CHECK (family IN ('IPV4', 'IPV6')),
    cidr             TEXT NOT NULL,
    prefix_length    INTEGER NOT NULL,
    capacity         BIGINT NOT NULL CHECK (capacity > 0),
    warning_percent  INTEGER NOT NULL DEFAULT 80,
    critical_percent INTEGER NOT NULL DEFAULT 100,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE address_records (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      TEXT NOT NULL,
    subscriber_id  TEXT NOT NULL,
    pool_id        BIGINT NOT NULL REFERENCES ip_pools (id),
    family         TEXT NOT NULL CHECK (family IN ('IPV4', 'IPV6')),
    address        TEXT NOT NULL,
    -- The address's position in its pool (0-based): allocation looks for the
    -- lowest free one.
    ordinal        BIGINT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('PENDING', 'ALLOCATED', 'ACTIVE', 'SUSPENDED',
                       'REVOKING', 'REVOKED', 'FAILED')),
    -- The allocation's idempotency key ({run}:{step}:ipv4 or :ipv6).
    allocation_key TEXT UNIQUE,
    -- Set on reservations (PENDING records held for a subscriber).
    reserved_until TEXT,
    pending_at     TEXT,
    allocated_at   TEXT,
    activated_at   TEXT,
    suspended_at   TEXT,
    revoking_at    TEXT,
    revoked_at     TEXT,
    failed_at      TEXT,
    metadata       TEXT NOT NULL DEFAULT '{}',
    -- The run that last changed the record.
    workflow_id    TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX address_records_tenant_state ON address_records (tenant_id, state);
CREATE INDEX address_records_subscriber ON address_records (tenant_id, subscriber_id);
CREATE INDEX address_records_state_updated ON address_records (state, updated_at);
-- No address is ever held twice: at most one record per pool position in a
-- state that holds it.
CREATE UNIQUE INDEX address_records_held ON address_records (pool_id, ordinal)
    WHERE state IN ('PENDING', 'ALLOCATED', 'ACTIVE', 'SUSPENDED', 'REVOKING');

CREATE TABLE customers (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    phone       TEXT,
    created_run TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE subscribers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    plan          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('ACTIVE', 'SUSPENDED', 'ARCHIVED')),
    onu_serial    TEXT NOT NULL,
    cpe_serial    TEXT NOT NULL,
    nas           TEXT NOT NULL,
    enable_ipv6   INTEGER NOT NULL,
    details       TEXT NOT NULL,
    created_run   TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    archived_at   TEXT
);
-- One live subscriber per id; archived ones are kept as history.
CREATE UNIQUE INDEX subscribers_live ON subscribers (tenant_id, subscriber_id) WHERE archived_at IS NULL;
CREATE INDEX subscribers_customer ON subscribers (tenant_id, customer_id);

CREATE TABLE network_profiles (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    plan          TEXT NOT NULL,
    download_kbps BIGINT NOT NULL,
    upload_kbps   BIGINT NOT NULL,
    service_vlan  INTEGER,
    ipv6          INTEGER NOT NULL,
    created_run   TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    archived_at   TEXT
);
CREATE UNIQUE INDEX network_profiles_live ON network_profiles (tenant_id, subscriber_id) WHERE archived_at IS NULL;
