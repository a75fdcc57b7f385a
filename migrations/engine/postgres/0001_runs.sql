-- Workflow definition snapshots, by content: a run points at the exact
-- definition it started on, so later deploys never change a run in flight.
CREATE TABLE workflow_definitions (
    id          TEXT PRIMARY KEY,            -- name@vN#hash
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    body        JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE runs (
    id               UUID PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    workflow_name    TEXT NOT NULL,
    workflow_version INTEGER NOT NULL,
    definition_id    TEXT NOT NULL REFERENCES workflow_definitions (id),
    state            TEXT NOT NULL CHECK (state IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED',
                        'COMPENSATING', 'COMPENSATED', 'COMPENSATION_FAILED', 'CANCELLED', 'TERMINATED')),
    input            JSONB NOT NULL,
    input_hash       TEXT NOT NULL,
    context          JSONB NOT NULL,
    steps            JSONB NOT NULL,
    cursor           INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    idempotency_key  TEXT,
    concurrency_key  TEXT,
    schedule_id      TEXT,
    trace_id         TEXT,
    traceparent      TEXT,
    cancel_request   TEXT CHECK (cancel_request IN ('compensate', 'terminate')),
    last_seq         BIGINT NOT NULL DEFAULT 0,
    next_run_at      TIMESTAMPTZ,
    lease_owner      TEXT,
    lease_token      UUID,
    lease_expires_at TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ
) WITH (fillfactor = 70);

-- Idempotent start: one run per (tenant, workflow, key).
CREATE UNIQUE INDEX runs_idempotency ON runs (tenant_id, workflow_name, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- The claim query: due runs only; finished runs are not in this index.
CREATE INDEX runs_due ON runs (next_run_at) WHERE next_run_at IS NOT NULL;
-- Listing, newest first, per tenant (keyset pagination on (created_at, id)).
CREATE INDEX runs_tenant_created ON runs (tenant_id, created_at DESC, id DESC);
CREATE INDEX runs_tenant_workflow_created ON runs (tenant_id, workflow_name, created_at DESC, id DESC);
CREATE INDEX runs_tenant_state_created ON runs (tenant_id, state, created_at DESC, id DESC);
CREATE INDEX runs_tenant_ckey_created ON runs (tenant_id, concurrency_key, created_at DESC, id DESC)
    WHERE concurrency_key IS NOT NULL;
-- Runs queued behind a concurrency key.
CREATE INDEX runs_queued ON runs (tenant_id, concurrency_key, created_at, id)
    WHERE state = 'PENDING' AND next_run_at IS NULL AND concurrency_key IS NOT NULL;

-- The holder of each concurrency key: at most one active run per (tenant, key).
CREATE TABLE concurrency_locks (
    tenant_id  TEXT NOT NULL,
    key        TEXT NOT NULL,
    run_id     UUID NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX concurrency_locks_run ON concurrency_locks (run_id);

-- Every transition of every run, gapless per run.
CREATE TABLE run_events (
    run_id    UUID NOT NULL,
    seq       BIGINT NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    kind      TEXT NOT NULL,
    step      TEXT,
    attempt   INTEGER NOT NULL DEFAULT 0,
    run_state TEXT NOT NULL,
    message   TEXT,
    actor     TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
