"""The fences a cancel relies on, on every backend: a checkpoint that lands only unless the
run was cancelled, and a cancel accepted only while no pivot step runs or is done.

Both are checked by the database in the same transaction as the write they guard.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from sagaline.model import events as ev
from sagaline.model.records import (
    Checkpoint,
    NewEvent,
    NewRun,
    OperatorChange,
    RunChange,
    StepRecord,
)
from sagaline.model.status import RunStatus, StepKind, StepStatus
from sagaline.store import open_store
from sagaline.store.protocol import Store
from tests.store.poison import poison

OWNER = "worker-1"
LIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED})


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = open_store(store_url)
    await store.open()
    yield store
    await store.aclose()


async def claimed(store: Store, *run_ids: str) -> None:
    """Runs born claimed by OWNER (epoch 1), as a worker's own starts are."""
    batch = [(NewRun(r, "wf", b"{}", "default", 100.0), OWNER) for r in run_ids]
    created = await store.create_runs(batch, lease_seconds=60)
    assert all(run.owner == OWNER and run.lease_epoch == 1 for run, _ in created)


def a_step(
    seq: int,
    status: StepStatus = StepStatus.SUCCEEDED,
    pivot: bool = False,
    kind: StepKind = StepKind.STEP,
) -> StepRecord:
    return StepRecord(
        seq=seq,
        name="shop.charge",
        kind=kind,
        status=status,
        input=b'["a"]',
        output=None if status is StepStatus.RUNNING else b'{"id": 7}',
        error=None,
        attempts=1,
        compensable=not pivot,
        pivot=pivot,
        compensates_seq=None,
        done_index=seq,
        started_at=101.0,
        finished_at=101.0 if status is StepStatus.RUNNING else 101.5,
    )


def completion(
    run_id: str, *, unless_cancelled: bool = True, epoch: int = 1, parent: str | None = None
) -> Checkpoint:
    """A run's last step and its completion, releasing the lease. With ``parent`` the settling
    run has a parent to wake, which takes PostgreSQL's general path instead of its
    one-statement one."""
    return Checkpoint(
        run_id,
        OWNER,
        epoch,
        steps=[a_step(1)],
        events=[
            NewEvent(ev.StepStarted(step="shop.charge"), 101.0, 1),
            NewEvent(ev.StepSucceeded(step="shop.charge", attempts=1), 101.5, 1),
            NewEvent(ev.RunCompleted(), 102.0),
        ],
        change=RunChange(RunStatus.COMPLETED, output=b'"done"', release=True),
        parent_run_id=parent,
        unless_cancelled=unless_cancelled,
    )


def pivot_start(run_id: str) -> Checkpoint:
    """The commit written just before a pivot step starts: its row, RUNNING."""
    return Checkpoint(
        run_id,
        OWNER,
        1,
        steps=[a_step(1, StepStatus.RUNNING, pivot=True)],
        events=[NewEvent(ev.StepStarted(step="shop.charge"), 101.0, 1)],
        unless_cancelled=True,
    )


def cancel(run_id: str, unless_pivot: bool = False) -> OperatorChange:
    event = NewEvent(ev.CancelRequested(status="RUNNING"), 101.2)
    return OperatorChange(run_id, LIVE, event, request_cancel=True, unless_pivot=unless_pivot)


async def snapshot(store: Store, run_id: str) -> tuple[object, ...]:
    return (
        await store.load_run(run_id),
        await store.load_steps(run_id),
        await store.read_events(run_id),
    )


PATHS = pytest.mark.parametrize("parent", [None, "parent-1"], ids=["one-statement", "general"])


@PATHS
async def test_a_fenced_completion_lands_when_no_cancel_came(
    store: Store, parent: str | None
) -> None:
    await claimed(store, "r1")
    (result,) = await store.commit([completion("r1", parent=parent)])
    assert result.landed and not result.cancel_requested and result.rejected is None
    run = await store.load_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED and run.owner is None
    assert run.output == b'"done"'
    assert [s.seq for s in await store.load_steps("r1")] == [1]
    types = [e.type for e in await store.read_events("r1")]
    assert types == ["RunStarted", "StepStarted", "StepSucceeded", "RunCompleted"]


@PATHS
async def test_a_fenced_completion_loses_to_a_cancel_and_writes_nothing(
    store: Store, parent: str | None
) -> None:
    await claimed(store, "r1")
    assert await store.operate(cancel("r1")) is not None
    before = await snapshot(store, "r1")

    (result,) = await store.commit([completion("r1", parent=parent)])

    assert not result.landed and result.cancel_requested and result.rejected is None
    # Not a step, an event, the run's change or even the fence's touch of updated_at.
    assert await snapshot(store, "r1") == before
    run = await store.load_run("r1")
    assert run is not None and run.status is RunStatus.RUNNING and run.owner == OWNER


async def test_a_fenced_pivot_start_loses_to_a_cancel(store: Store) -> None:
    await claimed(store, "r1")
    await store.operate(cancel("r1"))
    before = await snapshot(store, "r1")
    (result,) = await store.commit([pivot_start("r1")])
    assert not result.landed and result.cancel_requested
    assert await snapshot(store, "r1") == before


async def test_a_refused_checkpoint_starts_no_child_and_consumes_no_signal(store: Store) -> None:
    """Children and signals take PostgreSQL's general path."""
    await claimed(store, "r1")
    await store.send_signal("r1", "go", b"1", 100.5, LIVE)
    (signal,) = await store.load_signals("r1")
    await store.operate(cancel("r1"))
    before = await snapshot(store, "r1")
    cp = pivot_start("r1")
    cp.new_runs = [NewRun("child-1", "wf", b"{}", "default", 101.0, parent_run_id="r1")]
    cp.consumed_signals = [(signal.id, 1)]
    (result,) = await store.commit([cp])
    assert not result.landed and result.cancel_requested
    assert await snapshot(store, "r1") == before
    assert await store.load_run("child-1") is None
    assert await store.load_signals("r1") == [signal]


@PATHS
async def test_an_unfenced_checkpoint_still_lands_after_a_cancel(
    store: Store, parent: str | None
) -> None:
    await claimed(store, "r1")
    await store.operate(cancel("r1"))
    (result,) = await store.commit([completion("r1", unless_cancelled=False, parent=parent)])
    assert result.landed and result.cancel_requested
    run = await store.load_run("r1")
    assert run is not None and run.status is RunStatus.COMPLETED
    assert [s.seq for s in await store.load_steps("r1")] == [1]


@PATHS
@pytest.mark.parametrize("cancelled", [False, True], ids=["no-cancel", "cancelled"])
async def test_a_lost_lease_is_reported_as_such_even_when_fenced(
    store: Store, parent: str | None, cancelled: bool
) -> None:
    await claimed(store, "r1")
    if cancelled:
        await store.operate(cancel("r1"))
    before = await snapshot(store, "r1")
    (result,) = await store.commit([completion("r1", epoch=0, parent=parent)])
    assert not result.landed and not result.cancel_requested and result.rejected is None
    assert await snapshot(store, "r1") == before


@PATHS
async def test_a_refused_checkpoint_does_not_affect_its_batch(
    store: Store, parent: str | None
) -> None:
    await claimed(store, "cancelled", "plain", "fenced", "stale")
    await store.operate(cancel("cancelled"))
    before = await snapshot(store, "cancelled")
    batch = [
        completion("plain", unless_cancelled=False, parent=parent),
        completion("cancelled", parent=parent),
        completion("fenced", parent=parent),
        completion("stale", epoch=0, parent=parent),
    ]
    results = {r.run_id: r for r in await store.commit(batch)}
    assert results["plain"].landed and results["fenced"].landed
    assert not results["cancelled"].landed and results["cancelled"].cancel_requested
    assert not results["stale"].landed and not results["stale"].cancel_requested
    assert await snapshot(store, "cancelled") == before
    for run_id in ("plain", "fenced"):
        run = await store.load_run(run_id)
        assert run is not None and run.status is RunStatus.COMPLETED


@PATHS
async def test_the_fence_holds_when_the_batch_is_written_one_at_a_time(
    store: Store, parent: str | None
) -> None:
    """A checkpoint the database refuses sends the batch down the savepoint path."""
    await claimed(store, "bad", "cancelled", "good")
    await store.operate(cancel("cancelled"))
    before = await snapshot(store, "cancelled")
    await poison(store.url, "steps", "bad", "poisoned")
    batch = [completion(r, parent=parent) for r in ("bad", "cancelled", "good")]
    results = {r.run_id: r for r in await store.commit(batch)}
    assert results["bad"].rejected is not None and not results["bad"].landed
    assert not results["cancelled"].landed and results["cancelled"].cancel_requested
    assert results["cancelled"].rejected is None
    assert results["good"].landed
    assert await snapshot(store, "cancelled") == before


# -- a cancel is refused once a pivot runs or is done ---------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        a_step(2, StepStatus.RUNNING, pivot=True),
        a_step(2, StepStatus.SUCCEEDED, pivot=True),
        a_step(2, StepStatus.SUCCEEDED, pivot=True, kind=StepKind.CHILD_RESULT),
    ],
    ids=["pivot-running", "pivot-succeeded", "pivot-child-succeeded"],
)
async def test_a_cancel_unless_pivot_is_refused_past_a_pivot(
    store: Store, step: StepRecord
) -> None:
    await claimed(store, "r1")
    cp = Checkpoint("r1", OWNER, 1, steps=[a_step(1), step])
    assert (await store.commit([cp]))[0].landed
    before = await snapshot(store, "r1")

    assert await store.operate(cancel("r1", unless_pivot=True)) is None

    assert await snapshot(store, "r1") == before  # no flag, no event
    # Without the condition the same change applies: it is the pivot that refused it.
    run = await store.operate(cancel("r1"))
    assert run is not None and run.cancel_requested


@pytest.mark.parametrize(
    "steps",
    [
        [],
        [a_step(1)],
        [a_step(1), a_step(2, StepStatus.FAILED, pivot=True)],
        [a_step(1, StepStatus.RUNNING)],
        [a_step(1, StepStatus.RUNNING, pivot=True, kind=StepKind.CHILD_RESULT)],
        [a_step(1, StepStatus.SUCCEEDED, pivot=True, kind=StepKind.COMPENSATION)],
    ],
    ids=[
        "no-steps",
        "plain-step",
        "pivot-failed",
        "plain-running",
        "pivot-child-running",
        "pivot-compensation",
    ],
)
async def test_a_cancel_unless_pivot_applies_before_a_pivot(
    store: Store, steps: list[StepRecord]
) -> None:
    await claimed(store, "r1")
    if steps:
        assert (await store.commit([Checkpoint("r1", OWNER, 1, steps=steps)]))[0].landed

    run = await store.operate(cancel("r1", unless_pivot=True))

    assert run is not None and run.cancel_requested and run.status is RunStatus.RUNNING
    types = [e.type for e in await store.read_events("r1")]
    assert types[-1] == "CancelRequested"
    # And the run's fenced completion now loses to it.
    (result,) = await store.commit([completion("r1")])
    assert not result.landed and result.cancel_requested


async def test_unless_pivot_looks_at_the_run_s_own_steps_only(store: Store) -> None:
    await claimed(store, "past", "before")
    pivot = Checkpoint("past", OWNER, 1, steps=[a_step(1, StepStatus.SUCCEEDED, pivot=True)])
    assert (await store.commit([pivot]))[0].landed
    assert await store.operate(cancel("past", unless_pivot=True)) is None
    run = await store.operate(cancel("before", unless_pivot=True))
    assert run is not None and run.cancel_requested


async def test_unless_pivot_still_requires_a_matching_status(store: Store) -> None:
    await claimed(store, "r1")
    assert (await store.commit([completion("r1")]))[0].landed  # COMPLETED now
    assert await store.operate(msgspec.structs.replace(cancel("r1"), unless_pivot=True)) is None
