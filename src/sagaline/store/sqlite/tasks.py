"""Task rows on SQLite: each function runs inside the store's write transaction.

SQLite has one writer at a time (``BEGIN IMMEDIATE``), so a task's completion and its run's
own commits are serialised without row locks: the run's suspension either sees the result
(``finished_epoch``) or is already suspended and gets woken by it.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Collection
from typing import Any

from sagaline.model.records import NewEvent, StepRecord
from sagaline.model.status import RunStatus
from sagaline.store.protocol import (
    TASK_CLAIMED,
    TASK_DONE,
    TASK_WAITING,
    NewTask,
    TaskFinish,
    TaskRecord,
)
from sagaline.store.queries import load_queries
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
            "data": json.dumps(event.data),
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
        **_STATES,
    }
    if conn.execute(_Q["insert_task"], params).rowcount:
        conn.execute(_Q["insert_step_if_new"], _step_params(task.run_id, row))
        _event(conn, task.run_id, event)
    return True


def claim_tasks(
    conn: sqlite3.Connection,
    queue: str,
    worker: str,
    limit: int,
    run_statuses: Collection[RunStatus],
) -> list[TaskRecord]:
    now = _now(conn)
    params: dict[str, Any] = {
        "queue": queue,
        "now": now,
        "limit": limit,
        "run_statuses": json.dumps([s.value for s in run_statuses]),
        **_STATES,
    }
    ids = [r[0] for r in conn.execute(_Q["due_tasks"], params).fetchall()]
    claimed = []
    for task_id in ids:
        token = secrets.token_urlsafe(24)
        claim = {"id": task_id, "token": token, "worker": worker, "now": now, **_STATES}
        conn.execute(_Q["claim_task"], claim)
        claimed.append(task_from_row(conn.execute(_Q["select_task"], {"id": task_id}).fetchone()))
    return claimed


def any_due(conn: sqlite3.Connection, queue: str, run_statuses: Collection[RunStatus]) -> bool:
    """Whether a claim would find something: read-only, so that workers long-polling an
    empty queue do not take the file's write lock again and again."""
    params: dict[str, Any] = {
        "queue": queue,
        "now": _now(conn),
        "limit": 1,
        "run_statuses": json.dumps([s.value for s in run_statuses]),
        **_STATES,
    }
    return conn.execute(_Q["due_tasks"], params).fetchone() is not None


def heartbeat_task(conn: sqlite3.Connection, task_id: str, token: str) -> tuple[float, bool] | None:
    key = {"id": task_id, "token": token, **_STATES}
    if not conn.execute(_Q["heartbeat_task"], {**key, "now": _now(conn)}).rowcount:
        return None
    row = conn.execute(_Q["task_run"], key).fetchone()
    return float(row["lease_until"]), bool(row["cancel_requested"])


def finish_task(
    conn: sqlite3.Connection,
    task_id: str,
    token: str,
    finish: TaskFinish,
    run_statuses: Collection[RunStatus],
) -> bool:
    key = {"id": task_id, "token": token, **_STATES}
    found = conn.execute(_Q["task_run"], key).fetchone()
    if found is None or RunStatus(found["status"]) not in run_statuses:
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
