"""``@step(transactional=True)``, on every store: one commit for the user's SQL, the
step's outbox rows and its checkpoint; a failed attempt leaves nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sagaline import Transaction, step
from sagaline.model.errors import DefinitionError
from tests.conftest import MakeEngine
from tests.engine import sagas_transactional as t


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    t.ATTEMPTS.clear()
    t.FAIL_FIRST["on"] = False
    yield


async def test_the_steps_sql_its_event_and_its_result_commit_together(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        handle = await engine.start(t.transactional_order, "A-1", run_id="tx-1")
        assert await asyncio.wait_for(handle.result(), 30) == [3, 1]
        assert await engine.outbox_size() == 1  # no bus here: the event waits, kept
        history = [e.type for e in await engine.history("tx-1")]
        assert history.count("EventPublished") == 1
        assert history.count("StepSucceeded") == 2


async def test_a_failed_attempt_rolls_its_sql_and_its_events_back(
    make_engine: MakeEngine,
) -> None:
    t.FAIL_FIRST["on"] = True
    async with make_engine() as engine:
        handle = await engine.start(t.transactional_order, "B-1", run_id="tx-2")
        # A second INSERT of the same key would violate the primary key had the first
        # attempt's row survived; only one event waits in the outbox.
        assert await asyncio.wait_for(handle.result(), 30) == [3, 1]
        assert t.ATTEMPTS == ["B-1", "B-1"]
        assert await engine.outbox_size() == 1
        steps = await engine.steps("tx-2")
        assert [(s.status.value, s.attempts) for s in steps] == [("SUCCEEDED", 2), ("SUCCEEDED", 1)]


def test_a_transactional_step_must_take_the_transaction_first() -> None:
    with pytest.raises(DefinitionError, match="first parameter receives the transaction"):

        @step(transactional=True)  # type: ignore[arg-type]  # the mistake under test
        def not_async(tx: Transaction) -> None: ...


async def test_a_slow_transactional_step_is_recorded_once_and_never_runs_again(
    make_engine: MakeEngine,
) -> None:
    async with make_engine() as engine:
        handle = await engine.start(t.transactional_then_sleep, "S-1", run_id="tx-slow")
        assert await asyncio.wait_for(handle.result(), 30) == "S-1"
        assert t.ATTEMPTS == ["S-1"]  # the replay after the sleep did not run it again
        steps = [s for s in await engine.steps("tx-slow") if s.kind.value == "step"]
        assert [(s.status.value, s.attempts) for s in steps] == [("SUCCEEDED", 1)]
