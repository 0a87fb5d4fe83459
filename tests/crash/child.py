"""A worker process for the crash tests; the tests kill it and start it again.

    python child.py DB_URL LEDGER [--start RUN_ID PLAN_JSON] [--kill-commit N [--before]]

Every real execution of a step or compensation is appended to LEDGER before the step
returns, so the test can count executions across processes. ``Plan.kill_in`` names steps
that SIGKILL their own process once (after their side effect, before their commit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from sagaline import Engine, NonRetryable, RetryPolicy, step, workflow
from sagaline.store import open_store
from sagaline.testing import CrashingStore

LEDGER = Path(os.environ.get("CRASH_LEDGER", "ledger.jsonl"))
FAST = RetryPolicy(max_attempts=3, initial=0.01, max_interval=0.05)


@dataclass
class Plan:
    order: str
    decline: bool = False
    kill_in: list[str] = field(default_factory=list)
    slow_ship: float = 0.0


@dataclass
class Reservation:
    id: str
    qty: int


class Declined(NonRetryable):
    pass


def touch(plan: Plan, action: str, value: object = None) -> None:
    with LEDGER.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"action": action, "pid": os.getpid(), "value": value}) + "\n")
    marker = LEDGER.with_name(f"{LEDGER.name}.killed-{action}")
    if action in plan.kill_in and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)


@step(name="c.create_order", retry=FAST)
def create_order(plan: Plan) -> str:
    touch(plan, "create_order")
    return plan.order


@create_order.compensate(retry=FAST)
def cancel_order(plan: Plan, order_id: str) -> None:
    touch(plan, "cancel_order", order_id)


@step(name="c.reserve", retry=FAST)
async def reserve(plan: Plan, qty: int) -> Reservation:
    touch(plan, "reserve")
    return Reservation(f"res-{plan.order}", qty)


@reserve.compensate(retry=FAST)
async def release(plan: Plan, qty: int, reservation: Reservation) -> None:
    # Decoded to the annotated types even when read back after a crash.
    assert isinstance(reservation, Reservation) and isinstance(plan, Plan)
    touch(plan, "release", msgspec.to_builtins(reservation))


@step(name="c.charge", retry=FAST)
def charge(plan: Plan) -> str:
    touch(plan, "charge")
    if plan.decline:
        raise Declined("card declined")
    return f"pay-{plan.order}"


@charge.compensate(retry=FAST)
def refund(plan: Plan, payment: str) -> None:
    touch(plan, "refund", payment)


@step(name="c.ship", pivot=True, retry=FAST)
def ship(plan: Plan) -> str:
    touch(plan, "ship")
    marker = LEDGER.with_name(f"{LEDGER.name}.slow")
    if plan.slow_ship and not marker.exists():
        marker.touch()
        time.sleep(plan.slow_ship)
    return f"track-{plan.order}"


@workflow(name="c.order")
async def order(plan: Plan) -> str:
    order_id = await create_order(plan)
    reservation = await reserve(plan, 3)
    payment = await charge(plan)
    tracking = await ship(plan)
    return f"{order_id}/{reservation.id}/{payment}/{tracking}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--start", nargs=2, metavar=("RUN_ID", "PLAN_JSON"))
    parser.add_argument("--kill-commit", type=int)
    parser.add_argument("--before", action="store_true")
    args = parser.parse_args()
    store = open_store(args.db)
    if args.kill_commit:
        store = CrashingStore(store, args.kill_commit, before=args.before).as_store()
    async with Engine(store=store, poll_interval=0.05) as engine:
        if args.start:
            run_id, plan_json = args.start
            await engine.start(order, msgspec.json.decode(plan_json, type=Plan), run_id=run_id)
        while True:
            runs = await engine.list_runs()
            if runs and all(run.status.is_settled for run in runs):
                return
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main())
