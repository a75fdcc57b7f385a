-- Cron schedules (see the PostgreSQL migration for the design).
-- Timestamps are INTEGER microseconds since the Unix epoch; JSON is TEXT.
CREATE TABLE schedules (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    name             TEXT NOT NULL,
    cron             TEXT NOT NULL,
    timezone         TEXT NOT NULL DEFAULT 'UTC',
    workflow_name    TEXT NOT NULL,
    input            TEXT NOT NULL,
    paused           INTEGER NOT NULL DEFAULT 0,
    pause_reason     TEXT,
    overlap_policy   TEXT NOT NULL CHECK (overlap_policy IN ('SKIP', 'ALLOW', 'BUFFER_ONE')),
    catchup_policy   TEXT NOT NULL CHECK (catchup_policy IN ('NONE', 'ONE', 'ALL')),
    next_fire_at     INTEGER,
    last_fire_at     INTEGER,
    last_workflow_id TEXT,
    buffered_fire_at INTEGER,
    revision         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0;

CREATE TABLE schedule_fires (
    schedule_id    TEXT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    scheduled_time INTEGER NOT NULL,
    outcome        TEXT NOT NULL CHECK (outcome IN ('started', 'skipped', 'missed', 'buffered')),
    run_id         TEXT,
    detail         TEXT,
    at             INTEGER NOT NULL,
    UNIQUE (schedule_id, scheduled_time)
);

CREATE TABLE schedule_seeds (
    tenant_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    seeded_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE INDEX runs_schedule ON runs (schedule_id, created_at) WHERE schedule_id IS NOT NULL;
