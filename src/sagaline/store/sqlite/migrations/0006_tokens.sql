-- API tokens: only the SHA-256 digest of each is kept. A revoked token keeps its row (and
-- its name, which the audit trail cites) until a new token takes the name.
CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    payloads INTEGER NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);

-- The runs list: newest first by (created_at, run_id), keyset-paginated, led by a status,
-- a workflow or nothing; each page is one index scan that stops at the page's end.
DROP INDEX runs_by_status;
CREATE INDEX runs_by_status ON runs (status, created_at, run_id);
CREATE INDEX runs_by_created ON runs (created_at, run_id);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at, run_id);
