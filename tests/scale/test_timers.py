"""Timers at scale, in real worker processes: memory stays flat while 10,000 runs sleep,
and timers survive a worker killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from sagaline import Engine, RunStatus
from tests.scale import sleepy

ROOT = Path(__file__).parents[2]
DEADLINE = 240.0


def spawn(url: str, ledger: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sagaline",
            "worker",
            "--db",
            url,
            "--import",
            "tests.scale.sleepy",
            "--concurrency",
            "200",
        ],
        cwd=ROOT,
        env={**os.environ, "FLEET_LEDGER": str(ledger)},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def count(client: Engine, status: RunStatus, n: int) -> int:
    return len(await client.list_runs(status, limit=n + 1))


async def start_many(client: Engine, prefix: str, n: int, until: float) -> None:
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with gate:
            run_id = f"{prefix}{i}"
            await client.start(sleepy.sleep_until, run_id, until, run_id=run_id)

    await asyncio.gather(*(one(i) for i in range(n)))


@pytest.mark.crash
async def test_ten_thousand_sleeping_runs_leave_worker_memory_flat(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = spawn(store_url, tmp_path / "ledger.jsonl", tmp_path / "worker.log")
    try:
        async with Engine(store_url, worker=False) as client:
            await start_many(client, "warm", 200, time.time())  # warm the worker up first
            while await count(client, RunStatus.COMPLETED, 200) < 200:
                await asyncio.sleep(0.1)
            before = rss_mb(worker.pid)

            until = time.time() + 45
            await start_many(client, "s", 10_000, until)
            peak_asleep = 0
            while time.time() < until:
                peak_asleep = max(peak_asleep, await count(client, RunStatus.SUSPENDED, 10_000))
                if peak_asleep == 10_000:
                    break
                await asyncio.sleep(0.5)
            asleep = rss_mb(worker.pid)
            assert peak_asleep == 10_000, "the runs should all have been asleep at once"

            end = time.time() + DEADLINE
            while await count(client, RunStatus.COMPLETED, 10_200) < 10_200:
                assert time.time() < end, "timers did not all fire"
                await asyncio.sleep(0.5)
            after = rss_mb(worker.pid)
            late = sorted([await client.handle(f"s{i}").result() for i in range(0, 10_000, 100)])
    finally:
        worker.terminate()
        worker.wait()
    with capsys.disabled():
        print(
            f"\n[10,000 sleeping runs] worker RSS {before:.1f} MB before, {asleep:.1f} MB "
            f"with all asleep, {after:.1f} MB after; wake-up lateness of a sample of 100: "
            f"p50 {late[50]:.2f} s, max {late[-1]:.2f} s"
        )
    assert asleep - before < 50, f"sleeping runs cost worker memory: {before} -> {asleep} MB"
    assert all(lateness >= 0 for lateness in late)


@pytest.mark.crash
async def test_timers_fire_after_the_worker_is_killed_and_none_twice(
    store_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    worker = spawn(store_url, ledger, tmp_path / "worker.log")
    async with Engine(store_url, worker=False) as client:
        until = time.time() + 4
        await start_many(client, "k", 50, until)
        while await count(client, RunStatus.SUSPENDED, 50) < 50:
            assert time.time() < until, "the runs did not all go to sleep in time"
            await asyncio.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        assert worker.wait() == -signal.SIGKILL
        await asyncio.sleep(max(0.0, until - time.time()) + 1)  # the timers fall due, unseen
        worker = spawn(store_url, ledger, tmp_path / "worker.log")
        try:
            end = time.time() + DEADLINE
            while await count(client, RunStatus.COMPLETED, 50) < 50:
                assert time.time() < end
                await asyncio.sleep(0.1)
            for i in range(50):
                events = [e.type for e in await client.history(f"k{i}")]
                assert events.count("TimerFired") == 1, events
        finally:
            worker.terminate()
            worker.wait()
    actions = Counter(
        (e["run"], e["action"]) for e in map(json.loads, ledger.read_text().splitlines())
    )
    assert all(n == 1 for n in actions.values()), actions
    assert len(actions) == 100
