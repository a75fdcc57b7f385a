-- The id of the last executor checkpoint applied to the run. A checkpoint
-- resent after its commit went unacknowledged is recognised by it and is
-- not applied twice.
ALTER TABLE runs ADD COLUMN last_checkpoint TEXT;
