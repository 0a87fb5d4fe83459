"""A run as a timeline: one pure model that the CLI renders now and the API and UI later.

Each entry is what happened, when (offset from the first event), to which step, and a
one-line detail, all derived from the typed events alone, so every surface shows a run the
same way. User text (error messages, reasons) is carried as data, never interpreted.

Every compensation event is placed under the step it undoes (the subject), with the
compensation's own name in the detail: a reader follows one step's row from ``StepStarted``
to ``CompensationSucceeded`` without knowing which function undoes which.
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


def duration(seconds: float) -> str:
    """A span as a person reads it: ``350 ms``, ``2.4 s``, ``3 min 12 s``, ``2 d 4 h``.

    Two units at most, because a run may last milliseconds or months and a column of
    milliseconds stops being readable after the first few seconds."""
    if seconds <= 0:
        return "0 ms"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    for unit, size, small, small_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "min", 60),
        ("min", 60, "s", 1),
    ):
        if whole >= size:
            rest = (whole % size) // small_size
            return f"{whole // size} {unit}" + (f" {rest} {small}" if rest else "")
    raise AssertionError("unreachable")  # pragma: no cover


def build(run: RunRecord, events: Sequence[EventRecord]) -> Timeline:
    start = events[0].at if events else run.created_at
    names = _compensations([e.event for e in events if e.type != UNDECODABLE])
    entries = [_entry(e, start, names) for e in events]
    return Timeline(run.run_id, run.workflow, run.status.value, entries)


def _compensations(events: Sequence[ev.Event]) -> dict[str, str]:
    """Step → its compensation, from the events that carry both: ``CompensationStarted``
    names only the step, ``CompensationSkipped`` only the compensation."""
    found: dict[str, str] = {}
    for event in events:
        if isinstance(
            event, ev.CompensationSucceeded | ev.CompensationAttemptFailed | ev.CompensationFailed
        ):
            found[event.step] = event.compensation
    return found


def _entry(e: EventRecord, start: float, names: dict[str, str]) -> Entry:
    offset_ms = round((e.at - start) * 1000, 1)
    if e.type == UNDECODABLE:  # shown as such; the timeline goes on past it
        stored = str(e.data.get("type", "?"))
        reason = f"undecodable: {e.data.get('reason', '')}"
        return Entry(e.at, offset_ms, stored, "", reason, e.seq)
    return Entry(e.at, offset_ms, e.type, subject(e.event, names), detail(e.event, names), e.seq)


def subject(event: ev.Event, names: dict[str, str] | None = None) -> str:
    """The step the event is about; a compensation event's is the step it undoes."""
    match event:
        case ev.CompensationSkipped():
            undoes = {c: s for s, c in (names or {}).items()}
            return short_name(undoes.get(event.compensation, event.compensation))
        case (
            ev.StepStarted()
            | ev.StepSucceeded()
            | ev.StepAttemptFailed()
            | ev.StepFailed()
            | ev.CompensationStarted()
            | ev.CompensationSucceeded()
            | ev.CompensationAttemptFailed()
            | ev.CompensationFailed()
        ):
            return short_name(event.step)
    return ""


def _via(compensation: str | None) -> str:
    return f"via {short_name(compensation)}" if compensation else ""


def _waits(waits: Sequence[str]) -> str:
    """What a suspended run waits on; stored as ``"<kind> <name>"``, and a sleep's name is
    ``sleep`` too, which read "waiting on sleep sleep"."""
    shown = []
    for wait in waits:
        kind, _, name = wait.partition(" ")
        if kind == "sleep":
            shown.append("a timer")
        elif kind == "child_result":
            shown.append(f"child {name}")
        else:
            shown.append(wait)
    return "waiting on " + ", ".join(shown)


def _error(error: ev.Error | None) -> str:
    if not error or not error.get("message"):
        return ""
    text = f"{short_name(str(error.get('type', '')))}: {error['message']}"
    if error.get("unknown"):
        text += " (outcome unknown)"
    return text


def _when(ts: float) -> str:
    return f"until {datetime.fromtimestamp(ts, UTC):%Y-%m-%d %H:%M:%S} UTC"


def detail(event: ev.Event, names: dict[str, str] | None = None) -> str:
    """One line about the event, for people; ``names``: step → compensation, as
    :func:`build` finds them, so ``CompensationStarted`` can say which one runs."""
    parts: list[str] = []
    match event:
        case ev.CompensationStarted() if not event.child:
            parts.append(_via((names or {}).get(event.step)))
        case ev.CompensationAttemptFailed():
            retry = f"attempt {event.attempt}, retry in {duration(event.retry_in)}"
            parts += [_via(event.compensation), _error(event.error), retry]
        case ev.StepAttemptFailed():
            retry = f"attempt {event.attempt}, retry in {duration(event.retry_in)}"
            parts += [_error(event.error), retry]
        case ev.CompensationSucceeded():
            parts.append(_via(event.compensation))
            if event.attempts > 1:
                parts.append(f"{event.attempts} attempts")
        case ev.StepSucceeded():
            if event.attempts > 1:
                parts.append(f"{event.attempts} attempts")
        case ev.CompensationFailed():
            parts += [_via(event.compensation), _error(event.error)]
            if event.attempts > 1:
                parts.append(f"{event.attempts} attempts")
        case ev.StepFailed():
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
            until = f" {_when(event.wake_at)}" if event.wake_at else ""
            parts.append(_waits(event.waits) + until)
        case ev.TimerFired():
            parts.append(f"due {datetime.fromtimestamp(event.due, UTC):%Y-%m-%d %H:%M:%S} UTC")
        case ev.SignalReceived() | ev.SignalConsumed() | ev.SignalTimedOut():
            parts.append(f"signal {event.signal}")
        case ev.LockWaiting():
            behind = f", behind {', '.join(event.behind)}" if event.behind else ""
            parts.append(f"lock {event.key} ({event.mode}){behind}")
        case ev.LockAcquired():
            parts.append(f"lock {event.key} ({event.mode})")
        case ev.LockReleased() | ev.LockTimedOut():
            parts.append(f"lock {event.key}")
        case ev.LockDeadlock():
            parts.append(f"lock {event.key}; cycle {' -> '.join(event.cycle)}")
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
            parts += [f"{short_name(event.compensation)} resolved by hand"]
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
