-- The transactional outbox: events written with the checkpoint that publishes them, taken
-- by a relay (leased, so two relays rarely send the same row) and deleted once the broker
-- confirmed them.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    run_id TEXT,
    topic TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX outbox_due ON outbox (lease_until, seq);

-- Runs waiting for a bus event (``wait_for_event``): an event on ``topic`` with this
-- correlation id becomes a signal for each of them.
CREATE TABLE event_waits (
    topic TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (topic, correlation_id, run_id)
);
