"""A run as a timeline: one pure model that the CLI renders now and the API and UI later.

Each entry is what happened, when (offset from the first event), to which step, and a
one-line detail, all derived from the typed events alone, so every surface shows a run the
same way. User text (error messages, reasons) is carried as data, never interpreted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sagaline.model import events as ev
from sagaline.model.records import EventRecord, RunRecord


@dataclass(frozen=True)
class Entry:
    at: float
    offset_ms: float
    type: str
    subject: str
    """The step or compensation (or child, signal) the event is about; "" for the run."""
    detail: str
    seq: int | None


@dataclass(frozen=True)
class Timeline:
    run_id: str
    workflow: str
    status: str
    entries: list[Entry]


UNDECODABLE = "Undecodable"
"""The type a store gives a row it read but could not decode (damaged data), in a list:
``data`` holds the stored ``type`` and the ``reason``; no event is ever written so."""


def short_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def build(run: RunRecord, events: Sequence[EventRecord]) -> Timeline:
    start = events[0].at if events else run.created_at
    entries = [_entry(e, start) for e in events]
    return Timeline(run.run_id, run.workflow, run.status.value, entries)


def _entry(e: EventRecord, start: float) -> Entry:
    offset_ms = round((e.at - start) * 1000, 1)
    if e.type == UNDECODABLE:  # shown as such; the timeline goes on past it
        stored = str(e.data.get("type", "?"))
        reason = f"undecodable: {e.data.get('reason', '')}"
        return Entry(e.at, offset_ms, stored, "", reason, e.seq)
    return Entry(e.at, offset_ms, e.type, subject(e.event), detail(e.event), e.seq)


def subject(event: ev.Event) -> str:
    match event:
        case ev.CompensationSucceeded() | ev.CompensationAttemptFailed() | ev.CompensationFailed():
            return short_name(event.compensation)
        case ev.CompensationSkipped():
            return short_name(event.compensation)
        case (
            ev.StepStarted()
            | ev.StepSucceeded()
            | ev.StepAttemptFailed()
            | ev.StepFailed()
            | ev.CompensationStarted()
        ):
            return short_name(event.step)
    return ""


def _error(error: ev.Error | None) -> str:
    if not error or not error.get("message"):
        return ""
    text = f"{short_name(str(error.get('type', '')))}: {error['message']}"
    if error.get("unknown"):
        text += " (outcome unknown)"
    return text


def _when(ts: float) -> str:
    return f"until {datetime.fromtimestamp(ts, UTC):%Y-%m-%d %H:%M:%S} UTC"


def detail(event: ev.Event) -> str:
    """One line about the event, for people."""
    parts: list[str] = []
    match event:
        case ev.StepAttemptFailed() | ev.CompensationAttemptFailed():
            parts += [_error(event.error), f"attempt {event.attempt}, retry in {event.retry_in} s"]
        case ev.StepSucceeded() | ev.CompensationSucceeded():
            if event.attempts > 1:
                parts.append(f"{event.attempts} attempts")
        case ev.StepFailed() | ev.CompensationFailed():
            parts.append(_error(event.error))
            if event.attempts > 1:
                parts.append(f"{event.attempts} attempts")
        case (
            ev.RunFailed()
            | ev.RunFailedAfterPivot()
            | ev.RunBlocked()
            | ev.RunCompensated()
            | ev.RunCompensating()
        ):
            parts.append(_error(event.error))
        case ev.RunCancelled():
            parts.append(_error(event.error))
            if event.pivot:
                parts.append(f"past its pivot {event.pivot}: nothing undone")
            parts += _who(event.by, event.reason)
        case ev.RunSuspended():
            parts.append("waiting on " + ", ".join(event.waits))
            if event.wake_at:
                parts.append(_when(event.wake_at))
        case ev.TimerFired():
            parts.append(f"due {datetime.fromtimestamp(event.due, UTC):%Y-%m-%d %H:%M:%S} UTC")
        case ev.SignalReceived() | ev.SignalConsumed() | ev.SignalTimedOut():
            parts.append(f"signal {event.signal}")
        case ev.ChildStarted():
            parts.append(f"child {event.child}")
        case ev.ChildFinished():
            parts.append(f"child {event.child} {event.status}")
        case ev.CompensationStarted() if event.child:
            parts.append(f"child {event.child}")
        case ev.UndoRequested():
            parts.append(f"by parent {event.parent}")
        case ev.RunClaimed():
            parts.append(f"by worker {event.owner} (lease epoch {event.epoch})")
        case ev.CompensationSkipped():
            parts += [f"reason: {event.reason}", f"by: {event.by}"]
        case ev.CancelRequested() | ev.RunRetried():
            parts.append(f"from {event.status}")
            parts += _who(event.by, event.reason)
        case ev.EventPublished():
            parts.append(f"{event.topic} (message {event.message_id})")
        case ev.Unknown():
            parts.append(f"(an event this version does not know: {event.data})")
    return "; ".join(p for p in parts if p)


def _who(by: str | None, reason: str | None) -> list[str]:
    return [text for text in (reason and f"reason: {reason}", by and f"by: {by}") if text]
