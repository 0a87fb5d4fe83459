"""The compensation stack against a simple reference model, over random histories."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sagaline.model import stack
from sagaline.model.records import StepRecord
from sagaline.model.status import StepKind, StepStatus


def _step(seq: int, *, compensable: bool, pivot: bool = False, ok: bool = True) -> StepRecord:
    return StepRecord(
        seq=seq,
        name=f"s{seq}",
        kind=StepKind.STEP,
        status=StepStatus.SUCCEEDED if ok else StepStatus.FAILED,
        input=b"[]",
        output=b"null",
        error=None,
        attempts=1,
        compensable=compensable,
        pivot=pivot,
        compensates_seq=None,
        done_index=seq,
        started_at=0.0,
        finished_at=0.0,
    )


def _comp(seq: int, of: int, status: StepStatus) -> StepRecord:
    return StepRecord(
        seq=seq,
        name=f"undo{of}",
        kind=StepKind.COMPENSATION,
        status=status,
        input=None,
        output=None,
        error=None,
        attempts=1,
        compensable=False,
        pivot=False,
        compensates_seq=of,
        done_index=0,
        started_at=0.0,
        finished_at=0.0,
    )


def test_stack_is_reverse_completion_order() -> None:
    steps = [_step(1, compensable=True), _step(2, compensable=False), _step(3, compensable=True)]
    assert [r.seq for r in stack.pending_compensations(steps)] == [3, 1]


def test_pivot_seals_the_stack() -> None:
    steps = [_step(1, compensable=True), _step(2, compensable=False, pivot=True)]
    assert stack.pending_compensations(steps) == []
    assert stack.passed_pivot(steps) == "s2"


def test_failed_pivot_does_not_seal() -> None:
    steps = [_step(1, compensable=True), _step(2, compensable=False, pivot=True, ok=False)]
    assert [r.seq for r in stack.pending_compensations(steps)] == [1]


@given(
    flags=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=0, max_size=12),
    resolved=st.sets(st.integers(1, 12)),
    skipped=st.sets(st.integers(1, 12)),
)
def test_pending_compensations_match_reference(
    flags: list[tuple[bool, bool]], resolved: set[int], skipped: set[int]
) -> None:
    steps = [_step(i + 1, compensable=c, ok=ok) for i, (c, ok) in enumerate(flags)]
    seq = len(steps)
    for of in sorted(resolved | skipped):
        seq += 1
        status = StepStatus.SKIPPED if of in skipped else StepStatus.SUCCEEDED
        steps.append(_comp(seq, of, status))
    done = resolved | skipped
    expected = [i + 1 for i, (c, ok) in enumerate(flags) if c and ok and (i + 1) not in done][::-1]
    assert [r.seq for r in stack.pending_compensations(steps)] == expected
