"""Records as JSON documents: what the API returns, shaped here and nowhere else.

Pure functions of the records and the timeline model. A caller without payload access gets
each payload's shape (its JSON types) in place of its values.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from sagaline.model import stack, timeline
from sagaline.model.codec import describe
from sagaline.model.records import EventRecord, RunRecord, SignalRecord, StepRecord

Json = dict[str, Any]


def when(ts: float | None) -> str | None:
    """A Unix time as RFC 3339 in UTC (``2025-01-31T12:00:00.123456Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def shape(value: Any) -> Any:
    """A JSON value with every scalar replaced by its type name: structure, no values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string"


def payload(data: bytes | None, values: bool) -> Any:
    """Stored JSON bytes as a JSON value (or its shape); an encrypted payload as a string
    saying so (``"<encrypted with key 'k1'>"``): views never hold keys."""
    if data is None:
        return None
    sealed = describe(data)
    if sealed is not None:
        return f"<{sealed}>"
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None if values else "null"
    return value if values else shape(value)


def run_summary(run: RunRecord) -> Json:
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "status": run.status.value,
        "queue": run.queue,
        "created_at": when(run.created_at),
        "updated_at": when(run.updated_at),
        "wake_at": when(run.wake_at),
        "parent_run_id": run.parent_run_id,
        "cancel_requested": run.cancel_requested,
        "error": run.error,
    }


def step(rec: StepRecord, values: bool) -> Json:
    return {
        "seq": rec.seq,
        "name": rec.name,
        "kind": rec.kind.value,
        "status": rec.status.value,
        "attempts": rec.attempts,
        "error": rec.error,
        "started_at": when(rec.started_at),
        "finished_at": when(rec.finished_at),
        "pivot": rec.pivot,
        "compensable": rec.compensable,
        "compensates_seq": rec.compensates_seq,
        "branch": rec.branch,
        "input": payload(rec.input, values),
        "output": payload(rec.output, values),
    }


def compensation_stack(steps: list[StepRecord]) -> Json:
    """What is left to undo, next first, and where unwinding stopped (if it did)."""
    failed = stack.failed_compensation(steps)
    return {
        "sealed_by_pivot": stack.passed_pivot(steps),
        "pending": [
            {"seq": rec.seq, "name": rec.name, "kind": rec.kind.value}
            for rec in stack.pending_compensations(steps)
        ],
        "failed": None
        if failed is None
        else {
            "seq": failed.seq,
            "name": failed.name,
            "compensates_seq": failed.compensates_seq,
            "attempts": failed.attempts,
            "error": failed.error,
        },
    }


def run_detail(
    run: RunRecord,
    steps: list[StepRecord],
    events: Sequence[EventRecord],
    children: Sequence[RunRecord],
    signals: Sequence[SignalRecord],
    values: bool,
) -> Json:
    view = timeline.build(run, events)
    return {
        **run_summary(run),
        "input": payload(run.input, values),
        "output": payload(run.output, values),
        "steps": [step(rec, values) for rec in steps],
        "compensation_stack": compensation_stack(steps),
        "children": [
            {"run_id": c.run_id, "workflow": c.workflow, "status": c.status.value} for c in children
        ],
        "signals": [
            {
                "id": s.id,
                "name": s.name,
                "sent_at": when(s.sent_at),
                "payload": payload(s.payload, values),
            }
            for s in signals
        ],
        "timeline": [
            {
                "at": when(entry.at),
                "offset_ms": entry.offset_ms,
                "type": entry.type,
                "subject": entry.subject,
                "detail": entry.detail,
                "seq": entry.seq,
                "data": record.data,
            }
            for entry, record in zip(view.entries, events, strict=True)
        ],
    }
