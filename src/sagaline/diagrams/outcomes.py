"""What happened to each step of one run, in the words a diagram colours it by.

The run's step records are the truth (the same rows replay reads), so the overlay needs
no events: a step's last record gives its status, and a compensation record that points
back at it (``compensates_seq``) says whether it was undone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from sagaline.model.records import StepRecord
from sagaline.model.status import StepKind, StepStatus

Outcome = Literal[
    "succeeded",
    "failed",
    "compensated",
    "compensation_failed",
    "running",
    "waiting",
    "pending",
    "skipped",
]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
"""Every outcome :func:`sagaline.diagrams.svg` can draw; a node a run has not reached is
``pending``."""
LABELS: dict[str, str] = {
    "succeeded": "succeeded",
    "failed": "failed",
    "compensated": "compensated",
    "compensation_failed": "compensation failed",
    "running": "running",
    "waiting": "waiting",
    "pending": "not run",
    "skipped": "skipped by hand",
}
"""How each outcome is written under a node's name (colour is never the only signal)."""

_BY_STATUS: dict[StepStatus, Outcome] = {
    StepStatus.SUCCEEDED: "succeeded",
    StepStatus.FAILED: "failed",
    StepStatus.RUNNING: "running",
    StepStatus.WAITING: "waiting",
    StepStatus.SKIPPED: "skipped",
}
_UNDONE: dict[StepStatus, Outcome] = {
    StepStatus.SUCCEEDED: "compensated",
    StepStatus.FAILED: "compensation_failed",
    StepStatus.RUNNING: "running",
    StepStatus.WAITING: "waiting",
    StepStatus.SKIPPED: "skipped",
}
"""A step's outcome from its compensation's status. ``skipped``: its compensation failed
and an operator marked it resolved by hand, so the engine did not undo it."""
_BOOKKEEPING = (StepKind.PUBLISH, StepKind.PATCH, StepKind.CHILD_RESULT)


def outcomes_of(step_records: Iterable[StepRecord]) -> dict[str, Outcome]:
    """Each step's and compensation's outcome in one run, by name (the graph's node names).

    A step called more than once (in a loop) shows its latest call. Publishes, patch
    markers and child results are bookkeeping and have no node, so no outcome either.
    """
    records = sorted(step_records, key=lambda r: r.seq)
    by_seq = {r.seq: r for r in records}
    outcomes: dict[str, Outcome] = {}
    for rec in records:
        if rec.kind in _BOOKKEEPING:
            continue
        outcomes[rec.name] = _BY_STATUS[rec.status]
        step = by_seq.get(rec.compensates_seq) if rec.compensates_seq is not None else None
        if rec.kind is StepKind.COMPENSATION and step is not None:
            outcomes[step.name] = _UNDONE[rec.status]
    return outcomes


def notes_of(step_records: Iterable[StepRecord]) -> dict[str, str]:
    """What a diagram writes beside an outcome, by node name: the attempts a step or
    compensation took when it took more than one (its latest call's, like the outcome)."""
    notes: dict[str, str] = {}
    for rec in sorted(step_records, key=lambda r: r.seq):
        if rec.kind in _BOOKKEEPING:
            continue
        if rec.attempts > 1:
            notes[rec.name] = f"{rec.attempts} attempts"
        else:
            notes.pop(rec.name, None)
    return notes
