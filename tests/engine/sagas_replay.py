"""Workflows for the replay tests: their code can be "changed" between two engines."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pydantic

from sagaline import StepDef, step, workflow

VERSION = {"v": 1}
OBSERVED: list[Any] = []
GATE: dict[str, asyncio.Event] = {}
EXECUTED: list[str] = []


class Money(msgspec.Struct):
    cents: int
    currency: str


class Customer(pydantic.BaseModel):
    name: str
    tier: int


@step(name="r.a")
async def step_a(key: str) -> Money:
    EXECUTED.append("a")
    return Money(100, "EUR")


@step(name="r.b")
async def step_b(key: str) -> Money:
    EXECUTED.append("b")
    return Money(200, "EUR")


@step(name="r.customer")
def customer(key: str) -> Customer:
    EXECUTED.append("customer")
    return Customer(name=key, tier=2)


@step(name="r.gated")
async def gated(key: str) -> dict[str, list[int]]:
    EXECUTED.append("gated")
    await GATE[key].wait()
    return {"k": [1, 2]}


def _make_changing(return_type: type) -> StepDef[[str], Any]:
    async def changing(key: str) -> Any:
        EXECUTED.append("changing")
        return 7

    changing.__annotations__["return"] = return_type
    return step(name="r.changing")(changing)


CHANGING = {"step": _make_changing(int)}


def change_result_type(return_type: type) -> None:
    CHANGING["step"] = _make_changing(return_type)


@workflow(name="r.versioned")
async def versioned(key: str) -> str:
    money = await (step_a(key) if VERSION["v"] == 1 else step_b(key))
    who = await customer(key)
    OBSERVED.append((money, who))
    await gated(key)
    return f"{who.name}:{money.cents}"


@workflow(name="r.changing")
async def changing_wf(key: str) -> int:
    value: int = await CHANGING["step"](key)
    await gated(key)
    return value


@workflow(name="r.unencodable")
async def unencodable(key: str) -> None:
    await takes_anything(object())


@step(name="r.takes_anything")
async def takes_anything(thing: Any) -> None:
    EXECUTED.append("takes_anything")
