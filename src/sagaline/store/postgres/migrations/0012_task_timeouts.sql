-- Task timeouts: ``start_to_close`` (seconds, NULL: none) bounds one attempt from its claim
-- (``claimed_at``, the database's clock), heartbeats or not: a claim's lease and every
-- heartbeat's extension stop at claimed_at + start_to_close.
ALTER TABLE tasks ADD COLUMN start_to_close DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN claimed_at DOUBLE PRECISION;
