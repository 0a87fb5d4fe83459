ALTER TABLE steps ADD COLUMN branch TEXT NOT NULL DEFAULT '';
-- The audit trail is read in causal order (time, then insertion): a step's StepStarted is
-- stamped when it started but inserted with its end, after events newer than it.
DROP INDEX events_by_run;
CREATE INDEX events_by_run ON events (run_id, at, id);
