# mypy: ignore-errors
"""The order saga on DBOS, run only by the throwaway interpreter of ``python -m bench.peers``.

    <dbos-venv>/bin/python bench/peers_dbos_workload.py SCENARIO --db FILE [--sagas N] ...

It imports nothing from the repo (``sagaline`` is not installed there) and prints one JSON
object on stdout. The saga mirrors ``bench/workload.py`` step for step: create_order,
reserve_inventory, charge_payment, ship_order, each a durable step doing no work; a
``fail-*`` order is declined at charge_payment, and the steps already done are undone in
reverse by durable compensation steps, since DBOS has no compensation of its own. It is
written twice, on DBOS's async API (the shape of sagaline's workload) and on its sync API
(``--api sync``, client threads instead of tasks), which is DBOS's faster path here.

DBOS opens its SQLite file with the rollback journal; every connection it makes is given
WAL and synchronous=FULL here (the settings sagaline uses), and the script reports what
each connection ended up with so the caller can refuse a mismatch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig

PRAGMAS_SEEN: set[tuple[str, int]] = set()


@sa.event.listens_for(sa.engine.Engine, "connect")
def _durable(dbapi_conn: Any, _record: Any) -> None:
    if not isinstance(dbapi_conn, sqlite3.Connection):
        return
    mode = dbapi_conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    dbapi_conn.execute("PRAGMA synchronous = FULL")
    PRAGMAS_SEEN.add((mode, dbapi_conn.execute("PRAGMA synchronous").fetchone()[0]))


class PaymentDeclined(Exception):
    pass


@DBOS.step(name="bench.create_order")
async def create_order(order_id: str) -> str:
    return order_id


@DBOS.step(name="bench.cancel_order")
async def cancel_order(order_id: str, created: str) -> None:
    pass


@DBOS.step(name="bench.reserve_inventory")
async def reserve_inventory(order_id: str) -> str:
    return f"res-{order_id}"


@DBOS.step(name="bench.release_inventory")
async def release_inventory(order_id: str, reservation: str) -> None:
    pass


@DBOS.step(name="bench.charge_payment")
async def charge_payment(order_id: str) -> str:
    if order_id.startswith("fail-"):
        raise PaymentDeclined("card declined")
    return f"pay-{order_id}"


@DBOS.step(name="bench.ship_order")
async def ship_order(order_id: str) -> str:
    return f"track-{order_id}"


@DBOS.workflow(name="bench.order")
async def order_saga(order_id: str) -> str:
    created = await create_order(order_id)
    reservation = await reserve_inventory(order_id)
    try:
        await charge_payment(order_id)
    except PaymentDeclined:
        await release_inventory(order_id, reservation)
        await cancel_order(order_id, created)
        raise
    return await ship_order(order_id)


@DBOS.step(name="bench.sync.create_order")
def create_order_sync(order_id: str) -> str:
    return order_id


@DBOS.step(name="bench.sync.cancel_order")
def cancel_order_sync(order_id: str, created: str) -> None:
    pass


@DBOS.step(name="bench.sync.reserve_inventory")
def reserve_inventory_sync(order_id: str) -> str:
    return f"res-{order_id}"


@DBOS.step(name="bench.sync.release_inventory")
def release_inventory_sync(order_id: str, reservation: str) -> None:
    pass


@DBOS.step(name="bench.sync.charge_payment")
def charge_payment_sync(order_id: str) -> str:
    if order_id.startswith("fail-"):
        raise PaymentDeclined("card declined")
    return f"pay-{order_id}"


@DBOS.step(name="bench.sync.ship_order")
def ship_order_sync(order_id: str) -> str:
    return f"track-{order_id}"


@DBOS.workflow(name="bench.sync.order")
def order_saga_sync(order_id: str) -> str:
    """The same saga through DBOS's synchronous API, its faster path on this workload."""
    created = create_order_sync(order_id)
    reservation = reserve_inventory_sync(order_id)
    try:
        charge_payment_sync(order_id)
    except PaymentDeclined:
        release_inventory_sync(order_id, reservation)
        cancel_order_sync(order_id, created)
        raise
    return ship_order_sync(order_id)


async def run_one(order_id: str) -> None:
    handle = await DBOS.start_workflow_async(order_saga, order_id)
    await handle.get_result()


async def latency(n: int) -> dict[str, float]:
    for i in range(20):
        await run_one(f"warm-{i}")
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        await run_one(f"a-{i}")
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50_ms": times[n // 2], "p99_ms": times[int(n * 0.99)]}


async def throughput(n: int, in_flight: int, fail_every: int) -> dict[str, float]:
    await run_one("warm")
    gate = asyncio.Semaphore(in_flight)
    declined = 0

    async def one(i: int) -> None:
        nonlocal declined
        failing = fail_every > 0 and i % fail_every == 0
        async with gate:
            try:
                await run_one(f"fail-{i}" if failing else f"b-{i}")
            except PaymentDeclined:
                declined += 1

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "sagas_per_s": n / wall,
        "cpu_ms_per_saga": cpu * 1000 / n,
        "declined": declined,
    }


def latency_sync(n: int) -> dict[str, float]:
    for i in range(20):
        order_saga_sync(f"warm-{i}")
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        order_saga_sync(f"a-{i}")
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50_ms": times[n // 2], "p99_ms": times[int(n * 0.99)]}


def throughput_sync(n: int, in_flight: int, fail_every: int) -> dict[str, float]:
    """``in_flight`` client threads, each calling the workflow and waiting for it."""
    order_saga_sync("warm")

    def one(i: int) -> bool:
        try:
            order_saga_sync(f"fail-{i}" if fail_every > 0 and i % fail_every == 0 else f"b-{i}")
        except PaymentDeclined:
            return True
        return False

    cpu0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        declined = sum(pool.map(one, range(n)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"sagas_per_s": n / wall, "cpu_ms_per_saga": cpu * 1000 / n, "declined": declined}


def compensated_runs(db: str) -> int:
    """How many failed runs ran release_inventory then cancel_order, as DBOS recorded them."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT s.workflow_uuid, s.function_name FROM operation_outputs s "
            "JOIN workflow_status w ON w.workflow_uuid = s.workflow_uuid "
            "WHERE w.status = 'ERROR' ORDER BY s.workflow_uuid, s.function_id"
        ).fetchall()
    finally:
        conn.close()
    by_run: dict[str, list[str]] = {}
    for run, name in rows:
        by_run.setdefault(run, []).append(name.rsplit(".", 1)[-1])
    expected = ["create_order", "reserve_inventory", "charge_payment"]
    expected += ["release_inventory", "cancel_order"]
    return sum(steps == expected for steps in by_run.values())


def run(args: argparse.Namespace) -> dict[str, Any]:
    sync = args.api == "sync"
    if args.scenario == "latency":
        return latency_sync(args.sagas) if sync else asyncio.run(latency(args.sagas))
    fail_every = args.fail_every if args.scenario == "failure" else 0
    if sync:
        out = throughput_sync(args.sagas, args.in_flight, fail_every)
    else:
        out = asyncio.run(throughput(args.sagas, args.in_flight, fail_every))
    if fail_every:
        out["compensated_in_reverse"] = compensated_runs(args.db) == out["declined"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", choices=["latency", "throughput", "failure"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--api", choices=["async", "sync"], default="async")
    parser.add_argument("--sagas", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--fail-every", type=int, default=10)
    parser.add_argument("--pool-size", type=int, default=None, help="DBOS's default: 20")
    args = parser.parse_args()
    config: DBOSConfig = {
        "name": "sagaline-bench-peers",
        "system_database_url": f"sqlite:///{args.db}",
        "log_level": "WARNING",
    }
    if args.pool_size:
        config["sys_db_pool_size"] = args.pool_size
    DBOS(config=config)
    logging.getLogger("dbos").setLevel(logging.CRITICAL)  # a declined order logs a traceback
    DBOS.launch()
    try:
        out = run(args)
    finally:
        DBOS.destroy()
    out["pragmas"] = sorted([list(p) for p in PRAGMAS_SEEN])
    out["dbos"] = version("dbos")
    out["sqlite"] = sqlite3.sqlite_version
    out["python"] = sys.version.split()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
