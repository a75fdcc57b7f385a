-- The run-outcome webhook outbox: one row per delivery, written in the
-- same transaction as the checkpoint whose event caused it, leased by a
-- dispatcher like runs are. Twin of migrations/engine/sqlite/0014_webhooks.sql.
CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    run_id           uuid NOT NULL,
    url              text NOT NULL,
    event            text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    first_failed_at  timestamptz,
    last_error       text,
    delivered_at     timestamptz,
    lease_token      uuid,
    lease_expires_at timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_run ON webhook_deliveries (run_id);

-- Webhooks that failed for 24 h: no delivery to them is tried.
CREATE TABLE webhooks_disabled (
    tenant_id   text NOT NULL,
    url         text NOT NULL,
    disabled_at timestamptz NOT NULL,
    reason      text NOT NULL,
    PRIMARY KEY (tenant_id, url)
);
