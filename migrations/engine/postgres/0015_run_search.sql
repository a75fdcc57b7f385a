-- Search attributes: the values of the input fields a workflow definition
-- names in `search_attributes` (e.g. subscriber_id, customer.id,
-- onu_serial), written with the run when it starts and never changed.
-- ListWorkflows filters with `id IN (SELECT run_id FROM run_search WHERE
-- tenant_id = ... AND key = ... AND value = ...)`. Twin of
-- migrations/engine/sqlite/0015_run_search.sql.
CREATE TABLE run_search (
    run_id    UUID NOT NULL,
    tenant_id TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL
);
CREATE INDEX run_search_value ON run_search (tenant_id, key, value, run_id);

-- Listing by idempotency key (the CRM order id) across workflows; the key
-- never changes after the insert, so this index costs no HOT update.
CREATE INDEX runs_tenant_idempotency ON runs (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
