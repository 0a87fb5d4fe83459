"""Workflows for the correctness scenarios: cancel races, children in the saga, branches."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sagaline
from sagaline import NonRetryable, RetryPolicy, step, workflow

LEDGER: list[str] = []
GATES: dict[str, asyncio.Event] = {}
STARTED: dict[str, asyncio.Event] = {}
KEYS: list[tuple[str, int, str]] = []
FLAKY: dict[str, int] = {}


class Declined(NonRetryable):
    pass


async def _gate(key: str) -> None:
    STARTED.setdefault(key, asyncio.Event()).set()
    gate = GATES.get(key)
    if gate is not None:
        await gate.wait()


@step(name="c.charge", retry=RetryPolicy(max_attempts=3, initial=0.01))
async def charge(key: str) -> str:
    await _gate(key)
    LEDGER.append(f"charge:{key}")
    if FLAKY.get(key, 0) > 0:
        FLAKY[key] -= 1
        raise ConnectionError("gateway timeout")
    if key.startswith("fail"):
        raise Declined(f"declined {key}")
    return f"pay-{key}"


@charge.compensate
async def refund(key: str, payment: str) -> None:
    LEDGER.append(f"refund:{key}")


@step(name="c.slow_retry", retry=RetryPolicy(max_attempts=5, initial=30.0, jitter=0.0))
async def slow_retry(key: str) -> str:
    LEDGER.append(f"try:{key}")
    raise ConnectionError("try again later")


@step(name="c.ship", pivot=True)
async def ship(key: str) -> str:
    await _gate(key)
    LEDGER.append(f"ship:{key}")
    return f"track-{key}"


@step(name="c.keyed", retry=RetryPolicy(max_attempts=3, initial=0.01))
async def keyed(key: str) -> str:
    info = sagaline.step_info()
    KEYS.append((info.step, info.attempt, info.idempotency_key))
    if FLAKY.get(key, 0) > 0:
        FLAKY[key] -= 1
        raise ConnectionError("flaky")
    return key


@keyed.compensate
async def unkeyed(key: str, result: str) -> None:
    info = sagaline.step_info()
    KEYS.append((info.step, info.attempt, info.idempotency_key))


@workflow(name="c.two_charges")
async def two_charges(a: str, b: str) -> str:
    await charge(a)
    return await charge(b)


@workflow(name="c.backoff")
async def backoff(a: str) -> str:
    await charge(a)
    return await slow_retry(a)


@workflow(name="c.pivot")
async def pivot(a: str, b: str) -> str:
    await charge(a)
    return await ship(b)


@workflow(name="c.child")
async def child(key: str) -> str:
    return await charge(key)


@workflow(name="c.child_pivot")
async def child_pivot(key: str) -> str:
    await charge(key)
    return await ship(key)


@workflow(name="c.parent")
async def parent(key: str) -> str:
    await charge(f"{key}-p1")
    kid = await sagaline.start_child(child, f"{key}-c1")
    await kid.result()
    await charge(f"{key}-p2")
    return await charge(f"fail-{key}-p3")


@workflow(name="c.parent_running_child")
async def parent_running_child(key: str) -> str:
    await charge(f"{key}-p1")
    await sagaline.start_child(child, f"{key}-c1")  # not awaited: still running
    return await charge(f"fail-{key}-p2")


@workflow(name="c.parent_child_pivot")
async def parent_child_pivot(key: str) -> str:
    await charge(f"{key}-p1")
    kid = await sagaline.start_child(child_pivot, f"{key}-c1")
    await kid.result()
    return await charge(f"fail-{key}-p2")


async def _chain(first: str, second: str, delay: float) -> str:
    await charge(first)
    await asyncio.sleep(delay)  # timing differs between branches and between runs
    return await charge(second)


@workflow(name="c.branches")
async def branches(key: str) -> list[str]:
    results = await asyncio.gather(
        _chain(f"{key}-a1", f"{key}-a2", 0.05), _chain(f"{key}-b1", f"{key}-b2", 0.0)
    )
    await sagaline.sleep(timedelta(hours=1))
    return [*results, await charge(f"{key}-end")]


@workflow(name="c.keyed_saga")
async def keyed_saga(key: str) -> str:
    await keyed(key)
    return await charge(f"fail-{key}")


@step(
    name="c.slow_sync_charge",
    timeout=0.2,
    retry=RetryPolicy(max_attempts=2, initial=0.01),
    compensate_unknown=True,
)
def slow_sync_charge(key: str) -> str:
    import time

    LEDGER.append(f"begin:{key}")
    time.sleep(0.5)  # longer than its timeout: each attempt's effect is unknown
    LEDGER.append(f"end:{key}")
    return f"pay-{key}"


@slow_sync_charge.compensate
def refund_unknown(key: str, payment: str | None) -> None:
    LEDGER.append(f"refund:{key}:{payment}")


@workflow(name="c.unknown")
async def unknown_outcome(key: str) -> str:
    await charge(f"{key}-first")
    return await slow_sync_charge(key)


class SdkError(Exception):
    """Like some SDK errors: its __str__ itself fails."""

    def __str__(self) -> str:
        raise ValueError("no message for you")


@step(name="c.sdk_call", retry=RetryPolicy(max_attempts=3, initial=0.01))
async def sdk_call(key: str) -> str:
    LEDGER.append(f"sdk:{key}")
    raise SdkError()


@workflow(name="c.sdk")
async def sdk(key: str) -> str:
    try:
        return await sdk_call(key)
    except sagaline.StepFailedError as exc:
        return f"caught {exc.error_type}"


@workflow(name="c.typed_signal")
async def typed_signal(key: str) -> int:
    await charge(key)
    value: int = await sagaline.wait_for_signal("amount", type=int)
    return value


@workflow(name="c.parent_waits")
async def parent_waits(key: str) -> str:
    await charge(f"{key}-p1")
    kid = await sagaline.start_child(child, f"{key}-c1")
    return await kid.result()
