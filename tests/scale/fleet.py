"""Workflows run by worker processes (``sagaline worker --import tests.scale.fleet``).

Every real execution appends one line to $FLEET_LEDGER: the run, the action, the worker's
pid and when it started and ended, so the tests can check across processes and crashes.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from sagaline import NonRetryable, RetryPolicy, step, workflow

FAST = RetryPolicy(max_attempts=5, initial=0.02, max_interval=0.2)


class Declined(NonRetryable):
    pass


def _log(run: str, action: str, started: float) -> None:
    line = json.dumps(
        {"run": run, "action": action, "pid": os.getpid(), "start": started, "end": time.time()}
    )
    with open(os.environ["FLEET_LEDGER"], "a", encoding="utf-8") as f:
        f.write(line + "\n")


async def _work(run: str, action: str, seconds: float) -> None:
    started = time.time()
    await asyncio.sleep(seconds)
    _log(run, action, started)


@step(name="fleet.create_order", retry=FAST)
async def create_order(run: str, fail: bool) -> str:
    await _work(run, "create_order", 0.01)
    return run


@create_order.compensate(retry=FAST)
async def cancel_order(run: str, fail: bool, order_id: str) -> None:
    await _work(run, "cancel_order", 0.0)


@step(name="fleet.reserve", retry=FAST)
async def reserve(run: str, fail: bool) -> str:
    await _work(run, "reserve", 0.01)
    return f"res-{run}"


@reserve.compensate(retry=FAST)
async def release(run: str, fail: bool, reservation: str) -> None:
    await _work(run, "release", 0.0)


@step(name="fleet.charge", retry=FAST)
async def charge(run: str, fail: bool) -> str:
    await _work(run, "charge", 0.01)
    if fail:
        raise Declined("card declined")
    return f"pay-{run}"


@step(name="fleet.ship", pivot=True, retry=FAST)
async def ship(run: str, fail: bool) -> int:
    await _work(run, "ship", 0.01)
    return os.getpid()


@workflow(name="fleet.order")
async def order(run: str, fail: bool) -> int:
    await create_order(run, fail)
    await reserve(run, fail)
    await charge(run, fail)
    return await ship(run, fail)


@step(name="fleet.slow", retry=FAST)
async def slow(run: str) -> int:
    marker = Path(f"{os.environ['FLEET_LEDGER']}.slow-{run}")
    started = time.time()
    if not marker.exists():
        marker.touch()
        _log(run, "slow-begin", started)
        await asyncio.sleep(4.0)
    _log(run, "slow", started)
    return os.getpid()


@workflow(name="fleet.slow")
async def slow_saga(run: str) -> int:
    return await slow(run)


@step(name="fleet.hold", retry=FAST)
async def hold(run: str) -> None:
    await _work(run, "hold", 0.15)


@workflow(name="fleet.limited", queue="limited")
async def limited(run: str) -> None:
    await hold(run)


@step(name="fleet.after", retry=FAST)
async def after(run: str) -> int:
    _log(run, "after", time.time())
    return os.getpid()


@workflow(name="fleet.drainable")
async def drainable(run: str) -> list[int]:
    first = await slow(run)
    second = await after(run)
    return [first, second]
