"""Writing a batch of checkpoints: set-based, and one at a time when the database refuses one.

A batch is one transaction. When the database refuses part of it for a reason of the data
itself (a constraint, a trigger, a value too big), the batch is written again with each
checkpoint under its own savepoint, still in one transaction: the refused checkpoint is
reported and leaves nothing behind, and the others land. The set-based path pays nothing
for this.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from sagaline.model.records import (
    Checkpoint,
    CommitResult,
    OutboxMessage,
    RunChange,
    StepRecord,
)
from sagaline.model.status import RunStatus
from sagaline.store.queries import load_queries
from sagaline.store.sqlite import locks
from sagaline.store.statuses import SETTLED, values

_Q = load_queries("sagaline.store.sqlite")
_SETTLED = json.dumps(values(SETTLED))
REFUSED: tuple[type[Exception], ...] = (sqlite3.IntegrityError, sqlite3.DataError, OverflowError)
"""What the database (or the driver binding a value) says about one checkpoint's data."""


def write_each(conn: sqlite3.Connection, batch: Sequence[Checkpoint]) -> list[CommitResult]:
    """The batch, each checkpoint under its own savepoint; a refused one is reported.

    Any other error stops the whole batch, as it would have stopped the set-based write.
    """
    results = []
    for cp in batch:
        conn.execute("SAVEPOINT checkpoint")
        try:
            results += write_batch(conn, [cp])
        except REFUSED as exc:
            conn.execute("ROLLBACK TO checkpoint")
            results.append(CommitResult(cp.run_id, landed=False, rejected=str(exc)))
        conn.execute("RELEASE checkpoint")
    return results


def _at(cp: Checkpoint) -> float:
    return max((ev.at for ev in cp.events), default=0.0)


def write_batch(conn: sqlite3.Connection, batch: Sequence[Checkpoint]) -> list[CommitResult]:
    """The whole batch in a handful of set-based statements.

    The fence goes first: a checkpoint whose writer lost the lease matches nothing there,
    and nothing of it is written; nor of one that lands only unless the run was cancelled,
    when it was (the fence reads the flag in this transaction).
    """
    at = {id(cp): _at(cp) for cp in batch}  # each checkpoint's time, read five times below
    keys = json.dumps(
        [[cp.run_id, cp.owner, cp.epoch, at[id(cp)], int(cp.unless_cancelled)] for cp in batch]
    )
    cancel = {row[0]: bool(row[1]) for row in conn.execute(_Q["fence"], {"batch": keys})}
    landed = [cp for cp in batch if _lands(cp, cancel)]
    steps = [_step_params(cp.run_id, step) for cp in landed for step in cp.steps]
    if steps:
        conn.executemany(_Q["upsert_step"], steps)
    events = [
        {
            "run_id": cp.run_id,
            "at": ev.at,
            "type": ev.type,
            "seq": ev.seq,
            "data": ev.json,
        }
        for cp in landed
        for ev in cp.events
    ]
    if events:
        conn.executemany(_Q["insert_event"], events)
    outbox = [outbox_params(m) for cp in landed for m in cp.outbox]
    if outbox:
        conn.executemany(_Q["insert_outbox"], outbox)
    children = [
        {
            "run_id": c.run_id,
            "workflow": c.workflow,
            "input": c.input,
            "queue": c.queue,
            "parent_run_id": c.parent_run_id,
            "at": c.at,
            "pending": RunStatus.PENDING.value,
            "traceparent": c.traceparent,
        }
        for cp in landed
        for c in cp.new_runs
    ]
    if children:
        conn.executemany(_Q["insert_child"], children)
    consumed = [{"id": i, "seq": seq} for cp in landed for i, seq in cp.consumed_signals]
    if consumed:
        conn.executemany(_Q["consume_signal"], consumed)
    answers = {id(cp): locks.apply(conn, cp.lock_ops) for cp in landed if cp.lock_ops}
    changes = []
    for cp in landed:
        ch = cp.change
        if ch is None:
            continue
        changes.append(
            {
                "run_id": cp.run_id,
                "status": ch.status.value,
                "output": ch.output,
                "error": None if ch.error is None else json.dumps(ch.error),
                "release": int(ch.release),
                "wake_at": _wake_at(conn, cp.run_id, ch, at[id(cp)], cancel.get(cp.run_id, False)),
                "at": at[id(cp)],
            }
        )
    if changes:
        conn.executemany(_Q["change_run"], changes)
    settled = [
        {"run_id": cp.run_id, "at": at[id(cp)], "suspended": RunStatus.SUSPENDED.value}
        for cp in landed
        if cp.change is not None and cp.change.status.is_settled
    ]
    if settled:
        conn.executemany(_Q["wake_parent"], settled)
    ended = [cp.run_id for cp in landed if cp.release_locks]
    if ended:
        locks.release_runs(conn, ended, max(at[id(cp)] for cp in landed))
    return [
        CommitResult(
            cp.run_id,
            _lands(cp, cancel),
            cancel.get(cp.run_id, False),
            None,
            answers.get(id(cp), ()),
        )
        for cp in batch
    ]


def _lands(cp: Checkpoint, cancel: dict[str, bool]) -> bool:
    """Whether the fence let ``cp`` through: its writer holds the lease (the run is in
    ``cancel``, the fence's answer), and no cancel bars a checkpoint that must lose to one."""
    return cp.run_id in cancel and not (cp.unless_cancelled and cancel[cp.run_id])


def _wake_at(
    conn: sqlite3.Connection, run_id: str, ch: RunChange, at: float, cancelled: bool
) -> float | None:
    """When a suspending run is due: at once if what it waits for arrived meanwhile, or if
    a cancel was accepted while it still ran (that cancel woke nothing: the run was not
    asleep yet, and it must not sleep through it)."""
    if ch.status is not RunStatus.SUSPENDED:
        return None
    if cancelled and not ch.cancel_seen:
        return at
    seen = {"run_id": run_id, "seen": ch.seen_signal_id}
    if conn.execute(_Q["newer_signal"], seen).fetchone() is not None:
        return at
    awaited = {"run_ids": json.dumps(list(ch.awaited_runs)), "settled": _SETTLED}
    if ch.awaited_runs and conn.execute(_Q["settled_run"], awaited).fetchone() is not None:
        return at
    return ch.wake_at


def _step_params(run_id: str, s: StepRecord) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "seq": s.seq,
        "name": s.name,
        "kind": s.kind.value,
        "status": s.status.value,
        "input": s.input,
        "output": s.output,
        "error": None if s.error is None else json.dumps(s.error),
        "attempts": s.attempts,
        "compensable": int(s.compensable),
        "pivot": int(s.pivot),
        "compensates_seq": s.compensates_seq,
        "done_index": s.done_index,
        "started_at": s.started_at,
        "finished_at": s.finished_at,
        "branch": s.branch,
    }


def outbox_params(m: OutboxMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "run_id": m.run_id,
        "topic": m.topic,
        "headers": json.dumps(m.headers),
        "body": m.body,
        "at": m.at,
    }
