-- `run_events` partitioned by day of `at` (UTC), so that retention drops a
-- day of events (DETACH and DROP of its partition) instead of deleting its
-- rows one by one. PostgreSQL only: SQLite keeps the plain table and its
-- row deletes.
--
-- The primary key must contain the partition key, so it becomes
-- (run_id, seq, at). A run's seq stays unique because every writer takes
-- it from `runs.last_seq` in the same statement that advances it, under the
-- run's lease (engine/src/store/postgres/checkpoint.rs).
--
-- The DEFAULT partition takes any row no daily partition covers (an event
-- written when the partitions ahead ran out, events of kept runs moved out
-- of a dropped day), so an insert never fails. Daily partitions are created
-- ahead by the engine (engine/src/store/postgres/partitions.rs) at every
-- migrate and by the `run_retention` workflow.
--
-- Upgrading copies the existing events (one rewrite of the table, in this
-- transaction); a fresh database and an upgraded one end alike: daily
-- partitions from the day of the oldest event to 7 days ahead.
ALTER TABLE run_events RENAME TO run_events_unpartitioned;
ALTER TABLE run_events_unpartitioned RENAME CONSTRAINT run_events_pkey TO run_events_unpartitioned_pkey;

CREATE TABLE run_events (LIKE run_events_unpartitioned INCLUDING DEFAULTS)
    PARTITION BY RANGE (at);
ALTER TABLE run_events ADD PRIMARY KEY (run_id, seq, at);

CREATE TABLE run_events_default PARTITION OF run_events DEFAULT;

DO $$
DECLARE
    today DATE := (now() AT TIME ZONE 'UTC')::date;
    first DATE := coalesce((SELECT (min(at) AT TIME ZONE 'UTC')::date FROM run_events_unpartitioned), today);
    d DATE;
BEGIN
    IF first > today THEN
        first := today;
    END IF;
    d := first;
    WHILE d <= today + 7 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF run_events FOR VALUES FROM (%L) TO (%L)',
            'run_events_p' || to_char(d, 'YYYYMMDD'),
            d::timestamp AT TIME ZONE 'UTC',
            (d + 1)::timestamp AT TIME ZONE 'UTC');
        d := d + 1;
    END LOOP;
END $$;

INSERT INTO run_events SELECT * FROM run_events_unpartitioned;
DROP TABLE run_events_unpartitioned;
ANALYZE run_events;
