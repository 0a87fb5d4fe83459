"""Workflows for the semantic-lock tests: each writes what it did to LEDGER, in order."""

from __future__ import annotations

from typing import Any

import sagaline
from sagaline import NonRetryable, RetryPolicy, step, workflow

LEDGER: list[str] = []
FAST = RetryPolicy(max_attempts=2, initial=0.01)
FLAGS: dict[str, Any] = {"fail_undo": False}


class Refused(NonRetryable):
    pass


@step(name="l.reserve", retry=FAST)
async def reserve(who: str, key: str) -> str:
    LEDGER.append(f"reserve:{who}:{key}")
    return f"r-{who}"


@reserve.compensate
async def unreserve(who: str, key: str, reservation: str) -> None:
    if FLAGS["fail_undo"]:
        raise Refused(f"cannot undo {who}")
    LEDGER.append(f"undo:{who}:{key}")


@step(name="l.explode", retry=FAST)
async def explode(who: str) -> None:
    LEDGER.append(f"explode:{who}")
    raise Refused(f"{who} exploded")


@workflow(name="l.hold")
async def hold(who: str, key: str, mode: str) -> str:
    """Takes ``key``, reserves, waits for the signal ``go`` while holding, then lets go."""
    async with sagaline.lock(key, mode="shared" if mode == "shared" else "exclusive"):
        await reserve(who, key)
        await sagaline.wait_for_signal("go")
        LEDGER.append(f"release:{who}")
    return who


@workflow(name="l.quick")
async def quick(who: str, key: str, timeout: float | None) -> str:
    async with sagaline.lock(key, timeout=timeout):
        await reserve(who, key)
    return who


@workflow(name="l.hold_then_fail")
async def hold_then_fail(who: str, key: str) -> str:
    async with sagaline.lock(key):
        await reserve(who, key)
        await sagaline.wait_for_signal("go")
        await explode(who)
    return who


@workflow(name="l.pair")
async def pair(who: str, first: str, second: str) -> str:
    """Holds ``first``, waits for ``go``, then asks for ``second`` too (deadlock tests)."""
    async with sagaline.lock(first):
        await reserve(who, first)
        await sagaline.wait_for_signal("go")
        async with sagaline.lock(second):
            await reserve(who, second)
    return who


@workflow(name="l.twice")
async def twice(key: str) -> str:
    await sagaline.acquire(key)
    await sagaline.acquire(key)
    return "no"


@workflow(name="l.sequence")
async def sequence(who: str, key: str) -> str:
    """The same key twice in a row: replay must not let the first release drop the second."""
    async with sagaline.lock(key):
        await reserve(who, "first")
    async with sagaline.lock(key):
        await reserve(who, "second")
        await sagaline.wait_for_signal("go")
    return who


@step(name="l.ship", pivot=True, retry=FAST)
async def ship(who: str) -> str:
    LEDGER.append(f"ship:{who}")
    return f"t-{who}"


@workflow(name="l.ship_then_fail")
async def ship_then_fail(who: str, key: str) -> str:
    async with sagaline.lock(key):
        await ship(who)
        await explode(who)
    return who
