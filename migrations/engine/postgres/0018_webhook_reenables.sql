-- Webhooks an operator enabled again after they were disabled for failing
-- 24 h (`sagaflow webhooks enable`): who, when, why, and the disabling it
-- ended. Twin of migrations/engine/sqlite/0018_webhook_reenables.sql.
CREATE TABLE webhook_reenables (
    id              bigserial PRIMARY KEY,
    tenant_id       text NOT NULL,
    url             text NOT NULL,
    disabled_at     timestamptz NOT NULL,
    disabled_reason text NOT NULL,
    enabled_at      timestamptz NOT NULL,
    enabled_by      text NOT NULL,
    reason          text NOT NULL,
    requeued        bigint NOT NULL
);
