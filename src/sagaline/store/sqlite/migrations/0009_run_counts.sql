-- Runs by (workflow, status), kept by triggers in the transactions that change runs, so the
-- operator views count a million runs by reading a few rows instead of scanning them all.
CREATE TABLE run_counts (
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (workflow, status)
) WITHOUT ROWID;
INSERT INTO run_counts (workflow, status, n)
SELECT workflow, status, count(*) FROM runs GROUP BY workflow, status;
CREATE TRIGGER run_counts_insert AFTER INSERT ON runs BEGIN
    INSERT INTO run_counts (workflow, status, n) VALUES (NEW.workflow, NEW.status, 1)
    ON CONFLICT (workflow, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER run_counts_update AFTER UPDATE OF status ON runs
WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE run_counts SET n = n - 1 WHERE workflow = OLD.workflow AND status = OLD.status;
    INSERT INTO run_counts (workflow, status, n) VALUES (NEW.workflow, NEW.status, 1)
    ON CONFLICT (workflow, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER run_counts_delete AFTER DELETE ON runs BEGIN
    UPDATE run_counts SET n = n - 1 WHERE workflow = OLD.workflow AND status = OLD.status;
END;
