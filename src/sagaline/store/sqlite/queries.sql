-- The SQLite dialect. Times are Unix seconds; "now" is the database's clock:
-- (julianday('now') - 2440587.5) * 86400.0

-- name: insert_run
INSERT INTO runs (run_id, workflow, status, input, queue, owner, lease_until, lease_epoch,
                  parent_run_id, created_at, updated_at, traceparent)
VALUES (:run_id, :workflow, :status, :input, :queue, :owner,
        CASE WHEN :owner IS NULL THEN NULL
             ELSE (julianday('now') - 2440587.5) * 86400.0 + :lease END,
        CASE WHEN :owner IS NULL THEN 0 ELSE 1 END, :parent_run_id, :at, :at, :traceparent)
ON CONFLICT (run_id) DO NOTHING

-- name: select_run
SELECT * FROM runs WHERE run_id = :run_id

-- name: select_steps
SELECT * FROM steps WHERE run_id = :run_id ORDER BY seq

-- name: select_steps_many
SELECT * FROM steps WHERE run_id IN (SELECT value FROM json_each(:run_ids))
ORDER BY run_id, seq

-- name: claim
-- Active runs no live lease holds, and suspended runs that are due: two branches, each
-- searched by its index whatever ANALYZE has found (runs_by_queue, runs_by_wake). An OR of
-- the two, or a status IN (subquery), lets SQLite scan the whole table instead: it guesses
-- 25 rows for a subquery. CROSS JOIN fixes json_each as the outer loop.
UPDATE runs
SET owner = :owner,
    lease_until = (julianday('now') - 2440587.5) * 86400.0 + :lease,
    lease_epoch = lease_epoch + 1,
    updated_at = (julianday('now') - 2440587.5) * 86400.0,
    wake_at = NULL,
    status = CASE WHEN status IN (SELECT value FROM json_each(:claim_starts)) THEN :running
                  ELSE status END
WHERE run_id IN (
    SELECT run_id FROM (
        SELECT r.run_id, r.workflow, r.created_at
        FROM json_each(:active) AS a CROSS JOIN runs AS r
        WHERE r.status = a.value AND r.queue = :queue
          AND (r.owner IS NULL OR r.lease_until < (julianday('now') - 2440587.5) * 86400.0)
        UNION ALL
        SELECT run_id, workflow, created_at FROM runs
        WHERE status = :suspended AND queue = :queue AND wake_at <= :now)
    WHERE workflow IN (SELECT value FROM json_each(:workflows))
      AND (:run_id IS NULL OR run_id = :run_id)
    ORDER BY created_at
    LIMIT :limit)
RETURNING *

-- name: heartbeat
UPDATE runs SET lease_until = (julianday('now') - 2440587.5) * 86400.0 + :lease
WHERE owner = :owner AND run_id IN (SELECT value FROM json_each(:run_ids))

-- name: release
UPDATE runs SET owner = NULL, lease_until = NULL
WHERE owner = :owner AND (:run_id IS NULL OR run_id = :run_id)

-- name: queue_limit
SELECT max_concurrency FROM queues WHERE name = :queue

-- name: in_flight
SELECT count(*) FROM runs
WHERE queue = :queue AND owner IS NOT NULL
  AND status IN (SELECT value FROM json_each(:active))
  AND lease_until >= (julianday('now') - 2440587.5) * 86400.0

-- name: set_queue_limit
INSERT INTO queues (name, max_concurrency) VALUES (:queue, :limit)
ON CONFLICT (name) DO UPDATE SET max_concurrency = excluded.max_concurrency

-- name: drop_queue_limit
DELETE FROM queues WHERE name = :queue

-- name: queue_limits
SELECT name, max_concurrency FROM queues ORDER BY name

-- name: expire_owner
UPDATE runs SET lease_until = 0 WHERE owner = :owner

-- name: active_owners
SELECT DISTINCT owner FROM runs
WHERE owner IS NOT NULL AND lease_until >= (julianday('now') - 2440587.5) * 86400.0

-- name: fence
-- Matches the runs whose writer holds the lease. A checkpoint that lands only unless the
-- run was cancelled matches too (to report the cancel) but leaves the row as it was; the
-- caller writes nothing of it.
UPDATE runs
SET updated_at = CASE WHEN b.unless_cancelled AND runs.cancel_requested THEN runs.updated_at
                      ELSE b.at END
FROM (SELECT value ->> 0 AS run_id, value ->> 1 AS owner, value ->> 2 AS epoch,
             value ->> 3 AS at, value ->> 4 AS unless_cancelled
      FROM json_each(:batch)) AS b
WHERE runs.run_id = b.run_id AND runs.owner = b.owner AND runs.lease_epoch = b.epoch
RETURNING runs.run_id, runs.cancel_requested

-- name: change_run
UPDATE runs
SET status = :status, output = :output, error = :error, updated_at = :at, wake_at = :wake_at,
    owner = CASE WHEN :release THEN NULL ELSE owner END,
    lease_until = CASE WHEN :release THEN NULL ELSE lease_until END
WHERE run_id = :run_id

-- name: upsert_step
INSERT OR REPLACE INTO steps (run_id, seq, name, kind, status, input, output, error, attempts,
                              compensable, pivot, compensates_seq, done_index, started_at,
                              finished_at, branch)
VALUES (:run_id, :seq, :name, :kind, :status, :input, :output, :error, :attempts,
        :compensable, :pivot, :compensates_seq, :done_index, :started_at, :finished_at,
        :branch)

-- name: insert_event
INSERT INTO events (run_id, at, type, seq, data) VALUES (:run_id, :at, :type, :seq, :data)

-- name: operate
UPDATE runs
SET status = COALESCE(:to_status, status),
    cancel_requested = MAX(cancel_requested, :cancel),
    wake_at = CASE WHEN :cancel AND status = :suspended THEN :at ELSE wake_at END,
    updated_at = :at
WHERE run_id = :run_id AND status IN (SELECT value FROM json_each(:from_statuses))
  AND NOT (:unless_pivot AND EXISTS (
      SELECT 1 FROM steps s
      WHERE s.run_id = :run_id AND s.pivot
        AND ((s.kind = 'step' AND s.status IN (SELECT value FROM json_each(:pivot_started)))
             OR (s.kind = 'child_result' AND s.status = :succeeded))))
RETURNING *

-- name: delete_task
-- With the step row an operator's retry deletes: the step's new attempt is a new task.
DELETE FROM tasks WHERE run_id = :run_id AND seq = :seq

-- name: delete_step
DELETE FROM steps WHERE run_id = :run_id AND seq = :seq

-- name: skip_step
UPDATE steps SET status = :skipped WHERE run_id = :run_id AND seq = :seq

-- name: list_runs
SELECT * FROM runs ORDER BY created_at DESC, run_id LIMIT :limit

-- name: list_runs_by_status
SELECT * FROM runs WHERE status = :status ORDER BY created_at DESC, run_id LIMIT :limit

-- name: select_events
-- Causal order: a step's StepStarted is stamped when it started but inserted with its end.
SELECT * FROM events WHERE run_id = :run_id ORDER BY at, id

-- name: newer_signal
-- Also a task whose result was written, or a lock wait answered, while the run ran in this
-- lease epoch: the run may have read its history before that write.
SELECT 1 FROM signals WHERE run_id = :run_id AND consumed_seq IS NULL AND id > :seen
UNION ALL
SELECT 1 FROM tasks t JOIN runs r ON r.run_id = t.run_id
WHERE t.run_id = :run_id AND t.finished_epoch = r.lease_epoch
UNION ALL
SELECT 1 FROM locks l JOIN runs r ON r.run_id = l.run_id
WHERE l.run_id = :run_id AND l.answered_epoch = r.lease_epoch
LIMIT 1

-- name: settled_run
SELECT 1 FROM runs
WHERE run_id IN (SELECT value FROM json_each(:run_ids))
  AND status IN (SELECT value FROM json_each(:settled))
LIMIT 1

-- name: wake_parent
UPDATE runs SET wake_at = :at
WHERE run_id = (SELECT parent_run_id FROM runs WHERE run_id = :run_id)
  AND status = :suspended

-- name: insert_child
INSERT INTO runs (run_id, workflow, status, input, queue, lease_epoch, parent_run_id,
                  created_at, updated_at, traceparent)
VALUES (:run_id, :workflow, :pending, :input, :queue, 0, :parent_run_id, :at, :at, :traceparent)
ON CONFLICT (run_id) DO NOTHING

-- name: consume_signal
UPDATE signals SET consumed_seq = :seq WHERE id = :id AND consumed_seq IS NULL

-- name: run_status
SELECT status FROM runs WHERE run_id = :run_id

-- name: insert_signal
INSERT INTO signals (run_id, name, payload, sent_at) VALUES (:run_id, :name, :payload, :at)

-- name: wake_for_signal
UPDATE runs SET wake_at = :at WHERE run_id = :run_id AND status = :suspended

-- name: select_signals
SELECT * FROM signals WHERE run_id = :run_id AND consumed_seq IS NULL ORDER BY id

-- name: select_signals_many
SELECT * FROM signals
WHERE run_id IN (SELECT value FROM json_each(:run_ids)) AND consumed_seq IS NULL
ORDER BY id

-- name: next_wake
SELECT min(wake_at) FROM runs
WHERE status = :suspended AND queue IN (SELECT value FROM json_each(:queues))
  AND workflow IN (SELECT value FROM json_each(:workflows))

-- name: insert_outbox
INSERT OR IGNORE INTO outbox (id, run_id, topic, headers, body, created_at)
VALUES (:id, :run_id, :topic, :headers, :body, :at);

-- name: claim_outbox
UPDATE outbox SET lease_until = :until
WHERE seq IN (SELECT seq FROM outbox WHERE lease_until <= :now ORDER BY seq LIMIT :limit)
RETURNING seq, id, run_id, topic, headers, body, created_at;

-- name: delete_outbox
DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(:ids));

-- name: outbox_size
SELECT count(*) FROM outbox;

-- name: add_event_wait
INSERT OR IGNORE INTO event_waits (topic, correlation_id, run_id)
VALUES (:topic, :correlation_id, :run_id);

-- name: drop_event_wait
DELETE FROM event_waits
WHERE topic = :topic AND correlation_id = :correlation_id AND run_id = :run_id;

-- name: event_waiters
SELECT run_id FROM event_waits WHERE topic = :topic AND correlation_id = :correlation_id;

-- name: event_wait_topics
SELECT DISTINCT topic FROM event_waits;

-- name: search_runs
-- The runs list pages, newest first from the keyset (:at, :id). Each leading filter has a
-- query of its own so that its index is the one scanned, and the scan stops at :limit; the
-- other filters are checked on the way.
SELECT * FROM runs INDEXED BY runs_by_created
WHERE (created_at, run_id) < (:at, :id)
  AND (:workflow IS NULL OR workflow = :workflow)
  AND (:after IS NULL OR created_at > :after)
  AND (:low IS NULL OR run_id >= :low) AND (:high IS NULL OR run_id < :high)
ORDER BY created_at DESC, run_id DESC LIMIT :limit

-- name: search_runs_by_status
SELECT * FROM runs INDEXED BY runs_by_status
WHERE status = :status AND (created_at, run_id) < (:at, :id)
  AND (:workflow IS NULL OR workflow = :workflow)
  AND (:after IS NULL OR created_at > :after)
  AND (:low IS NULL OR run_id >= :low) AND (:high IS NULL OR run_id < :high)
ORDER BY created_at DESC, run_id DESC LIMIT :limit

-- name: search_runs_by_workflow
SELECT * FROM runs INDEXED BY runs_by_workflow
WHERE workflow = :workflow AND (created_at, run_id) < (:at, :id)
  AND (:after IS NULL OR created_at > :after)
  AND (:low IS NULL OR run_id >= :low) AND (:high IS NULL OR run_id < :high)
ORDER BY created_at DESC, run_id DESC LIMIT :limit

-- name: search_runs_by_prefix
-- A prefix seeks the primary key; the matching runs are then sorted by time.
SELECT * FROM runs
WHERE run_id >= :low AND run_id < :high AND (created_at, run_id) < (:at, :id)
  AND (:after IS NULL OR created_at > :after)
ORDER BY created_at DESC, run_id DESC LIMIT :limit

-- name: count_runs
SELECT status, count(*) FROM runs
WHERE (:workflow IS NULL OR workflow = :workflow)
  AND (:after IS NULL OR created_at > :after)
  AND (:before IS NULL OR created_at < :before)
  AND (:low IS NULL OR run_id >= :low) AND (:high IS NULL OR run_id < :high)
GROUP BY status

-- name: count_runs_by_prefix
-- A prefix seeks the primary key (the generic query's "IS NULL OR" keeps SQLite's planner
-- from it: a scan of every run).
SELECT status, count(*) FROM runs
WHERE run_id >= :low AND run_id < :high
  AND (:workflow IS NULL OR workflow = :workflow)
  AND (:after IS NULL OR created_at > :after)
  AND (:before IS NULL OR created_at < :before)
GROUP BY status

-- name: child_runs
SELECT * FROM runs WHERE parent_run_id = :run_id ORDER BY created_at, run_id

-- name: queue_depths
SELECT r.queue, r.status, count(*)
FROM json_each(:statuses) AS s CROSS JOIN runs AS r
WHERE r.status = s.value
GROUP BY r.queue, r.status

-- name: insert_token
INSERT INTO tokens (name, digest, role, payloads, created_at)
VALUES (:name, :digest, :role, :payloads, :at)
ON CONFLICT (name) DO UPDATE SET
    digest = excluded.digest, role = excluded.role, payloads = excluded.payloads,
    created_at = excluded.created_at, revoked_at = NULL
WHERE tokens.revoked_at IS NOT NULL

-- name: find_token
SELECT * FROM tokens WHERE digest = :digest AND revoked_at IS NULL

-- name: list_tokens
SELECT * FROM tokens ORDER BY name

-- name: revoke_token
UPDATE tokens SET revoked_at = :at WHERE name = :name AND revoked_at IS NULL

-- name: db_now
SELECT (julianday('now') - 2440587.5) * 86400.0

-- name: run_lease
SELECT 1 FROM runs WHERE run_id = :run_id AND owner = :owner AND lease_epoch = :epoch

-- name: insert_task
INSERT OR IGNORE INTO tasks (id, run_id, seq, step, queue, status, lease_seconds, available_at,
                             created_at, start_to_close)
VALUES (:id, :run_id, :seq, :step, :queue, :waiting, :lease_seconds, :now, :at,
        :start_to_close)

-- name: insert_step_if_new
INSERT OR IGNORE INTO steps (run_id, seq, name, kind, status, input, output, error, attempts,
                             compensable, pivot, compensates_seq, done_index, started_at,
                             finished_at, branch)
VALUES (:run_id, :seq, :name, :kind, :status, :input, :output, :error, :attempts,
        :compensable, :pivot, :compensates_seq, :done_index, :started_at, :finished_at,
        :branch)

-- name: due_tasks
-- A task step while its run runs (not cancelled, not unwinding); a task compensation while
-- its run unwinds (sagaline.store.protocol.TaskRules).
SELECT t.id FROM tasks t JOIN runs r ON r.run_id = t.run_id
JOIN steps s ON s.run_id = t.run_id AND s.seq = t.seq
WHERE t.queue = :queue
  AND ((t.status = :waiting AND t.available_at <= :now)
       OR (t.status = :claimed AND t.lease_until < :now))
  AND ((s.kind = 'step' AND NOT r.cancel_requested
        AND r.status IN (SELECT value FROM json_each(:step_statuses))
        AND NOT EXISTS (SELECT 1 FROM steps c WHERE c.run_id = t.run_id
                        AND c.kind = 'compensation'))
       OR (s.kind = 'compensation'
           AND r.status IN (SELECT value FROM json_each(:compensation_statuses))))
ORDER BY t.available_at
LIMIT :limit

-- name: claim_task
UPDATE tasks
SET status = :claimed, attempt = attempt + 1, token = :token, worker = :worker,
    lease_until = :now + MIN(lease_seconds, COALESCE(start_to_close, lease_seconds)),
    claimed_at = :now
WHERE id = :id

-- name: select_task
SELECT t.*, s.input FROM tasks t LEFT JOIN steps s ON s.run_id = t.run_id AND s.seq = t.seq
WHERE t.id = :id

-- name: heartbeat_task
-- Never past the attempt's start_to_close: then the attempt is over and the beat refused.
UPDATE tasks
SET lease_until = MIN(:now + lease_seconds, COALESCE(claimed_at + start_to_close, :now + lease_seconds))
WHERE id = :id AND token = :token AND status = :claimed
  AND (start_to_close IS NULL OR claimed_at + start_to_close > :now)

-- name: task_run
SELECT t.run_id, r.status, r.cancel_requested, r.lease_epoch, t.lease_until, s.kind,
       EXISTS (SELECT 1 FROM steps c WHERE c.run_id = t.run_id
               AND c.kind = 'compensation') AS unwinding
FROM tasks t JOIN runs r ON r.run_id = t.run_id
LEFT JOIN steps s ON s.run_id = t.run_id AND s.seq = t.seq
WHERE t.id = :id AND t.token = :token AND t.status = :claimed

-- name: task_done
UPDATE tasks SET status = :done, token = NULL, lease_until = NULL, finished_epoch = :epoch
WHERE id = :id

-- name: task_close
UPDATE tasks SET status = :done, token = NULL, lease_until = NULL WHERE id = :id

-- name: task_retry
UPDATE tasks SET status = :waiting, token = NULL, lease_until = NULL,
    available_at = :now + :delay
WHERE id = :id

-- name: list_tasks
SELECT t.*, NULL AS input FROM tasks t
WHERE t.status IN (:waiting, :claimed) AND (:queue IS NULL OR t.queue = :queue)
ORDER BY t.created_at

-- Semantic locks (sagaline.store.sqlite.locks; the rules are in sagaline.model.locks).

-- name: lock_request
SELECT * FROM locks WHERE run_id = :run_id AND seq = :seq

-- name: lock_of_run_key
SELECT id FROM locks WHERE run_id = :run_id AND key = :key AND refused IS NULL

-- name: insert_lock
INSERT OR IGNORE INTO locks (key, run_id, seq, mode, requested_at)
VALUES (:key, :run_id, :seq, :mode, :at)

-- name: step_succeeded
UPDATE steps SET status = :succeeded WHERE run_id = :run_id AND seq = :seq

-- name: lock_line
SELECT id, run_id, mode, granted_at FROM locks
WHERE key = :key AND refused IS NULL ORDER BY id

-- name: grant_lock
UPDATE locks SET granted_at = :now WHERE id = :id

-- name: answer_lock
-- A wait answered while its run may be running: the run's suspension in this same lease
-- epoch then finds it (newer_signal) and is due at once.
UPDATE locks SET granted_at = CASE WHEN :refused IS NULL THEN :now ELSE granted_at END,
    refused = :refused,
    answered_epoch = (SELECT lease_epoch FROM runs WHERE run_id = locks.run_id)
WHERE id = :id

-- name: refuse_lock
UPDATE locks SET refused = :refused WHERE id = :id

-- name: waiting_locks_of_run
SELECT id, key, mode FROM locks
WHERE run_id = :run_id AND granted_at IS NULL AND refused IS NULL ORDER BY id

-- name: run_started
SELECT run_id, created_at FROM runs WHERE run_id IN (SELECT value FROM json_each(:run_ids))

-- name: delete_lock
DELETE FROM locks WHERE id = :id

-- name: delete_run_key_locks
DELETE FROM locks WHERE run_id = :run_id AND key = :key

-- name: run_lock_keys
SELECT DISTINCT key FROM locks WHERE run_id = :run_id

-- name: delete_run_locks
DELETE FROM locks WHERE run_id = :run_id

-- name: locks_of_key
SELECT l.*, r.status AS run_status FROM locks l LEFT JOIN runs r ON r.run_id = l.run_id
WHERE l.key = :key ORDER BY l.id

-- name: list_locks
SELECT l.*, r.status AS run_status FROM locks l LEFT JOIN runs r ON r.run_id = l.run_id
WHERE :prefix IS NULL OR (l.key >= :prefix AND l.key < :prefix_end)
ORDER BY l.key, l.id LIMIT :limit

-- name: count_runs_fast
-- Counts from run_counts (kept by triggers): for views that filter by workflow at most.
SELECT status, sum(n) FROM run_counts
WHERE (:workflow IS NULL OR workflow = :workflow)
GROUP BY status HAVING sum(n) > 0

-- Queue rate limits: a token bucket per queue (migration 0011; the arithmetic is
-- sagaline.model.rates). Claims read the bucket with the database's clock, and spend what
-- they took in the same transaction; one writer at a time, so no two claims race for it.

-- name: rate_bucket
SELECT per_second, burst, tokens, refilled_at,
       (julianday('now') - 2440587.5) * 86400.0 AS now
FROM queue_rates WHERE queue = :queue

-- name: spend_rate_tokens
UPDATE queue_rates SET tokens = :tokens, refilled_at = :at WHERE queue = :queue

-- name: set_queue_rate
INSERT INTO queue_rates (queue, per_second, burst, tokens, refilled_at)
VALUES (:queue, :per_second, :burst, :tokens, (julianday('now') - 2440587.5) * 86400.0)
ON CONFLICT (queue) DO UPDATE
SET per_second = excluded.per_second, burst = excluded.burst, tokens = excluded.tokens,
    refilled_at = excluded.refilled_at

-- name: drop_queue_rate
DELETE FROM queue_rates WHERE queue = :queue

-- name: queue_rates
SELECT queue, per_second, burst FROM queue_rates ORDER BY queue
