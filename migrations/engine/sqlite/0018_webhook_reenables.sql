-- Webhooks an operator enabled again after they were disabled for failing
-- 24 h (`sagaflow webhooks enable`): who, when, why, and the disabling it
-- ended. Twin of migrations/engine/postgres/0018_webhook_reenables.sql.
CREATE TABLE webhook_reenables (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT NOT NULL,
    url             TEXT NOT NULL,
    disabled_at     INTEGER NOT NULL,
    disabled_reason TEXT NOT NULL,
    enabled_at      INTEGER NOT NULL,
    enabled_by      TEXT NOT NULL,
    reason          TEXT NOT NULL,
    requeued        INTEGER NOT NULL
);
