"""Choreography on each bus, every figure next to a floor measured in the same run:

    python -m bench.bus [--bus KIND ...] [--messages 5000] [--hops 500] [--sagas 200]
                        [--pg URL] [--nats URL] [--amqp URL] [--json FILE]

KIND is embedded-sqlite, embedded-postgres, nats or rabbitmq (all four by default; one
whose server cannot be reached is skipped, with the reason). For each bus:

1. **relay**: an engine's outbox relay (SQLite store) draining N rows written before it
   started, against the floor: the same bus client publishing the same N messages itself,
   in batches of 256 (the relay's batch). Target: relay >= 0.5 x raw.
2. **hop**: publish commit in this process -> ``@sagaline.on`` handler run started in a
   ``sagaline worker`` process (``bench.hop_consumer``); one message every 10 ms after a
   warm-up. Targets on NATS and the embedded broker: p50 <= 5 ms, p99 <= 25 ms.
3. **choreography**: the demo shop's saga across four worker processes (one SQLite file
   each), all sagas started at once, timed until a tap subscription of the benchmark has
   seen each OrderCompleted; next to the orchestrated 4-step saga (``bench.workload``) on
   SQLite, one worker process, same count, measured once in the same run.

Each measurement gets a namespace of its own (a stream, an exchange, a schema, a file),
deleted afterwards, and every worker process is stopped, whichever way the run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bus_sagas
from bench import bus_scenarios as sc
from sagaline.bus import open_bus
from sagaline.model.urls import redact

RESULTS = Path(__file__).with_name("results")
KINDS = ("embedded-sqlite", "embedded-postgres", "nats", "rabbitmq")
HOP_TARGETS = ("embedded-sqlite", "embedded-postgres", "nats")


class Namespaces:
    """Fresh namespaces on one kind of bus, each deleted when its block ends."""

    def __init__(self, kind: str, servers: argparse.Namespace, tmp: Path) -> None:
        self.kind, self.servers, self.tmp = kind, servers, tmp

    def url_for(self, tag: str) -> str:
        if self.kind == "embedded-sqlite":
            return f"sqlite:///{self.tmp / f'bus-{tag}.db'}"
        if self.kind == "embedded-postgres":
            return _with_query(self.servers.pg, schema=f"bench_bus_{tag}")
        if self.kind == "nats":
            return _with_query(self.servers.nats, stream=f"BENCH{tag}", prefix=f"bench{tag}")
        return _with_query(self.servers.amqp, exchange=f"bench{tag}")

    @contextlib.asynccontextmanager
    async def fresh(self) -> AsyncIterator[str]:
        url = self.url_for(uuid.uuid4().hex[:10])
        try:
            yield url
        finally:
            await self._delete_quietly(url)

    async def _delete_quietly(self, url: str) -> None:
        try:
            await self._delete(url)
        except Exception as exc:
            print(f"[{self.kind}] could not delete {redact(url)}: {exc}", file=sys.stderr)

    async def _delete(self, url: str) -> None:
        if self.kind == "embedded-sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        elif self.kind == "embedded-postgres":
            import asyncpg

            schema = url.rsplit("schema=", 1)[1]
            conn = await asyncpg.connect(self.servers.pg)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # hex name
            finally:
                await conn.close()
        elif self.kind == "nats":
            from sagaline.bus.nats import delete_namespace as delete_stream

            await delete_stream(url)
        else:
            from sagaline.bus.amqp import delete_namespace as delete_exchange

            await delete_exchange(url)

    async def unreachable(self) -> str | None:
        """Why this bus cannot be used here, or None (the probe's namespace is deleted)."""
        url = self.url_for(uuid.uuid4().hex[:10])
        bus = open_bus(url)
        try:
            await asyncio.wait_for(bus.open(), 15)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            await bus.aclose()
        await self._delete_quietly(url)
        return None


def _with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


async def _measure(label: str, run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """One scenario; a failure is recorded (and printed) and the run goes on."""
    try:
        out = await run()
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
    shown = {k: v for k, v in out.items() if k != "worker_log"}
    print(f"[{label}] {_rounded(shown)}", flush=True)
    return out


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _errors(result: dict[str, Any]) -> list[str]:
    parts = [result["orchestrated"]] + [
        part for r in result["buses"].values() for part in r.values() if isinstance(part, dict)
    ]
    return [part["error"] for part in parts if "error" in part]


async def run_kind(
    kind: str, servers: argparse.Namespace, tmp: Path, sizes: sc.Sizes
) -> dict[str, Any]:
    ns = Namespaces(kind, servers, tmp)
    reason = await ns.unreachable()
    if reason is not None:
        print(f"[{kind}] skipped: unreachable ({reason})", flush=True)
        return {"skipped": reason}
    return {
        "url": redact(ns.url_for("TAG")),
        "relay": await _measure(f"{kind} relay", lambda: sc.relay_scenario(ns.fresh, tmp, sizes)),
        "hop": await _measure(f"{kind} hop", lambda: sc.hop_scenario(ns.fresh, tmp, sizes)),
        "choreography": await _measure(
            f"{kind} choreography", lambda: bus_sagas.choreography_scenario(ns.fresh, tmp, sizes)
        ),
    }


async def run_all(args: argparse.Namespace, sizes: sc.Sizes) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # cleanups run
    load, busy = os.getloadavg()[0], _cpu_now()
    with tempfile.TemporaryDirectory(prefix="bench-bus-", dir=os.environ.get("BENCH_DIR")) as t:
        tmp = Path(t)
        orchestrated = await _measure(
            "orchestrated", lambda: bus_sagas.orchestrated_scenario(tmp, sizes)
        )
        buses = {kind: await run_kind(kind, args, tmp, sizes) for kind in args.bus or KINDS}
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_average": {"before": load, "after": os.getloadavg()[0]},
        "cores_busy": _cores_busy(busy, _cpu_now()),
        "sizes": sizes.__dict__,
        "orchestrated": orchestrated,
        "buses": buses,
    }


def _cpu_now() -> tuple[float, float, float]:
    """(wall, CPU seconds the whole machine used, CPU seconds this process and its waited
    children used): other work on the machine is the difference."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    t = os.times()
    mine = t.user + t.system + t.children_user + t.children_system
    return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), mine


def _cores_busy(
    before: tuple[float, float, float], after: tuple[float, float, float]
) -> dict[str, float]:
    wall = after[0] - before[0]
    return {
        "machine": (after[1] - before[1]) / wall,
        "benchmark": (after[2] - before[2]) / wall,
    }


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _sagas(r: dict[str, Any]) -> str:
    return (
        f"{r['sagas_per_s']:.0f} sagas/s from the first step "
        f"({r['sagas_per_s_with_pickup']:.0f}/s counting the {r['pickup_s']:.2f} s the "
        f"worker took to pick the starts up), {r['worker_cpu_ms_per_saga']:.1f} ms worker "
        f"CPU per saga"
    )


def print_table(result: dict[str, Any]) -> None:
    s, orch = result["sizes"], result["orchestrated"]
    print(f"\nsagaline bus benchmark · {result['date']} · {result['machine']}")
    print(
        f"{s['messages']:,} relayed messages, {s['hops']:,} hops every "
        f"{s['hop_interval'] * 1000:g} ms, {s['sagas']:,} sagas started at once"
    )
    busy = result["cores_busy"]
    print(
        f"cores busy on average: {busy['machine']:.2f} of {os.cpu_count()}, of which this "
        f"benchmark and its workers {busy['benchmark']:.2f} (the rest: the brokers, and any "
        f"other work, which skews these figures)"
    )
    if "error" in orch:
        print(f"\norchestrated 4-step saga (SQLite, 1 worker process): {orch['error']}")
    else:
        print(f"\norchestrated 4-step saga (SQLite, 1 worker process): {_sagas(orch)}")
        print(f"  mean step time {orch['step_ms']:.1f} ms")
    for kind, r in result["buses"].items():
        print(f"\n{kind}" + (f" ({r['url']})" if "url" in r else ""))
        if "skipped" in r:
            print(f"  skipped: {r['skipped']}")
            continue
        relay, hop, chor = r["relay"], r["hop"], r["choreography"]
        if "error" in relay:
            print(f"  relay         {relay['error']}")
        else:
            print(
                f"  relay         {relay['relay_msgs_per_s']:,.0f} msgs/s = "
                f"{relay['ratio']:.2f} x raw publish ({relay['raw_msgs_per_s']:,.0f} msgs/s, "
                f"batches of {sc.BATCH})   target >= 0.50 x: {_met(relay['ratio'] >= 0.5)}"
            )
        if "error" in hop:
            print(f"  hop           {hop['error']}")
        else:
            target = (
                f"target p50 <= 5, p99 <= 25 ms: {_met(hop['p50_ms'] <= 5 and hop['p99_ms'] <= 25)}"
                if kind in HOP_TARGETS
                else "(no target)"
            )
            print(
                f"  hop           p50 {hop['p50_ms']:.1f} ms, p90 {hop['p90_ms']:.1f} ms, "
                f"p99 {hop['p99_ms']:.1f} ms, max {hop['max_ms']:.1f} ms   {target}"
            )
            plain = hop["plain_subscriber"]
            print(
                f"                of which the bus (commit -> a plain subscriber): "
                f"p50 {plain['p50_ms']:.1f} ms, p99 {plain['p99_ms']:.1f} ms"
            )
        if "error" in chor:
            print(f"  choreography  {chor['error']}")
        else:
            versus = (
                f" = {chor['sagas_per_s'] / orch['sagas_per_s']:.2f} x orchestrated"
                if "sagas_per_s" in orch
                else ""
            )
            print(f"  choreography  {_sagas(chor)}")
            print(f"                over {chor['services']} service processes{versus}")
            steps = chor["services_steps"]
            shown = ", ".join(f"{k} {v['step_ms']:.1f} ms" for k, v in steps.items())
            print(f"                mean step time: {shown}")
            stuck = {k: int(v["completed_runs_steps_running"]) for k, v in steps.items()}
            if any(stuck.values()):
                shown = ", ".join(f"{k} {v}" for k, v in stuck.items() if v)
                print(f"                steps of COMPLETED runs recorded as RUNNING: {shown}")
        noise = [line for part in (hop, chor) for line in part.get("worker_log", [])]
        if noise:
            print(f"  worker log    {len(noise)} line(s), e.g. {noise[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bus", choices=KINDS, action="append", help="repeatable")
    parser.add_argument("--messages", type=int, default=sc.Sizes.messages)
    parser.add_argument("--hops", type=int, default=sc.Sizes.hops)
    parser.add_argument("--sagas", type=int, default=sc.Sizes.sagas)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--nats", default=os.environ.get("SAGALINE_TEST_NATS_URL", "nats://127.0.0.1:4222")
    )
    parser.add_argument(
        "--amqp",
        default=os.environ.get("SAGALINE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "bus.json")
    args = parser.parse_args()
    sizes = sc.Sizes(messages=args.messages, hops=args.hops, sagas=args.sagas)
    try:
        result = asyncio.run(run_all(args, sizes))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: namespaces deleted, workers stopped", file=sys.stderr)
        raise SystemExit(130) from None
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.json}")
    if errors := _errors(result):
        raise SystemExit(f"{len(errors)} measurement(s) failed, first: {errors[0]}")


if __name__ == "__main__":
    main()
