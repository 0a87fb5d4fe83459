"""Plumbing shared by the chaos experiments: worker processes, the ledger, the final state.

Workers are started as users start them (``sagaline worker --import tests.chaos.saga``),
each writing its log to a file of its own, all writing to one ledger. Every fault the
harness inflicts is bracketed by two ledger lines (``fault`` begin and end), written by the
harness itself with the same ``O_APPEND`` discipline, so the oracle sees faults and
executions in one order.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sagaline import Engine, RunNotFoundError, RunStatus
from sagaline.model.errors import DatabaseUnavailableError
from sagaline.model.records import StepRecord
from sagaline.model.status import StepKind
from tests.chaos import oracle, saga

T = TypeVar("T")
ROOT = Path(__file__).parents[2]
UNSETTLED = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED, RunStatus.COMPENSATING)
OUTCOMES = frozenset({"StepSucceeded", "StepFailed", "CompensationSucceeded", "CompensationFailed"})


def plans(
    n: int, rng: random.Random, prefix: str = "c", seconds: float = 0.03, think: float = 0.0
) -> list[saga.Plan]:
    """``n`` sagas, one in ten planned to fail at step 1, 2 or 3; step times vary."""
    return [
        saga.Plan(
            f"{prefix}{i:05d}",
            fail_at=1 + (i // 10) % (saga.STEPS - 1) if i % 10 == 5 else -1,
            seconds=round(rng.uniform(0.2, 1.0) * seconds, 4),
            think=round(rng.uniform(0.2, 1.0) * think, 4),
        )
        for i in range(n)
    ]


class Tail:
    """The ledger as it grows: read incrementally, with what the experiments ask of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[dict[str, Any]] = []
        self._offset = 0
        self._open: dict[int, set[tuple[str, str]]] = defaultdict(set)
        self._between: dict[int, set[str]] = defaultdict(set)
        self.finished: set[str] = set()

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for raw in complete.splitlines():
            self._take(json.loads(raw))

    def _take(self, line: dict[str, Any]) -> None:
        self.lines.append(line)
        if "fault" in line:
            return
        pid, key = line["pid"], (line["run"], line["act"])
        if line["ev"] == "begin":
            self._open[pid].add(key)
            self._between[pid].discard(line["run"])
        elif line["ev"] == "end":
            self._open[pid].discard(key)
            if line["act"] == "u0":
                self.finished.add(line["run"])
        elif line["act"] == f"s{saga.STEPS - 1}":
            self.finished.add(line["run"])
        else:
            self._between[pid].add(line["run"])

    def done(self) -> int:
        """Sagas whose last act has ended (as far as the ledger can tell)."""
        self.poll()
        return len(self.finished)

    def reached(self, finished: int) -> bool:
        return self.done() >= finished

    def committed_after(self, fault: str) -> bool:
        """A line written after ``fault`` ended proves a commit landed since: an ack, or
        the begin of an act that follows another (it waited for that commit)."""
        self.poll()
        ended = next(
            (i for i, x in enumerate(self.lines) if x.get("fault") == fault and x["ev"] == "end"),
            len(self.lines),
        )
        return any(
            "fault" not in line
            and (line["ev"] == "ack" or (line["ev"] == "begin" and line["act"] != "s0"))
            for line in self.lines[ended + 1 :]
        )

    def in_flight(self, pid: int) -> set[tuple[str, str]]:
        """The acts ``pid`` has begun and not ended."""
        return self._open[pid]

    def between_steps(self, pid: int) -> set[str]:
        """The runs in which ``pid`` has acknowledged a step and not begun the next."""
        return self._between[pid]


@dataclass
class Workers:
    """``sagaline worker`` processes on one database, all writing to one ledger."""

    url: str
    tmp: Path
    concurrency: int = 10
    lease_seconds: float = 5.0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    live: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ledger = self.tmp / "ledger.jsonl"
        self.tail = Tail(self.ledger)
        self._fd = saga.open_ledger(str(self.ledger))
        self._faults = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"worker-{len(self.procs)}.log").open("wb")
        command = [
            *(sys.executable, "-m", "sagaline", "worker", "--db", self.url),
            *("--import", "tests.chaos.saga", "--concurrency", str(self.concurrency)),
            *("--lease-seconds", str(self.lease_seconds)),
        ]
        env = {**os.environ, "CHAOS_LEDGER": str(self.ledger)}
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        self.live.append(proc)
        return proc

    def serving(self) -> bool:
        """Whether every worker spawned so far has opened the database and serves: a
        restart before that is a worker's start failing, which is not the experiment."""
        logs = (self.tmp / f"worker-{i}.log" for i in range(len(self.procs)))
        return all(b"worker serving" in log.read_bytes() for log in logs)

    @contextmanager
    def fault(self, kind: str, pids: Iterable[int] | None) -> Iterator[str]:
        """Bracket a fault with its two ledger lines (``pids`` None: every worker); the
        fault's name."""
        self._faults += 1
        name = f"{kind}-{self._faults}"
        shown = None if pids is None else sorted(pids)
        saga.append(self._fd, {"fault": name, "ev": "begin", "pids": shown, "t": time.time()})
        try:
            yield name
        finally:
            saga.append(self._fd, {"fault": name, "ev": "end", "pids": shown, "t": time.time()})

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        with self.fault("kill", [proc.pid]):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.live.remove(proc)

    def busy(self) -> list[subprocess.Popen[bytes]]:
        """Live workers with a step or compensation in flight right now (by the ledger)."""
        self.tail.poll()
        return [p for p in self.live if p.poll() is None and self.tail.in_flight(p.pid)]

    def exited(self) -> list[str]:
        """Workers that ended on their own, with their exit codes."""
        return [f"pid {p.pid}: {p.returncode}" for p in self.live if p.poll() is not None]

    def tracebacks(self) -> int:
        logs = self.tmp.glob("worker-*.log")
        return sum(log.read_text(errors="replace").count("Traceback") for log in logs)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait()
        os.close(self._fd)


async def until(check: Callable[[], Awaitable[bool] | bool], what: str, deadline: float) -> None:
    """Wait for a condition, polling; fail naming it when ``deadline`` seconds pass."""
    end = time.monotonic() + deadline
    while True:
        done = check()
        if not isinstance(done, bool):
            done = await done
        if done:
            return
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:g} s waiting for {what}")
        await asyncio.sleep(0.02)


async def retrying(call: Callable[[], Awaitable[T]], deadline: float = 60.0) -> T:
    """For a client whose server may be restarting: retry while the database is away."""
    end = time.monotonic() + deadline
    while True:
        try:
            return await call()
        except (DatabaseUnavailableError, OSError):
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.1)


async def start_all(client: Engine, batch: Sequence[saga.Plan]) -> None:
    for plan in batch:
        await retrying(partial(client.start, saga.saga, plan, run_id=plan.run))


async def settled(client: Engine) -> bool:
    for status in UNSETTLED:
        if await retrying(partial(client.list_runs, status, limit=1)):
            return False
    return True


def _act(step: StepRecord, by_seq: dict[int, StepRecord]) -> str:
    if step.kind is StepKind.STEP and step.name.startswith("chaos.s"):
        return step.name.removeprefix("chaos.")
    target = by_seq.get(step.compensates_seq or -1)
    if step.kind is StepKind.COMPENSATION and target is not None:
        return "u" + target.name.removeprefix("chaos.s")
    return f"{step.kind.value}:{step.name}"


def _row(step: StepRecord, by_seq: dict[int, StepRecord]) -> oracle.Row:
    pid = json.loads(step.output) if step.kind is StepKind.STEP and step.output else None
    return oracle.Row(_act(step, by_seq), step.status.value, pid if isinstance(pid, int) else None)


async def final_state(client: Engine, run_ids: Iterable[str]) -> dict[str, oracle.FinalRun]:
    """What the store says at the end, reduced to the oracle's plain data."""
    out: dict[str, oracle.FinalRun] = {}
    gate = asyncio.Semaphore(16)

    async def one(run_id: str) -> None:
        async with gate:
            try:
                run = await client.get_run(run_id)
                steps = await client.steps(run_id)
                events = await client.history(run_id)
            except RunNotFoundError:
                return
        by_seq = {s.seq: s for s in steps}
        rows = tuple(_row(s, by_seq) for s in steps)
        outcomes = tuple(e.seq for e in events if e.type in OUTCOMES and e.seq is not None)
        out[run_id] = oracle.FinalRun(run.status.value, rows, outcomes)

    await asyncio.gather(*(one(r) for r in run_ids))
    return out


def batches(items: Sequence[saga.Plan], n: int) -> list[Sequence[saga.Plan]]:
    size = max(1, math.ceil(len(items) / max(n, 1)))
    return [items[i : i + size] for i in range(0, len(items), size)]


async def server_ready(url: str, deadline: float = 60.0) -> None:
    """Wait until a restarted PostgreSQL server accepts connections again."""
    import asyncpg

    async def answers() -> bool:
        try:
            conn = await asyncpg.connect(url, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        await conn.close()
        return True

    await until(answers, "PostgreSQL to accept connections again", deadline)
