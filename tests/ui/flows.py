"""Workflows the UI's server imports besides ``tests.http.sagas`` (``--import
tests.ui.flows``): one with a pivot, so a run page draws a pivot and a run that failed
after it (``FAILED_AFTER_PIVOT``); two that hold a semantic lock: until told to let go,
and while an order is reserved and charged (so a stuck one parks holding the key)."""

from __future__ import annotations

import sagaline
from sagaline import RetryPolicy, step, workflow
from tests.http.sagas import charge, reserve

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


@workflow(name="ui-locked")
async def locked(key: str, mode: str) -> str:
    """Takes ``key`` (``mode``: shared or exclusive), or waits for it, and holds it until
    the signal ``go``."""
    async with sagaline.lock(key, mode="shared" if mode == "shared" else "exclusive"):
        await sagaline.wait_for_signal("go")
    return key


@workflow(name="ui-locked-order")
async def locked_order(item: str) -> str:
    """Holds ``order:<item>`` while it reserves and charges, the item's text deciding as in
    ``tests.http.sagas``: ``stuck decline`` parks the run in COMPENSATION_FAILED, holding
    the key until an operator ends it."""
    async with sagaline.lock(f"order:{item}"):
        reservation = await reserve(item)
        await charge(item)
    return reservation
