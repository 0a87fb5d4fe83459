"""Workflows for the durable-execution tests: timers, signals, children, parallel branches,
versioning and schedules."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sagaline
from sagaline import NonRetryable, RetryPolicy, SignalTimeoutError, step, workflow

CALLS: list[str] = []
SEEN: list[Any] = []
FLAGS: dict[str, bool] = {"patched_code": False}
FAST = RetryPolicy(max_attempts=2, initial=0.01)


class Broken(NonRetryable):
    pass


@dataclass
class Approval:
    by: str
    limit: int


@step(name="d.book", retry=FAST)
async def book(key: str) -> str:
    CALLS.append(f"book:{key}")
    return f"booking-{key}"


@book.compensate
async def unbook(key: str, booking: str) -> None:
    CALLS.append(f"unbook:{key}")


@step(name="d.finish", retry=FAST)
async def finish(key: str) -> str:
    CALLS.append(f"finish:{key}")
    return f"done-{key}"


@workflow(name="d.sleeper")
async def sleeper(key: str, days: float) -> str:
    await book(key)
    before = (sagaline.now(), sagaline.uuid4())
    await sagaline.sleep(timedelta(days=days))
    SEEN.append(before)
    return await finish(key)


@workflow(name="d.approval")
async def approval(key: str, timeout_s: float) -> Approval:
    await book(key)
    granted: Approval = await sagaline.wait_for_signal("approved", timeout=timeout_s, type=Approval)
    await finish(key)
    return granted


@workflow(name="d.sleep_then_signal")
async def sleep_then_signal(key: str) -> str:
    await sagaline.sleep(60)
    payload: str = await sagaline.wait_for_signal("go", type=str)
    return payload


@workflow(name="d.two_waits")
async def two_waits(key: str) -> list[str]:
    first: str = await sagaline.wait_for_signal("item", type=str)
    try:
        second: str = await sagaline.wait_for_signal("item", timeout=10, type=str)
    except SignalTimeoutError:
        second = "timed out"
    return [first, second]


@workflow(name="d.child")
async def child(key: str, fail: bool) -> str:
    await book(key)
    if fail:
        raise Broken("child broke")
    return await finish(key)


@workflow(name="d.waiting_child")
async def waiting_child(key: str) -> str:
    await book(key)
    value: str = await sagaline.wait_for_signal("never", type=str)
    return value


@workflow(name="d.parent")
async def parent(key: str, fail_child: bool) -> str:
    await book(key)
    handle = await sagaline.start_child(child, f"{key}-c", fail_child)
    try:
        result = await handle.result()
    except sagaline.RunFailedError as exc:
        return f"child {exc.status.value}"
    return f"parent got {result}"


@workflow(name="d.parent_of_waiter")
async def parent_of_waiter(key: str) -> str:
    await book(key)
    handle = await sagaline.start_child(waiting_child, f"{key}-w", run_id=f"{key}-child")
    return await handle.result()


@step(name="d.branch", retry=FAST)
async def branch(name: str, delay: float, fail: bool) -> str:
    CALLS.append(f"start:{name}")
    await asyncio.sleep(delay)
    if fail:
        CALLS.append(f"fail:{name}")
        raise Broken(f"branch {name} failed")
    CALLS.append(f"end:{name}")
    return name


@branch.compensate
async def undo_branch(name: str, delay: float, fail: bool, result: str) -> None:
    CALLS.append(f"undo:{name}")


@workflow(name="d.parallel")
async def parallel(fail_b: bool) -> list[str]:
    results = await asyncio.gather(
        branch("a", 0.0, False), branch("b", 0.1, fail_b), branch("c", 0.4, False)
    )
    return list(results)


@step(name="d.fraud_check", retry=FAST)
async def fraud_check(key: str) -> bool:
    CALLS.append(f"fraud:{key}")
    return True


@workflow(name="d.versioned")
async def versioned(key: str) -> str:
    if FLAGS["patched_code"] and sagaline.patched("fraud-check"):
        await fraud_check(key)
    await book(key)
    await sagaline.sleep(3600)
    return await finish(key)


@workflow(name="d.every_five", schedule="*/5 * * * *", queue="scheduled")
async def every_five() -> str:
    CALLS.append("tick")
    return "tick"
