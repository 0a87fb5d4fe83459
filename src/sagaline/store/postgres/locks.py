"""Semantic locks on PostgreSQL: each function runs inside a transaction the store opened.

A transaction that changes a key's queue holds that key's advisory lock (:func:`take`,
sorted keys, before any run row), so a queue changes one transaction at a time and
uncontended keys never wait on each other. A wait that must look for a cycle takes one
more advisory lock (``lock_walk``) after writing its own wait: of two waits that close a
cycle together, the second to get it sees the first, committed. A wait answered while its
run still runs locks that run's row first (``answer_lock``), as a task's end does: the
run's suspension either sees ``answered_epoch`` or is suspended already and gets woken.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import asyncpg

from sagaline.model import events as ev
from sagaline.model import locks as lk
from sagaline.model.records import NewEvent, StepRecord
from sagaline.model.status import RunStatus, StepStatus
from sagaline.store.postgres import batch as _batch
from sagaline.store.queries import load_queries

_Q = load_queries("sagaline.store.postgres")
_SUSPENDED = RunStatus.SUSPENDED.value


async def _event(conn: asyncpg.Connection, run_id: str, event: NewEvent) -> None:
    data = event.json
    await conn.execute(_Q["insert_event"], run_id, event.at, event.type, event.seq, data)


async def _row(conn: asyncpg.Connection, run_id: str, row: StepRecord) -> None:
    await conn.execute(_Q["upsert_step"], *_batch._step_params(run_id, row))


def _answer(found: asyncpg.Record | None) -> lk.LockAnswer:
    if found is None:
        return lk.LockAnswer("gone")
    if found["refused"] is not None:
        return lk.LockAnswer("deadlock")
    return lk.LockAnswer("granted" if found["granted_at"] is not None else "waiting")


async def take(conn: asyncpg.Connection, keys: Iterable[str]) -> None:
    """The advisory locks of ``keys``, in sorted order (so transactions never wait on
    each other in a circle)."""
    for key in sorted(set(keys)):
        await conn.execute(_Q["lock_key"], key)


async def keys_of(conn: asyncpg.Connection, run_ids: list[str]) -> list[str]:
    return [r["key"] for r in await conn.fetch(_Q["run_lock_keys"], run_ids)]


async def _queue(conn: asyncpg.Connection, key: str) -> list[asyncpg.Record]:
    return list(await conn.fetch(_Q["lock_line"], key))


async def _wake(
    conn: asyncpg.Connection, lock_id: int, run_id: str, at: float, why: str | None
) -> None:
    await conn.execute(_Q["answer_lock"], lock_id, at, why, run_id)
    await conn.execute(_Q["wake_for_signal"], run_id, at, _SUSPENDED)
    await conn.execute(_Q["notify"], "")  # workers elsewhere look for due runs


async def grant(conn: asyncpg.Connection, key: str, at: float, quiet: str | None = None) -> None:
    """Grant what may be granted on ``key`` now, and wake those runs; ``quiet`` is the run
    asking in this transaction, which learns its answer directly."""
    queue = await _queue(conn, key)
    runs = {r["id"]: r["run_id"] for r in queue}
    for lock_id in lk.grantable((r["id"], r["mode"], r["granted_at"] is not None) for r in queue):
        if runs[lock_id] == quiet:
            await conn.execute(_Q["grant_lock"], lock_id, at)
        else:
            await _wake(conn, lock_id, runs[lock_id], at, None)


async def _blockers(conn: asyncpg.Connection, run_id: str) -> list[str]:
    out: list[str] = []
    for wait in await conn.fetch(_Q["waiting_locks_of_run"], run_id):
        queue = [(r["run_id"], r["mode"]) for r in await _queue(conn, wait["key"])]
        out += lk.blocking(queue, run_id, wait["mode"])
    return out


async def _find_cycle(conn: asyncpg.Connection, start: str) -> list[str] | None:
    """``lk.find_cycle`` over the database: the wait-for edges are read as it walks."""
    edges: dict[str, list[str]] = {}
    frontier = [start]
    while frontier:
        run = frontier.pop()
        if run in edges:
            continue
        edges[run] = await _blockers(conn, run)
        frontier += [b for b in edges[run] if b not in edges]
    return lk.find_cycle(start, lambda r: edges.get(r, []))


async def _try_take(conn: asyncpg.Connection, keys: list[str]) -> bool:
    for key in sorted(set(keys)):
        if not await conn.fetchval(_Q["try_lock_key"], key):
            return False
    return True


async def _break_cycle(conn: asyncpg.Connection, run_id: str, at: float) -> tuple[str, ...] | None:
    """If ``run_id``'s wait closed a cycle: refuse the youngest run's waits. The cycle when
    that run is ``run_id`` itself (its wait is refused quietly), else ``None``."""
    await conn.execute(_Q["lock_walk"])
    cycle = await _find_cycle(conn, run_id)
    if cycle is None:
        return None
    started = {r["run_id"]: r["created_at"] for r in await conn.fetch(_Q["run_started"], cycle)}
    loser = lk.victim(cycle, started)
    waits = await conn.fetch(_Q["waiting_locks_of_run"], loser)
    if loser != run_id and not await _try_take(conn, [w["key"] for w in waits]):
        # Another transaction is changing the youngest run's queues right now: rather than
        # wait for it holding this key (which could close a cycle of transactions), the
        # run that closed the cycle of waits gives way.
        loser = run_id
        waits = await conn.fetch(_Q["waiting_locks_of_run"], loser)
    for wait in waits:
        if loser == run_id:  # it learns its answer here
            await conn.execute(_Q["refuse_lock"], wait["id"], lk.DEADLOCK)
        else:
            await _wake(conn, wait["id"], loser, at, lk.DEADLOCK)
    for key in sorted({w["key"] for w in waits}):
        await grant(conn, key, at, quiet=run_id)
    return tuple(cycle) if loser == run_id else None


async def request(conn: asyncpg.Connection, lock: lk.NewLock) -> lk.LockAnswer:
    """Queue ``lock``, in a checkpoint that wrote its WAITING step row (fenced already, the
    key's advisory lock taken): granted at once turns the row SUCCEEDED."""
    acquired = ev.LockAcquired(key=lock.key, mode=lock.mode)
    granted = await conn.fetchval(
        _Q["request_lock"],
        *(lock.key, lock.run_id, lock.seq, lock.mode, lock.at, StepStatus.SUCCEEDED.value),
        *(acquired.type, json.dumps(acquired.fields())),
    )
    if granted is None:  # asked before: where it stands
        return _answer(await conn.fetchrow(_Q["lock_request"], lock.run_id, lock.seq))
    if granted:
        return lk.LockAnswer("granted")
    cycle = await _break_cycle(conn, lock.run_id, lock.at)
    if cycle is not None:
        return lk.LockAnswer("deadlock", cycle)
    answer = _answer(await conn.fetchrow(_Q["lock_request"], lock.run_id, lock.seq))
    if answer.state == "granted":  # breaking another run's cycle let this one in
        await conn.execute(_Q["step_succeeded"], lock.run_id, lock.seq, StepStatus.SUCCEEDED.value)
        await _event(conn, lock.run_id, NewEvent(acquired, lock.at, lock.seq))
        return answer
    queue = [(r["run_id"], r["mode"]) for r in await _queue(conn, lock.key)]
    behind = sorted(set(lk.blocking(queue, lock.run_id, lock.mode)))
    waiting = ev.LockWaiting(key=lock.key, mode=lock.mode, behind=behind)
    await _event(conn, lock.run_id, NewEvent(waiting, lock.at, lock.seq))
    return answer


async def apply(
    conn: asyncpg.Connection, ops: list[lk.NewLock | lk.ReleaseLock]
) -> tuple[lk.LockAnswer, ...]:
    """A checkpoint's lock operations, in order; the answers to its requests."""
    answers = []
    for op in ops:
        if isinstance(op, lk.NewLock):
            answers.append(await request(conn, op))
        elif await conn.fetchval(_Q["release_lock"], op.run_id, op.key):
            await grant(conn, op.key, op.at)
    return tuple(answers)


async def answer(conn: asyncpg.Connection, run_id: str, seq: int) -> lk.LockAnswer:
    return _answer(await conn.fetchrow(_Q["lock_request"], run_id, seq))


async def withdraw(
    conn: asyncpg.Connection,
    run_id: str,
    seq: int,
    owner: str,
    epoch: int,
    row: StepRecord,
    event: NewEvent,
) -> lk.LockAnswer:
    """A wait that timed out leaves the queue (``gone``) unless it was answered first."""
    asked = await conn.fetchrow(_Q["lock_request"], run_id, seq)
    if asked is not None:
        await take(conn, [asked["key"]])
    if await conn.fetchval(_Q["task_fence"], run_id, owner, epoch) is None:
        return lk.LockAnswer("lost")
    found = await conn.fetchrow(_Q["lock_request"], run_id, seq)
    current = _answer(found)
    if current.state != "waiting":
        return current
    assert found is not None
    await conn.execute(_Q["delete_lock"], found["id"])
    await grant(conn, found["key"], event.at)
    await _row(conn, run_id, row)
    await _event(conn, run_id, event)
    return lk.LockAnswer("gone")


async def release_runs(conn: asyncpg.Connection, run_ids: list[str], at: float) -> None:
    """Every lock of runs that ended goes, and what waited for them is granted. The caller
    took the keys' advisory locks (:func:`take`) before any run row."""
    for run_id in run_ids:
        keys = {r["key"] for r in await conn.fetch(_Q["delete_run_locks"], run_id)}
        for key in sorted(keys):
            await grant(conn, key, at)


def _request(r: asyncpg.Record) -> lk.LockRequest:
    return lk.LockRequest(
        key=r["key"],
        run_id=r["run_id"],
        seq=r["seq"],
        mode=r["mode"],
        requested_at=r["requested_at"],
        granted_at=r["granted_at"],
        refused=r["refused"],
        run_status=r["run_status"],
    )


async def locks_of(conn: asyncpg.Connection, key: str) -> lk.LockInfo:
    return lk.LockInfo.of(key, [_request(r) for r in await conn.fetch(_Q["locks_of_key"], key)])


async def list_locks(
    conn: asyncpg.Connection, prefix: str | None, limit: int
) -> list[lk.LockRequest]:
    return [_request(r) for r in await conn.fetch(_Q["list_locks"], prefix, limit)]
