"""The bus benchmark's saga scenarios (see :mod:`bench.bus`): the demo shop's saga across
four service processes, and the orchestrated 4-step saga it is compared with.

Both start their sagas from this process into a worker's SQLite file; a worker learns of
runs started by another process only at its next poll (up to a second), so each figure is
timed from the first saga's first step, and that pick-up delay is reported on its own.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from bench.bus_scenarios import Fresh, Processes, Sizes, until
from bench.workload import order_saga
from sagaline import Engine
from sagaline.bus import Delivery, open_bus

SHOP = ("order", "payment", "inventory", "shipping")


def _scalar(path: Path, sql: str, *params: object) -> float:
    conn = sqlite3.connect(path)
    try:
        return float(conn.execute(sql, params).fetchone()[0] or 0)
    finally:
        conn.close()


def _first_step(path: Path, prefix: str) -> float:
    """When the first step of the runs ``prefix*`` started (Unix seconds, worker's clock)."""
    return _scalar(path, "SELECT min(started_at) FROM steps WHERE run_id LIKE ?", f"{prefix}%")


def _steps(path: Path) -> dict[str, float]:
    """Mean duration of the service's steps, and those of completed runs left RUNNING."""
    return {
        "step_ms": 1000
        * _scalar(
            path,
            "SELECT avg(finished_at - started_at) FROM steps "
            "WHERE kind = 'step' AND status = 'SUCCEEDED'",
        ),
        "completed_runs_steps_running": _scalar(
            path,
            "SELECT count(*) FROM steps JOIN runs USING (run_id) "
            "WHERE runs.status = 'COMPLETED' AND steps.status = 'RUNNING'",
        ),
    }


def _saga_rates(n: int, started: float, first: float, ended: float) -> dict[str, float]:
    return {
        "sagas_per_s": n / (ended - first),
        "seconds": ended - first,
        "pickup_s": first - started,
        "sagas_per_s_with_pickup": n / (ended - started),
    }


class Tap:
    """A subscription of the benchmark's own to the saga's last events."""

    def __init__(self, url: str) -> None:
        self.bus = open_bus(url)
        self.ended: dict[str, tuple[str, float]] = {}

    async def open(self) -> None:
        await self.bus.open()
        await self.bus.subscribe("bench.tap", ["OrderCompleted", "OrderCancelled"], self._seen)

    async def _seen(self, delivery: Delivery) -> None:
        m = delivery.message
        order_id = str(json.loads(m.body)["order_id"])
        self.ended.setdefault(order_id, (m.topic, time.time()))
        await delivery.ack()

    async def wait(self, order_ids: list[str], timeout: float) -> float:
        """When the last of them ended (Unix seconds); raises if one was cancelled."""
        await until(
            "every saga's end", lambda: all(o in self.ended for o in order_ids), timeout, 0.002
        )
        cancelled = [o for o in order_ids if self.ended[o][0] != "OrderCompleted"]
        if cancelled:
            raise RuntimeError(f"{len(cancelled)} saga(s) cancelled, e.g. {cancelled[0]!r}")
        return max(self.ended[o][1] for o in order_ids)


async def choreography_scenario(fresh: Fresh, tmp: Path, sizes: Sizes) -> dict[str, Any]:
    from sagaline.demo.shop.events import Order  # the shop needs sagaline.Choreography
    from sagaline.demo.shop.order import place_order

    tag = uuid.uuid4().hex[:8]
    files = {s: tmp / f"{s}-{tag}.db" for s in SHOP}
    async with fresh() as url:
        tap = Tap(url)
        try:
            await tap.open()
            async with Processes(tmp) as procs:
                for s in SHOP:
                    args = ["--db", f"sqlite:///{files[s]}", "--bus", url, "--service", s]
                    procs.start(s, [*args, "--import", f"sagaline.demo.shop.{s}"], "service ")
                await procs.ready()
                async with Engine(f"sqlite:///{files['order']}", worker=False) as shop:

                    async def orders(prefix: str, n: int) -> list[str]:
                        ids = [f"{prefix}-{tag}-{i}" for i in range(n)]
                        await asyncio.gather(
                            *(
                                shop.start(place_order, Order(o, "BOOK", 1, 1200), run_id=o)
                                for o in ids
                            )
                        )
                        return ids

                    await tap.wait(await orders("warm", sizes.saga_warmup), 60)
                    cpu, started = procs.cpu_seconds(), time.time()
                    ended = await tap.wait(await orders("o", sizes.sagas), 300)
                    cpu = procs.cpu_seconds() - cpu
        finally:
            await tap.bus.aclose()
    first = _first_step(files["order"], f"o-{tag}-")
    return {
        "sagas": sizes.sagas,
        "services": len(SHOP),
        **_saga_rates(sizes.sagas, started, first, ended),
        "worker_cpu_ms_per_saga": cpu * 1000 / sizes.sagas,
        "services_steps": {s: _steps(files[s]) for s in SHOP},
        "worker_log": procs.noise()[:20],
    }


async def orchestrated_scenario(tmp: Path, sizes: Sizes) -> dict[str, Any]:
    """bench.workload's 4-step saga on SQLite, one ``sagaline worker``, started the same way."""
    path = tmp / f"orchestrated-{uuid.uuid4().hex[:8]}.db"
    count = "SELECT count(*) FROM runs WHERE status = 'COMPLETED'"
    async with Processes(tmp) as procs:
        procs.start(
            "orchestrated",
            ["--db", f"sqlite:///{path}", "--import", "bench.workload"],
            "worker serving",
        )
        await procs.ready()
        async with Engine(f"sqlite:///{path}", worker=False) as client:

            async def sagas(prefix: str, n: int) -> int:
                await asyncio.gather(
                    *(
                        client.start(order_saga, f"{prefix}-{i}", run_id=f"{prefix}-{i}")
                        for i in range(n)
                    )
                )
                return int(_scalar(path, "SELECT count(*) FROM runs"))

            total = await sagas("warm", sizes.saga_warmup)
            await until("the warm-up sagas", lambda: _scalar(path, count) >= total, 60, 0.01)
            cpu, started = procs.cpu_seconds(), time.time()
            total = await sagas("o", sizes.sagas)
            await until("every saga", lambda: _scalar(path, count) >= total, 300, 0.002)
            ended, cpu = time.time(), procs.cpu_seconds() - cpu
    return {
        "sagas": sizes.sagas,
        "steps": 4,
        "store": "sqlite",
        **_saga_rates(sizes.sagas, started, _first_step(path, "o-"), ended),
        "worker_cpu_ms_per_saga": cpu * 1000 / sizes.sagas,
        **_steps(path),
        "worker_log": procs.noise()[:20],
    }
