-- Timestamps are INTEGER microseconds since the Unix epoch; JSON is TEXT.
CREATE TABLE workflow_definitions (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    body        TEXT NOT NULL
);

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    workflow_name    TEXT NOT NULL,
    workflow_version INTEGER NOT NULL,
    definition_id    TEXT NOT NULL REFERENCES workflow_definitions (id),
    state            TEXT NOT NULL CHECK (state IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED',
                        'COMPENSATING', 'COMPENSATED', 'COMPENSATION_FAILED', 'CANCELLED', 'TERMINATED')),
    input            TEXT NOT NULL,
    input_hash       TEXT NOT NULL,
    context          TEXT NOT NULL,
    steps            TEXT NOT NULL,
    cursor           INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    idempotency_key  TEXT,
    concurrency_key  TEXT,
    schedule_id      TEXT,
    trace_id         TEXT,
    traceparent      TEXT,
    cancel_request   TEXT CHECK (cancel_request IN ('compensate', 'terminate')),
    last_seq         INTEGER NOT NULL DEFAULT 0,
    next_run_at      INTEGER,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);

CREATE UNIQUE INDEX runs_idempotency ON runs (tenant_id, workflow_name, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_due ON runs (next_run_at) WHERE next_run_at IS NOT NULL;
CREATE INDEX runs_tenant_created ON runs (tenant_id, created_at DESC, id DESC);
CREATE INDEX runs_tenant_workflow_created ON runs (tenant_id, workflow_name, created_at DESC, id DESC);
CREATE INDEX runs_tenant_state_created ON runs (tenant_id, state, created_at DESC, id DESC);
CREATE INDEX runs_queued ON runs (tenant_id, concurrency_key, created_at, id)
    WHERE state = 'PENDING' AND next_run_at IS NULL AND concurrency_key IS NOT NULL;

CREATE TABLE concurrency_locks (
    tenant_id  TEXT NOT NULL,
    key        TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX concurrency_locks_run ON concurrency_locks (run_id);

CREATE TABLE run_events (
    run_id    TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    step      TEXT,
    attempt   INTEGER NOT NULL DEFAULT 0,
    run_state TEXT NOT NULL,
    message   TEXT,
    actor     TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
