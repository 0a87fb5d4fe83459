"""Task rows on PostgreSQL: each function runs inside a transaction the store opened.

A task's end locks its run's row before writing (``task_run``), as a signal does, and the
run's own checkpoints lock it in their fence: so a run that suspends while its task ends
either sees the result (``finished_epoch``, read by ``change_run``) or is suspended already
and gets woken by it. Claims use ``FOR UPDATE SKIP LOCKED``, so workers never queue up on
each other's tasks.
"""

from __future__ import annotations

import asyncpg

from sagaline.model.records import NewEvent, StepRecord
from sagaline.model.status import RunStatus
from sagaline.store.postgres import rates
from sagaline.store.postgres.batch import _step_params
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

_Q = load_queries("sagaline.store.postgres")


def task_from_row(row: asyncpg.Record) -> TaskRecord:
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


async def _event(conn: asyncpg.Connection, run_id: str, event: NewEvent) -> None:
    data = event.json
    await conn.execute(_Q["insert_event"], run_id, event.at, event.type, event.seq, data)


async def create_task(
    conn: asyncpg.Connection,
    task: NewTask,
    row: StepRecord,
    owner: str,
    epoch: int,
    event: NewEvent,
) -> bool:
    if await conn.fetchval(_Q["task_fence"], task.run_id, owner, epoch) is None:
        return False
    inserted = await conn.execute(
        _Q["insert_task"],
        task.id,
        task.run_id,
        task.seq,
        task.step,
        task.queue,
        TASK_WAITING,
        task.lease_seconds,
        task.at,
        task.start_to_close,
    )
    if inserted.endswith(" 1"):
        await conn.execute(_Q["insert_step_if_new"], *_step_params(task.run_id, row))
        await _event(conn, task.run_id, event)
    return True


async def claim_tasks(
    conn: asyncpg.Connection,
    queue: str,
    worker: str,
    limit: int,
    rules: TaskRules,
) -> list[TaskRecord]:
    """Up to ``limit`` due tasks of ``queue``, and no more than its rate's bucket holds
    tokens (each task claimed spends one; the bucket's row lock serialises the claims)."""
    granted = await rates.grant(conn, queue, limit)
    if granted is not None:
        limit = granted.allowed
        if limit <= 0:
            return []
    rows = await conn.fetch(
        _Q["claim_tasks"],
        queue,
        worker,
        limit,
        [s.value for s in rules.step],
        TASK_WAITING,
        TASK_CLAIMED,
        [s.value for s in rules.compensation],
    )
    if granted is not None:
        await rates.spend(conn, queue, granted, len(rows))
    return sorted((task_from_row(r) for r in rows), key=lambda t: t.available_at)


async def close_task(
    conn: asyncpg.Connection, task_id: str, run_id: str, owner: str, epoch: int
) -> TaskClosing:
    if await conn.fetchval(_Q["task_fence"], run_id, owner, epoch) is None:
        return TaskClosing("lost")
    row = await conn.fetchrow(_Q["task_for_close"], task_id)
    if row is None:
        return TaskClosing("missing")
    if row["status"] == TASK_DONE:
        return TaskClosing("answered")
    left = float(row["lease_left"] or 0.0)
    if row["status"] == TASK_CLAIMED and left >= 0:
        return TaskClosing("claimed", left)
    await conn.execute(_Q["task_close"], task_id, TASK_DONE)
    return TaskClosing("closed" if row["status"] == TASK_WAITING else "expired")


async def heartbeat_task(
    conn: asyncpg.Connection, task_id: str, token: str
) -> tuple[float, bool] | None:
    row = await conn.fetchrow(_Q["heartbeat_task"], task_id, token, TASK_CLAIMED)
    return None if row is None else (float(row[0]), bool(row[1]))


async def finish_task(
    conn: asyncpg.Connection,
    task_id: str,
    token: str,
    finish: TaskFinish,
    rules: TaskRules,
) -> bool:
    found = await conn.fetchrow(_Q["task_run"], task_id, token, TASK_CLAIMED)
    if found is None or not rules.answerable(
        found["kind"], RunStatus(found["status"]), bool(found["unwinding"])
    ):
        return False
    run_id = found["run_id"]
    for event in finish.events:
        await _event(conn, run_id, event)
    if finish.step is None:
        await conn.execute(_Q["task_retry"], task_id, TASK_WAITING, finish.retry_in)
        return True
    await conn.execute(_Q["upsert_step"], *_step_params(run_id, finish.step))
    await conn.execute(_Q["task_done"], task_id, TASK_DONE, found["lease_epoch"])
    at = max((e.at for e in finish.events), default=0.0)
    await conn.execute(_Q["wake_for_signal"], run_id, at, RunStatus.SUSPENDED.value)
    await conn.execute(_Q["notify"], "")
    return True


async def list_tasks(conn: asyncpg.Connection, queue: str | None) -> list[TaskRecord]:
    rows = await conn.fetch(_Q["list_tasks"], [TASK_WAITING, TASK_CLAIMED], queue)
    return [task_from_row(r) for r in rows]
