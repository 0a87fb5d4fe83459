"""Workflows the UI's server imports besides ``tests.http.sagas`` (``--import
tests.ui.flows``): one with a pivot, so a run page draws a pivot and a run that failed
after it (``FAILED_AFTER_PIVOT``)."""

from __future__ import annotations

from sagaline import RetryPolicy, step, workflow

ONCE = RetryPolicy(max_attempts=1)


@step(name="ui.pack", retry=ONCE)
async def pack(item: str) -> str:
    return f"box-of-{item}"


@pack.compensate(retry=ONCE)
async def unpack(item: str, box: str) -> None:
    pass


@step(name="ui.ship", pivot=True)
async def ship(item: str) -> str:
    return f"shipped {item}"


@step(name="ui.notify", retry=RetryPolicy(max_attempts=2, initial=0.01))
async def notify(item: str) -> None:
    if "lost" in item:
        raise RuntimeError(f"no address for {item}")


@workflow(name="ui-shipping")
async def shipping(item: str) -> str:
    await pack(item)
    shipped = await ship(item)
    await notify(item)
    return shipped
