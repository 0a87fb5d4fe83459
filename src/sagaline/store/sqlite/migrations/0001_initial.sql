CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    input BLOB NOT NULL,
    output BLOB,
    error TEXT,
    queue TEXT NOT NULL DEFAULT 'default',
    owner TEXT,
    lease_until REAL,
    lease_epoch INTEGER NOT NULL DEFAULT 0,
    wake_at REAL,
    parent_run_id TEXT,
    app_version TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_owner ON runs (owner);

CREATE TABLE steps (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    input BLOB,
    output BLOB,
    error TEXT,
    attempts INTEGER NOT NULL,
    compensable INTEGER NOT NULL DEFAULT 0,
    pivot INTEGER NOT NULL DEFAULT 0,
    compensates_seq INTEGER,
    done_index INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    at REAL NOT NULL,
    type TEXT NOT NULL,
    seq INTEGER,
    data TEXT NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, id);
