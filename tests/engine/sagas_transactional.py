"""Transactional steps: the user's SQL, the step's events and its result in one commit."""

from __future__ import annotations

import asyncio

import sagaline
from sagaline import RetryPolicy, Transaction, step, workflow

FAIL_FIRST: dict[str, bool] = {"on": False}
ATTEMPTS: list[str] = []


def ph(tx: Transaction, n: int) -> str:
    return tx.placeholder(n)


@step(transactional=True, retry=RetryPolicy(max_attempts=3, initial=0.01))
async def reserve_stock(tx: Transaction, sku: str, qty: int) -> int:
    ATTEMPTS.append(sku)
    await tx.execute("CREATE TABLE IF NOT EXISTS stock_moves (sku TEXT PRIMARY KEY, qty INTEGER)")
    await tx.execute(
        f"INSERT INTO stock_moves (sku, qty) VALUES ({ph(tx, 1)}, {ph(tx, 2)})", (sku, qty)
    )
    await sagaline.publish("StockReserved", {"sku": sku, "qty": qty})
    if FAIL_FIRST["on"] and len(ATTEMPTS) == 1:
        raise RuntimeError("fails after its SQL ran (planted)")
    rows = await tx.fetch(f"SELECT qty FROM stock_moves WHERE sku = {ph(tx, 1)}", (sku,))
    return int(rows[0][0])


@step(transactional=True)
async def count_moves(tx: Transaction) -> int:
    rows = await tx.fetch("SELECT count(*) FROM stock_moves")
    return int(rows[0][0])


@workflow(name="transactional_order")
async def transactional_order(sku: str) -> list[int]:
    reserved = await reserve_stock(sku, 3)
    return [reserved, await count_moves()]


@step(transactional=True)
async def slow_insert(tx: Transaction, key: str) -> str:
    """Longer than VISIBLE_AFTER: a RUNNING marker must never overwrite its end."""
    ATTEMPTS.append(key)
    await tx.execute("CREATE TABLE IF NOT EXISTS slow_rows (k TEXT PRIMARY KEY)")
    await tx.execute(f"INSERT INTO slow_rows (k) VALUES ({ph(tx, 1)})", (key,))
    await asyncio.sleep(0.4)
    return key


@workflow(name="transactional_then_sleep")
async def transactional_then_sleep(key: str) -> str:
    done = await slow_insert(key)
    await sagaline.sleep(0.3)  # suspends: the resumed run replays the step above
    return done
