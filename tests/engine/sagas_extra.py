"""More workflows for single tests."""

from __future__ import annotations

import asyncio

from sagaline import RetryPolicy, StepFailedError, step, workflow
from tests.engine.sagas import Plan, charge, create_order

SLOW_SEEN: set[str] = set()


@workflow(name="t.only_charge")
async def only_charge(plan: Plan) -> str:
    return await charge(plan)


@step(name="t.slow_once", timeout=0.2, retry=RetryPolicy(max_attempts=3, initial=0.01))
async def slow_step(key: str) -> str:
    if key not in SLOW_SEEN:
        SLOW_SEEN.add(key)
        await asyncio.sleep(5)
    return "done"


@workflow(name="t.slow_once")
async def slow_once(key: str) -> str:
    return await slow_step(key)


@workflow(name="t.catches")
async def catches(plan: Plan) -> str:
    await create_order(plan)
    try:
        await charge(plan)
    except StepFailedError as exc:
        return f"caught {exc.error_type.rsplit('.', 1)[-1]}: {exc.error_message}"
    return "not caught"
