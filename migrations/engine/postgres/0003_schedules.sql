-- Cron schedules. A fire is claimed by inserting its (schedule_id,
-- scheduled_time) row in the same transaction that creates its run and
-- advances the schedule (a write conditional on `revision`): however many
-- replicas run the scheduler, each fire happens once.
CREATE TABLE schedules (
    id               UUID PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    name             TEXT NOT NULL,
    cron             TEXT NOT NULL,
    timezone         TEXT NOT NULL DEFAULT 'UTC',
    workflow_name    TEXT NOT NULL,
    input            JSONB NOT NULL,
    paused           BOOLEAN NOT NULL DEFAULT false,
    pause_reason     TEXT,
    overlap_policy   TEXT NOT NULL CHECK (overlap_policy IN ('SKIP', 'ALLOW', 'BUFFER_ONE')),
    catchup_policy   TEXT NOT NULL CHECK (catchup_policy IN ('NONE', 'ONE', 'ALL')),
    next_fire_at     TIMESTAMPTZ,
    last_fire_at     TIMESTAMPTZ,
    last_workflow_id UUID,
    buffered_fire_at TIMESTAMPTZ,
    revision         BIGINT NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT schedules_tenant_name UNIQUE (tenant_id, name)
);
-- The scheduler's query: active schedules by next fire.
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused;
CREATE INDEX schedules_buffered ON schedules (id) WHERE buffered_fire_at IS NOT NULL AND NOT paused;

-- Every regular fire and what became of it.
CREATE TABLE schedule_fires (
    schedule_id    UUID NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    scheduled_time TIMESTAMPTZ NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('started', 'skipped', 'missed', 'buffered')),
    run_id         UUID,
    detail         TEXT,
    at             TIMESTAMPTZ NOT NULL,
    CONSTRAINT schedule_fires_once UNIQUE (schedule_id, scheduled_time)
);

-- Default schedules seeded once per tenant and name: an operator's later
-- edit or deletion is never undone by a restart.
CREATE TABLE schedule_seeds (
    tenant_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    seeded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Runs a schedule started.
CREATE INDEX runs_schedule ON runs (schedule_id, created_at) WHERE schedule_id IS NOT NULL;
