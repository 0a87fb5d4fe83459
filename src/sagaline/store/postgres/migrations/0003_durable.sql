CREATE TABLE signals (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    payload BYTEA NOT NULL,
    sent_at DOUBLE PRECISION NOT NULL,
    consumed_seq INTEGER
);
CREATE INDEX signals_by_run ON signals (run_id, consumed_seq);
CREATE INDEX runs_by_wake ON runs (status, wake_at);
CREATE INDEX runs_by_parent ON runs (parent_run_id);
