-- Rate limits: one token bucket per queue, shared by every worker on every host. A claim
-- of the queue (of its runs, or of its external tasks) refills the bucket by the database's
-- clock, takes at most as many runs as it holds whole tokens, and spends one for each run
-- it took, in the claim's own transaction. The arithmetic is sagaline.model.rates.
CREATE TABLE queue_rates (
    queue TEXT PRIMARY KEY,
    per_second REAL NOT NULL,
    burst INTEGER NOT NULL,
    tokens REAL NOT NULL,
    refilled_at REAL NOT NULL
);
