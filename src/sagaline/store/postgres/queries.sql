-- The PostgreSQL dialect. Times are Unix seconds; "now" is the database's clock:
-- extract(epoch from clock_timestamp())

-- name: insert_run
INSERT INTO runs (run_id, workflow, status, input, queue, owner, lease_until, lease_epoch,
                  parent_run_id, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6::text,
        CASE WHEN $6::text IS NULL THEN NULL
             ELSE extract(epoch from clock_timestamp()) + $7 END,
        CASE WHEN $6::text IS NULL THEN 0 ELSE 1 END, $9, $8, $8)
ON CONFLICT (run_id) DO NOTHING
RETURNING run_id

-- name: select_run
SELECT * FROM runs WHERE run_id = $1

-- name: select_steps
SELECT * FROM steps WHERE run_id = $1 ORDER BY seq

-- name: select_steps_many
SELECT * FROM steps WHERE run_id = ANY($1::text[]) ORDER BY run_id, seq

-- name: claim
UPDATE runs AS r
SET owner = $1,
    lease_until = extract(epoch from clock_timestamp()) + $2,
    lease_epoch = r.lease_epoch + 1,
    updated_at = extract(epoch from clock_timestamp()),
    wake_at = NULL,
    status = CASE WHEN r.status = ANY($9::text[]) THEN $10::text ELSE r.status END
FROM (
    SELECT run_id FROM runs
    WHERE ((status = ANY($8::text[])
            AND (owner IS NULL OR lease_until < extract(epoch from clock_timestamp())))
           OR (status = $11::text AND wake_at <= $7::float8))
      AND workflow = ANY($3::text[])
      AND queue = $5
      AND ($6::text IS NULL OR run_id = $6::text)
    ORDER BY created_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
) AS picked
WHERE r.run_id = picked.run_id
RETURNING r.*

-- name: queue_limit
SELECT max_concurrency FROM queues WHERE name = $1

-- name: step_succeeded
UPDATE steps SET status = $3 WHERE run_id = $1 AND seq = $2

-- name: lock_queue
SELECT pg_advisory_xact_lock(hashtext('sagaline.queue.' || $1))

-- name: in_flight
SELECT count(*) FROM runs
WHERE queue = $1 AND owner IS NOT NULL
  AND status = ANY($2::text[])
  AND lease_until >= extract(epoch from clock_timestamp())

-- name: set_queue_limit
INSERT INTO queues (name, max_concurrency) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET max_concurrency = excluded.max_concurrency

-- name: drop_queue_limit
DELETE FROM queues WHERE name = $1

-- name: queue_limits
SELECT name, max_concurrency FROM queues ORDER BY name

-- name: heartbeat
UPDATE runs SET lease_until = extract(epoch from clock_timestamp()) + $2
WHERE owner = $1 AND run_id = ANY($3::text[])

-- name: release
UPDATE runs SET owner = NULL, lease_until = NULL
WHERE owner = $1 AND ($2::text IS NULL OR run_id = $2::text)

-- name: expire_owner
UPDATE runs SET lease_until = 0 WHERE owner = $1

-- name: active_owners
SELECT DISTINCT owner FROM runs
WHERE owner IS NOT NULL AND lease_until >= extract(epoch from clock_timestamp())

-- name: fence
-- Matches (and locks) the runs whose writer holds the lease. A checkpoint that lands only
-- unless the run was cancelled matches too, to report the cancel, but leaves the row as it
-- was; the caller writes nothing of it. The flag is read from the locked row.
UPDATE runs
SET updated_at = CASE WHEN v.unless_cancelled AND runs.cancel_requested THEN runs.updated_at
                      ELSE v.at END
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::bool[])
    AS v(run_id, owner, epoch, at, unless_cancelled)
WHERE runs.run_id = v.run_id AND runs.owner = v.owner AND runs.lease_epoch = v.epoch
RETURNING runs.run_id, runs.cancel_requested

-- name: change_run
UPDATE runs
SET status = $2::text, output = $3, error = $4, updated_at = $5::float8,
    owner = CASE WHEN $6::bool THEN NULL ELSE owner END,
    lease_until = CASE WHEN $6::bool THEN NULL ELSE lease_until END,
    wake_at = CASE
        WHEN $2::text <> $10::text THEN NULL
        -- a cancel accepted while the run still ran woke nothing: it must not sleep on it
        WHEN cancel_requested AND NOT $12::bool THEN $5::float8
        WHEN EXISTS (SELECT 1 FROM signals s
                     WHERE s.run_id = $1 AND s.consumed_seq IS NULL AND s.id > $8::bigint)
            THEN $5::float8
        WHEN EXISTS (SELECT 1 FROM runs c WHERE c.run_id = ANY($9::text[])
                     AND c.status = ANY($11::text[]))
            THEN $5::float8
        -- a task's result written while the run ran in this lease epoch (it may not have
        -- read it): finish_task locks the run row first, so one of the two sees the other
        WHEN EXISTS (SELECT 1 FROM tasks t
                     WHERE t.run_id = $1 AND t.finished_epoch = runs.lease_epoch)
            THEN $5::float8
        -- a lock wait answered in this lease epoch, likewise (answer_lock locks the run row)
        WHEN EXISTS (SELECT 1 FROM locks l
                     WHERE l.run_id = $1 AND l.answered_epoch = runs.lease_epoch)
            THEN $5::float8
        ELSE $7::float8 END
WHERE run_id = $1

-- name: upsert_step
INSERT INTO steps (run_id, seq, name, kind, status, input, output, error, attempts,
                   compensable, pivot, compensates_seq, done_index, started_at, finished_at,
                   branch)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (run_id, seq) DO UPDATE SET
    name = excluded.name, kind = excluded.kind, status = excluded.status,
    input = excluded.input, output = excluded.output, error = excluded.error,
    attempts = excluded.attempts, compensable = excluded.compensable,
    pivot = excluded.pivot, compensates_seq = excluded.compensates_seq,
    done_index = excluded.done_index, started_at = excluded.started_at,
    finished_at = excluded.finished_at, branch = excluded.branch

-- name: insert_event
INSERT INTO events (run_id, at, type, seq, data) VALUES ($1, $2, $3, $4, $5)

-- name: operate
UPDATE runs
SET status = COALESCE($2::text, status),
    cancel_requested = cancel_requested OR $3,
    wake_at = CASE WHEN $3::bool AND status = $7::text THEN $4::float8 ELSE wake_at END,
    updated_at = $4::float8
WHERE run_id = $1 AND status = ANY($5::text[])
  AND NOT ($6::bool AND EXISTS (
      SELECT 1 FROM steps s
      WHERE s.run_id = $1 AND s.pivot
        AND ((s.kind = 'step' AND s.status = ANY($8::text[]))
             OR (s.kind = 'child_result' AND s.status = $9::text))))
RETURNING *

-- name: delete_task
-- With the step row an operator's retry deletes: the step's new attempt is a new task.
DELETE FROM tasks WHERE run_id = $1 AND seq = $2

-- name: delete_step
DELETE FROM steps WHERE run_id = $1 AND seq = $2

-- name: skip_step
UPDATE steps SET status = $3 WHERE run_id = $1 AND seq = $2

-- name: notify
SELECT pg_notify('sagaline_wake', $1)

-- name: list_runs
SELECT * FROM runs ORDER BY created_at DESC, run_id LIMIT $1

-- name: list_runs_by_status
SELECT * FROM runs WHERE status = $1 ORDER BY created_at DESC, run_id LIMIT $2

-- name: select_events
-- Causal order: a step's StepStarted is stamped when it started but inserted with its end.
SELECT * FROM events WHERE run_id = $1 ORDER BY at, id

-- name: meta_table
SELECT to_regclass('sagaline_meta') IS NOT NULL, to_regclass('runs') IS NOT NULL

-- name: schema_version
SELECT value::int FROM sagaline_meta WHERE key = 'schema_version'

-- name: set_schema_version
INSERT INTO sagaline_meta (key, value) VALUES ('schema_version', $1::text)
ON CONFLICT (key) DO UPDATE SET value = excluded.value

-- name: lock_migrations
SELECT pg_advisory_xact_lock(hashtext('sagaline.migrate.' || current_schema()))

-- name: create_schema
-- IF NOT EXISTS alone still races: two sessions both see no schema and one fails on the
-- catalog's unique index. The lock (held to the end of this statement's transaction)
-- makes the second wait, then find the schema.
DO $$ BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sagaline.schema.' || current_setting('sagaline.schema')));
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', current_setting('sagaline.schema'));
END $$

-- name: lock_parent
SELECT p.run_id FROM runs p
WHERE p.run_id = (SELECT parent_run_id FROM runs WHERE run_id = $1)
FOR UPDATE OF p

-- name: wake_parent
UPDATE runs SET wake_at = $2
WHERE run_id = (SELECT parent_run_id FROM runs WHERE run_id = $1) AND status = $3::text

-- name: insert_child
INSERT INTO runs (run_id, workflow, status, input, queue, lease_epoch, parent_run_id,
                  created_at, updated_at, traceparent)
VALUES ($1, $2, $7, $3, $4, 0, $5, $6, $6, $8)
ON CONFLICT (run_id) DO NOTHING

-- name: consume_signal
UPDATE signals SET consumed_seq = $2 WHERE id = $1 AND consumed_seq IS NULL

-- name: lock_run
SELECT status FROM runs WHERE run_id = $1 FOR UPDATE

-- name: insert_signal
INSERT INTO signals (run_id, name, payload, sent_at) VALUES ($1, $2, $3, $4)

-- name: wake_for_signal
UPDATE runs SET wake_at = $2 WHERE run_id = $1 AND status = $3::text

-- name: select_signals
SELECT * FROM signals WHERE run_id = $1 AND consumed_seq IS NULL ORDER BY id

-- name: select_signals_many
SELECT * FROM signals WHERE run_id = ANY($1::text[]) AND consumed_seq IS NULL ORDER BY id

-- name: next_wake
SELECT min(wake_at) FROM runs
WHERE status = $3::text AND queue = ANY($1::text[]) AND workflow = ANY($2::text[])

-- name: create_runs
-- Runs of a queue with a concurrency limit or a rate are never born claimed: they wait for
-- a claim, which takes the queue's lock. One statement, one round trip, for the whole batch.
WITH v AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[],
                         $6::float8[], $7::text[], $9::text[], $13::text[])
        AS v(run_id, workflow, input, queue, owner, at, parent_run_id, started, traceparent)
), o AS (
    SELECT v.*, CASE WHEN EXISTS (SELECT 1 FROM queues q WHERE q.name = v.queue)
                       OR EXISTS (SELECT 1 FROM queue_rates b WHERE b.queue = v.queue)
                     THEN NULL ELSE v.owner END AS who
    FROM v
), ins AS (
    INSERT INTO runs (run_id, workflow, status, input, queue, owner, lease_until, lease_epoch,
                      parent_run_id, created_at, updated_at, traceparent)
    SELECT run_id, workflow, CASE WHEN who IS NULL THEN $10::text ELSE $11::text END, input,
           queue, who,
           CASE WHEN who IS NULL THEN NULL
                ELSE extract(epoch from clock_timestamp()) + $8::float8 END,
           CASE WHEN who IS NULL THEN 0 ELSE 1 END, parent_run_id, at, at, traceparent
    FROM o
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id, owner
), ev AS (
    INSERT INTO events (run_id, at, type, seq, data)
    SELECT ins.run_id, v.at, $12::text, NULL, v.started
    FROM ins JOIN v USING (run_id)
    RETURNING 1
), woke AS (
    SELECT pg_notify('sagaline_wake', '') AS n WHERE EXISTS (SELECT 1 FROM ins WHERE owner IS NULL)
)
SELECT ins.run_id, ins.owner, (SELECT count(*) FROM ev) AS events, (SELECT count(*) FROM woke)
FROM ins

-- name: commit_fast
-- A batch of plain checkpoints (no suspension, children, signals or parent to wake, one per
-- run) in one statement: fence and run change in one UPDATE, then the rows of the runs
-- whose fence matched. A checkpoint that lands only unless the run was cancelled, when it
-- was, matches the fence (to report the cancel) but is barred: its run's row is left as it
-- was (the flag is read from the locked row) and none of its rows are written.
WITH v AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::text[],
                         $6::bytea[], $7::text[], $8::bool[], $30::bool[])
        AS v(run_id, owner, epoch, at, status, output, error, release, unless_cancelled)
), fenced AS (
    UPDATE runs SET
        updated_at = CASE WHEN v.unless_cancelled AND runs.cancel_requested
                          THEN runs.updated_at ELSE v.at END,
        status = CASE WHEN v.status IS NULL OR (v.unless_cancelled AND runs.cancel_requested)
                      THEN runs.status ELSE v.status END,
        output = CASE WHEN v.status IS NULL OR (v.unless_cancelled AND runs.cancel_requested)
                      THEN runs.output ELSE v.output END,
        error = CASE WHEN v.status IS NULL OR (v.unless_cancelled AND runs.cancel_requested)
                     THEN runs.error ELSE v.error END,
        wake_at = CASE WHEN v.status IS NULL OR (v.unless_cancelled AND runs.cancel_requested)
                       THEN runs.wake_at ELSE NULL END,
        owner = CASE WHEN v.release AND NOT (v.unless_cancelled AND runs.cancel_requested)
                     THEN NULL ELSE runs.owner END,
        lease_until = CASE WHEN v.release AND NOT (v.unless_cancelled AND runs.cancel_requested)
                           THEN NULL ELSE runs.lease_until END
    FROM v
    WHERE runs.run_id = v.run_id AND runs.owner = v.owner AND runs.lease_epoch = v.epoch
    RETURNING runs.run_id, runs.cancel_requested,
              v.unless_cancelled AND runs.cancel_requested AS barred
), s AS (
    INSERT INTO steps (run_id, seq, name, kind, status, input, output, error, attempts,
                       compensable, pivot, compensates_seq, done_index, started_at,
                       finished_at, branch)
    SELECT s.* FROM unnest($9::text[], $10::int[], $11::text[], $12::text[], $13::text[],
                           $14::bytea[], $15::bytea[], $16::text[], $17::int[], $18::bool[],
                           $19::bool[], $20::int[], $21::int[], $22::float8[], $23::float8[],
                           $24::text[])
        AS s(run_id, seq, name, kind, status, input, output, error, attempts, compensable,
             pivot, compensates_seq, done_index, started_at, finished_at, branch)
    WHERE s.run_id IN (SELECT run_id FROM fenced WHERE NOT barred)
    ON CONFLICT (run_id, seq) DO UPDATE SET
        name = excluded.name, kind = excluded.kind, status = excluded.status,
        input = excluded.input, output = excluded.output, error = excluded.error,
        attempts = excluded.attempts, compensable = excluded.compensable,
        pivot = excluded.pivot, compensates_seq = excluded.compensates_seq,
        done_index = excluded.done_index, started_at = excluded.started_at,
        finished_at = excluded.finished_at, branch = excluded.branch
    RETURNING 1
), e AS (
    INSERT INTO events (run_id, at, type, seq, data)
    SELECT e.* FROM unnest($25::text[], $26::float8[], $27::text[], $28::int[], $29::text[])
        AS e(run_id, at, type, seq, data)
    WHERE e.run_id IN (SELECT run_id FROM fenced WHERE NOT barred)
    RETURNING 1
)
SELECT run_id, cancel_requested, (SELECT count(*) FROM s) AS steps, (SELECT count(*) FROM e)
FROM fenced

-- name: insert_outbox
INSERT INTO outbox (id, run_id, topic, headers, body, created_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[],
                     $6::float8[])
ON CONFLICT (id) DO NOTHING;

-- name: claim_outbox
UPDATE outbox SET lease_until = clock_timestamp() + make_interval(secs => $2)
WHERE seq IN (
    SELECT seq FROM outbox WHERE lease_until <= clock_timestamp()
    ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED
)
RETURNING seq, id, run_id, topic, headers, body, created_at;

-- name: delete_outbox
DELETE FROM outbox WHERE id = ANY($1::text[]);

-- name: outbox_size
SELECT count(*) FROM outbox;

-- name: add_event_wait
INSERT INTO event_waits (topic, correlation_id, run_id) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING;

-- name: drop_event_wait
DELETE FROM event_waits WHERE topic = $1 AND correlation_id = $2 AND run_id = $3;

-- name: event_waiters
SELECT run_id FROM event_waits WHERE topic = $1 AND correlation_id = $2;

-- name: event_wait_topics
SELECT DISTINCT topic FROM event_waits;

-- name: search_runs
-- The runs list pages, newest first from the keyset ($1, $2). Each leading filter has a
-- query of its own so that its index is the one scanned, and the scan stops at the limit;
-- the other filters are checked on the way. Parameters: $1 at, $2 id, $3 limit,
-- $4 workflow, $5 after, $6 low, $7 high (and $8 status in search_runs_by_status).
SELECT * FROM runs
WHERE (created_at, run_id) < ($1::float8, $2::text)
  AND ($4::text IS NULL OR workflow = $4::text)
  AND ($5::float8 IS NULL OR created_at > $5::float8)
  AND ($6::text IS NULL OR run_id COLLATE "C" >= $6::text)
  AND ($7::text IS NULL OR run_id COLLATE "C" < $7::text)
ORDER BY created_at DESC, run_id DESC LIMIT $3

-- name: search_runs_by_status
SELECT * FROM runs
WHERE status = $8::text AND (created_at, run_id) < ($1::float8, $2::text)
  AND ($4::text IS NULL OR workflow = $4::text)
  AND ($5::float8 IS NULL OR created_at > $5::float8)
  AND ($6::text IS NULL OR run_id COLLATE "C" >= $6::text)
  AND ($7::text IS NULL OR run_id COLLATE "C" < $7::text)
ORDER BY created_at DESC, run_id DESC LIMIT $3

-- name: search_runs_by_workflow
SELECT * FROM runs
WHERE workflow = $4::text AND (created_at, run_id) < ($1::float8, $2::text)
  AND ($5::float8 IS NULL OR created_at > $5::float8)
  AND ($6::text IS NULL OR run_id COLLATE "C" >= $6::text)
  AND ($7::text IS NULL OR run_id COLLATE "C" < $7::text)
ORDER BY created_at DESC, run_id DESC LIMIT $3

-- name: search_runs_by_prefix
-- A prefix seeks runs_by_id_prefix; the matching runs are then sorted by time.
SELECT * FROM runs
WHERE run_id COLLATE "C" >= $6::text AND run_id COLLATE "C" < $7::text
  AND (created_at, run_id) < ($1::float8, $2::text)
  AND ($4::text IS NULL OR workflow = $4::text)
  AND ($5::float8 IS NULL OR created_at > $5::float8)
ORDER BY created_at DESC, run_id DESC LIMIT $3

-- name: count_runs
SELECT status, count(*) FROM runs
WHERE ($1::text IS NULL OR workflow = $1::text)
  AND ($2::float8 IS NULL OR created_at > $2::float8)
  AND ($3::float8 IS NULL OR created_at < $3::float8)
  AND ($4::text IS NULL OR run_id COLLATE "C" >= $4::text)
  AND ($5::text IS NULL OR run_id COLLATE "C" < $5::text)
GROUP BY status

-- name: child_runs
SELECT * FROM runs WHERE parent_run_id = $1 ORDER BY created_at, run_id

-- name: queue_depths
SELECT queue, status, count(*) FROM runs WHERE status = ANY($1::text[]) GROUP BY queue, status

-- name: insert_token
INSERT INTO tokens (name, digest, role, payloads, created_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE SET
    digest = excluded.digest, role = excluded.role, payloads = excluded.payloads,
    created_at = excluded.created_at, revoked_at = NULL
WHERE tokens.revoked_at IS NOT NULL

-- name: find_token
SELECT * FROM tokens WHERE digest = $1 AND revoked_at IS NULL

-- name: list_tokens
SELECT * FROM tokens ORDER BY name

-- name: revoke_token
UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL

-- name: schema_exists
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1);

-- name: task_fence
SELECT 1 FROM runs WHERE run_id = $1 AND owner = $2 AND lease_epoch = $3 FOR UPDATE

-- name: insert_task
INSERT INTO tasks (id, run_id, seq, step, queue, status, lease_seconds, available_at,
                   created_at, start_to_close)
VALUES ($1, $2, $3, $4, $5, $6, $7, extract(epoch from clock_timestamp()), $8, $9)
ON CONFLICT DO NOTHING

-- name: insert_step_if_new
INSERT INTO steps (run_id, seq, name, kind, status, input, output, error, attempts,
                   compensable, pivot, compensates_seq, done_index, started_at, finished_at,
                   branch)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (run_id, seq) DO NOTHING

-- name: claim_tasks
-- $1 queue, $2 worker, $3 limit, $4 step statuses, $5 waiting, $6 claimed,
-- $7 compensation statuses
UPDATE tasks t
SET status = $6, attempt = t.attempt + 1, token = gen_random_uuid()::text, worker = $2,
    lease_until = extract(epoch from clock_timestamp())
                  + LEAST(t.lease_seconds, COALESCE(t.start_to_close, t.lease_seconds)),
    claimed_at = extract(epoch from clock_timestamp())
FROM (
    SELECT d.id FROM tasks d JOIN runs r ON r.run_id = d.run_id
    JOIN steps s ON s.run_id = d.run_id AND s.seq = d.seq
    WHERE d.queue = $1
      AND ((d.status = $5 AND d.available_at <= extract(epoch from clock_timestamp()))
           OR (d.status = $6 AND d.lease_until < extract(epoch from clock_timestamp())))
      -- a task step while its run runs (not cancelled, not unwinding); a task compensation
      -- while its run unwinds (sagaline.store.protocol.TaskRules)
      AND ((s.kind = 'step' AND NOT r.cancel_requested AND r.status = ANY($4::text[])
            AND NOT EXISTS (SELECT 1 FROM steps c WHERE c.run_id = d.run_id
                            AND c.kind = 'compensation'))
           OR (s.kind = 'compensation' AND r.status = ANY($7::text[])))
    ORDER BY d.available_at
    LIMIT $3
    FOR UPDATE OF d SKIP LOCKED
) AS picked
WHERE t.id = picked.id
RETURNING t.*,
    (SELECT s.input FROM steps s WHERE s.run_id = t.run_id AND s.seq = t.seq) AS input

-- name: select_task
SELECT t.*, s.input FROM tasks t LEFT JOIN steps s ON s.run_id = t.run_id AND s.seq = t.seq
WHERE t.id = $1

-- name: heartbeat_task
-- stop: a task step whose run was cancelled or began unwinding (its answer is not wanted)
-- never past the attempt's start_to_close: then the attempt is over and the beat refused
UPDATE tasks
SET lease_until = LEAST(extract(epoch from clock_timestamp()) + lease_seconds,
                        COALESCE(claimed_at + start_to_close,
                                 extract(epoch from clock_timestamp()) + lease_seconds))
WHERE id = $1 AND token = $2 AND status = $3
  AND (start_to_close IS NULL
       OR claimed_at + start_to_close > extract(epoch from clock_timestamp()))
RETURNING lease_until,
    EXISTS (SELECT 1 FROM steps s JOIN runs r ON r.run_id = s.run_id
            WHERE s.run_id = tasks.run_id AND s.seq = tasks.seq AND s.kind = 'step'
              AND (r.cancel_requested
                   OR EXISTS (SELECT 1 FROM steps c WHERE c.run_id = tasks.run_id
                              AND c.kind = 'compensation'))) AS stop

-- name: task_run
-- The run's row lock orders a task's end against the run's own commits.
SELECT r.run_id, r.status, r.lease_epoch, s.kind,
       EXISTS (SELECT 1 FROM steps c WHERE c.run_id = t.run_id
               AND c.kind = 'compensation') AS unwinding
FROM tasks t JOIN runs r ON r.run_id = t.run_id
LEFT JOIN steps s ON s.run_id = t.run_id AND s.seq = t.seq
WHERE t.id = $1 AND t.token = $2 AND t.status = $3
FOR UPDATE OF r, t

-- name: task_done
UPDATE tasks SET status = $2, token = NULL, lease_until = NULL, finished_epoch = $3
WHERE id = $1

-- name: task_for_close
SELECT status, lease_until - extract(epoch from clock_timestamp()) AS lease_left
FROM tasks WHERE id = $1 FOR UPDATE

-- name: task_close
UPDATE tasks SET status = $2, token = NULL, lease_until = NULL WHERE id = $1

-- name: task_retry
UPDATE tasks SET status = $2, token = NULL, lease_until = NULL,
    available_at = extract(epoch from clock_timestamp()) + $3
WHERE id = $1

-- name: list_tasks
SELECT t.*, NULL::bytea AS input FROM tasks t
WHERE t.status = ANY($1::text[]) AND ($2::text IS NULL OR t.queue = $2)
ORDER BY t.created_at

-- Semantic locks (sagaline.store.postgres.locks; the rules are in sagaline.model.locks).
-- A transaction that changes a key's queue first takes that key's advisory lock (lock_key,
-- keys in sorted order, before any run row), so each queue changes one transaction at a
-- time; a wait that must look for a cycle also takes lock_walk, so the wait that closes a
-- cycle sees every other wait of it.

-- name: lock_key
SELECT pg_advisory_xact_lock(hashtextextended($1, 7305844021537190656))

-- name: try_lock_key
SELECT pg_try_advisory_xact_lock(hashtextextended($1, 7305844021537190656))

-- name: lock_walk
SELECT pg_advisory_xact_lock(7305844021537190656)

-- name: run_lock_keys
SELECT DISTINCT key FROM locks WHERE run_id = ANY($1::text[])

-- name: lock_request
SELECT * FROM locks WHERE run_id = $1 AND seq = $2

-- name: lock_of_run_key
SELECT id FROM locks WHERE run_id = $1 AND key = $2 AND refused IS NULL

-- name: insert_lock
INSERT INTO locks (key, run_id, seq, mode, requested_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (run_id, seq) DO NOTHING

-- name: lock_line
SELECT id, run_id, mode, granted_at FROM locks
WHERE key = $1 AND refused IS NULL ORDER BY id

-- name: grant_lock
UPDATE locks SET granted_at = $2 WHERE id = $1

-- name: answer_lock
-- A wait answered while its run may be running: its run row is locked first, so the run's
-- suspension (change_run) either sees answered_epoch or is suspended already and woken.
WITH r AS (SELECT lease_epoch FROM runs WHERE run_id = $4 FOR UPDATE)
UPDATE locks SET granted_at = CASE WHEN $3::text IS NULL THEN $2::float8 ELSE granted_at END,
    refused = $3::text, answered_epoch = (SELECT lease_epoch FROM r)
WHERE id = $1

-- name: refuse_lock
UPDATE locks SET refused = $2 WHERE id = $1

-- name: waiting_locks_of_run
SELECT id, key, mode FROM locks
WHERE run_id = $1 AND granted_at IS NULL AND refused IS NULL ORDER BY id

-- name: run_started
SELECT run_id, created_at FROM runs WHERE run_id = ANY($1::text[])

-- name: delete_lock
DELETE FROM locks WHERE id = $1

-- name: delete_run_key_locks
DELETE FROM locks WHERE run_id = $1 AND key = $2

-- name: delete_run_locks
DELETE FROM locks WHERE run_id = $1 RETURNING key

-- name: locks_of_key
SELECT l.*, r.status AS run_status FROM locks l LEFT JOIN runs r ON r.run_id = l.run_id
WHERE l.key = $1 ORDER BY l.id

-- name: list_locks
SELECT l.*, r.status AS run_status FROM locks l LEFT JOIN runs r ON r.run_id = l.run_id
WHERE $1::text IS NULL OR left(l.key, length($1::text)) = $1::text
ORDER BY l.key, l.id LIMIT $2

-- name: request_lock
-- A request, granted at once when nothing in the key's queue conflicts (the caller holds
-- the key's advisory lock): its step row turns SUCCEEDED and LockAcquired is written, in
-- one round trip. No row back: the request was there already.
WITH g AS (
    INSERT INTO locks (key, run_id, seq, mode, requested_at, granted_at)
    SELECT $1::text, $2::text, $3::int, $4::text, $5::float8,
        CASE WHEN EXISTS (SELECT 1 FROM locks o
                          WHERE o.key = $1::text AND o.refused IS NULL
                            AND ($4::text = 'exclusive' OR o.mode = 'exclusive'))
             THEN NULL ELSE $5::float8 END
    ON CONFLICT (run_id, seq) DO NOTHING
    RETURNING granted_at
), s AS (
    UPDATE steps SET status = $6::text
    WHERE run_id = $2::text AND seq = $3::int
      AND EXISTS (SELECT 1 FROM g WHERE granted_at IS NOT NULL)
), e AS (
    INSERT INTO events (run_id, at, type, seq, data)
    SELECT $2::text, $5::float8, $7::text, $3::int, $8::text FROM g WHERE granted_at IS NOT NULL
)
SELECT granted_at IS NOT NULL AS granted FROM g

-- name: release_lock
-- Whether anyone still waits for the key once this run's holding is gone.
WITH d AS (DELETE FROM locks WHERE run_id = $1 AND key = $2 RETURNING id)
SELECT EXISTS (SELECT 1 FROM locks
               WHERE key = $2 AND run_id <> $1 AND refused IS NULL AND granted_at IS NULL)

-- name: count_runs_fast
-- Counts from run_counts (kept by triggers): for views that filter by workflow at most.
SELECT status, sum(n) FROM run_counts
WHERE ($1::text IS NULL OR workflow = $1::text)
GROUP BY status HAVING sum(n) > 0

-- Queue rate limits: a token bucket per queue (migration 0011; the arithmetic is
-- sagaline.model.rates). A claim locks the bucket's row (so claims of a rate-limited queue,
-- of runs and of tasks, are serialised on every host), reads the database's clock after
-- the lock is held, and spends what it took in the same transaction.

-- name: lock_rate_bucket
SELECT per_second, burst, tokens, refilled_at FROM queue_rates WHERE queue = $1 FOR UPDATE

-- name: rate_now
SELECT extract(epoch from clock_timestamp())::float8

-- name: spend_rate_tokens
UPDATE queue_rates SET tokens = $2, refilled_at = $3 WHERE queue = $1

-- name: set_queue_rate
INSERT INTO queue_rates (queue, per_second, burst, tokens, refilled_at)
VALUES ($1, $2, $3, $4, extract(epoch from clock_timestamp()))
ON CONFLICT (queue) DO UPDATE
SET per_second = excluded.per_second, burst = excluded.burst, tokens = excluded.tokens,
    refilled_at = excluded.refilled_at

-- name: drop_queue_rate
DELETE FROM queue_rates WHERE queue = $1

-- name: queue_rates
SELECT queue, per_second, burst FROM queue_rates ORDER BY queue
