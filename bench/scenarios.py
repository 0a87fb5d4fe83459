"""The suite's scenarios (A-F of the benchmark issue), each against its floor."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.pg_scaleout import floor as pg_floor
from bench.pg_scaleout import scale as pg_scale
from bench.sqlite_sagas import floor_commits
from bench.workload import idle_saga, order_saga
from sagaline import Engine, RunStatus

ROOT = Path(__file__).parents[1]
WORKER = [sys.executable, "-m", "sagaline", "worker"]


@dataclass
class Sizes:
    latency: int = 200
    throughput: int = 2000
    in_flight: int = 100
    failure: int = 500
    recovery: int = 200
    idle: int = 100_000
    workers: list[int] = field(default_factory=lambda: [1, 2, 4])

    @classmethod
    def quick(cls) -> Sizes:
        return cls(50, 300, 50, 100, 50, 2000, [1, 2])


class Db:
    """A fresh database for one scenario, and the few raw reads the suite needs."""

    def __init__(self, backend: str, tmp: Path, pg: str) -> None:
        self.backend = backend
        self.tag = uuid.uuid4().hex[:10]
        self.pg = pg
        self.path = tmp / f"{self.tag}.db"
        self.url = f"sqlite:///{self.path}" if backend == "sqlite" else f"{pg}?schema=b_{self.tag}"

    async def scalar(self, sql: str) -> float:
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.path)
            try:
                return float(conn.execute(sql).fetchone()[0] or 0)
            finally:
                conn.close()
        conn2 = await asyncpg.connect(self.pg, server_settings={"search_path": f"b_{self.tag}"})
        try:
            return float(await conn2.fetchval(sql) or 0)
        finally:
            await conn2.close()

    async def size_bytes(self) -> float:
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.path)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
            return float(self.path.stat().st_size)
        return await self.scalar(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname = 'b_{self.tag}' AND c.relkind = 'r'"
        )

    async def rows(self) -> float:
        return await self.scalar(
            "SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM steps) "
            "+ (SELECT count(*) FROM events)"
        )

    async def drop(self) -> None:
        if self.backend == "postgres":
            conn = await asyncpg.connect(self.pg)
            await conn.execute(f'DROP SCHEMA IF EXISTS "b_{self.tag}" CASCADE')  # hex name
            await conn.close()


async def latency(db: Db, n: int) -> dict[str, float]:
    async with Engine(db.url) as engine:
        for i in range(20):
            await (await engine.start(order_saga, f"warm-{i}")).result()
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            await (await engine.start(order_saga, f"a-{i}")).result()
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50_ms": times[n // 2], "p99_ms": times[int(n * 0.99)]}


async def throughput(db: Db, n: int, in_flight: int, prefix: str = "b") -> dict[str, float]:
    async with Engine(db.url, concurrency=in_flight) as engine:
        await (await engine.start(order_saga, "warm")).result()
        size0, rows0 = await db.size_bytes(), await db.rows()
        gate = asyncio.Semaphore(in_flight)

        async def one(i: int) -> None:
            async with gate:
                handle = await engine.start(order_saga, f"{prefix}-{i}")
                try:
                    await handle.result()
                except Exception:
                    if prefix != "fail":
                        raise

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if prefix == "fail":
            await check_compensated(engine, n)
    return {
        "sagas_per_s": n / wall,
        "cpu_ms_per_step": cpu * 1000 / (n * 4),
        "rows_per_saga": (await db.rows() - rows0) / n,
        "bytes_per_saga": (await db.size_bytes() - size0) / n,
    }


async def check_compensated(engine: Engine, n: int) -> None:
    for run in await engine.list_runs(limit=n + 10):
        if run.workflow != "bench.order" or run.status is RunStatus.COMPLETED:
            continue
        assert run.status is RunStatus.COMPENSATED, run
        undone = [
            e.data["compensation"]
            for e in await engine.history(run.run_id)
            if e.type == "CompensationSucceeded"
        ]
        assert [u.rsplit(".", 1)[-1] for u in undone] == ["release_inventory", "cancel_order"]


async def recovery(db: Db, n: int, tmp: Path) -> dict[str, float]:
    ledger = tmp / f"{db.tag}.ledger"
    env = {**os.environ, "BENCH_LEDGER": str(ledger)}

    def spawn() -> subprocess.Popen[bytes]:
        args = [*WORKER, "--db", db.url, "--import", "bench.workload", "--concurrency", "500"]
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    async with Engine(db.url, worker=False) as client:
        worker = spawn()
        for i in range(n):
            await client.start(order_saga, f"slow-{i}", run_id=f"slow-{i}")

        def shipping() -> int:
            lines = ledger.read_text().splitlines() if ledger.exists() else []
            return sum(1 for line in lines if line.endswith(" ship_order"))

        while shipping() < n:
            await asyncio.sleep(0.02)
        worker.send_signal(signal.SIGKILL)  # every saga is inside its 2 s ship_order
        in_flight = shipping()
        worker.wait()
        restarted = time.perf_counter()
        worker = spawn()
        try:
            while len(await client.list_runs(RunStatus.COMPLETED, limit=n + 1)) < n:
                await asyncio.sleep(0.02)
            seconds = time.perf_counter() - restarted
        finally:
            worker.terminate()
            worker.wait()
    executions = Counter(ledger.read_text().splitlines())
    return {
        "seconds_to_done": seconds,
        "extra_executions": sum(executions.values()) - 4 * n,
        "in_flight_at_kill": in_flight,
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def idle_cost(db: Db, n: int) -> dict[str, float]:
    args = [*WORKER, "--db", db.url, "--import", "bench.workload", "--concurrency", "500"]
    worker = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with Engine(db.url, worker=False) as client:
            for i in range(500):  # warm the worker up on the same kind of run
                await client.start(idle_saga, f"warm-{i}", 30.0)
            while len(await client.list_runs(RunStatus.SUSPENDED, limit=501)) < 500:
                await asyncio.sleep(0.2)
            before, size0 = rss_mb(worker.pid), await db.size_bytes()
            gate = asyncio.Semaphore(64)

            async def one(i: int) -> None:
                async with gate:
                    await client.start(idle_saga, f"idle-{i}", 30.0)

            await asyncio.gather(*(one(i) for i in range(n)))
            while await db.scalar("SELECT count(*) FROM runs WHERE status = 'SUSPENDED'") < n + 500:
                await asyncio.sleep(0.5)
            after = rss_mb(worker.pid)
            return {
                "rss_before_mb": before,
                "rss_after_mb": after,
                "bytes_per_run": (await db.size_bytes() - size0) / n,
            }
    finally:
        worker.terminate()
        worker.wait()


async def run_backend(backend: str, tmp: Path, pg: str, sizes: Sizes) -> dict[str, object]:
    out: dict[str, object] = {}
    if backend == "sqlite":
        commits = 5000
        seconds = floor_commits(tmp / "floor.db", commits)
        out["floor"] = {
            "commits_per_s": commits / seconds,
            "connections": 1,
            "durability": "WAL, synchronous=FULL",
        }
    else:
        out["floor"] = {
            "commits_per_s": await pg_floor(pg, 1),
            "commits_per_s_16": await pg_floor(pg, 16),
            "connections": 16,
            "durability": "fsync on, synchronous_commit on",
        }
    print(f"[{backend}] floor {out['floor']}", flush=True)
    scenarios: list[tuple[str, Callable[[Db], Awaitable[dict[str, float]]]]] = [
        ("A_latency", lambda db: latency(db, sizes.latency)),
        ("B_throughput", lambda db: throughput(db, sizes.throughput, sizes.in_flight)),
        ("C_failure", lambda db: throughput(db, sizes.failure, sizes.in_flight, "fail")),
        ("D_recovery", lambda db: recovery(db, sizes.recovery, tmp)),
        ("F_idle", lambda db: idle_cost(db, sizes.idle)),
    ]
    for name, scenario in scenarios:
        db = Db(backend, tmp, pg)
        try:
            out[name] = await scenario(db)
        finally:
            await db.drop()
        print(f"[{backend}] {name} {out[name]}", flush=True)
    if backend == "postgres":
        rates = {str(n): await pg_scale(pg, n, sizes.throughput) for n in sizes.workers}
        out["E_scaleout"] = {"sagas_per_s_by_workers": rates}
        print(f"[{backend}] E_scaleout {out['E_scaleout']}", flush=True)
    return out
