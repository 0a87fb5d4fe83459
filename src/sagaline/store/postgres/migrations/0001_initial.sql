CREATE TABLE sagaline_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    input BYTEA NOT NULL,
    output BYTEA,
    error TEXT,
    queue TEXT NOT NULL DEFAULT 'default',
    owner TEXT,
    lease_until DOUBLE PRECISION,
    lease_epoch BIGINT NOT NULL DEFAULT 0,
    wake_at DOUBLE PRECISION,
    parent_run_id TEXT,
    app_version TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_owner ON runs (owner);

CREATE TABLE steps (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    input BYTEA,
    output BYTEA,
    error TEXT,
    attempts INTEGER NOT NULL,
    compensable BOOLEAN NOT NULL DEFAULT FALSE,
    pivot BOOLEAN NOT NULL DEFAULT FALSE,
    compensates_seq INTEGER,
    done_index INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    type TEXT NOT NULL,
    seq INTEGER,
    data TEXT NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, id);
