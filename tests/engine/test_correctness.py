"""Scenarios a new user writes that once lost money: each accepted cancel honoured,
children undone with their parent, parallel branches replayed, stable idempotency keys.

Every test runs on SQLite and PostgreSQL (the ``make_engine`` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from sagaline import Engine, InvalidOperationError, RunFailedError, RunStatus
from sagaline.model.records import Checkpoint, CommitResult
from sagaline.store import open_store
from sagaline.store.protocol import Store
from sagaline.testing import FakeClock
from tests.conftest import MakeEngine
from tests.engine import sagas_correctness as c

DEADLINE = 30.0


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    for table in (c.LEDGER, c.KEYS):
        table.clear()
    for mapping in (c.GATES, c.STARTED, c.FLAKY):
        mapping.clear()
    yield
    for gate in c.GATES.values():
        gate.set()


def gate(key: str) -> asyncio.Event:
    c.GATES[key] = asyncio.Event()
    c.STARTED[key] = asyncio.Event()
    return c.GATES[key]


async def started(key: str) -> None:
    await asyncio.wait_for(c.STARTED[key].wait(), DEADLINE)


async def settled(engine: Engine, run_id: str) -> RunStatus:
    return (await engine.wait(run_id, timeout=DEADLINE)).status


async def logged(entry: str) -> None:
    async def check() -> None:
        while entry not in c.LEDGER:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(check(), DEADLINE)


async def cancel_flag_set(engine: Engine, run_id: str) -> None:
    async def check() -> None:
        while not (await engine.get_run(run_id)).cancel_requested:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(check(), DEADLINE)


# Cancelled through the engine that executes the run (which also learns of it in memory),
# or through a client engine of another process (which only writes the flag).
BY = pytest.mark.parametrize("by", ["worker", "client"])


@BY
async def test_cancel_while_the_last_step_runs_compensates_it_too(
    make_engine: MakeEngine, by: str
) -> None:
    async with make_engine() as worker, make_engine(worker=False) as client:
        release = gate("b")
        await worker.start(c.two_charges, "a", "b", run_id="r1")
        await started("b")
        await (worker if by == "worker" else client).cancel("r1")
        release.set()
        assert await settled(worker, "r1") is RunStatus.CANCELLED
    assert c.LEDGER == ["charge:a", "charge:b", "refund:b", "refund:a"]


@BY
async def test_cancel_during_a_retry_backoff_starts_no_further_attempt(
    make_engine: MakeEngine, by: str
) -> None:
    async with make_engine() as worker, make_engine(worker=False) as client:
        await worker.start(c.backoff, "a", run_id="r2")
        await logged("try:a")
        await asyncio.sleep(0.1)  # inside the 30 s backoff
        loop = asyncio.get_running_loop()
        asked = loop.time()
        await (worker if by == "worker" else client).cancel("r2")
        assert await settled(worker, "r2") is RunStatus.CANCELLED
        assert loop.time() - asked < 10.0  # the backoff was cut short, not waited out
    assert c.LEDGER == ["charge:a", "try:a", "refund:a"]


async def test_cancel_while_the_pivot_runs_is_refused_and_names_it(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        release = gate("ship-me")
        await engine.start(c.pivot, "a", "ship-me", run_id="r3")
        await started("ship-me")
        with pytest.raises(InvalidOperationError, match=r"pivot step 'c\.ship'.*forward"):
            await engine.cancel("r3")
        release.set()
        assert await settled(engine, "r3") is RunStatus.COMPLETED
        events = [e.type for e in await engine.history("r3")]
    assert "CancelRequested" not in events
    assert c.LEDGER == ["charge:a", "ship:ship-me"]


async def test_cancel_accepted_before_the_pivot_keeps_it_from_starting(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        release = gate("a")
        await engine.start(c.pivot, "a", "never-shipped", run_id="r4")
        await started("a")
        await engine.cancel("r4")
        release.set()
        assert await settled(engine, "r4") is RunStatus.CANCELLED
    assert c.LEDGER == ["charge:a", "refund:a"]


async def test_a_completed_child_is_compensated_when_its_parent_fails(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        await engine.start(c.parent, "k", run_id="p1")
        assert await settled(engine, "p1") is RunStatus.COMPENSATED
        children = [r for r in await engine.list_runs(limit=100) if r.parent_run_id == "p1"]
        assert [r.status for r in children] == [RunStatus.COMPENSATED]
    # reverse completion order, the child's own compensation interleaved
    assert c.LEDGER == [
        "charge:k-p1",
        "charge:k-c1",
        "charge:k-p2",
        "charge:fail-k-p3",
        "refund:k-p2",
        "refund:k-c1",
        "refund:k-p1",
    ]


async def test_a_running_child_is_cancelled_when_its_parent_fails(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        release_child = gate("k-c1")
        release_parent = gate("fail-k-p2")
        await engine.start(c.parent_running_child, "k", run_id="p2")
        await started("k-c1")
        await started("fail-k-p2")
        release_parent.set()  # the parent fails while its child is inside a step

        await cancel_flag_set(engine, "p2/2")
        release_child.set()  # the child's step ends, is recorded, then the child unwinds
        assert await settled(engine, "p2") is RunStatus.COMPENSATED
        kid = await engine.get_run("p2/2")
        assert kid.status is RunStatus.CANCELLED
    assert c.LEDGER.count("charge:k-c1") == 1
    assert c.LEDGER.index("refund:k-c1") < c.LEDGER.index("refund:k-p1")


async def test_a_child_past_its_pivot_seals_its_parent(make_engine: MakeEngine) -> None:
    async with make_engine() as engine:
        handle = await engine.start(c.parent_child_pivot, "k", run_id="p3")
        with pytest.raises(RunFailedError) as failed:
            await handle.result()
        assert failed.value.status is RunStatus.FAILED_AFTER_PIVOT
        assert (await engine.get_run("p3/2")).status is RunStatus.COMPLETED
    assert not [entry for entry in c.LEDGER if entry.startswith("refund")]


async def test_parallel_branches_of_several_steps_replay_after_a_sleep(
    make_engine: MakeEngine,
) -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    async with make_engine(clock=clock) as engine:
        await engine.start(c.branches, "k", run_id="b1")

        async def asleep() -> None:
            while (await engine.get_run("b1")).status is not RunStatus.SUSPENDED:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(asleep(), DEADLINE)
    async with make_engine(clock=clock) as engine:  # another process resumes it by replay
        clock.advance(timedelta(hours=2))
        handle = engine.handle("b1")
        assert await asyncio.wait_for(handle.result(), DEADLINE) == [
            "pay-k-a2",
            "pay-k-b2",
            "pay-k-end",
        ]
    assert sorted(c.LEDGER) == sorted(
        ["charge:k-a1", "charge:k-b1", "charge:k-a2", "charge:k-b2", "charge:k-end"]
    )


async def test_step_info_gives_one_idempotency_key_per_step_across_attempts(
    make_engine: MakeEngine,
) -> None:
    c.FLAKY["k"] = 2
    async with make_engine() as engine:
        await engine.start(c.keyed_saga, "k", run_id="i1")
        assert await settled(engine, "i1") is RunStatus.COMPENSATED
    step_keys = [k for name, _, k in c.KEYS if name == "c.keyed"]
    attempts = [a for name, a, _ in c.KEYS if name == "c.keyed"]
    comp_keys = [k for name, _, k in c.KEYS if name != "c.keyed"]
    assert attempts == [1, 2, 3]
    assert len(set(step_keys)) == 1 and step_keys[0].startswith("i1:")
    assert len(comp_keys) == 1 and comp_keys[0] != step_keys[0]


def test_step_info_outside_a_step_says_where_it_works() -> None:
    import sagaline

    with pytest.raises(sagaline.SagalineError, match="outside a running step"):
        sagaline.step_info()


async def test_a_timed_out_sync_step_never_overlaps_and_may_be_compensated(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        await engine.start(c.unknown_outcome, "u", run_id="t1")
        assert await settled(engine, "t1") is RunStatus.COMPENSATED
        steps = await engine.steps("t1")
    # attempts never overlap: each ends before the next begins, and before the refund
    assert c.LEDGER == [
        "charge:u-first",
        "begin:u",
        "end:u",
        "begin:u",
        "end:u",
        "refund:u:None",
        "refund:u-first",
    ]
    failed = next(s for s in steps if s.name == "c.slow_sync_charge")
    assert failed.error is not None and failed.error["unknown"] is True


async def test_a_long_step_is_visible_while_it_runs_and_history_is_in_time_order(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        release = gate("b")
        await engine.start(c.two_charges, "a", "b", run_id="v1")
        await started("b")

        async def visible() -> list[str]:
            while True:
                steps = await engine.steps("v1")
                running = [s.name for s in steps if s.status.value == "RUNNING"]
                if running:
                    return running
                await asyncio.sleep(0.02)

        assert await asyncio.wait_for(visible(), DEADLINE) == ["c.charge"]
        types = [e.type for e in await engine.history("v1")]
        assert types.count("StepStarted") == 2
        release.set()
        assert await settled(engine, "v1") is RunStatus.COMPLETED
        events = await engine.history("v1")
        steps = await engine.steps("v1")
    assert [s.status.value for s in steps] == ["SUCCEEDED", "SUCCEEDED"]
    times = [e.at for e in events]
    assert times == sorted(times)
    assert [e.type for e in events].count("StepStarted") == 2


async def test_an_exception_whose_str_raises_is_retried_and_caught(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        handle = await engine.start(c.sdk, "s", run_id="e1")
        assert await asyncio.wait_for(handle.result(), DEADLINE) == (
            "caught tests.engine.sagas_correctness.SdkError"
        )
        failed = [e for e in await engine.history("e1") if e.type == "StepFailed"]
    assert c.LEDGER == ["sdk:s"] * 3  # retried per its policy
    assert "message unavailable" in failed[0].data["error"]["message"]


async def test_a_signal_payload_that_no_longer_decodes_parks_the_run(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        await engine.start(c.typed_signal, "s", run_id="g1")
        await engine.signal("g1", "amount", "not a number")
        run = await engine.wait("g1", timeout=DEADLINE)
    assert run.status is RunStatus.BLOCKED
    assert run.error is not None and "signal 'amount'" in run.error["message"]


async def test_cancelling_a_parent_cancels_and_compensates_its_child(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        release = gate("k-c1")
        await engine.start(c.parent_waits, "k", run_id="p4")
        await started("k-c1")
        await engine.cancel("p4")

        await cancel_flag_set(engine, "p4/2")
        release.set()
        assert await settled(engine, "p4") is RunStatus.CANCELLED
        assert (await engine.get_run("p4/2")).status is RunStatus.CANCELLED
    assert c.LEDGER.index("refund:k-c1") < c.LEDGER.index("refund:k-p1")


class _CancelJustBeforeSuspending:
    """Lands a cancel from another client between a run's last step and its suspension.

    That cancel finds the run RUNNING, so it wakes nothing; the suspension that follows
    must not put the run to sleep on it (it once did, and the cancel was ignored until the
    awaited signal or child arrived)."""

    def __init__(self, inner: Store, client: Engine, run_id: str) -> None:
        self._inner, self._client, self._run_id = inner, client, run_id
        self.url = inner.url
        self.cancelled = False

    async def commit(self, batch: Sequence[Checkpoint]) -> list[CommitResult]:
        suspending = any(
            cp.run_id == self._run_id
            and cp.change is not None
            and cp.change.status is RunStatus.SUSPENDED
            for cp in batch
        )
        if suspending and not self.cancelled:
            self.cancelled = True
            await self._client.cancel(self._run_id, reason="changed my mind", by="test")
        return await self._inner.commit(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_cancel_that_lands_just_before_the_run_suspends_is_honoured(
    make_engine: MakeEngine, store_url: str
) -> None:
    async with make_engine(worker=False) as client:
        wrapper = _CancelJustBeforeSuspending(open_store(store_url), client, "s9")
        async with make_engine(store=cast(Store, wrapper)) as worker:
            await worker.start(c.typed_signal, "k-s9", run_id="s9")
            assert await settled(worker, "s9") is RunStatus.CANCELLED
        assert wrapper.cancelled
    assert "refund:k-s9" in c.LEDGER
