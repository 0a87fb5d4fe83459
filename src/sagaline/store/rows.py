"""Rows to records, for every dialect: sqlite3.Row and asyncpg.Record both map by name.

Integers SQLite uses for booleans and memoryviews for blobs are normalised here.
"""

from __future__ import annotations

import json
from typing import Any

from sagaline.model.records import EventRecord, OutboxMessage, RunRecord, StepRecord
from sagaline.model.status import RunStatus, StepKind, StepStatus


def run_from_row(row: Any) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        workflow=row["workflow"],
        status=RunStatus(row["status"]),
        input=bytes(row["input"]),
        output=None if row["output"] is None else bytes(row["output"]),
        error=None if row["error"] is None else json.loads(row["error"]),
        queue=row["queue"],
        owner=row["owner"],
        lease_epoch=row["lease_epoch"],
        cancel_requested=bool(row["cancel_requested"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        wake_at=row["wake_at"],
        parent_run_id=row["parent_run_id"],
    )


def step_from_row(row: Any) -> StepRecord:
    return StepRecord(
        seq=row["seq"],
        name=row["name"],
        kind=StepKind(row["kind"]),
        status=StepStatus(row["status"]),
        input=None if row["input"] is None else bytes(row["input"]),
        output=None if row["output"] is None else bytes(row["output"]),
        error=None if row["error"] is None else json.loads(row["error"]),
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
    return EventRecord(
        id=row["id"],
        run_id=row["run_id"],
        at=row["at"],
        type=row["type"],
        seq=row["seq"],
        data=json.loads(row["data"]),
    )


def outbox_from_row(row: Any) -> OutboxMessage:
    return OutboxMessage(
        id=row["id"],
        topic=row["topic"],
        body=bytes(row["body"]),
        headers=json.loads(row["headers"]),
        at=row["created_at"],
        run_id=row["run_id"],
    )
