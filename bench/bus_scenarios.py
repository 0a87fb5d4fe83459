"""The bus benchmark's relay and hop scenarios (see :mod:`bench.bus`), and what the
saga scenarios (:mod:`bench.bus_sagas`) share with them.

A scenario gets ``fresh``: an async context manager yielding a bus URL on a new namespace
(stream, exchange, schema or file) that is deleted on leaving it. Worker processes are
``sagaline worker`` subprocesses, each logging to a file; :class:`Processes` stops them on
every way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.hop_consumer import SERVICE as HOP_SERVICE
from bench.hop_consumer import TOPIC as HOP_TOPIC
from bench.hop_consumer import Hop
from sagaline import Engine
from sagaline.bus import Delivery, Message, open_bus
from sagaline.engine.choreography import outside_message
from sagaline.model.codec import Codec
from sagaline.model.records import OutboxMessage

ROOT = Path(__file__).parents[1]
WORKER = [sys.executable, "-m", "sagaline", "worker", "--drain-seconds", "2"]
BATCH = 256
"""Messages per ``bus.publish`` in the floor: the relay's own batch (``RELAY_BATCH``)."""
RELAY_TOPIC = "BenchRelay"
READY_TIMEOUT = 60.0

Fresh = Callable[[], AbstractAsyncContextManager[str]]


@dataclass
class Sizes:
    messages: int = 5000
    hops: int = 500
    hop_warmup: int = 50
    hop_interval: float = 0.010
    sagas: int = 200
    saga_warmup: int = 5
    rounds: int = 2


class Processes:
    """The worker processes of one scenario; ``async with`` stops them all on leaving."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs: dict[str, Path] = {}
        self._procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(
        self, name: str, args: list[str], ready: str, env: Mapping[str, str] | None = None
    ) -> None:
        """Start ``sagaline worker ARGS``; it is ready once it prints a line starting ``ready``."""
        log = self.tmp / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.logs[name] = log
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*WORKER, *args],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        self._procs[name] = (proc, ready)

    async def ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for name, (proc, marker) in self._procs.items():
            while not any(line.startswith(marker) for line in self._lines(name)):
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {name} exited: {self.tail(name)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {name} not ready in {timeout:g} s")
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        for proc, _ in self._procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self._procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()

    def cpu_seconds(self) -> float:
        """User + system CPU the running workers have used so far."""
        total = 0
        for proc, _ in self._procs.values():
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def noise(self) -> list[str]:
        """What the workers logged (``logging`` lines: name and message, without the time)."""
        return [
            line.split(" ", 2)[2]
            for name in self.logs
            for line in self._lines(name)
            if line[:2] == "20" and len(line.split(" ", 3)) > 3
        ]

    def tail(self, name: str) -> str:
        return " | ".join(self._lines(name)[-5:]) or "(no output)"

    def _lines(self, name: str) -> list[str]:
        try:
            return self.logs[name].read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []


async def until(what: str, done: Callable[[], bool], timeout: float, poll: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(poll)


# -- 1. relay throughput against the same client's raw publish rate ------------------------


def relay_messages(n: int) -> list[OutboxMessage]:
    """``n`` events as ``engine.publish`` writes them: 100-byte JSON bodies."""
    codec, at = Codec(), time.time()
    return [
        outside_message(
            codec,
            RELAY_TOPIC,
            {
                "order_id": f"order-{i:08d}",
                "sku": "SKU-0042",
                "qty": 1 + i % 5,
                "amount": 1999,
                "note": "relay benchmark, ~100 B",
            },
            None,
            None,
            "bench",
            at,
        )
        for i in range(n)
    ]


async def _sink(url: str) -> None:
    """One durable group on the topic, not listening: every message is stored for it, as
    for a real subscriber, and nothing consumes it while the clock runs."""

    async def never(delivery: Delivery) -> None:
        await delivery.nack(60.0)

    bus = open_bus(url)
    await bus.open()
    try:
        await (await bus.subscribe("bench.sink", [RELAY_TOPIC], never, prefetch=1)).aclose()
    finally:
        await bus.aclose()


async def raw_publish(url: str, messages: list[OutboxMessage]) -> float:
    """Messages/s of ``bus.publish`` in batches of 256, one batch after the other."""
    await _sink(url)
    wire = [Message(m.id, m.topic, m.body, m.headers) for m in messages]
    bus = open_bus(url)
    await bus.open()
    try:
        started = time.perf_counter()
        for i in range(0, len(wire), BATCH):
            await bus.publish(wire[i : i + BATCH])
        return len(wire) / (time.perf_counter() - started)
    finally:
        await bus.aclose()


async def relay(url: str, store_url: str, messages: list[OutboxMessage]) -> float:
    """Messages/s of an engine's relay draining an outbox filled before it started."""
    n = len(messages)
    async with Engine(store_url, worker=False) as filler:
        for i in range(0, n, 1000):
            await filler.store.append_outbox(messages[i : i + 1000])
        assert await filler.outbox_size() == n
    await _sink(url)
    engine = Engine(store_url, worker=False, bus=url, service="bench")
    await engine.open()
    try:
        await engine.bus_ready(30)
        started = time.perf_counter()  # the relay starts on the same wake-up, just before
        link = engine._link  # its `published` counter is there for benchmarks
        assert link is not None
        await until("the relay's last confirm", lambda: link.published >= n, 120, 0.001)
        while await engine.outbox_size():
            await asyncio.sleep(0.001)
        return n / (time.perf_counter() - started)
    finally:
        await engine.aclose()


async def relay_scenario(fresh: Fresh, tmp: Path, sizes: Sizes) -> dict[str, Any]:
    """Floor and relay in turns, each on a fresh namespace; the best of each is kept."""
    messages = relay_messages(sizes.messages)
    raw, relayed = [], []
    for _ in range(sizes.rounds):
        async with fresh() as url:
            raw.append(await raw_publish(url, messages))
        async with fresh() as url:
            store = f"sqlite:///{tmp / f'relay-{uuid.uuid4().hex[:8]}.db'}"
            relayed.append(await relay(url, store, messages))
    return {
        "messages": len(messages),
        "body_bytes": round(sum(len(m.body) for m in messages) / len(messages)),
        "raw_msgs_per_s": max(raw),
        "relay_msgs_per_s": max(relayed),
        "ratio": max(relayed) / max(raw),
        "rounds": {"raw": raw, "relay": relayed},
        "relay_store": "sqlite",
    }


# -- 2. hop latency: publish commit here -> handler run started in another process --------


def _hops(log: Path) -> dict[int, float]:
    """Index -> seconds from before the publish commit to the handler's start (first seen)."""
    seen: dict[int, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in log.read_text().splitlines():
            index, sent, started = line.split()
            seen.setdefault(int(index), float(started) - float(sent))
    return seen


async def _send(producer: Engine, indices: Iterable[int], interval: float) -> None:
    due = time.perf_counter()
    for index in indices:
        await producer.publish(HOP_TOPIC, Hop(index, time.time()))
        due += interval
        await asyncio.sleep(max(0.0, due - time.perf_counter()))


class HopTap:
    """A plain subscriber to the hops in this process: the bus's share of a hop."""

    def __init__(self, url: str) -> None:
        self.bus = open_bus(url)
        self.seen: dict[int, float] = {}

    async def open(self) -> None:
        await self.bus.open()
        await self.bus.subscribe("bench.hoptap", [HOP_TOPIC], self._seen)

    async def _seen(self, delivery: Delivery) -> None:
        now, hop = time.time(), json.loads(delivery.message.body)
        self.seen.setdefault(int(hop["index"]), now - float(hop["sent_at"]))
        await delivery.ack()


def _percentiles(seconds: Iterable[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "p50_ms": ms[len(ms) // 2],
        "p90_ms": ms[int(len(ms) * 0.9)],
        "p99_ms": ms[int(len(ms) * 0.99)],
        "max_ms": ms[-1],
    }


async def hop_scenario(fresh: Fresh, tmp: Path, sizes: Sizes) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    log = tmp / f"hops-{tag}.txt"
    warm, total = sizes.hop_warmup, sizes.hop_warmup + sizes.hops
    async with fresh() as url, Processes(tmp) as procs:
        procs.start(
            "hop-consumer",
            [
                *("--db", f"sqlite:///{tmp / f'hop-{tag}.db'}", "--bus", url),
                *("--service", HOP_SERVICE, "--import", "bench.hop_consumer"),
            ],
            "service ",
            {"BENCH_HOP_LOG": str(log)},
        )
        await procs.ready()
        tap = HopTap(url)
        producer_db = f"sqlite:///{tmp / f'hop-producer-{tag}.db'}"
        try:
            await tap.open()
            async with Engine(producer_db, worker=False, bus=url, service="hopper") as producer:
                await producer.bus_ready(30)
                await _send(producer, range(warm), sizes.hop_interval)
                await until("the warm-up hops", lambda: len(_hops(log)) >= warm, 60, 0.05)
                await _send(producer, range(warm, total), sizes.hop_interval)
                await until("every hop", lambda: len(_hops(log)) >= total, 60, 0.05)
                await until("the tap's hops", lambda: len(tap.seen) >= total, 60, 0.05)
        finally:
            await tap.bus.aclose()
    return {
        "messages": sizes.hops,
        "interval_ms": sizes.hop_interval * 1000,
        **_percentiles(s for i, s in _hops(log).items() if i >= warm),
        "plain_subscriber": _percentiles(s for i, s in tap.seen.items() if i >= warm),
        "worker_log": procs.noise()[:20],
    }
