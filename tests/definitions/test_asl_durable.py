"""ASL machines on the durable engine: the order saga, tasks, waits, branches, storage."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sagaline import Engine, RunFailedError, RunStatus
from sagaline.definitions.asl import AslError, TaskRequest, load, register_resource
from sagaline.definitions.asl.resources import unregister_resource
from sagaline.worker_process import import_modules

DEADLINE = 30.0
EXAMPLE = Path(__file__).parents[2] / "examples" / "asl" / "order.py"


def _example() -> ModuleType:
    """The example module, imported as ``--import examples/asl/order.py`` imports it (its
    steps are registered once per process, whichever test imports it first)."""
    import_modules([str(EXAMPLE)])
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == str(EXAMPLE):
            return module
    raise AssertionError("the example module was not imported")


@pytest.fixture
def order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = _example()
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setattr(module, "LEDGER", str(ledger))
    return module


def _actions(module: ModuleType) -> list[str]:
    path = Path(module.LEDGER)
    if not path.exists():
        return []
    return [json.loads(line)["action"] for line in path.read_text().splitlines()]


ORDER = {"order_id": "o-1", "sku": "book", "amount": 30, "card": "ok"}


async def test_order_saga_ships_and_returns_the_receipt(engine: Engine, order: ModuleType) -> None:
    handle = await engine.start(order.order_saga, ORDER, run_id="asl-happy")
    receipt = await asyncio.wait_for(handle.result(), DEADLINE)
    assert receipt == {
        "order_id": "o-1",
        "payment": "PAY-o-1",
        "tracking": "TRACK-o-1",
        "summary": "order o-1 shipped as TRACK-o-1",
    }
    assert _actions(order) == ["create_order", "reserve_inventory", "charge_payment", "ship_order"]
    names = [s.name for s in await engine.steps("asl-happy")]
    assert names == [f"asl_order.{a}" for a in _actions(order)]


async def test_declined_payment_routes_to_compensation_states_in_reverse(
    engine: Engine, order: ModuleType
) -> None:
    handle = await engine.start(order.order_saga, {**ORDER, "card": "declined"}, run_id="asl-no")
    with pytest.raises(RunFailedError):
        await asyncio.wait_for(handle.result(), DEADLINE)
    assert _actions(order) == [
        "create_order",
        "reserve_inventory",
        "charge_payment",
        "release_inventory",
        "cancel_order",
    ]
    run = await engine.get_run("asl-no")
    assert run.status is RunStatus.FAILED
    assert "PaymentDeclined" in json.dumps(run.error)


async def test_the_definition_is_stored_with_the_run(engine: Engine, order: ModuleType) -> None:
    await asyncio.wait_for(
        (await engine.start(order.order_saga, ORDER, run_id="asl-stored")).result(), DEADLINE
    )
    stored = json.loads((await engine.get_run("asl-stored")).input)
    assert stored[0] == ORDER
    assert stored[1] == json.loads(EXAMPLE.with_name("order_saga.json").read_text())


WAITS = {
    "StartAt": "Fan",
    "States": {
        "Fan": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 0, "End": True}}},
                {
                    "StartAt": "Each",
                    "States": {
                        "Each": {
                            "Type": "Map",
                            "ItemsPath": "$.items",
                            "MaxConcurrency": 2,
                            "ItemProcessor": {
                                "StartAt": "Call",
                                "States": {
                                    "Call": {
                                        "Type": "Task",
                                        "Resource": "arn:test:double",
                                        "End": True,
                                    }
                                },
                            },
                            "End": True,
                        }
                    },
                },
            ],
            "End": True,
        }
    },
}


async def test_parallel_map_and_resource_handlers_run_as_recorded_steps(engine: Engine) -> None:
    async def double(request: TaskRequest) -> Any:
        return request.payload * 2

    register_resource("arn:test:double", double)
    try:
        machine = load(WAITS, name="asl-test.waits")
        handle = await engine.start(machine, {"items": [1, 2, 3]}, run_id="asl-fan")
        assert await asyncio.wait_for(handle.result(), DEADLINE) == [
            {"items": [1, 2, 3]},
            [2, 4, 6],
        ]
    finally:
        unregister_resource("arn:test:double")
    kinds = [s.name for s in await engine.steps("asl-fan")]
    assert kinds.count("sagaline.asl.resource") == 3


SLOW = {
    "StartAt": "Slow",
    "States": {
        "Slow": {
            "Type": "Task",
            "Resource": "arn:test:slow",
            "TimeoutSeconds": 1,
            "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}],
            "End": True,
        },
        "TimedOut": {"Type": "Pass", "End": True},
    },
}


async def test_a_task_past_its_timeout_fails_with_states_timeout(engine: Engine) -> None:
    async def slow(request: TaskRequest) -> Any:
        await asyncio.sleep(30)

    register_resource("arn:test:slow", slow)
    try:
        handle = await engine.start(load(SLOW, name="asl-test.slow"), {}, run_id="asl-slow")
        out = await asyncio.wait_for(handle.result(), DEADLINE)
    finally:
        unregister_resource("arn:test:slow")
    assert out["Error"] == "States.Timeout"


def test_an_invalid_definition_is_refused_with_its_problems() -> None:
    from sagaline.model.errors import DefinitionError

    with pytest.raises(DefinitionError, match="/States/A/Next"):
        load({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}}, name="asl-bad")


def test_asl_error_keeps_null_fields_in_its_output() -> None:
    assert AslError("X").output() == {"Error": "X", "Cause": None}
