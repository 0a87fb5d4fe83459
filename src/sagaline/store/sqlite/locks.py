"""Semantic locks on SQLite: each function runs inside the store's write transaction.

SQLite has one writer at a time (``BEGIN IMMEDIATE``), so a lock's queue is read and
changed without row locks, and a wait that is answered while its run still runs is found
by that run's suspension in the same epoch (``answered_epoch``, read by ``newer_signal``).
"""

from __future__ import annotations

import json
import sqlite3

from sagaline.model import events as ev
from sagaline.model import locks as lk
from sagaline.model.records import NewEvent, StepRecord
from sagaline.model.status import RunStatus, StepStatus
from sagaline.store.queries import load_queries
from sagaline.store.sqlite import batch as _batch

_Q = load_queries("sagaline.store.sqlite")
_SUSPENDED = RunStatus.SUSPENDED.value


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


def _answer(found: sqlite3.Row | None) -> lk.LockAnswer:
    if found is None:
        return lk.LockAnswer("gone")
    if found["refused"] is not None:
        return lk.LockAnswer("deadlock")
    return lk.LockAnswer("granted" if found["granted_at"] is not None else "waiting")


def _queue(conn: sqlite3.Connection, key: str) -> list[sqlite3.Row]:
    return list(conn.execute(_Q["lock_line"], {"key": key}))


def grant(conn: sqlite3.Connection, key: str, at: float, quiet: str | None = None) -> None:
    """Grant what may be granted on ``key`` now, and wake those runs; ``quiet`` is the run
    asking in this transaction, which learns its answer directly."""
    queue = _queue(conn, key)
    runs = {r["id"]: r["run_id"] for r in queue}
    for lock_id in lk.grantable((r["id"], r["mode"], r["granted_at"] is not None) for r in queue):
        run_id = runs[lock_id]
        if run_id == quiet:
            conn.execute(_Q["grant_lock"], {"id": lock_id, "now": at})
            continue
        conn.execute(_Q["answer_lock"], {"id": lock_id, "now": at, "refused": None})
        conn.execute(_Q["wake_for_signal"], {"run_id": run_id, "at": at, "suspended": _SUSPENDED})


def _blockers(conn: sqlite3.Connection, run_id: str) -> list[str]:
    out: list[str] = []
    for wait in conn.execute(_Q["waiting_locks_of_run"], {"run_id": run_id}).fetchall():
        queue = [(r["run_id"], r["mode"]) for r in _queue(conn, wait["key"])]
        out += lk.blocking(queue, run_id, wait["mode"])
    return out


def _break_cycle(conn: sqlite3.Connection, run_id: str, at: float) -> tuple[str, ...] | None:
    """If ``run_id``'s wait closed a cycle: refuse the youngest run's waits. The cycle when
    that run is ``run_id`` itself (its wait is refused quietly), else ``None``."""
    cycle = lk.find_cycle(run_id, lambda r: _blockers(conn, r))
    if cycle is None:
        return None
    started = {
        r["run_id"]: r["created_at"]
        for r in conn.execute(_Q["run_started"], {"run_ids": json.dumps(cycle)})
    }
    loser = lk.victim(cycle, started)
    waits = conn.execute(_Q["waiting_locks_of_run"], {"run_id": loser}).fetchall()
    for wait in waits:
        if loser == run_id:  # it learns its answer here
            conn.execute(_Q["refuse_lock"], {"id": wait["id"], "refused": lk.DEADLOCK})
            continue
        conn.execute(_Q["answer_lock"], {"id": wait["id"], "now": at, "refused": lk.DEADLOCK})
        wake = {"run_id": loser, "at": at, "suspended": _SUSPENDED}
        conn.execute(_Q["wake_for_signal"], wake)
    for key in {w["key"] for w in waits}:
        grant(conn, key, at, quiet=run_id)
    return tuple(cycle) if loser == run_id else None


def request(conn: sqlite3.Connection, lock: lk.NewLock) -> lk.LockAnswer:
    """Queue ``lock``, in a checkpoint that wrote its WAITING step row (fenced already):
    granted at once turns the row SUCCEEDED."""
    mine = {"run_id": lock.run_id, "seq": lock.seq}
    found = conn.execute(_Q["lock_request"], mine).fetchone()
    if found is not None:
        return _answer(found)
    params = {"key": lock.key, "run_id": lock.run_id, "seq": lock.seq, "mode": lock.mode}
    conn.execute(_Q["insert_lock"], {**params, "at": lock.at})
    grant(conn, lock.key, lock.at, quiet=lock.run_id)
    answer = _answer(conn.execute(_Q["lock_request"], mine).fetchone())
    if answer.state == "waiting":
        cycle = _break_cycle(conn, lock.run_id, lock.at)
        if cycle is not None:
            return lk.LockAnswer("deadlock", cycle)
        answer = _answer(conn.execute(_Q["lock_request"], mine).fetchone())
    if answer.state == "granted":
        conn.execute(_Q["step_succeeded"], {**mine, "succeeded": StepStatus.SUCCEEDED.value})
        acquired = ev.LockAcquired(key=lock.key, mode=lock.mode)
        _event(conn, lock.run_id, NewEvent(acquired, lock.at, lock.seq))
        return answer
    queue = [(r["run_id"], r["mode"]) for r in _queue(conn, lock.key)]
    behind = sorted(set(lk.blocking(queue, lock.run_id, lock.mode)))
    waiting = ev.LockWaiting(key=lock.key, mode=lock.mode, behind=behind)
    _event(conn, lock.run_id, NewEvent(waiting, lock.at, lock.seq))
    return answer


def apply(
    conn: sqlite3.Connection, ops: list[lk.NewLock | lk.ReleaseLock]
) -> tuple[lk.LockAnswer, ...]:
    """A checkpoint's lock operations, in order; the answers to its requests."""
    answers = []
    for op in ops:
        if isinstance(op, lk.NewLock):
            answers.append(request(conn, op))
        else:
            conn.execute(_Q["delete_run_key_locks"], {"run_id": op.run_id, "key": op.key})
            grant(conn, op.key, op.at)
    return tuple(answers)


def answer(conn: sqlite3.Connection, run_id: str, seq: int) -> lk.LockAnswer:
    return _answer(conn.execute(_Q["lock_request"], {"run_id": run_id, "seq": seq}).fetchone())


def withdraw(
    conn: sqlite3.Connection,
    run_id: str,
    seq: int,
    owner: str,
    epoch: int,
    row: StepRecord,
    event: NewEvent,
) -> lk.LockAnswer:
    """A wait that timed out leaves the queue (``gone``) unless it was answered first."""
    if (
        conn.execute(_Q["run_lease"], {"run_id": run_id, "owner": owner, "epoch": epoch}).fetchone()
        is None
    ):
        return lk.LockAnswer("lost")
    found = conn.execute(_Q["lock_request"], {"run_id": run_id, "seq": seq}).fetchone()
    current = _answer(found)
    if current.state != "waiting":
        return current
    assert found is not None
    conn.execute(_Q["delete_lock"], {"id": found["id"]})
    grant(conn, found["key"], event.at)
    conn.execute(_Q["upsert_step"], _batch._step_params(run_id, row))
    _event(conn, run_id, event)
    return lk.LockAnswer("gone")


def release_runs(conn: sqlite3.Connection, run_ids: list[str], at: float) -> None:
    """Every lock of runs that ended goes, and what waited for them is granted."""
    for run_id in run_ids:
        keys = [r[0] for r in conn.execute(_Q["run_lock_keys"], {"run_id": run_id})]
        if not keys:
            continue
        conn.execute(_Q["delete_run_locks"], {"run_id": run_id})
        for key in sorted(keys):
            grant(conn, key, at)


def _request(r: sqlite3.Row) -> lk.LockRequest:
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


def locks_of(conn: sqlite3.Connection, key: str) -> lk.LockInfo:
    return lk.LockInfo.of(
        key, [_request(r) for r in conn.execute(_Q["locks_of_key"], {"key": key})]
    )


def list_locks(conn: sqlite3.Connection, prefix: str | None, limit: int) -> list[lk.LockRequest]:
    params = {
        "prefix": prefix,
        "prefix_end": None if prefix is None else prefix + "\U0010ffff",
        "limit": limit,
    }
    return [_request(r) for r in conn.execute(_Q["list_locks"], params)]
