-- The run-outcome webhook outbox (timestamps INTEGER microseconds). Twin
-- of migrations/engine/postgres/0014_webhooks.sql.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    url              TEXT NOT NULL,
    event            TEXT NOT NULL,
    occurred_at      INTEGER NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    first_failed_at  INTEGER,
    last_error       TEXT,
    delivered_at     INTEGER,
    lease_token      TEXT,
    lease_expires_at INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_run ON webhook_deliveries (run_id);

CREATE TABLE webhooks_disabled (
    tenant_id   TEXT NOT NULL,
    url         TEXT NOT NULL,
    disabled_at INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, url)
);
