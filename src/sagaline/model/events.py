"""The audit trail's events: one tagged union of typed structs, each with its fields.

The engine builds them (the store only the three facts it alone witnesses inside its
transactions: a run created, a claim with its lease epoch, a signal kept); stores write what
they are handed, the type name as text and the fields as JSON. A stored type name never
changes and a field is only ever added with a default, so every event ever written still
decodes. :func:`decode` turns a stored row back into its struct; a type this version does
not know (written by a newer one) decodes to :class:`Unknown` rather than failing a history.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

Error: TypeAlias = dict[str, Any]
"""``{"type": ..., "message": ...}`` and, by context, ``step``, ``pivot``, ``compensation``."""


class Event(msgspec.Struct, tag_field="type", tag=True, kw_only=True, omit_defaults=True):
    """Base of every event; its class name is its stored type."""

    @property
    def type(self) -> str:
        return type(self).__name__

    def fields(self) -> dict[str, Any]:
        """The event's data as stored: JSON-ready, without the type tag."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        data.pop("type", None)
        return data


class RunStarted(Event):
    workflow: str


class RunClaimed(Event):
    owner: str
    epoch: int


class StepStarted(Event):
    step: str


class StepSucceeded(Event):
    step: str
    attempts: int


class StepAttemptFailed(Event):
    step: str
    attempt: int
    error: Error
    retry_in: float


class StepFailed(Event):
    step: str
    attempts: int
    error: Error | None = None


class RunCompleted(Event):
    pass


class RunFailed(Event):
    error: Error


class RunFailedAfterPivot(Event):
    error: Error


class RunBlocked(Event):
    error: Error


class CompensationStarted(Event):
    step: str
    child: str | None = None
    """Set when the entry undone is a child run (its own compensations run in it)."""


class CompensationSucceeded(Event):
    step: str
    compensation: str
    attempts: int


class CompensationAttemptFailed(Event):
    step: str
    compensation: str
    attempt: int
    error: Error
    retry_in: float


class CompensationFailed(Event):
    step: str
    compensation: str
    attempts: int
    error: Error | None = None


class CompensationSkipped(Event):
    compensation: str
    reason: str
    by: str


class RunCompensating(Event):
    error: Error
    steps: list[str]


class RunCompensated(Event):
    error: Error


class CancelRequested(Event):
    status: str
    by: str | None = None
    reason: str | None = None


class RunCancelled(Event):
    error: Error | None = None
    compensated: bool = True
    pivot: str | None = None
    by: str | None = None
    reason: str | None = None


class RunRetried(Event):
    status: str
    by: str | None = None
    reason: str | None = None


class RunSuspended(Event):
    waits: list[str]
    wake_at: float | None = None


class TimerFired(Event):
    due: float


class SignalReceived(Event):
    signal: str


class SignalConsumed(Event):
    signal: str


class SignalTimedOut(Event):
    signal: str


class LockWaiting(Event):
    """The run queued for a lock others hold; ``behind`` names who it waits for."""

    key: str
    mode: str
    behind: list[str] = []


class LockAcquired(Event):
    key: str
    mode: str


class LockReleased(Event):
    key: str


class LockTimedOut(Event):
    key: str


class LockDeadlock(Event):
    """The run's wait closed a cycle and it was the youngest: its wait was refused."""

    key: str
    cycle: list[str] = []


class ChildStarted(Event):
    child: str


class ChildFinished(Event):
    child: str
    status: str


class UndoRequested(Event):
    parent: str


class EventPublished(Event):
    """An event put in the outbox, in this same commit; the relay sends it to the bus."""

    topic: str
    message_id: str
    step: str | None = None


class Unknown(Event):
    """An event of a type this version does not know: ``name`` and ``data`` as stored."""

    name: str
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return self.name

    def fields(self) -> dict[str, Any]:
        return dict(self.data)


AnyEvent: TypeAlias = (
    RunStarted
    | RunClaimed
    | StepStarted
    | StepSucceeded
    | StepAttemptFailed
    | StepFailed
    | RunCompleted
    | RunFailed
    | RunFailedAfterPivot
    | RunBlocked
    | CompensationStarted
    | CompensationSucceeded
    | CompensationAttemptFailed
    | CompensationFailed
    | CompensationSkipped
    | RunCompensating
    | RunCompensated
    | CancelRequested
    | RunCancelled
    | RunRetried
    | RunSuspended
    | TimerFired
    | SignalReceived
    | SignalConsumed
    | SignalTimedOut
    | LockWaiting
    | LockAcquired
    | LockReleased
    | LockTimedOut
    | LockDeadlock
    | ChildStarted
    | ChildFinished
    | UndoRequested
    | EventPublished
)

KNOWN: frozenset[str] = frozenset(cls.__name__ for cls in AnyEvent.__args__)


def decode(type_name: str, data: dict[str, Any]) -> Event:
    """A stored event back as its struct (``Unknown`` when the type or fields do not fit)."""
    if type_name in KNOWN:
        try:
            event: Event = msgspec.convert({**data, "type": type_name}, AnyEvent)
            return event
        except msgspec.ValidationError:
            pass
    return Unknown(name=type_name, data=data)
