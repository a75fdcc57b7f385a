-- Which tenant and which step own each RADIUS account sagaflow writes, and
-- the NASes each tenant may send Dynamic Authorization to. FreeRADIUS's own
-- tables (0005_radius.sql) stay as FreeRADIUS defines them; these are
-- sagaflow's. IF NOT EXISTS so that RadiusRepo::ensure_schema can also
-- create them in an external RADIUS database. See
-- migrations/postgres/0009_radius_ownership.sql and docs/radius.md.

-- One row per User-Name sagaflow created: written in the same transaction
-- as the account's radcheck/radreply/radusergroup rows. A compensation
-- deletes an account only when created_by is its own forward step's key; no
-- tenant touches an account another tenant owns.
CREATE TABLE IF NOT EXISTS radius_accounts (
    username      TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    -- The forward step that created it: {run}:{step}.
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS radius_accounts_subscriber ON radius_accounts (tenant_id, subscriber_id);

-- The NASes a tenant's CoA-Request / Disconnect-Request may go to. A run
-- names its NAS (by name or address); the request goes to the registered
-- address and port, and an unregistered NAS is refused.
CREATE TABLE IF NOT EXISTS radius_nas (
    tenant_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    address    TEXT NOT NULL,
    coa_port   INTEGER NOT NULL DEFAULT 3799 CHECK (coa_port BETWEEN 1 AND 65535),
    -- The NAS's own shared secret; radius.secret when NULL.
    secret     TEXT,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (tenant_id, name),
    UNIQUE (tenant_id, address)
);
