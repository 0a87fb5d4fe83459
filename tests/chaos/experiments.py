"""The chaos experiments, each sized by a profile: the tests run FAST; bench/chaos.py runs
any (``--long``: LONG).

Each returns its figures and the oracle's verdict; the caller asserts or prints them.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sagaline import Engine
from sagaline.store.sqlite.store import path_from_url
from tests.chaos import harness, oracle
from tests.chaos.harness import Workers, until
from tests.pgcluster import Cluster


@dataclass(frozen=True)
class Profile:
    name: str
    sagas: int
    """Sagas of the SIGKILL experiment, per backend."""
    kills: int
    restart_sagas: int
    restarts: int
    pause_sagas: int = 40
    kill_workers: int = 2
    restart_workers: int = 3
    concurrency: int = 8
    """Runs each worker executes at once."""
    deadline: float = 120.0
    """Seconds the runs have to settle once the faults stop (a condition, not a speed)."""


FAST = Profile("fast", sagas=300, kills=25, restart_sagas=300, restarts=3)
MEDIUM = Profile("medium", sagas=2_000, kills=200, restart_sagas=1_000, restarts=10, deadline=300)
LONG = Profile("long", sagas=10_000, kills=1_000, restart_sagas=3_000, restarts=20, deadline=900)
PROFILES = {p.name: p for p in (FAST, MEDIUM, LONG)}


@dataclass
class Result:
    verdict: oracle.Verdict
    figures: dict[str, Any]


def _judge(workers: Workers, todo: list[Any], final: dict[str, oracle.FinalRun]) -> oracle.Verdict:
    workers.tail.poll()
    return oracle.check({p.run: p.fail_at for p in todo}, workers.tail.lines, final)


async def _busy_worker(workers: Workers, rng: random.Random, patience: float) -> Any:
    """A random worker among those with a step or compensation in flight now; None if
    none had any for ``patience`` seconds."""
    end = time.monotonic() + patience
    while not (busy := workers.busy()):
        if time.monotonic() > end:
            return None
        await asyncio.sleep(0.01)
    return rng.choice(busy)


async def kills(url: str, tmp: Path, profile: Profile, seed: int) -> Result:
    """SIGKILL a busy worker at a random moment and start a new one, ``profile.kills``
    times, while the sagas are started a batch after each kill."""
    rng = random.Random(seed)
    todo = harness.plans(profile.sagas, rng)
    workers = Workers(url, tmp, concurrency=profile.concurrency)
    began = time.monotonic()
    try:
        for _ in range(profile.kill_workers):
            workers.spawn()
        async with Engine(url, worker=False) as client:
            feed = iter(harness.batches(todo, profile.kills + 1))
            top_up = max(1, profile.sagas // (profile.kills + 1))
            await harness.start_all(client, next(feed))
            for _ in range(profile.kills):
                while (victim := await _busy_worker(workers, rng, 2.0)) is None:
                    batch = next(feed, None)  # the work ran dry between two kills
                    if batch is None:  # (a loaded machine: sagas outran the restarts)
                        batch = harness.plans(top_up, rng, prefix=f"t{len(todo)}-")
                        todo.extend(batch)
                    await harness.start_all(client, batch)
                await asyncio.sleep(rng.uniform(0.0, 0.03))
                workers.kill(victim)
                workers.spawn()
                await harness.start_all(client, next(feed, []))
            for rest in feed:
                await harness.start_all(client, rest)
            settle = partial(harness.settled, client)
            await until(settle, "every saga to settle", profile.deadline)
            final = await harness.final_state(client, [p.run for p in todo])
        exited = workers.exited()
    finally:
        workers.stop_all()
    verdict = _judge(workers, todo, final)
    return Result(
        verdict,
        {
            "sagas": len(todo),
            "planned_failures": oracle.planned_failures(p.fail_at for p in todo),
            "kills": profile.kills,
            "workers": profile.kill_workers,
            "seed": seed,
            "seconds": round(time.monotonic() - began, 1),
            "workers_exited_unasked": exited,
            "tracebacks_in_worker_logs": workers.tracebacks(),
            **verdict.figures,
        },
    )


async def restarts(cluster: Cluster, tmp: Path, profile: Profile, seed: int) -> Result:
    """Restart the (private) PostgreSQL server with ``-m immediate`` while workers run,
    ``profile.restarts`` times, each once a batch of sagas is a third done."""
    rng = random.Random(seed)
    todo = harness.plans(profile.restart_sagas, rng, prefix="r")
    url = await cluster.new_database()
    workers = Workers(url, tmp, concurrency=profile.concurrency)
    tail = workers.tail
    began = time.monotonic()
    try:
        for _ in range(profile.restart_workers):
            workers.spawn()
        await until(workers.serving, "every worker to be serving", profile.deadline)
        async with Engine(url, worker=False) as client:
            back, started, unfinished, resumed = time.monotonic(), 0, 0, 0.0
            for batch in harness.batches(todo, profile.restarts):
                await harness.start_all(client, batch)
                started += len(batch)
                goal = started - len(batch) * 2 // 3
                await until(partial(tail.reached, goal), "sagas to finish", profile.deadline)
                await _busy_worker(workers, rng, 5.0)  # and some step in flight somewhere
                await asyncio.sleep(rng.uniform(0.0, 0.1))
                unfinished = started - tail.done()
                with workers.fault("restart", None) as fault:
                    await asyncio.to_thread(cluster.restart_immediately)
                    await harness.server_ready(cluster.url)
                back = time.monotonic()
                committed = partial(tail.committed_after, fault)
                await until(committed, "a commit after the restart", profile.deadline)
                resumed = max(resumed, time.monotonic() - back)
            settle = partial(harness.settled, client)
            await until(settle, "every saga to settle", profile.deadline)
            recovered = time.monotonic() - back
            final = await harness.final_state(client, [p.run for p in todo])
        exited = workers.exited()
    finally:
        workers.stop_all()
    verdict = _judge(workers, todo, final)
    return Result(
        verdict,
        {
            "sagas": profile.restart_sagas,
            "planned_failures": oracle.planned_failures(p.fail_at for p in todo),
            "restarts": profile.restarts,
            "workers": profile.restart_workers,
            "seed": seed,
            "seconds": round(time.monotonic() - began, 1),
            "seconds_from_last_restart_to_all_done": round(recovered, 2),
            "sagas_unfinished_at_last_restart": unfinished,
            "longest_seconds_from_a_restart_to_a_commit": round(resumed, 2),
            "workers_exited_unasked": exited,
            "tracebacks_in_worker_logs": workers.tracebacks(),
            **verdict.figures,
        },
    )


def _stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


async def pause(url: str, tmp: Path, profile: Profile, seed: int, lease: float = 2.0) -> Result:
    """SIGSTOP a busy worker until the others have taken over its runs (past its lease),
    then SIGCONT it: it ends the steps it was stopped in and tries to record them, late;
    and the runs it held between two steps, it may try to go on with.

    On SQLite a worker stopped inside a write transaction keeps the file's lock and so
    stalls every other worker until it resumes; such a stop is undone at once and tried
    again (and counted), since no takeover can happen behind it.
    """
    rng = random.Random(seed)
    todo = harness.plans(profile.pause_sagas, rng, prefix="p", seconds=0.6, think=0.6)
    workers = Workers(url, tmp, concurrency=10, lease_seconds=lease)
    tail, began, retried = workers.tail, time.monotonic(), 0
    try:
        paused, _ = workers.spawn(), workers.spawn()
        async with Engine(url, worker=False) as client:
            await harness.start_all(client, todo)

            def loaded() -> bool:  # mid-step in some runs, between steps in others
                tail.poll()
                pid = paused.pid
                return len(tail.in_flight(pid)) >= 2 and len(tail.between_steps(pid)) >= 1

            while True:
                await until(loaded, "the worker to pause to be mid-step and between steps", 60)
                with workers.fault("pause", [paused.pid]):
                    paused.send_signal(signal.SIGSTOP)
                    await until(lambda: _stopped(paused.pid), "the worker to stop", 10.0)
                    if not await asyncio.to_thread(_write_lock_free, url):
                        paused.send_signal(signal.SIGCONT)  # it would stall every worker
                        retried += 1
                        assert retried < 50, "the worker always held the SQLite write lock"
                        continue
                    tail.poll()
                    held, stopped_at = set(tail.in_flight(paused.pid)), len(tail.lines)
                    between = set(tail.between_steps(paused.pid))
                    taken = partial(_taken_over, tail, paused.pid, held, between, stopped_at)
                    await until(taken, "the others to take over its runs", 60.0)
                    paused.send_signal(signal.SIGCONT)
                break

            def woke() -> bool:  # it ended the steps it had been stopped in
                tail.poll()
                return not (held & tail.in_flight(paused.pid))

            await until(woke, "the resumed worker to end its steps", 60.0)
            settle = partial(harness.settled, client)
            await until(settle, "every saga to settle", profile.deadline)
            await asyncio.sleep(1.0)  # time for its (fenced) commits to be attempted
            final = await harness.final_state(client, [p.run for p in todo])
        alive = paused.poll() is None
    finally:
        workers.stop_all()
    verdict = _judge(workers, todo, final)
    late = oracle.late_writes(tail.lines, final, paused.pid)
    return Result(
        verdict,
        {
            "sagas": profile.pause_sagas,
            "lease_seconds": lease,
            "stops_undone_as_it_held_the_sqlite_write_lock": retried,
            "steps_in_flight_when_paused": len(held),
            "runs_between_steps_when_paused": len(between),
            "steps_ended_after_waking": _ended_after(tail.lines, paused.pid, stopped_at),
            "late_writes_that_got_through": len(late),
            "late_writes": late[:10],
            "steps_begun_after_losing_the_run": verdict.counts()["late_starts"],
            "paused_worker_alive_after": alive,
            "seconds": round(time.monotonic() - began, 1),
            "tracebacks_in_worker_logs": workers.tracebacks(),
            **verdict.figures,
        },
    )


def _write_lock_free(url: str) -> bool:
    """No process holds the SQLite file's write lock (always True on PostgreSQL)."""
    if not url.startswith("sqlite:"):
        return True
    conn = sqlite3.connect(path_from_url(url), timeout=1.0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def _taken_over(
    tail: harness.Tail, pid: int, held: set[tuple[str, str]], between: set[str], since: int
) -> bool:
    """Another worker has begun every act ``pid`` was stopped in, and an act of every run
    it held between steps."""
    tail.poll()
    begun = [x for x in tail.lines[since:] if "fault" not in x and x["ev"] == "begin"]
    others = [x for x in begun if x["pid"] != pid]
    return held <= {(x["run"], x["act"]) for x in others} and between <= {x["run"] for x in others}


def _ended_after(lines: list[dict[str, Any]], pid: int, stopped_at: int) -> int:
    """Executions by ``pid`` begun before it was stopped and ended after it woke."""
    ledger = oracle.Ledger(lines)
    return sum(
        1
        for runs in ledger.executions.values()
        for e in runs
        if e.pid == pid and e.begin < stopped_at and (e.end or 0) >= stopped_at
    )
