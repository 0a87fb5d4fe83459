"""Bad input gets a clear SagalineError that says what to do, and nothing is half-written."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sagaline import Engine, PayloadTooLargeError, RunNotFoundError, step, workflow
from sagaline.model.errors import (
    DefinitionError,
    StepOutsideWorkflowError,
    UnknownWorkflowError,
)
from sagaline.model.records import NewRun
from sagaline.store import open_store
from tests.conftest import MakeEngine
from tests.engine import sagas
from tests.engine.sagas import Plan


async def test_unknown_workflow_on_recovery_is_reported_and_left_untouched(
    store_url: str, make_engine: MakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(store_url)
    await store.open()
    await store.create_runs([(NewRun("ghost", "gone.module.wf", b"[]", "default", 1.0), None)], 10)
    await store.aclose()
    with caplog.at_level(logging.WARNING, logger="sagaline"):
        async with make_engine() as engine:
            run = await engine.get_run("ghost")
    assert "'gone.module.wf' is not registered in this process" in caplog.text
    assert "import the module that defines it" in caplog.text
    assert run.status.value == "PENDING" and run.owner is None


async def test_starting_an_unknown_workflow_name_says_what_to_import(engine: Engine) -> None:
    with pytest.raises(UnknownWorkflowError, match="import the module that defines it"):
        await engine.start("no.such.workflow")
    assert await engine.list_runs() == []


async def test_oversized_input_is_refused_before_anything_is_written(
    make_engine: MakeEngine,
) -> None:
    async with make_engine(max_payload_bytes=64) as engine:
        with pytest.raises(PayloadTooLargeError, match="over the limit of 64"):
            await engine.start(sagas.order, Plan("x" * 100))
        assert await engine.list_runs() == []


async def test_wrong_arguments_to_start_are_refused(engine: Engine) -> None:
    with pytest.raises(DefinitionError, match="bad arguments"):
        await engine.start(sagas.order, Plan("a"), "extra")


async def test_unknown_run_id_says_how_to_list_runs(engine: Engine) -> None:
    with pytest.raises(RunNotFoundError, match="sagaline runs list"):
        await engine.get_run("nope")


def test_sync_workflow_is_refused_at_definition() -> None:
    with pytest.raises(DefinitionError, match="must be an `async def`"):

        @workflow  # type: ignore[arg-type]
        def not_async() -> None:
            pass


async def test_step_awaited_outside_a_workflow_says_how_to_call_it() -> None:
    with pytest.raises(StepOutsideWorkflowError, match=r"create_order\.fn"):
        await sagas.create_order(Plan("z"))
    assert await sagas.create_order.fn(Plan("z")) == "z"


def test_step_with_var_args_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"\*args"):

        @step
        async def anything(*items: int) -> None:
            pass


def test_two_workflows_cannot_share_a_name() -> None:
    with pytest.raises(DefinitionError, match="already used"):

        @workflow(name="t.order")
        async def impostor() -> None:
            pass


def test_run_sync_inside_an_event_loop_is_refused(tmp_path: Path) -> None:
    import asyncio

    async def inside() -> None:
        Engine(f"sqlite:///{tmp_path / 'x.db'}").run_sync(sagas.order, Plan("a"))

    with pytest.raises(Exception, match="cannot be called from a running event loop"):
        asyncio.run(inside())


def test_run_sync_runs_a_saga_from_a_script(tmp_path: Path) -> None:
    engine = Engine(f"sqlite:///{tmp_path / 'sync.db'}")
    receipt = engine.run_sync(sagas.order, Plan("s1"), run_id="s1")
    assert receipt.tracking == "track-s1"
