-- Search attributes: the values of the input fields a workflow definition
-- names in `search_attributes`, written with the run when it starts. Twin
-- of migrations/engine/postgres/0015_run_search.sql.
CREATE TABLE run_search (
    run_id    TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL
);
CREATE INDEX run_search_value ON run_search (tenant_id, key, value, run_id);

-- Listing by idempotency key (the CRM order id) across workflows.
CREATE INDEX runs_tenant_idempotency ON runs (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
