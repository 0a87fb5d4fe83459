"""Task rows on SQLite: each function runs inside the store's write transaction.

SQLite has one writer at a time (``BEGIN IMMEDIATE``), so a task's completion and its run's
own commits are serialised without row locks: the run's suspension either sees the result
(``finished_epoch``) or is already suspended and gets woken by it.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from typing import Any

from sagaline.model.records import NewEvent, StepRecord
from sagaline.model.status import RunStatus
from sagaline.store.protocol import (
    TASK_CLAIMED,
    TASK_DONE,
    TASK_WAITING,
    NewTask,
    TaskClosing,
    TaskFinish,
    TaskRecord,
    TaskRules,
)
from sagaline.store.queries import load_queries
from sagaline.store.sqlite import rates
from sagaline.store.sqlite.batch import _step_params

_Q = load_queries("sagaline.store.sqlite")
_STATES = {"waiting": TASK_WAITING, "claimed": TASK_CLAIMED, "done": TASK_DONE}


def _now(conn: sqlite3.Connection) -> float:
    return float(conn.execute(_Q["db_now"]).fetchone()[0])


def _event(conn: sqlite3.Connection, run_id: str, event: NewEvent) -> None:
    conn.execute(
        _Q["insert_event"],
        {
            "run_id": run_id,
            "at": event.at,
            "type": event.type,
            "seq": event.seq,
            "data": event.json,
        },
    )


def task_from_row(row: sqlite3.Row) -> TaskRecord:
    data = row["input"]
    return TaskRecord(
        id=row["id"],
        run_id=row["run_id"],
        seq=row["seq"],
        step=row["step"],
        queue=row["queue"],
        status=row["status"],
        attempt=row["attempt"],
        token=row["token"],
        worker=row["worker"],
        lease_until=row["lease_until"],
        available_at=row["available_at"],
        created_at=row["created_at"],
        input=None if data is None else bytes(data),
    )


def create_task(
    conn: sqlite3.Connection,
    task: NewTask,
    row: StepRecord,
    owner: str,
    epoch: int,
    event: NewEvent,
) -> bool:
    fence = {"run_id": task.run_id, "owner": owner, "epoch": epoch}
    if conn.execute(_Q["run_lease"], fence).fetchone() is None:
        return False
    params = {
        "id": task.id,
        "run_id": task.run_id,
        "seq": task.seq,
        "step": task.step,
        "queue": task.queue,
        "lease_seconds": task.lease_seconds,
        "now": _now(conn),
        "at": task.at,
        "start_to_close": task.start_to_close,
        **_STATES,
    }
    if conn.execute(_Q["insert_task"], params).rowcount:
        conn.execute(_Q["insert_step_if_new"], _step_params(task.run_id, row))
        _event(conn, task.run_id, event)
    return True


def _due(conn: sqlite3.Connection, queue: str, limit: int, rules: TaskRules) -> dict[str, Any]:
    return {
        "queue": queue,
        "now": _now(conn),
        "limit": limit,
        "step_statuses": json.dumps([s.value for s in rules.step]),
        "compensation_statuses": json.dumps([s.value for s in rules.compensation]),
        **_STATES,
    }


def claim_tasks(
    conn: sqlite3.Connection, queue: str, worker: str, limit: int, rules: TaskRules
) -> list[TaskRecord]:
    """Up to ``limit`` due tasks of ``queue``, and no more than its rate's bucket holds
    tokens (each task claimed spends one)."""
    granted = rates.grant(conn, queue, limit)
    if granted is not None:
        limit = granted.allowed
        if limit <= 0:
            return []
    params = _due(conn, queue, limit, rules)
    now = params["now"]
    ids = [r[0] for r in conn.execute(_Q["due_tasks"], params).fetchall()]
    claimed = []
    for task_id in ids:
        token = secrets.token_urlsafe(24)
        claim = {"id": task_id, "token": token, "worker": worker, "now": now, **_STATES}
        conn.execute(_Q["claim_task"], claim)
        claimed.append(task_from_row(conn.execute(_Q["select_task"], {"id": task_id}).fetchone()))
    if granted is not None:
        rates.spend(conn, queue, granted, len(claimed))
    return claimed


def any_due(conn: sqlite3.Connection, queue: str, rules: TaskRules) -> bool:
    """Whether a claim would find something: read-only, so that workers long-polling an
    empty queue do not take the file's write lock again and again."""
    return conn.execute(_Q["due_tasks"], _due(conn, queue, 1, rules)).fetchone() is not None


def close_task(
    conn: sqlite3.Connection, task_id: str, run_id: str, owner: str, epoch: int
) -> TaskClosing:
    if (
        conn.execute(_Q["run_lease"], {"run_id": run_id, "owner": owner, "epoch": epoch}).fetchone()
        is None
    ):
        return TaskClosing("lost")
    row = conn.execute(_Q["select_task"], {"id": task_id}).fetchone()
    if row is None:
        return TaskClosing("missing")
    if row["status"] == TASK_DONE:
        return TaskClosing("answered")
    left = (row["lease_until"] or 0.0) - _now(conn)
    if row["status"] == TASK_CLAIMED and left >= 0:
        return TaskClosing("claimed", left)
    conn.execute(_Q["task_close"], {"id": task_id, "done": TASK_DONE})
    return TaskClosing("closed" if row["status"] == TASK_WAITING else "expired")


def heartbeat_task(conn: sqlite3.Connection, task_id: str, token: str) -> tuple[float, bool] | None:
    key = {"id": task_id, "token": token, **_STATES}
    if not conn.execute(_Q["heartbeat_task"], {**key, "now": _now(conn)}).rowcount:
        return None
    row = conn.execute(_Q["task_run"], key).fetchone()
    stop = row["kind"] == "step" and (bool(row["cancel_requested"]) or bool(row["unwinding"]))
    return float(row["lease_until"]), stop


def finish_task(
    conn: sqlite3.Connection,
    task_id: str,
    token: str,
    finish: TaskFinish,
    rules: TaskRules,
) -> bool:
    key = {"id": task_id, "token": token, **_STATES}
    found = conn.execute(_Q["task_run"], key).fetchone()
    if found is None or not rules.answerable(
        found["kind"], RunStatus(found["status"]), bool(found["unwinding"])
    ):
        return False
    run_id = found["run_id"]
    now = _now(conn)
    for event in finish.events:
        _event(conn, run_id, event)
    if finish.step is None:
        conn.execute(_Q["task_retry"], {**key, "now": now, "delay": finish.retry_in})
        return True
    conn.execute(_Q["upsert_step"], _step_params(run_id, finish.step))
    conn.execute(_Q["task_done"], {**key, "epoch": found["lease_epoch"]})
    at = max((e.at for e in finish.events), default=now)
    conn.execute(
        _Q["wake_for_signal"],
        {"run_id": run_id, "at": at, "suspended": RunStatus.SUSPENDED.value},
    )
    return True


def list_tasks(conn: sqlite3.Connection, queue: str | None) -> list[TaskRecord]:
    rows = conn.execute(_Q["list_tasks"], {"queue": queue, **_STATES})
    return [task_from_row(r) for r in rows]
