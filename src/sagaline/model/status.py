"""Run and step statuses, and which ones a worker, an operator or a caller acts on."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"
    FAILED_AFTER_PIVOT = "FAILED_AFTER_PIVOT"
    BLOCKED = "BLOCKED"
    """Parked because the code no longer matches the run's recorded history."""

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_parked(self) -> bool:
        """Waiting for a person: ``retry``, ``skip`` or ``cancel``."""
        return self in PARKED

    @property
    def is_settled(self) -> bool:
        """Nothing more happens without an operator: what ``handle.result()`` waits for."""
        return self in TERMINAL or self in PARKED


TERMINAL = frozenset(
    {RunStatus.COMPLETED, RunStatus.COMPENSATED, RunStatus.FAILED, RunStatus.CANCELLED}
)
PARKED = frozenset({RunStatus.COMPENSATION_FAILED, RunStatus.FAILED_AFTER_PIVOT, RunStatus.BLOCKED})
# Statuses a worker claims and drives forward (SUSPENDED ones once they are due).
ACTIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.COMPENSATING})


class StepStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    WAITING = "WAITING"
    """A timer, signal or child the run is suspended on (or, unwinding, a child it undoes)."""
    RUNNING = "RUNNING"
    """A step in flight: written before a pivot starts (so a cancel can be refused while it
    runs) and for a step that runs long (so it is visible). Replay runs it again."""
    SKIPPED = "SKIPPED"
    """A failed compensation an operator marked as resolved by hand."""


class StepKind(StrEnum):
    STEP = "step"
    COMPENSATION = "compensation"
    SLEEP = "sleep"
    SIGNAL = "signal"
    CHILD = "child"
    """Starting a child workflow: recorded so that it happens once."""
    CHILD_RESULT = "child_result"
    PUBLISH = "publish"
    """An event a workflow published: recorded so that replay does not publish it again."""
    PATCH = "patch"
    """A version marker: this run took the code path of a named change."""
    LOCK = "lock"
    """Taking a semantic lock on a business key; WAITING while others hold it."""
    UNLOCK = "unlock"
    """Releasing a semantic lock before the run ends: recorded so that replay does not
    release a later holding of the same key."""
