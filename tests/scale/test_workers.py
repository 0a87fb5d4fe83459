"""Scale-out on PostgreSQL: several real worker processes share one database.

Workers are started as users start them (``sagaline worker --import ...``), killed with
SIGKILL, paused with SIGSTOP, and have their connections terminated under them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sagaline import Engine, RunStatus
from tests.pgcluster import Cluster
from tests.scale import fleet

ROOT = Path(__file__).parents[2]
DEADLINE = 180.0


class Fleet:
    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.ledger = tmp / "ledger.jsonl"
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, *extra: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sagaline",
                "worker",
                "--db",
                self.url,
                "--import",
                "tests.scale.fleet",
                *extra,
            ],
            cwd=ROOT,
            env={**os.environ, "FLEET_LEDGER": str(self.ledger)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def entries(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait()


@pytest.fixture
def fleet_of(postgres_url: str, tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(postgres_url, tmp_path)
    fleet.__name__  # the module must import cleanly here too  # noqa: B018
    yield f
    f.stop_all()


async def until(
    check: Callable[[], Awaitable[bool]], what: str, deadline: float = DEADLINE
) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not await check():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def all_settled(client: Engine, n: int) -> bool:
    runs = await client.list_runs(limit=n + 10)
    return len(runs) == n and all(r.status.is_settled for r in runs)


async def assert_recorded_once(client: Engine, run_ids: list[str]) -> None:
    for run_id in run_ids:
        events = await client.history(run_id)
        recorded = Counter(e.seq for e in events if e.type in ("StepSucceeded", "StepFailed"))
        assert all(n == 1 for n in recorded.values()), (run_id, recorded)
        undone = [e.data["step"] for e in events if e.type == "CompensationSucceeded"]
        assert len(undone) == len(set(undone)), (run_id, undone)


@pytest.mark.crash
async def test_three_workers_500_sagas_one_killed_and_restarted(fleet_of: Fleet) -> None:
    f = fleet_of
    workers = [f.spawn("--concurrency", "40") for _ in range(3)]
    async with Engine(f.url, worker=False) as client:
        ids = [f"o{i:03d}" for i in range(500)]
        for i, run_id in enumerate(ids):
            await client.start(fleet.order, run_id, i % 5 == 0, run_id=run_id)

        async def some_done() -> bool:
            return len([e for e in f.entries() if e["action"] == "ship"]) >= 100

        await until(some_done, "100 sagas shipped")
        workers[0].send_signal(signal.SIGKILL)
        assert workers[0].wait() == -signal.SIGKILL
        await asyncio.sleep(1.0)
        f.spawn("--concurrency", "40")
        await until(lambda: all_settled(client, 500), "all 500 sagas settled")

        for i, run_id in enumerate(ids):
            run = await client.get_run(run_id)
            want = RunStatus.COMPENSATED if i % 5 == 0 else RunStatus.COMPLETED
            assert run.status is want, (run_id, run.status, run.error)
        await assert_recorded_once(client, ids)

    by_run: dict[str, list[str]] = defaultdict(list)
    for entry in f.entries():
        by_run[entry["run"]].append(entry["action"])
    for i, run_id in enumerate(ids):
        actions = by_run[run_id]
        if i % 5 == 0:
            undo = [a for a in dict.fromkeys(actions) if a in ("release", "cancel_order")]
            assert undo == ["release", "cancel_order"], (run_id, actions)
        else:
            assert "ship" in actions and "release" not in actions, (run_id, actions)
    pids = {entry["pid"] for entry in f.entries()}
    assert len(pids) >= 3  # the work really was spread over several processes


@pytest.mark.crash
async def test_a_paused_worker_cannot_write_after_losing_its_lease(fleet_of: Fleet) -> None:
    f = fleet_of
    first = f.spawn("--lease-seconds", "2")
    async with Engine(f.url, worker=False) as client:
        await client.start(fleet.slow_saga, "s1", run_id="s1")

        async def slow_begun() -> bool:
            return any(e["action"] == "slow-begin" for e in f.entries())

        await until(slow_begun, "the first worker to begin the slow step")
        first.send_signal(signal.SIGSTOP)
        second = f.spawn("--lease-seconds", "2")
        run = await client.wait("s1", timeout=DEADLINE)
        assert run.status is RunStatus.COMPLETED
        assert await client.handle("s1").result() == second.pid

        first.send_signal(signal.SIGCONT)  # it wakes up, finishes the step and tries to commit

        async def first_finished() -> bool:
            return any(e["action"] == "slow" and e["pid"] == first.pid for e in f.entries())

        await until(first_finished, "the paused worker to finish its step")
        await asyncio.sleep(1.0)  # time for its (fenced) commit to be attempted
        steps = await client.steps("s1")
        assert len(steps) == 1 and steps[0].attempts == 1
        assert (await client.handle("s1").result()) == second.pid
        events = await client.history("s1")
        assert [e.type for e in events].count("StepSucceeded") == 1
        assert first.poll() is None  # and it did not crash: it let the run go


async def _terminate_sagaline_backends(url: str) -> int:
    """Only on the test's own private cluster: every sagaline backend there is ours."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'sagaline' AND pid <> pg_backend_pid()"
        )
        return len(rows)
    finally:
        await conn.close()


@pytest.mark.crash
async def test_connections_terminated_every_second_for_20_seconds(
    private_postgres: Cluster, tmp_path: Path
) -> None:
    f = Fleet(await private_postgres.new_database(), tmp_path)
    try:
        workers = [f.spawn("--concurrency", "20") for _ in range(2)]
        async with Engine(f.url, worker=False) as client:
            ids = [f"t{i:03d}" for i in range(200)]
            killed = 0

            async def killer() -> None:
                nonlocal killed
                for _ in range(20):
                    killed += await _terminate_sagaline_backends(private_postgres.url)
                    await asyncio.sleep(1.0)

            kill_task = asyncio.create_task(killer())
            for i, run_id in enumerate(ids):
                await client.start(fleet.order, run_id, i % 5 == 0, run_id=run_id)
                await asyncio.sleep(0.05)  # spread the starts over the 20 seconds
            await kill_task
            await until(lambda: all_settled(client, 200), "all 200 sagas settled")
            for i, run_id in enumerate(ids):
                run = await client.get_run(run_id)
                want = RunStatus.COMPENSATED if i % 5 == 0 else RunStatus.COMPLETED
                assert run.status is want, (run_id, run.status, run.error)
            await assert_recorded_once(client, ids)
        assert killed >= 20
        assert all(w.poll() is None for w in workers)  # no worker exited
    finally:
        f.stop_all()


async def test_queue_limit_holds_across_workers(fleet_of: Fleet) -> None:
    f = fleet_of
    async with Engine(f.url, worker=False) as client:
        await client.set_queue_limit("limited", 3)
        for _ in range(3):
            f.spawn("--queue", "limited", "--concurrency", "10")
        for i in range(30):
            await client.start(fleet.limited, f"q{i}", run_id=f"q{i}")
        await until(lambda: all_settled(client, 30), "all 30 limited runs settled")
    spans = [(e["start"], e["end"]) for e in f.entries() if e["action"] == "hold"]
    assert len(spans) >= 30
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    in_flight = peak = 0
    for _, delta in points:
        in_flight += delta
        peak = max(peak, in_flight)
    assert peak <= 3, f"{peak} runs of a queue limited to 3 were in flight at once"
    assert peak >= 2  # the runs did go in parallel, up to the limit
