"""Task steps: sagas/s through the task API with 1, 4 and 16 HTTP workers, next to the same
saga with every step in-process, and what one task costs.

    python -m bench.tasks [--sagas 500] [--in-flight 64] [--sequential 50] [--rounds 2]
                          [--only sqlite|postgres] [--pg URL] [--json PATH]

The 4-step order saga of ``bench.workload`` in two forms, in the same run:

- ``in-process``: ``bench.order`` as it is;
- ``task``: ``bench.tasks.order``, the same saga whose ``charge_payment`` is a task step
  (``@step(task_queue="bench-pay")``, body ``...``) answered by HTTP workers.

Deployment, as one would run it: a real ``sagaline serve --db URL --import bench.tasks``
subprocess on a free port, whose embedded worker (``serve``'s default ``--worker``)
executes the runs, in-process steps included. This process starts runs through
``POST /api/v1/runs`` with an operator token (so the server's worker takes each at once)
and is the task workers: 1, 4 or 16 coroutines in one process, each its own
:class:`sagaline.tasks.Client` with a worker token (made with ``sagaline tokens create``),
claiming one task at a time (``wait_seconds=1``) and completing it with no work in between
(the loop of ``Client.run`` without its heartbeat timer). One process of workers is enough:
``cpu serve/bench`` (cores each process used while measuring) shows this process under
half a core; on PostgreSQL serve, this process and the database's backends together fill
the machine's 2 cores, so more worker processes would only compete for them. Completions
are counted by reading the database (``count_runs`` every 10 ms), not by polling the API.

Throughput: ``--sagas`` sagas with at most ``--in-flight`` unfinished, for each form and
worker count on a fresh database and a fresh server, ``--rounds`` times with the order of
the cases alternating; the best round of each is kept (with its latencies). ``ratio`` is
task / in-process. Latencies: ``complete`` is a worker's time from its claim returning to
``complete()`` returning (the HTTP round trip that records the step's result); ``wait``,
from the stored events of up to 300 runs, is the task's time from being recorded (claimable)
to its completion being recorded, queueing for a worker included. Sequential:
``--sequential`` sagas of each form one at a time (interleaved, one worker): start ->
completed as seen by this process (polled every 2 ms), and the task saga's two parts from
its events: task recorded -> completion recorded, completion recorded -> run completed.

An answer wakes its run in the serving process at once (``Engine.tasks`` wakes the worker;
on PostgreSQL NOTIFY also wakes other processes), and a task that process records wakes
its long-polling claims; tasks recorded by other processes are found by the claim's poll,
every 100 ms (``engine.tasks.POLL_SECONDS``).

SQLite is a temp file with the engine's defaults; PostgreSQL a fresh schema of ``--pg``.
Server logs go to the temp directory. Writes ``bench/results/tasks.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from bench.locks import Database
from bench.workload import create_order, reserve_inventory, ship_order
from sagaline import Engine, step, workflow
from sagaline.model.status import RunStatus
from sagaline.store.protocol import RunQuery, Store
from sagaline.tasks import Client

RESULTS = Path(__file__).with_name("results")
ROOT = Path(__file__).parents[1]
SAGALINE = str(Path(sys.executable).with_name("sagaline"))
QUEUE = "bench-pay"
TASK_STEP = "bench.tasks.charge_payment"
FORMS = {"in-process": "bench.order", "task": "bench.tasks.order"}
WORKERS = (1, 4, 16)
STARTERS = 4
"""Concurrent ``POST /api/v1/runs`` requests that keep the sagas in flight."""
SAMPLE = 300
UNFINISHED = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED})


@step(name=TASK_STEP, task_queue=QUEUE)
async def charge_payment(order_id: str) -> str: ...  # type: ignore[empty-body]


@workflow(name="bench.tasks.order")
async def task_order(order_id: str) -> str:
    await create_order(order_id)
    await reserve_inventory(order_id)
    await charge_payment(order_id)
    return await ship_order(order_id)


class Server:
    """``sagaline serve`` on ``db`` with an operator and a worker token; stopped on exit."""

    def __init__(self, db: str, log: Path) -> None:
        self.db, self.log = db, log
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.operator = self.token("bench-ops", "operator")
        self.worker = self.token("bench-worker", "worker")

    def token(self, name: str, role: str) -> str:
        args = [SAGALINE, "tokens", "create", name, "--role", role, "--quiet", "--db", self.db]
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"sagaline tokens create failed: {done.stdout}{done.stderr}")
        return done.stdout.strip()

    async def __aenter__(self) -> Server:
        port = free_port()
        args = [SAGALINE, "serve", "--db", self.db, "--port", str(port), "--import", "bench.tasks"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "BENCH_LEDGER": os.devnull}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=out, env=env)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"sagaline serve exited:\n{self.log.read_text()}")
                try:
                    if (await http.get(f"{self.url}/healthz", timeout=1)).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        await self.__aexit__(None, None, None)
        raise RuntimeError(f"sagaline serve did not start:\n{self.log.read_text()}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)

    def cpu_seconds(self) -> float:
        """The server's CPU time so far (Linux's /proc; NaN elsewhere)."""
        try:
            fields = Path(f"/proc/{self.process.pid if self.process else 0}/stat").read_text()
        except OSError:
            return float("nan")
        utime, stime = fields.rsplit(")", 1)[1].split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def api(self) -> httpx.AsyncClient:
        auth = {"authorization": f"Bearer {self.operator}"}
        limits = httpx.Limits(max_connections=STARTERS)
        return httpx.AsyncClient(base_url=self.url, headers=auth, timeout=30, limits=limits)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start(api: httpx.AsyncClient, wf: str, run_id: str) -> None:
    response = await api.post(
        "/api/v1/runs", json={"workflow": wf, "input": run_id, "run_id": run_id}
    )
    if response.status_code != 201:
        raise RuntimeError(f"starting {run_id} failed: {response.status_code} {response.text}")


@dataclass
class Workers:
    """``count`` task workers, each its own Client, until :meth:`stop`."""

    server: Server
    count: int
    complete_s: list[float] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _loops: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loops = [asyncio.create_task(self.work(f"w{i}")) for i in range(self.count)]

    async def work(self, name: str) -> None:
        async with Client(self.server.url, self.server.worker, worker=name) as client:
            while not self._stop.is_set():
                for task in await client.claim(QUEUE, 1, wait_seconds=1.0):
                    t0 = time.perf_counter()
                    await client.complete(task, f"pay-{task.input['order_id']}")
                    self.complete_s.append(time.perf_counter() - t0)

    def check(self) -> None:
        """Raise what stopped a worker (a refused claim or answer), rather than wait on."""
        for loop in self._loops:
            if loop.done():
                loop.result()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._loops)


class Watcher:
    """The number of completed runs of ``wf``, read from the database every 10 ms."""

    def __init__(self, store: Store, wf: str) -> None:
        self.store, self.query, self.done = store, RunQuery(workflow=wf), 0
        self._loop = asyncio.create_task(self.poll())

    async def poll(self) -> None:
        while True:
            counts = await self.store.count_runs(self.query)
            ended = {s: c for s, c in counts.items() if s not in UNFINISHED}
            if set(ended) - {RunStatus.COMPLETED}:
                raise RuntimeError(f"runs did not complete: {ended}")
            self.done = ended.get(RunStatus.COMPLETED, 0)
            await asyncio.sleep(0.01)

    async def until(self, n: int, workers: Workers) -> None:
        while self.done < n:
            if self._loop.done():
                self._loop.result()  # raises why it stopped
            workers.check()
            await asyncio.sleep(0.002)

    async def aclose(self) -> None:
        self._loop.cancel()
        await asyncio.gather(self._loop, return_exceptions=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ms(values: list[float], q: float) -> float:
    return round(1000 * pct(values, q), 2)


async def task_parts(store: Store, run_ids: list[str]) -> tuple[list[float], list[float]]:
    """From stored events: task recorded -> completion recorded, and -> run completed."""
    waits, resumes = [], []
    for run_id in run_ids:
        at: dict[str, float] = {}
        for e in await store.read_events(run_id):
            if e.data.get("step") == TASK_STEP or e.type == "RunCompleted":
                at.setdefault(e.type, e.at)
        waits.append(at["StepSucceeded"] - at["StepStarted"])
        resumes.append(at["RunCompleted"] - at["StepSucceeded"])
    return waits, resumes


async def throughput(
    db: str, log: Path, form: str, n: int, in_flight: int, workers: int
) -> dict[str, float]:
    wf = FORMS[form]
    async with Server(db, log) as server, server.api() as api:
        pool = Workers(server, workers if form == "task" else 0)
        async with Engine(db, worker=False, metrics=False, tracing=False) as client:
            watcher = Watcher(client.store, wf)
            await start(api, wf, "warm")
            await watcher.until(1, pool)
            pool.complete_s.clear()
            counter = itertools.count()

            async def starter() -> None:
                while (i := next(counter)) < n:
                    while i - (watcher.done - 1) >= in_flight:
                        pool.check()
                        await asyncio.sleep(0.002)
                    await start(api, wf, f"s-{i}")

            t0, cpu0, here0 = time.perf_counter(), server.cpu_seconds(), time.process_time()
            await asyncio.gather(*(starter() for _ in range(STARTERS)))
            await watcher.until(n + 1, pool)
            took = time.perf_counter() - t0
            server_cpu = (server.cpu_seconds() - cpu0) / took
            here_cpu = (time.process_time() - here0) / took
            await watcher.aclose()
            await pool.stop()
            out = {
                "sagas_per_s": round(n / took, 1),
                "server_cpu": round(server_cpu, 2),
                "bench_cpu": round(here_cpu, 2),
            }
            if form == "task":
                step = max(1, n // SAMPLE)
                waits, _ = await task_parts(client.store, [f"s-{i}" for i in range(0, n, step)])
                out |= {
                    "complete_ms_p50": ms(pool.complete_s, 0.5),
                    "complete_ms_p99": ms(pool.complete_s, 0.99),
                    "wait_ms_p50": ms(waits, 0.5),
                    "wait_ms_p99": ms(waits, 0.99),
                }
    return out


async def sequential(db: str, log: Path, n: int) -> dict[str, float]:
    """One saga at a time, the two forms interleaved, one worker for the task form."""
    took: dict[str, list[float]] = {form: [] for form in FORMS}
    async with Server(db, log) as server, server.api() as api:
        pool = Workers(server, 1)
        async with Engine(db, worker=False, metrics=False, tracing=False) as client:
            for i in range(-1, n):  # -1: a warm-up of each
                for form, wf in FORMS.items():
                    run_id = f"q-{form}-{i}"
                    t0 = time.perf_counter()
                    await start(api, wf, run_id)
                    while (await client.get_run(run_id)).status is not RunStatus.COMPLETED:
                        pool.check()
                        await asyncio.sleep(0.002)
                    if i >= 0:
                        took[form].append(time.perf_counter() - t0)
            await pool.stop()
            waits, resumes = await task_parts(client.store, [f"q-task-{i}" for i in range(n)])
    return {
        "in_process_ms_p50": ms(took["in-process"], 0.5),
        "in_process_ms_p99": ms(took["in-process"], 0.99),
        "task_ms_p50": ms(took["task"], 0.5),
        "task_ms_p99": ms(took["task"], 0.99),
        "task_wait_ms_p50": ms(waits, 0.5),
        "task_wait_ms_p99": ms(waits, 0.99),
        "resume_ms_p50": ms(resumes, 0.5),
        "resume_ms_p99": ms(resumes, 0.99),
    }


async def measure(backend: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    db = Database(backend, tmp, args.pg)
    log = tmp / f"serve-{backend}.log"
    cases = [("in-process", 0), *(("task", w) for w in WORKERS)]
    best: dict[tuple[str, int], dict[str, float]] = {}
    try:
        for r in range(args.rounds):
            for form, workers in cases if r % 2 == 0 else cases[::-1]:
                got = await throughput(db.fresh(), log, form, args.sagas, args.in_flight, workers)
                kept = best.get((form, workers))
                if kept is None or got["sagas_per_s"] > kept["sagas_per_s"]:
                    best[form, workers] = got
        seq = await sequential(db.fresh(), log, args.sequential)
    finally:
        await db.drop()
    local = best["in-process", 0]
    tasks = {
        str(w): {
            **best["task", w],
            "ratio": round(best["task", w]["sagas_per_s"] / local["sagas_per_s"], 3),
        }
        for w in WORKERS
    }
    return {"in_process": local, "task": tasks, "sequential": seq}


def report(results: dict[str, dict[str, Any]]) -> None:
    print(
        f"{'':9} {'form':10} {'workers':>7} {'sagas/s':>8} {'ratio':>6} "
        f"{'complete p50/p99 ms':>20} {'wait p50/p99 ms':>16} {'cpu serve/bench':>16}"
    )
    for backend, r in results.items():
        local = r["in_process"]
        cpu = f"{local['server_cpu']:.2f} / {local['bench_cpu']:.2f}"
        print(
            f"{backend:9} {'in-process':10} {'-':>7} {local['sagas_per_s']:>8.0f} {1:>6.2f} "
            f"{'':>20} {'':>16} {cpu:>16}"
        )
        for w, t in r["task"].items():
            lat = f"{t['complete_ms_p50']:.1f} / {t['complete_ms_p99']:.1f}"
            wait = f"{t['wait_ms_p50']:.0f} / {t['wait_ms_p99']:.0f}"
            cpu = f"{t['server_cpu']:.2f} / {t['bench_cpu']:.2f}"
            print(
                f"{backend:9} {'task':10} {w:>7} {t['sagas_per_s']:>8.0f} {t['ratio']:>6.2f} "
                f"{lat:>20} {wait:>16} {cpu:>16}"
            )
    print("\none saga at a time, ms p50 / p99:")
    print(
        f"{'':9} {'in-process':>16} {'task':>16} {'task recorded->done':>20} "
        f"{'done->run completed':>20}"
    )
    for backend, r in results.items():
        s = r["sequential"]
        cells = [
            f"{s[f'{k}_ms_p50']:.1f} / {s[f'{k}_ms_p99']:.1f}"
            for k in ("in_process", "task", "task_wait", "resume")
        ]
        print(f"{backend:9} {cells[0]:>16} {cells[1]:>16} {cells[2]:>20} {cells[3]:>20}")


def source() -> dict[str, Any]:
    """The commit measured, and whether src/ had uncommitted changes (read-only git)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "src_dirty": bool(git("status", "--short", "src"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sagas", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--json", type=Path, default=RESULTS / "tasks.json")
    args = parser.parse_args()
    os.environ.setdefault("BENCH_LEDGER", os.devnull)
    results: dict[str, dict[str, Any]] = {}
    load, measured = os.getloadavg(), source()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.only or ["sqlite", "postgres"]:
            results[backend] = asyncio.run(measure(backend, Path(tmp), args))
    report(results)
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_before": load,
        "load_after": os.getloadavg(),
        "seconds": round(time.perf_counter() - t0, 1),
        "source": measured,
        "sizes": {
            "sagas": args.sagas,
            "in_flight": args.in_flight,
            "sequential": args.sequential,
            "rounds": args.rounds,
        },
        "backends": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
