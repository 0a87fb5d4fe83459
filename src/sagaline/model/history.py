"""Replay as a pure decision: given a run's recorded rows and a durable call, what happens.

Every durable call a workflow makes (a step, ``sleep``, ``wait_for_signal``, starting a
child, awaiting its result, ``patched``) goes through :meth:`History.take`: the call is
placed at the next position of the *branch* that makes it, and the row recorded at that
place (if any) decides the call's outcome. Nothing here does I/O or reads a clock, so
golden-history tests feed recorded rows in and check the decisions out.

Why branches: in ``asyncio.gather(a1_then_a2(), b1_then_b2())`` the order in which the two
branches reach their second step depends on timing, and on replay recorded steps return
at once. Numbering calls in one global sequence made replay meet ``b1`` where the first run
had ``a2``. Each task instead gets a branch path derived from the order in which tasks
started by a branch first make a durable call ("" for the workflow's own task, "1" and "2"
for the two branches above, "1.1" for a task started inside branch "1"), and a call is
keyed by (branch, position in that branch): the same on every replay, whatever the timing.
The sequence number of a row is only its storage key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sagaline.model.errors import NonDeterminismError
from sagaline.model.records import SignalRecord, StepRecord
from sagaline.model.status import StepKind, StepStatus

# Calls a workflow makes; compensations belong to unwinding and are not replayed.
_REPLAYED = frozenset(
    {
        StepKind.STEP,
        StepKind.SLEEP,
        StepKind.SIGNAL,
        StepKind.CHILD,
        StepKind.CHILD_RESULT,
        StepKind.PATCH,
        StepKind.PUBLISH,
        StepKind.LOCK,
        StepKind.UNLOCK,
    }
)


@dataclass
class Cursor:
    """One branch's place in the history: the next position, and its replay-safe time."""

    path: str
    time: float
    """What ``now()`` answers here: the end of this branch's latest recorded call (or of the
    branch's parent when it forked, or the run's start): the same on every replay."""
    pos: int = 0
    children: int = 0

    def fork(self) -> Cursor:
        """The cursor of the next task started from this branch."""
        self.children += 1
        path = f"{self.path}.{self.children}" if self.path else str(self.children)
        return Cursor(path, self.time)


@dataclass(frozen=True)
class Call:
    """Where a durable call sits: its storage key, its place, and what was recorded there."""

    seq: int
    branch: str
    pos: int
    recorded: StepRecord | None
    """The row at this place; ``None`` means the call runs for real now."""

    @property
    def key(self) -> str:
        """Stable across attempts, replays and workers (unlike ``seq`` of an unrecorded
        call, which a replay may number differently)."""
        return f"{self.branch or '0'}:{self.pos}"


def describe(kind: StepKind, name: str) -> str:
    return name if kind is StepKind.STEP else f"{kind.value} {name}"


@dataclass
class History:
    """The replayed rows of one run, consumed as the workflow makes its calls again."""

    run_id: str
    rows: dict[tuple[str, int], StepRecord] = field(default_factory=dict)
    next_seq: int = 1
    consumed: set[tuple[str, int]] = field(default_factory=set)

    @classmethod
    def of(cls, run_id: str, records: Iterable[StepRecord]) -> History:
        history = cls(run_id)
        counts: dict[str, int] = {}
        for rec in sorted(records, key=lambda r: r.seq):
            history.next_seq = max(history.next_seq, rec.seq + 1)
            if rec.kind not in _REPLAYED:
                continue
            pos = counts.get(rec.branch, 0)
            counts[rec.branch] = pos + 1
            history.rows[(rec.branch, pos)] = rec
        return history

    def peek(self, cursor: Cursor) -> StepRecord | None:
        return self.rows.get((cursor.path, cursor.pos))

    def take(self, cursor: Cursor, kind: StepKind, name: str) -> Call:
        """Place a call at the cursor's next position and say what was recorded there.

        Raises:
            NonDeterminismError: the history recorded another call at this place.
        """
        place = (cursor.path, cursor.pos)
        rec = self.rows.get(place)
        if rec is not None and (rec.kind is not kind or rec.name != name):
            raise NonDeterminismError(
                self.run_id, rec.seq, describe(rec.kind, rec.name), describe(kind, name)
            )
        cursor.pos += 1
        if rec is None:
            seq, self.next_seq = self.next_seq, self.next_seq + 1
            return Call(seq, cursor.path, place[1], None)
        self.consumed.add(place)
        if rec.status is StepStatus.RUNNING:
            return Call(rec.seq, cursor.path, place[1], None)  # was in flight: run it again
        if rec.status is not StepStatus.WAITING:
            cursor.time = max(cursor.time, rec.finished_at)
        return Call(rec.seq, cursor.path, place[1], rec)

    def patched(self, cursor: Cursor, change_id: str) -> bool | None:
        """How ``patched(change_id)`` answers at the cursor: True (marker recorded), False
        (another call recorded here: the run predates the change), None (nothing recorded:
        a new run takes the new path and records a marker)."""
        rec = self.peek(cursor)
        if rec is None:
            return None
        return rec.kind is StepKind.PATCH and rec.name == change_id

    def record(self, cursor_path: str, pos: int, rec: StepRecord) -> None:
        """A call's outcome was committed: replay within this execution sees it too."""
        self.rows[(cursor_path, pos)] = rec
        self.consumed.add((cursor_path, pos))

    def unconsumed(self) -> StepRecord | None:
        """A recorded call the workflow did not reach: the code changed under the run."""
        left = [rec for place, rec in self.rows.items() if place not in self.consumed]
        return min(left, key=lambda rec: rec.seq) if left else None


def take_signal(signals: list[SignalRecord], name: str) -> SignalRecord | None:
    """The oldest unconsumed signal of this name, removed from ``signals``."""
    for i, signal in enumerate(signals):
        if signal.name == name:
            return signals.pop(i)
    return None
