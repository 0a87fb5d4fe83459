-- Task steps: a step whose body runs in an external worker that claims it over HTTP. One row
-- per (run, seq); ``token`` is the lease of the attempt in flight, and every change a worker
-- makes is fenced by it. Times are the database's clock (Unix seconds), like run leases.
-- ``finished_epoch`` is the run's lease epoch when the task's result was written: a run that
-- suspends in that same epoch may not have seen the result, so it is due at once.
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    step TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    token TEXT,
    worker TEXT,
    lease_seconds REAL NOT NULL,
    lease_until REAL,
    available_at REAL NOT NULL,
    created_at REAL NOT NULL,
    finished_epoch INTEGER,
    UNIQUE (run_id, seq)
);
CREATE INDEX tasks_due ON tasks (queue, status, available_at);
