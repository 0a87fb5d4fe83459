"""Semantic locks across real worker processes that are SIGKILLed at random.

200 sagas contend for 10 keys (a quarter of them shared holders) on one SQLite file while
workers are killed and replaced. The ledger the step writes inside each lock shows that no
two runs ever held a key at once (shared holders only beside shared ones), every saga
completes, and every key ends free. A holder whose worker is killed keeps the key: the run
resumes elsewhere, still holding it, and releases it when it ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sagaline import Engine, RunStatus
from tests.scale import lockers

ROOT = Path(__file__).parents[2]
DEADLINE = 180.0
LEASE = "2"


@dataclass
class Workers:
    url: str
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    killed_at: dict[int, float] = field(default_factory=dict)

    @property
    def ledger(self) -> Path:
        return self.tmp / "ledger.jsonl"

    def spawn(self) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"worker-{len(self.procs)}.log").open("wb")
        command = [
            *(sys.executable, "-m", "sagaline", "worker", "--db", self.url),
            *("--import", "tests.scale.lockers", "--concurrency", "50"),
            *("--lease-seconds", LEASE, "--poll-interval", "0.05"),
        ]
        env = {**os.environ, "LOCKERS_LEDGER": str(self.ledger)}
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.killed_at[proc.pid] = time.time()

    def entries(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]

    def stop_all(self) -> None:
        for proc in self.live():
            proc.kill()
            proc.wait()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    lockers.__name__  # the module must import cleanly here too  # noqa: B018
    w = Workers(f"sqlite:///{tmp_path / 'locks.db'}", tmp_path)
    yield w
    w.stop_all()


@dataclass(frozen=True)
class Held:
    run: str
    key: str
    mode: str
    start: float
    end: float
    pid: int


def holdings(entries: list[dict[str, Any]], killed_at: dict[int, float]) -> list[Held]:
    """Each execution of the step as an interval; one its worker's SIGKILL cut short ends
    when the worker was killed."""
    open_: dict[tuple[str, int], dict[str, Any]] = {}
    out: list[Held] = []
    for e in entries:
        where = (e["run"], e["pid"])
        if e["ev"] == "enter":
            assert where not in open_, f"{where} entered twice without leaving"
            open_[where] = e
        else:
            start = open_.pop(where)
            out.append(Held(e["run"], e["key"], e["mode"], start["t"], e["t"], e["pid"]))
    for (run, pid), e in open_.items():
        assert pid in killed_at, f"run {run} entered on pid {pid}, never left, and pid lives"
        out.append(Held(run, e["key"], e["mode"], e["t"], killed_at[pid], pid))
    return out


def overlaps(held: list[Held]) -> list[tuple[Held, Held]]:
    """Pairs of different runs inside one key at once, where one of them was exclusive."""
    by_key: dict[str, list[Held]] = defaultdict(list)
    for h in held:
        by_key[h.key].append(h)
    bad = []
    for items in by_key.values():
        items.sort(key=lambda h: h.start)
        for i, a in enumerate(items):
            for b in items[i + 1 :]:
                if b.start >= a.end:
                    continue  # sorted by start: b and a do not meet (later ones may)
                if a.run != b.run and not (a.mode == "shared" and b.mode == "shared"):
                    bad.append((a, b))
    return bad


async def all_settled(client: Engine, run_ids: list[str]) -> dict[str, RunStatus]:
    async def check() -> dict[str, RunStatus]:
        while True:
            runs = {r.run_id: r.status for r in await client.list_runs(limit=1000)}
            if all(runs.get(r) is not None and runs[r].is_settled for r in run_ids):
                return {r: runs[r] for r in run_ids}
            await asyncio.sleep(0.2)

    return await asyncio.wait_for(check(), DEADLINE)


async def test_two_hundred_sagas_on_ten_keys_never_overlap_while_workers_are_killed(
    workers: Workers,
) -> None:
    rng = random.Random(15)
    for _ in range(3):
        workers.spawn()
    async with Engine(workers.url, worker=False) as client:
        run_ids = []
        for i in range(200):
            mode = "shared" if i % 4 == 0 else "exclusive"
            run_id = f"c-{i}"
            await client.start(lockers.contend, run_id, f"k{i % 10}", mode, 0.03, run_id=run_id)
            run_ids.append(run_id)
        kills = 0
        end = time.monotonic() + DEADLINE
        while kills < 5 and time.monotonic() < end:
            await asyncio.sleep(rng.uniform(0.3, 0.8))
            busy = [e["pid"] for e in workers.entries()[-20:] if e["ev"] == "enter"]
            live = [p for p in workers.live() if p.pid in busy] or workers.live()
            workers.kill(rng.choice(live))
            workers.spawn()
            kills += 1
        statuses = await all_settled(client, run_ids)
        assert set(statuses.values()) == {RunStatus.COMPLETED}, statuses
        for k in range(10):
            assert (await client.locks(f"k{k}")).free
    held = holdings(workers.entries(), workers.killed_at)
    assert {h.run for h in held} == set(run_ids)  # every saga's step ran inside its lock
    assert overlaps(held) == []
    assert kills == 5
    cut_short = [
        h for h in held if h.pid in workers.killed_at and h.end == workers.killed_at[h.pid]
    ]
    print(f"{len(held)} executions, {len(cut_short)} cut short by a SIGKILL")


async def test_a_holder_whose_worker_is_killed_keeps_the_key_until_its_run_ends(
    workers: Workers,
) -> None:
    first = workers.spawn()
    async with Engine(workers.url, worker=False) as client:
        await client.start(lockers.contend, "holder", "order:1", "exclusive", 3.0, run_id="holder")

        async def entered(run: str) -> None:
            while not any(e["run"] == run and e["ev"] == "enter" for e in workers.entries()):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(entered("holder"), DEADLINE)
        await client.start(lockers.contend, "waiter", "order:1", "exclusive", 0.01, run_id="waiter")

        async def queued() -> None:
            while [w.run_id for w in (await client.locks("order:1")).waiters] != ["waiter"]:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(queued(), DEADLINE)
        workers.kill(first)  # the holder's step is cut short; its run still holds the key
        info = await client.locks("order:1")
        assert [h.run_id for h in info.holders] == ["holder"]
        workers.spawn()
        statuses = await all_settled(client, ["holder", "waiter"])
        assert set(statuses.values()) == {RunStatus.COMPLETED}
        assert (await client.locks("order:1")).free
    held = holdings(workers.entries(), workers.killed_at)
    runs = [h.run for h in sorted(held, key=lambda h: h.start)]
    assert runs == ["holder", "holder", "waiter"]  # killed, resumed elsewhere, then the waiter
    assert overlaps(held) == []


def test_the_ledger_check_sees_an_overlap_and_a_killed_holder() -> None:
    entries = [
        {"ev": "enter", "run": "a", "key": "k", "mode": "exclusive", "pid": 1, "t": 1.0},
        {"ev": "enter", "run": "b", "key": "k", "mode": "shared", "pid": 2, "t": 1.5},
        {"ev": "exit", "run": "b", "key": "k", "mode": "shared", "pid": 2, "t": 1.6},
        {"ev": "enter", "run": "c", "key": "k", "mode": "shared", "pid": 2, "t": 3.0},
        {"ev": "enter", "run": "d", "key": "k", "mode": "shared", "pid": 3, "t": 3.1},
        {"ev": "exit", "run": "c", "key": "k", "mode": "shared", "pid": 2, "t": 3.2},
        {"ev": "exit", "run": "d", "key": "k", "mode": "shared", "pid": 3, "t": 3.3},
    ]
    held = holdings(entries, {1: 2.0})  # a's worker was killed at 2.0, inside a's step
    assert [(a.run, b.run) for a, b in overlaps(held)] == [("a", "b")]  # c and d: both shared
    with pytest.raises(AssertionError, match="never left"):
        holdings(entries[:1], {})
