-- Semantic locks: one row per request of a run for a business key, in arrival order (id).
-- A request is granted (granted_at) when nothing ahead of it conflicts; the rules are in
-- sagaline.model.locks. ``answered_epoch`` is the run's lease epoch when its wait was
-- answered (granted, or refused as a deadlock's victim): a run that suspends in that same
-- epoch may not have seen the answer, so it is due at once. The rows of a run go when it
-- ends (completed, or compensated, failed or cancelled after its compensation).
CREATE TABLE locks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    mode TEXT NOT NULL,
    requested_at DOUBLE PRECISION NOT NULL,
    granted_at DOUBLE PRECISION,
    refused TEXT,
    answered_epoch BIGINT,
    UNIQUE (run_id, seq)
);
CREATE INDEX locks_by_key ON locks (key, id);
CREATE INDEX locks_by_run ON locks (run_id, key);
