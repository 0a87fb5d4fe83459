"""What a semantic lock costs a saga, and how a hot key serialises sagas.

    python -m bench.locks [--sagas 2000] [--in-flight 100] [--hot 300] [--rounds 2]
                          [--only sqlite|postgres] [--pg URL] [--json PATH]

The 4-step order saga of ``bench.workload`` in two forms, in the same process and run:

- ``plain``: the saga as it is;
- ``locked``: the same 4 steps inside ``async with sagaline.lock(f"order:{id}")`` — an
  uncontended lock (each saga its own key): one commit to take it, one to give it back.

Throughput: ``--sagas`` sagas with ``--in-flight`` in flight, each form on a fresh
database, ``--rounds`` times with the order of the forms alternating; the best round of
each is kept. ``locked / plain`` is the ratio the lock costs; ``(1/locked - 1/plain)`` in
ms the cost per saga of lock + unlock at that concurrency. Contended: ``--hot`` sagas
that all lock one key (``order:hot``), all started at once: sagas/s through one key (each
holder's release wakes the next). SQLite is a temp file with the engine's defaults (WAL,
synchronous=FULL); PostgreSQL a fresh schema of ``--pg``. Writes ``bench/results/locks.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

import sagaline
from bench.workload import charge_payment, create_order, order_saga, reserve_inventory, ship_order
from sagaline import Engine, WorkflowDef, workflow

RESULTS = Path(__file__).with_name("results")


@workflow(name="bench.locked_order")
async def locked_order(order_id: str) -> str:
    async with sagaline.lock(f"order:{order_id}"):
        await create_order(order_id)
        await reserve_inventory(order_id)
        await charge_payment(order_id)
        return await ship_order(order_id)


@workflow(name="bench.hot_order")
async def hot_order(order_id: str) -> str:
    async with sagaline.lock("order:hot"):
        await create_order(order_id)
        return await ship_order(order_id)


class Database:
    """A fresh database per measurement: a temp SQLite file or a PostgreSQL schema."""

    def __init__(self, backend: str, tmp: Path, pg: str) -> None:
        self.backend, self.tmp, self.pg = backend, tmp, pg
        self.schemas: list[str] = []

    def fresh(self) -> str:
        name = uuid.uuid4().hex[:12]
        if self.backend == "sqlite":
            return f"sqlite:///{self.tmp / f'{name}.db'}"
        schema = f"bl_{name}"
        self.schemas.append(schema)
        return f"{self.pg}?schema={schema}"

    async def drop(self) -> None:
        if self.backend == "postgres" and self.schemas:
            conn = await asyncpg.connect(self.pg)
            try:
                for schema in self.schemas:
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # hex name
            finally:
                await conn.close()


async def throughput(
    url: str, wf: WorkflowDef[[str], str], n: int, in_flight: int, prefix: str
) -> float:
    async with Engine(url, concurrency=in_flight) as engine:
        await (await engine.start(wf, f"{prefix}-warm")).result()
        gate = asyncio.Semaphore(in_flight)

        async def one(i: int) -> None:
            async with gate:
                handle = await engine.start(wf, f"{prefix}-{i}")
                await handle.result()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - t0)


async def hot(url: str, n: int) -> float:
    async with Engine(url, concurrency=n) as engine:
        t0 = time.perf_counter()
        handles = [await engine.start(hot_order, f"h-{i}") for i in range(n)]
        for handle in handles:
            await handle.result()
        return n / (time.perf_counter() - t0)


async def measure(backend: str, tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    db = Database(backend, tmp, args.pg)
    best = {"plain": 0.0, "locked": 0.0}
    forms = {"plain": order_saga, "locked": locked_order}
    try:
        for r in range(args.rounds):
            order = ["plain", "locked"] if r % 2 == 0 else ["locked", "plain"]
            for form in order:
                url = db.fresh()
                rate = await throughput(url, forms[form], args.sagas, args.in_flight, form)
                best[form] = max(best[form], rate)
        url = db.fresh()
        hot_rate = await hot(url, args.hot)
    finally:
        await db.drop()
    return {
        "plain_sagas_per_s": round(best["plain"], 1),
        "locked_sagas_per_s": round(best["locked"], 1),
        "ratio": round(best["locked"] / best["plain"], 3),
        "lock_ms_per_saga": round(1000 / best["locked"] - 1000 / best["plain"], 3),
        "hot_key_sagas_per_s": round(hot_rate, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sagas", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--hot", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--json", type=Path, default=RESULTS / "locks.json")
    args = parser.parse_args()
    os.environ.setdefault("BENCH_LEDGER", os.devnull)
    results: dict[str, dict[str, float]] = {}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.only or ["sqlite", "postgres"]:
            results[backend] = asyncio.run(measure(backend, Path(tmp), args))
    print(f"{'':10} {'plain/s':>9} {'locked/s':>9} {'ratio':>6} {'ms/saga':>8} {'hot key/s':>10}")
    for backend, r in results.items():
        print(
            f"{backend:10} {r['plain_sagas_per_s']:>9.0f} {r['locked_sagas_per_s']:>9.0f} "
            f"{r['ratio']:>6.2f} {r['lock_ms_per_saga']:>8.3f} {r['hot_key_sagas_per_s']:>10.0f}"
        )
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_before": load,
        "load_after": os.getloadavg(),
        "sizes": {"sagas": args.sagas, "in_flight": args.in_flight, "hot": args.hot},
        "backends": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
