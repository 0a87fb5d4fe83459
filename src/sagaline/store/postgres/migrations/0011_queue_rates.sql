-- Rate limits: one token bucket per queue, shared by every worker on every host. A claim
-- of the queue (of its runs, or of its external tasks) locks the bucket's row, refills it
-- by the database's clock, takes at most as many runs as it holds whole tokens, and spends
-- one for each run it took, in the claim's own transaction. The arithmetic is
-- sagaline.model.rates.
CREATE TABLE queue_rates (
    queue TEXT PRIMARY KEY,
    per_second DOUBLE PRECISION NOT NULL,
    burst INTEGER NOT NULL,
    tokens DOUBLE PRECISION NOT NULL,
    refilled_at DOUBLE PRECISION NOT NULL
);
