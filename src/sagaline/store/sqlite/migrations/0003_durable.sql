CREATE TABLE signals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    payload BLOB NOT NULL,
    sent_at REAL NOT NULL,
    consumed_seq INTEGER
);
CREATE INDEX signals_by_run ON signals (run_id, consumed_seq);
CREATE INDEX runs_by_wake ON runs (status, wake_at);
CREATE INDEX runs_by_parent ON runs (parent_run_id);
