"""Writing a batch of checkpoints: set-based, and one at a time when the database refuses one.

A plain batch is one statement; any other batch, one transaction of a few statements.
When the database refuses the batch for a reason of the data itself (a constraint, a
trigger, a value out of range), it is written again in one transaction with each
checkpoint under its own savepoint: the refused checkpoint is reported and leaves nothing
behind, and the others land. The set-based path pays nothing for this.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import asyncpg.exceptions as pgx

from sagaline.model.records import Checkpoint, CommitResult, OutboxMessage, StepRecord
from sagaline.model.status import RunStatus
from sagaline.store.postgres import locks
from sagaline.store.queries import load_queries
from sagaline.store.statuses import SETTLED, values

_Q = load_queries("sagaline.store.postgres")
_SETTLED = values(SETTLED)
_SUSPENDED = RunStatus.SUSPENDED.value
REFUSED: tuple[type[Exception], ...] = (
    pgx.DataError,  # class 22, and values asyncpg cannot encode (an int out of range)
    pgx.IntegrityConstraintViolationError,  # class 23
    pgx.CardinalityViolationError,  # class 21: one checkpoint writes a row twice
    pgx.ProgramLimitExceededError,  # class 54: a row too big for an index
    pgx.PLPGSQLError,  # class P0: a trigger's RAISE
)
"""What the database says about one checkpoint's data, rather than its connection or load."""


async def write(conn: asyncpg.Connection, batch: Sequence[Checkpoint]) -> list[CommitResult]:
    """The batch, atomically: one statement if it is plain, else one transaction."""
    if _fast(batch):
        return await _write_fast(conn, batch)
    async with conn.transaction():
        return await _write_steps(conn, batch)


async def write_each(conn: asyncpg.Connection, batch: Sequence[Checkpoint]) -> list[CommitResult]:
    """The batch in one transaction, each checkpoint under its own savepoint.

    A checkpoint the database refuses is reported with its reason; any other error stops
    the whole batch, as it would have stopped the set-based write.
    """
    results: list[CommitResult] = []
    async with conn.transaction():
        for cp in batch:
            one = _write_fast if _fast([cp]) else _write_steps
            try:
                async with conn.transaction():  # a savepoint
                    results += await one(conn, [cp])
            except REFUSED as exc:
                results.append(CommitResult(cp.run_id, landed=False, rejected=str(exc)))
    return results


async def _write_fast(conn: asyncpg.Connection, batch: Sequence[Checkpoint]) -> list[CommitResult]:
    rows = await conn.fetch(_Q["commit_fast"], *_fast_args(batch))
    cancel = {r["run_id"]: bool(r["cancel_requested"]) for r in rows}
    return [
        CommitResult(cp.run_id, _lands(cp, cancel), cancel.get(cp.run_id, False)) for cp in batch
    ]


async def write_checkpoints(
    conn: asyncpg.Connection, batch: Sequence[Checkpoint]
) -> list[CommitResult]:
    """The batch inside the caller's transaction (a transactional step's)."""
    return await _write_steps(conn, batch)


async def _write_steps(conn: asyncpg.Connection, batch: Sequence[Checkpoint]) -> list[CommitResult]:
    """A few set-based statements, the fence first: a checkpoint whose writer lost the
    lease matches nothing there, and nothing of it is written; nor of one that lands only
    unless the run was cancelled, when it was (the fence reads the flag from the locked row)."""
    ending = [cp.run_id for cp in batch if cp.release_locks]
    keys = [op.key for cp in batch for op in cp.lock_ops]
    if ending or keys:  # the queues' advisory locks before any run row, as everywhere
        await locks.take(conn, [*keys, *(await locks.keys_of(conn, ending) if ending else [])])
    fenced = await conn.fetch(
        _Q["fence"],
        [cp.run_id for cp in batch],
        [cp.owner for cp in batch],
        [cp.epoch for cp in batch],
        [max((ev.at for ev in cp.events), default=0.0) for cp in batch],
        [cp.unless_cancelled for cp in batch],
    )
    cancel = {r["run_id"]: bool(r["cancel_requested"]) for r in fenced}
    landed = [cp for cp in batch if _lands(cp, cancel)]
    steps = [_step_params(cp.run_id, s) for cp in landed for s in cp.steps]
    if steps:
        await conn.executemany(_Q["upsert_step"], steps)
    events = [(cp.run_id, ev.at, ev.type, ev.seq, ev.json) for cp in landed for ev in cp.events]
    if events:
        await conn.executemany(_Q["insert_event"], events)
    outbox = [m for cp in landed for m in cp.outbox]
    if outbox:
        await insert_outbox(conn, outbox)
    children = [
        (
            c.run_id,
            c.workflow,
            c.input,
            c.queue,
            c.parent_run_id,
            c.at,
            RunStatus.PENDING.value,
            c.traceparent,
        )
        for cp in landed
        for c in cp.new_runs
    ]
    if children:
        await conn.executemany(_Q["insert_child"], children)
        await conn.execute(_Q["notify"], "")
    consumed = [pair for cp in landed for pair in cp.consumed_signals]
    if consumed:
        await conn.executemany(_Q["consume_signal"], consumed)
    answers = {}
    for cp in landed:
        if cp.lock_ops:
            answers[id(cp)] = await locks.apply(conn, cp.lock_ops)
    changes = [
        (
            cp.run_id,
            cp.change.status.value,
            cp.change.output,
            None if cp.change.error is None else json.dumps(cp.change.error),
            max((ev.at for ev in cp.events), default=0.0),
            cp.change.release,
            cp.change.wake_at,
            cp.change.seen_signal_id,
            list(cp.change.awaited_runs),
            _SUSPENDED,
            _SETTLED,
            cp.change.cancel_seen,
        )
        for cp in landed
        if cp.change is not None
    ]
    if changes:
        await conn.executemany(_Q["change_run"], changes)
    settled = [
        (cp.run_id, max((ev.at for ev in cp.events), default=0.0))
        for cp in landed
        if cp.change is not None and cp.change.status.is_settled
    ]
    for run_id, at in settled:
        # Locking the parent orders this against the parent's own suspension.
        if await conn.fetchval(_Q["lock_parent"], run_id) is not None:
            await conn.execute(_Q["wake_parent"], run_id, at, _SUSPENDED)
    ended = [cp.run_id for cp in landed if cp.release_locks]
    if ended:
        at = max(max((ev.at for ev in cp.events), default=0.0) for cp in landed)
        await locks.release_runs(conn, ended, at)
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


def _fast(batch: Sequence[Checkpoint]) -> bool:
    """Whether the batch fits the one-statement commit."""
    if len({cp.run_id for cp in batch}) != len(batch):
        return False
    for cp in batch:
        if cp.new_runs or cp.consumed_signals or cp.outbox or cp.release_locks or cp.lock_ops:
            return False
        ch = cp.change
        if ch is not None and (
            ch.status is RunStatus.SUSPENDED or (ch.status.is_settled and cp.parent_run_id)
        ):
            return False
    return True


def _fast_args(batch: Sequence[Checkpoint]) -> list[Any]:
    def change(cp: Checkpoint) -> tuple[Any, ...]:
        ch = cp.change
        if ch is None:
            return (None, None, None, False)
        error = None if ch.error is None else json.dumps(ch.error)
        return (ch.status.value, ch.output, error, ch.release)

    changes = [change(cp) for cp in batch]
    steps = [_step_params(cp.run_id, s) for cp in batch for s in cp.steps]
    events = [(cp.run_id, ev.at, ev.type, ev.seq, ev.json) for cp in batch for ev in cp.events]
    columns: list[Any] = [
        [cp.run_id for cp in batch],
        [cp.owner for cp in batch],
        [cp.epoch for cp in batch],
        [max((ev.at for ev in cp.events), default=0.0) for cp in batch],
    ]
    columns += [list(col) for col in zip(*changes, strict=True)]
    columns += [list(col) for col in zip(*steps, strict=True)] if steps else [[]] * 16
    columns += [list(col) for col in zip(*events, strict=True)] if events else [[]] * 5
    columns.append([cp.unless_cancelled for cp in batch])  # $30
    return columns


def _step_params(run_id: str, s: StepRecord) -> tuple[Any, ...]:
    return (
        run_id,
        s.seq,
        s.name,
        s.kind.value,
        s.status.value,
        s.input,
        s.output,
        None if s.error is None else json.dumps(s.error),
        s.attempts,
        s.compensable,
        s.pivot,
        s.compensates_seq,
        s.done_index,
        s.started_at,
        s.finished_at,
        s.branch,
    )


async def insert_outbox(conn: asyncpg.Connection, messages: Sequence[OutboxMessage]) -> None:
    """One statement for all of them; a message id already there is kept as it is."""
    await conn.execute(
        _Q["insert_outbox"],
        [m.id for m in messages],
        [m.run_id for m in messages],
        [m.topic for m in messages],
        [json.dumps(m.headers) for m in messages],
        [m.body for m in messages],
        [m.at for m in messages],
    )
