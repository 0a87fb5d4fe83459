CREATE TABLE queues (
    name TEXT PRIMARY KEY,
    max_concurrency INTEGER NOT NULL
);
CREATE INDEX runs_by_queue ON runs (queue, status);
