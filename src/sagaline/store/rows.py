"""Rows to records, for every dialect: sqlite3.Row and asyncpg.Record both map by name.

Integers SQLite uses for booleans and memoryviews for blobs are normalised here. A row
whose stored text does not decode (a status no version wrote, JSON that does not parse)
raises :class:`UndecodableRowError` naming the table, the row and the field, never a bare
``ValueError``. Lists of runs and events use the ``…_or_undecodable`` readers instead,
which keep such a row in the list, marked, so one damaged row does not hide the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from sagaline.model.errors import UndecodableRowError
from sagaline.model.names import shown
from sagaline.model.records import EventRecord, OutboxMessage, RunRecord, StepRecord
from sagaline.model.status import RunStatus, StepKind, StepStatus
from sagaline.model.timeline import UNDECODABLE

T = TypeVar("T")


class UndecodableRun(RunRecord, frozen=True):
    """A runs row that did not decode, kept in a list so the rest of the list still shows.

    What decoded is kept; a status that did not is shown as BLOCKED (a person has to look
    at it) and the error says what failed. ``problem`` is the reason. Only lists hold
    these: the engine loads a run with :func:`run_from_row`, which raises.
    """

    problem: str = ""


class _Row:
    """Decodes a row's fields, turning a failure into an error naming table, row and field."""

    def __init__(self, row: Any, table: str, key: str) -> None:
        self.row = row
        self.table = table
        self.key = key

    def field(self, name: str, decode: Callable[[Any], T]) -> T:
        raw = self.row[name]
        try:
            return decode(raw)
        except (ValueError, TypeError) as exc:
            reason = f"its {name} {shown(raw)} does not decode ({exc})"
            raise UndecodableRowError(self.table, self.key, reason) from exc

    def json(self, name: str) -> Any:
        return None if self.row[name] is None else self.field(name, _json_object)


def _json_object(text: Any) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    return value


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def run_from_row(row: Any) -> RunRecord:
    r = _Row(row, "runs", f"run {shown(row['run_id'])}")
    return RunRecord(
        run_id=row["run_id"],
        workflow=row["workflow"],
        status=r.field("status", RunStatus),
        input=r.field("input", bytes),
        output=r.field("output", _blob),
        error=r.json("error"),
        queue=row["queue"],
        owner=row["owner"],
        lease_epoch=row["lease_epoch"],
        cancel_requested=bool(row["cancel_requested"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        wake_at=row["wake_at"],
        parent_run_id=row["parent_run_id"],
        traceparent=row["traceparent"],
    )


def run_or_undecodable(row: Any) -> RunRecord:
    """The run, or an :class:`UndecodableRun` saying why it is not (for lists)."""
    try:
        return run_from_row(row)
    except UndecodableRowError as exc:
        try:
            status = RunStatus(row["status"])
        except ValueError:
            status = RunStatus.BLOCKED
        return UndecodableRun(
            run_id=str(row["run_id"]),
            workflow=str(row["workflow"]),
            status=status,
            input=b"",
            output=None,
            error={"type": UNDECODABLE, "message": f"undecodable: {exc.reason}"},
            queue=str(row["queue"]),
            owner=row["owner"],
            lease_epoch=row["lease_epoch"],
            cancel_requested=bool(row["cancel_requested"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            wake_at=row["wake_at"],
            parent_run_id=row["parent_run_id"],
            traceparent=row["traceparent"],
            problem=exc.reason,
        )


def step_from_row(row: Any) -> StepRecord:
    r = _Row(row, "steps", f"run {shown(row['run_id'])}, step #{row['seq']}")
    return StepRecord(
        seq=row["seq"],
        name=row["name"],
        kind=r.field("kind", StepKind),
        status=r.field("status", StepStatus),
        input=r.field("input", _blob),
        output=r.field("output", _blob),
        error=r.json("error"),
        attempts=row["attempts"],
        compensable=bool(row["compensable"]),
        pivot=bool(row["pivot"]),
        compensates_seq=row["compensates_seq"],
        done_index=row["done_index"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        branch=row["branch"],
    )


def event_from_row(row: Any) -> EventRecord:
    r = _Row(row, "events", f"run {shown(row['run_id'])}, event {row['id']}")
    return EventRecord(
        id=row["id"],
        run_id=row["run_id"],
        at=row["at"],
        type=row["type"],
        seq=row["seq"],
        data=r.field("data", _json_object),
    )


def event_or_undecodable(row: Any) -> EventRecord:
    """The event, or one of type :data:`UNDECODABLE` saying why it is not (for lists)."""
    try:
        return event_from_row(row)
    except UndecodableRowError as exc:
        data = {"type": str(row["type"]), "reason": exc.reason}
        return EventRecord(row["id"], row["run_id"], row["at"], UNDECODABLE, row["seq"], data)


def outbox_from_row(row: Any) -> OutboxMessage:
    r = _Row(row, "outbox", f"message {shown(row['id'])}")
    return OutboxMessage(
        id=row["id"],
        topic=row["topic"],
        body=r.field("body", bytes),
        headers=r.field("headers", _json_object),
        at=row["created_at"],
        run_id=row["run_id"],
    )
