-- A run's steps are rewritten on every checkpoint and never looked into by
-- SQL: keep them as compact JSON text (see engine/src/store/step_codec.rs),
-- which spares the server parsing a JSONB document on every write. Rows
-- written before keep their long form, which is still read.
ALTER TABLE runs ALTER COLUMN steps TYPE TEXT USING steps::text;
