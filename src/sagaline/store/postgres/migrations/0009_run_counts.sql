-- Runs by (workflow, status), kept by triggers in the transactions that change runs, so
-- the operator views count a million runs by reading a few rows instead of scanning them
-- all. Each server process adds to its own slot (pid mod 16), in key order, so concurrent
-- commits do not queue on one counter row; a count sums the slots.
CREATE TABLE run_counts (
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    slot INTEGER NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (workflow, status, slot)
);
INSERT INTO run_counts (workflow, status, slot, n)
SELECT workflow, status, 0, count(*) FROM runs GROUP BY workflow, status;

CREATE FUNCTION sagaline_count_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO run_counts (workflow, status, slot, n)
        SELECT workflow, status, pg_backend_pid() % 16, count(*) FROM new_rows
        GROUP BY workflow, status ORDER BY workflow, status
        ON CONFLICT (workflow, status, slot) DO UPDATE SET n = run_counts.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO run_counts (workflow, status, slot, n)
        SELECT workflow, status, pg_backend_pid() % 16, -count(*) FROM old_rows
        GROUP BY workflow, status ORDER BY workflow, status
        ON CONFLICT (workflow, status, slot) DO UPDATE SET n = run_counts.n + excluded.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER run_counts_insert AFTER INSERT ON runs
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sagaline_count_runs();
-- A status change, row by row: most updates of runs (leases, fences) change no status and
-- are filtered by the WHEN clause without calling any function.
CREATE FUNCTION sagaline_count_run_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_counts (workflow, status, slot, n)
    SELECT workflow, status, pg_backend_pid() % 16, d
    FROM (VALUES (OLD.workflow, OLD.status, -1), (NEW.workflow, NEW.status, 1))
        AS moved (workflow, status, d)
    ORDER BY workflow, status
    ON CONFLICT (workflow, status, slot) DO UPDATE SET n = run_counts.n + excluded.n;
    RETURN NULL;
END
$$;

CREATE TRIGGER run_counts_update AFTER UPDATE OF status ON runs
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION sagaline_count_run_moved();
CREATE TRIGGER run_counts_delete AFTER DELETE ON runs
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sagaline_count_runs();
