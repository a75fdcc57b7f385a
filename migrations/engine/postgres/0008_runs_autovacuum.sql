-- `runs` is the hot table: every claim, lease renewal and release moves a
-- run in the `runs_due` index, and the dead entries this leaves slow the
-- claim query until VACUUM removes them. Vacuum it after a fixed number of
-- changes rather than a fraction of its size, which grows with the finished
-- runs it keeps. (Needs autovacuum on, as it is by default.)
ALTER TABLE runs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 20000,
    autovacuum_analyze_scale_factor = 0.02
);
