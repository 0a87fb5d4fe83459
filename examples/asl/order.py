"""The order saga of ``order_saga.json``, on the durable engine.

    python examples/asl/order.py sqlite:///orders.db [--start RUN_ID --input JSON]

The steps are ordinary ``@step`` functions; the machine calls them as
``sagaline:asl_order.NAME`` and routes a failure (a declined card) to the compensation
states. With ``--start`` it starts a run; it then works until every run is settled. Each
real execution of a step is appended to ``$ASL_LEDGER`` (if set), so a test can count
executions across a worker it kills; ``$ASL_KILL_IN=STEP`` kills the process (SIGKILL)
inside that step the first time it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path

from sagaline import Engine, NonRetryable, step
from sagaline.definitions.asl import load

LEDGER = os.environ.get("ASL_LEDGER")


class PaymentDeclined(NonRetryable):
    """The card was refused: not worth retrying."""


def _did(action: str, key: str) -> None:
    if LEDGER is None:
        return
    path = Path(LEDGER)
    seen = path.read_text("utf-8") if path.exists() else ""
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"action": action, "key": key}) + "\n")
    first = f'"action": "{action}"' not in seen
    if os.environ.get("ASL_KILL_IN") == action and first:
        os.kill(os.getpid(), signal.SIGKILL)


@step(name="asl_order.create_order")
def create_order(order_id: str) -> str:
    _did("create_order", order_id)
    return f"created-{order_id}"


@step(name="asl_order.reserve_inventory")
def reserve_inventory(order_id: str, sku: str) -> dict[str, str]:
    _did("reserve_inventory", order_id)
    return {"order_id": order_id, "sku": sku, "hold": f"H-{order_id}"}


@step(name="asl_order.charge_payment")
def charge_payment(order_id: str, amount: int, card: str) -> str:
    _did("charge_payment", order_id)
    if card == "declined":
        raise PaymentDeclined(f"card refused for {amount}")
    return f"PAY-{order_id}"


@step(name="asl_order.ship_order", pivot=True)
def ship_order(order_id: str) -> str:
    _did("ship_order", order_id)
    return f"TRACK-{order_id}"


@step(name="asl_order.release_inventory")
def release_inventory(reservation: dict[str, str]) -> None:
    _did("release_inventory", reservation["order_id"])


@step(name="asl_order.cancel_order")
def cancel_order(order_id: str) -> None:
    _did("cancel_order", order_id)


order_saga = load(Path(__file__).with_name("order_saga.json"), name="asl_order")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--start")
    parser.add_argument("--input", default="{}")
    args = parser.parse_args()
    async with Engine(args.db, poll_interval=0.05) as engine:
        if args.start:
            await engine.start(order_saga, json.loads(args.input), run_id=args.start)
        while True:
            runs = await engine.list_runs()
            if runs and all(run.status.is_settled for run in runs):
                for run in runs:
                    print(run.run_id, run.status.value)
                return
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main())
