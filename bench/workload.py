"""The benchmark workload: the order saga with 4 no-op steps and their compensations."""

from __future__ import annotations

from sagaline import step, workflow


@step(name="bench.create_order")
async def create_order(order_id: str) -> str:
    return order_id


@create_order.compensate
async def cancel_order(order_id: str, created: str) -> None:
    pass


@step(name="bench.reserve_inventory")
async def reserve_inventory(order_id: str) -> str:
    return f"res-{order_id}"


@reserve_inventory.compensate
async def release_inventory(order_id: str, reservation: str) -> None:
    pass


@step(name="bench.charge_payment")
async def charge_payment(order_id: str) -> str:
    return f"pay-{order_id}"


@charge_payment.compensate
async def refund_payment(order_id: str, payment: str) -> None:
    pass


@step(name="bench.ship_order", pivot=True)
async def ship_order(order_id: str) -> str:
    return f"track-{order_id}"


@workflow(name="bench.order")
async def order_saga(order_id: str) -> str:
    await create_order(order_id)
    await reserve_inventory(order_id)
    await charge_payment(order_id)
    return await ship_order(order_id)
