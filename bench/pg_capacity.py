"""What one saga costs the PostgreSQL server, and the capacity model drawn from it:
``python -m bench.pg_capacity [--url URL] [--sagas 2000] [--in-flight 100] [--rounds 3]``.

The suite's B workload (``bench/workload.py``: the 4-step order saga, 2,000 sagas with 100
in flight, one engine with its client in this process) runs in a private database created
next to the one in ``--url`` (``sagaline_cap_<hex>``, a fresh schema per round) and dropped
at the end; the server's configuration is never touched. Each round first runs 100 warm-up
sagas, so the connection pool is full before the clock starts. Around the measured sagas it
reads, from the server:

- ``pg_stat_database`` and ``pg_stat_user_tables`` of the private database: transactions,
  blocks, tuples (read 11 s after the work: an idle backend flushes them within 10 s);
- WAL: ``pg_wal_lsn_diff`` of ``pg_current_wal_lsn()`` and ``pg_stat_wal``, both
  server-wide; and, where ``pg_waldump`` can read the WAL files (same machine), the
  private database's own records over that LSN range, by relation;
- ``pg_stat_statements`` for the private database, when the server preloads it;
- CPU of the server's processes from ``/proc``: the private database's backends plus the
  background processes (walwriter, checkpointer, ...) and the postmaster, as
  ``/proc/<pid>/schedstat`` nanoseconds and ``utime+stime`` clock ticks; and, as a noise
  check, every ``postgres`` process plus the children the postmaster reaped.

The client's CPU is this process's (engine and client, all threads), as in the suite. The
same meter first measures the floor: single-row INSERT+COMMIT on 16 connections. Each
measurement waits for a quiet server and machine, and is repeated (``--tries``) while
another database committed or another process used CPU in the same seconds. Figures are
per saga, the median of the rounds. Prints a table and the model and writes
``bench/results/pg_capacity.json``; ``docs/capacity.md`` explains the model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.workload import order_saga
from sagaline import Engine

RESULTS = Path(__file__).with_name("results")
Raw = dict[str, Any]
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
SETTLE_S = 11.0  # an idle backend flushes its pending statistics within 10 s
STEPS = 4
QUIET_XACTS = 5.0  # transactions/s elsewhere on the server that still count as quiet
QUIET_CPU = 0.10  # vCPUs busy outside this process that still count as quiet
NOISY_XACTS = 100.0  # transactions elsewhere during a measurement that spoil it
NOISY_CPU = 0.25  # vCPUs busy elsewhere during a measurement that spoil it

# The model's assumptions (docs/capacity.md says why each is what it is).
EFFICIENCY = 0.6  # fraction of linear CPU scaling a big server keeps (locks, WAL insertion)
WAL_BANDWIDTH = 1e9  # bytes/s of sustained WAL write on a datacenter NVMe volume
FLUSHES_PER_S = 5000  # WAL fsyncs/s such a volume sustains (0.2 ms per flush)
SERVERS = (8, 32, 96)
DBOS: dict[str, Any] = {
    "workflows_per_s": 43_000,
    "writes_per_s": 144_000,
    "vcpus": 96,
    "server": "AWS RDS db.m7i.24xlarge: 96 vCPU, 384 GB, io2 with 120K provisioned IOPS",
    "workflow": "a no-op workflow with no steps, started with DBOS.start_workflow_async "
    "(dbos-inc/dbos-postgres-benchmark, benchmarks/dbos_start_workflow.py): its start and "
    "its outcome checkpoints, about 3.3 writes per workflow (144K writes/s / 43K/s)",
    "source": "https://www.dbos.dev/blog/benchmarking-workflow-execution-scalability-on-postgres",
}

DB_COLUMNS = (
    "xact_commit",
    "xact_rollback",
    "blks_read",
    "blks_hit",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "deadlocks",
)
TABLE_COLUMNS = (
    "n_tup_ins",
    "n_tup_upd",
    "n_tup_hot_upd",
    "n_tup_del",
    "seq_scan",
    "seq_tup_read",
    "idx_scan",
    "idx_tup_fetch",
)
WAL_COLUMNS = ("wal_records", "wal_fpi", "wal_bytes", "wal_buffers_full", "wal_write", "wal_sync")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _schedstat_ns(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class Proc:
    ticks: int  # utime + stime
    ns: int  # time on a CPU (schedstat)


def postgres_processes() -> dict[int, tuple[int, Proc, int]]:
    """Every process whose command is ``postgres``: pid -> (ppid, its CPU, its reaped
    children's ticks)."""
    out: dict[int, tuple[int, Proc, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        pid = int(entry.name)
        f = _stat_fields(pid)
        if f is None:
            continue
        ppid, utime, stime, cutime, cstime = (int(f[i]) for i in (1, 11, 12, 13, 14))
        out[pid] = (ppid, Proc(utime + stime, _schedstat_ns(pid)), cutime + cstime)
    return out


def machine_busy_ms() -> float:
    """CPU time the whole machine has spent busy, all CPUs (``/proc/stat``; not idle,
    iowait or steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields)
    return (user + nice + system + irq + softirq) * TICK_MS


@dataclass
class Cpu:
    ours: dict[int, Proc]  # the private database's backends
    background: dict[int, Proc]  # processes of no database, and the postmaster
    server_ticks: int  # every postgres process, plus what the postmaster reaped
    machine_ms: float  # machine_busy_ms()


async def read_cpu(mon: asyncpg.Connection, dbname: str) -> Cpu:
    rows = await mon.fetch("SELECT pid, datname FROM pg_stat_activity")
    procs = postgres_processes()
    ours = {r["pid"] for r in rows if r["datname"] == dbname}
    background = {r["pid"] for r in rows if r["datname"] is None}
    background |= {pid for pid, (ppid, _, _) in procs.items() if ppid not in procs}
    reaped = sum(c for pid, (ppid, _, c) in procs.items() if ppid not in procs)
    return Cpu(
        {p: procs[p][1] for p in ours if p in procs},
        {p: procs[p][1] for p in background if p in procs},
        sum(p.ticks for _, p, _ in procs.values()) + reaped,
        machine_busy_ms(),
    )


def _spent(before: dict[int, Proc], after: dict[int, Proc]) -> tuple[float, float]:
    """(ms from schedstat, ms from ticks) spent between the two reads by the processes
    alive at the second (a process born in between counts from zero)."""
    zero = Proc(0, 0)
    ns = sum(p.ns - before.get(pid, zero).ns for pid, p in after.items())
    ticks = sum(p.ticks - before.get(pid, zero).ticks for pid, p in after.items())
    return ns / 1e6, ticks * TICK_MS


async def _row(conn: asyncpg.Connection, sql: str, *args: object) -> dict[str, float]:
    row = await conn.fetchrow(sql, *args)
    return {k: float(v or 0) for k, v in dict(row or {}).items()}


_RECORD = re.compile(r"^rmgr: (\S+)\s+len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+),")
_REL = re.compile(r"rel \d+/(\d+)/(\d+)")


def attribute_wal(dump: str, db_oid: int, names: dict[int, str]) -> dict[str, Any]:
    """The WAL records of one database in ``pg_waldump`` output: a record is the
    database's when a block it touches is (then its transaction is), and a record that
    touches no block (a commit) when its transaction is. Bytes are records' total
    lengths, full-page images included, page headers not."""
    by_rmgr: dict[str, float] = {}
    by_relation: dict[str, float] = {}
    txs: set[str] = set()
    blockless: list[tuple[str, str, float]] = []
    total = records = fpi = commits = 0.0

    def add(rmgr: str, relation: str, size: float) -> None:
        by_rmgr[rmgr] = by_rmgr.get(rmgr, 0) + size
        by_relation[relation] = by_relation.get(relation, 0) + size

    for line in dump.splitlines():
        m = _RECORD.match(line)
        if m is None:
            continue
        rmgr, size, tx = m.group(1), float(m.group(2)), m.group(3)
        total += size
        rels = [int(rel) for db, rel in _REL.findall(line) if int(db) == db_oid]
        if rels:
            txs.add(tx)
            records += 1
            fpi += line.count(" FPW")
            add(rmgr, names.get(rels[0], f"relfilenode {rels[0]}"), size)
        elif "blkref" not in line:
            blockless.append((rmgr, tx, size))
    for rmgr, tx, size in blockless:
        if tx != "0" and tx in txs:
            records += 1
            commits += rmgr == "Transaction"
            add(rmgr, "(no block: commit records)", size)
    return {
        "records": records,
        "fpi": fpi,
        "commit_records": commits,
        "bytes": sum(by_rmgr.values()),
        "all_bytes": total,
        "by_rmgr": dict(sorted(by_rmgr.items(), key=lambda kv: -kv[1])),
        "by_relation": dict(sorted(by_relation.items(), key=lambda kv: -kv[1])),
    }


@dataclass
class Waldump:
    """Where ``pg_waldump`` can read the server's WAL (same machine, readable files)."""

    tool: str
    wal_dir: str
    db_oid: int

    @classmethod
    async def find(cls, mon: asyncpg.Connection, dbname: str) -> Waldump | None:
        try:
            data_dir = str(await mon.fetchval("SHOW data_directory"))
        except asyncpg.PostgresError:
            return None
        major = int(await mon.fetchval("SHOW server_version_num")) // 10000
        tools = [shutil.which("pg_waldump"), f"/usr/lib/postgresql/{major}/bin/pg_waldump"]
        tool = next((t for t in tools if t and os.access(t, os.X_OK)), None)
        wal_dir = os.path.join(data_dir, "pg_wal")
        if tool is None or not os.access(wal_dir, os.R_OK | os.X_OK):
            return None
        oid = int(await mon.fetchval("SELECT oid FROM pg_database WHERE datname = $1", dbname))
        return cls(tool, wal_dir, oid)

    async def read(self, start: str, end: str, names: dict[int, str]) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            self.tool,
            "-p",
            self.wal_dir,
            "-s",
            start,
            "-e",
            end,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0 and not out:
            return {"error": err.decode(errors="replace").strip()}
        return attribute_wal(out.decode(errors="replace"), self.db_oid, names)


@dataclass
class Meter:
    """The server's counters before and after a piece of work: :meth:`start`, then
    :meth:`stop` as soon as the work is done (while its connections are still open, so
    their backends' CPU can be read), then :meth:`settle` once they are closed."""

    mon: asyncpg.Connection  # on the --url database, so its reads count there
    dbname: str
    probe: asyncpg.Connection  # on the private database: its tables' statistics
    statements: bool = False  # the server preloads pg_stat_statements
    waldump: Waldump | None = None  # the WAL files are readable here
    marks: dict[str, Any] = field(default_factory=dict)

    async def others(self) -> float:
        """Transactions so far in the other databases (this meter's own reads among them)."""
        return float(
            await self.mon.fetchval(
                "SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database "
                "WHERE datname IS DISTINCT FROM $1",
                self.dbname,
            )
            or 0
        )

    async def quiet(self, max_wait: float, window: float = 3.0) -> bool:
        """Wait until nothing else runs: the other databases commit under ``QUIET_XACTS``
        a second and the machine's CPU outside this process stays under ``QUIET_CPU``.
        False if that did not happen within ``max_wait`` seconds."""
        deadline, told = time.monotonic() + max_wait, False
        while True:
            x0, m0, c0 = await self.others(), machine_busy_ms(), time.process_time()
            await asyncio.sleep(window)
            x1, m1, c1 = await self.others(), machine_busy_ms(), time.process_time()
            foreign = (m1 - m0 - (c1 - c0) * 1000) / (window * 1000)
            if (x1 - x0) / window < QUIET_XACTS and foreign < QUIET_CPU:
                return True
            if time.monotonic() > deadline:
                return False
            if not told:
                print(
                    f"  waiting for a quiet server: {(x1 - x0) / window:.0f} transactions/s "
                    f"elsewhere, {foreign:.2f} vCPU busy outside this process",
                    flush=True,
                )
                told = True

    async def _counters(self) -> dict[str, Any]:
        db = await _row(
            self.mon,
            f"SELECT {', '.join(DB_COLUMNS)} FROM pg_stat_database WHERE datname = $1",
            self.dbname,
        )
        others = await self.others()
        try:
            wal = await _row(self.mon, f"SELECT {', '.join(WAL_COLUMNS)} FROM pg_stat_wal")
        except asyncpg.UndefinedTableError:  # before PostgreSQL 14
            wal = {}
        tables = {
            r["relname"]: {c: float(r[c]) for c in TABLE_COLUMNS}
            for r in await self.probe.fetch(
                f"SELECT relname, {', '.join(TABLE_COLUMNS)} FROM pg_stat_user_tables"
            )
        }
        stmts: dict[str, list[float]] = {}
        if self.statements:
            for r in await self.probe.fetch(
                "SELECT query, calls, total_exec_time, rows FROM pg_stat_statements s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1",
                self.dbname,
            ):
                stmts[r["query"]] = [float(r["calls"]), r["total_exec_time"], float(r["rows"])]
        return {
            "db": db,
            "others": float(others or 0),
            "wal": wal,
            "tables": tables,
            "statements": stmts,
        }

    async def start(self) -> None:
        self.marks = {"counters": await self._counters()}
        self.marks["lsn"] = await self.mon.fetchval("SELECT pg_current_wal_lsn()::text")
        self.marks["cpu"] = await read_cpu(self.mon, self.dbname)

    async def stop(self) -> None:
        self.marks["cpu_after"] = await read_cpu(self.mon, self.dbname)
        row = await self.mon.fetchrow(
            "SELECT pg_current_wal_lsn()::text AS lsn,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8 AS bytes",
            self.marks["lsn"],
        )
        self.marks["lsn_after"], self.marks["wal_bytes"] = row["lsn"], row["bytes"]
        self.marks["waldump"] = None
        if self.waldump is not None:  # now, before the server recycles those WAL files
            names = {
                int(r["relfilenode"]): r["relname"]
                for r in await self.probe.fetch(
                    "SELECT relfilenode, relname FROM pg_class WHERE relfilenode <> 0"
                )
            }
            self.marks["waldump"] = await self.waldump.read(self.marks["lsn"], row["lsn"], names)

    async def settle(self) -> dict[str, Any]:
        """The raw differences (after the backends have flushed their statistics)."""
        await asyncio.sleep(SETTLE_S)
        before, after = self.marks["counters"], await self._counters()
        cpu0: Cpu = self.marks["cpu"]
        cpu1: Cpu = self.marks["cpu_after"]
        ours_ms, ours_tick_ms = _spent(cpu0.ours, cpu1.ours)
        bg_ms, bg_tick_ms = _spent(cpu0.background, cpu1.background)
        stmts = {
            q: [v - before["statements"].get(q, [0.0, 0.0, 0.0])[i] for i, v in enumerate(s)]
            for q, s in after["statements"].items()
        }
        top = sorted(stmts.items(), key=lambda kv: -kv[1][1])[:10]
        tables = {
            t: {c: n - before["tables"].get(t, {}).get(c, 0.0) for c, n in v.items()}
            for t, v in sorted(after["tables"].items())
        }
        return {
            "pg_stat_database": {k: v - before["db"].get(k, 0) for k, v in after["db"].items()},
            "pg_stat_wal": {k: v - before["wal"].get(k, 0) for k, v in after["wal"].items()},
            "pg_stat_user_tables": {t: c for t, c in tables.items() if any(c.values())},
            "wal_bytes_lsn": self.marks["wal_bytes"],
            "wal_lsn_range": [self.marks["lsn"], self.marks["lsn_after"]],
            "waldump": self.marks["waldump"],
            "other_databases_xacts": after["others"] - before["others"],
            "server_cpu_ms": {
                "database_backends": ours_ms,
                "background": bg_ms,
                "database_backends_ticks": ours_tick_ms,
                "background_ticks": bg_tick_ms,
                "whole_server_ticks": (cpu1.server_ticks - cpu0.server_ticks) * TICK_MS,
                "whole_machine": cpu1.machine_ms - cpu0.machine_ms,
            },
            "backends_gone": sorted(set(cpu0.ours) - set(cpu1.ours)),
            "pg_stat_statements": (
                [{"query": q[:200], "calls": s[0], "ms": s[1], "rows": s[2]} for q, s in top]
                if self.statements
                else None
            ),
        }


def foreign_vcpu(raw: dict[str, Any]) -> float:
    """vCPUs that the machine spent, during the measurement, on anything but this process
    and the server's processes counted as ours."""
    cpu = raw["server_cpu_ms"]
    ours = raw["client_cpu_s"] * 1000 + cpu["database_backends"] + cpu["background"]
    return float(cpu["whole_machine"] - ours) / float(raw["wall_s"] * 1000)


def noisy(raw: dict[str, Any]) -> bool:
    return bool(raw["other_databases_xacts"] > NOISY_XACTS or foreign_vcpu(raw) > NOISY_CPU)


async def measured(
    meter: Meter, label: str, tries: int, max_wait: float, work: Callable[[], Awaitable[Raw]]
) -> Raw:
    """``work``, after waiting for a quiet server; again (up to ``tries`` times) while
    something else ran in the same seconds. The last try is kept, marked, if none was
    quiet."""
    for attempt in range(1, tries + 1):
        await meter.quiet(max_wait)
        raw = await work()
        raw["foreign_vcpu"] = foreign_vcpu(raw)
        raw["noisy"] = noisy(raw)
        if not raw["noisy"]:
            return raw
        print(
            f"  {label}, try {attempt}: not alone ({raw['other_databases_xacts']:.0f} "
            f"transactions elsewhere, {raw['foreign_vcpu']:.2f} vCPU busy outside)",
            flush=True,
        )
    return raw


def per_unit(raw: dict[str, Any], n: int) -> dict[str, float]:
    """The raw differences of one measurement as figures per saga (or per commit)."""
    db, wal, cpu = raw["pg_stat_database"], raw["pg_stat_wal"], raw["server_cpu_ms"]
    xacts = db["xact_commit"] + db["xact_rollback"]
    server = cpu["database_backends"] + cpu["background"]
    if server == 0:  # no schedstat: fall back to clock ticks
        server = cpu["database_backends_ticks"] + cpu["background_ticks"]
    dump = raw.get("waldump") or {}
    ok = "bytes" in dump
    out = {
        "per_s": n / raw["wall_s"],
        "transactions": xacts / n,
        # This database's records when pg_waldump could read them, else the server's WAL.
        "wal_bytes": (dump["bytes"] if ok else raw["wal_bytes_lsn"]) / n,
        "wal_bytes_server": raw["wal_bytes_lsn"] / n,
        "server_cpu_ms": server / n,
        "server_cpu_ms_backends": cpu["database_backends"] / n,
        "server_cpu_ms_background": cpu["background"] / n,
        "server_cpu_ms_ticks": (cpu["database_backends_ticks"] + cpu["background_ticks"]) / n,
        "whole_server_cpu_ms_ticks": cpu["whole_server_ticks"] / n,
        "client_cpu_ms": raw["client_cpu_s"] * 1000 / n,
        "tuples_written": (db["tup_inserted"] + db["tup_updated"] + db["tup_deleted"]) / n,
        "tuples_inserted": db["tup_inserted"] / n,
        "tuples_updated": db["tup_updated"] / n,
        "tuples_deleted": db["tup_deleted"] / n,
        "blocks_touched": (db["blks_hit"] + db["blks_read"]) / n,
    }
    if ok:
        out["write_transactions"] = dump["commit_records"] / n
        out["wal_records"] = dump["records"] / n
        out["wal_fpi"] = dump["fpi"] / n
    elif wal:
        out["wal_records"] = wal["wal_records"] / n
        out["wal_fpi"] = wal["wal_fpi"] / n
    if wal:
        out["wal_records_server"] = wal["wal_records"] / n
        out["wal_syncs"] = wal["wal_sync"] / n  # the server's: no per-database count exists
    return out


async def floor(
    meter: Meter, url: str, connections: int = 16, seconds: float = 3.0
) -> dict[str, Any]:
    """Single-row INSERT+COMMIT on ``connections`` connections, metered: the per-commit cost
    that a saga's cost is set against."""
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    await conns[0].execute("CREATE TABLE cap_floor (id bigserial PRIMARY KEY, data bytea)")
    for c in conns:  # each backend's catalog caches warm before the meter starts
        await c.execute("INSERT INTO cap_floor (data) VALUES ($1)", b"x" * 64)
    done = 0

    async def writer(conn: asyncpg.Connection, end: float) -> None:
        nonlocal done
        while time.perf_counter() < end:
            await conn.execute("INSERT INTO cap_floor (data) VALUES ($1)", b"x" * 64)
            done += 1

    await asyncio.sleep(SETTLE_S)
    await meter.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(writer(c, t0 + seconds) for c in conns))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await meter.stop()
    await conns[0].execute("DROP TABLE cap_floor")
    for c in conns:
        await c.close()
    raw = await meter.settle()
    raw |= {"count": done, "wall_s": wall, "client_cpu_s": cpu}
    return raw


async def saga_round(meter: Meter, url: str, n: int, in_flight: int) -> dict[str, Any]:
    """The B workload in a fresh schema, metered."""
    schema = f"cap_{uuid.uuid4().hex[:10]}"
    try:
        async with Engine(f"{url}?schema={schema}", concurrency=in_flight) as engine:
            gate = asyncio.Semaphore(in_flight)

            async def one(order_id: str) -> None:
                async with gate:
                    await (await engine.start(order_saga, order_id)).result()

            await asyncio.gather(*(one(f"warm-{i}") for i in range(in_flight)))
            await asyncio.sleep(SETTLE_S)
            await meter.start()
            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one(f"b-{i}") for i in range(n)))
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            await meter.stop()
        raw = await meter.settle()
    finally:
        conn = await asyncpg.connect(url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # generated: hex only
        await conn.close()
    return raw | {"count": n, "wall_s": wall, "client_cpu_s": cpu}


def model(saga: dict[str, float], commit: dict[str, float]) -> dict[str, Any]:
    """Sagas/s that servers of 8, 32 and 96 vCPUs would carry: the lesser of the CPU bound
    (linear in vCPUs at ``EFFICIENCY``) and the WAL bandwidth bound; and the WAL flushes per
    second that rate needs, next to what the volume is assumed to do."""
    per_vcpu = 1000 / saga["server_cpu_ms"]
    wal_bound = WAL_BANDWIDTH / saga["wal_bytes"]
    syncs = saga.get("wal_syncs") or saga["transactions"]  # no pg_stat_wal: one per commit
    servers = {}
    for vcpus in SERVERS:
        cpu = per_vcpu * vcpus * EFFICIENCY
        sagas = min(cpu, wal_bound)
        servers[str(vcpus)] = {
            "cpu_bound_sagas_per_s": cpu,
            "sagas_per_s": sagas,
            "limited_by": "server CPU" if cpu <= wal_bound else "WAL bandwidth",
            "steps_per_s": sagas * STEPS,
            "transactions_per_s": sagas * saga["transactions"],
            "tuples_written_per_s": sagas * saga["tuples_written"],
            "wal_mb_per_s": sagas * saga["wal_bytes"] / 1e6,
            "wal_flushes_per_s_at_measured_batching": sagas * syncs,
            "sagas_per_flush_needed": sagas / FLUSHES_PER_S,
            "worker_vcpus_to_feed_it": sagas * saga["client_cpu_ms"] / 1000,
        }
    dbos_writes_cpu = DBOS["writes_per_s"] * commit["server_cpu_ms"] / 1000
    return {
        "assumptions": {
            "cpu_bound": "the server's CPU is the limit; sagas/s per vCPU = 1000 / server CPU "
            "ms per saga (the database's backends plus the background processes), as measured "
            "on this machine's vCPUs",
            "efficiency": EFFICIENCY,
            "wal_bandwidth_bytes_per_s": WAL_BANDWIDTH,
            "wal_flushes_per_s": FLUSHES_PER_S,
            "group_commit": "flushes per saga as measured here at 100 in flight; a flush "
            "covers every commit waiting for it, so sagas per flush grow with load; the model "
            "shows how many sagas each flush must cover at the modelled rate",
        },
        "sagas_per_s_per_vcpu": per_vcpu,
        "floor_commits_per_s_per_vcpu": 1000 / commit["server_cpu_ms"],
        "saga_in_floor_commits": saga["server_cpu_ms"] / commit["server_cpu_ms"],
        "wal_bandwidth_bound_sagas_per_s": wal_bound,
        "servers": servers,
        "dbos": DBOS
        | {
            "workflows_per_s_per_vcpu": DBOS["workflows_per_s"] / DBOS["vcpus"],
            "writes_per_s_per_vcpu": DBOS["writes_per_s"] / DBOS["vcpus"],
            "vcpus_its_writes_would_use_at_our_floor_cost": dbos_writes_cpu,
            "sagaline_96_sagas_per_dbos_workflow": servers["96"]["sagas_per_s"]
            / DBOS["workflows_per_s"],
        },
    }


def median(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


def print_table(result: dict[str, Any]) -> None:
    saga, commit, m = result["per_saga"], result["floor"]["per_commit"], result["model"]
    print(f"\nsagaline on PostgreSQL: server cost per saga · {result['date']}")
    print(f"{result['machine']}; {result['server']}")
    print(
        f"B: {result['sagas']} order sagas ({STEPS} steps), {result['in_flight']} in flight, "
        f"median of {len(result['rounds'])} rounds\n"
    )
    rows = [
        ("sagas/s (commits/s for the floor)", "per_s", ".0f"),
        ("transactions", "transactions", ".2f"),
        ("  that wrote (commit records)", "write_transactions", ".3f"),
        ("WAL bytes (this database)", "wal_bytes", ".0f"),
        ("WAL bytes (server, LSN diff)", "wal_bytes_server", ".0f"),
        ("WAL records", "wal_records", ".1f"),
        ("WAL full-page images", "wal_fpi", ".2f"),
        ("WAL flushes (server)", "wal_syncs", ".3f"),
        ("tuples written", "tuples_written", ".1f"),
        ("  inserted / updated / deleted", "", ""),
        ("server CPU ms (backends + bg)", "server_cpu_ms", ".3f"),
        ("  of which backends", "server_cpu_ms_backends", ".3f"),
        ("  same from utime+stime ticks", "server_cpu_ms_ticks", ".3f"),
        ("  whole server (noise check)", "whole_server_cpu_ms_ticks", ".3f"),
        ("client CPU ms (engine + client)", "client_cpu_ms", ".3f"),
    ]
    print(f"  {'per saga':34} {'median':>10} {'rounds':>26} {'floor commit':>13}")
    for label, key, fmt in rows:
        if not key:
            split = ("tuples_inserted", "tuples_updated", "tuples_deleted")
            print(f"  {label:34} {' / '.join(f'{saga[k]:.1f}' for k in split):>10}")
            continue
        if key not in saga:
            continue
        each = " ".join(f"{r[key]:{fmt}}" for r in result["rounds"])
        print(f"  {label:34} {saga[key]:>10{fmt}} {each:>26} {commit.get(key, 0):>13{fmt}}")
    raws = [result["raw"]["floor"], *result["raw"]["rounds"]]
    others = ", ".join(f"{r['other_databases_xacts']:.0f}" for r in raws)
    foreign = ", ".join(f"{r['foreign_vcpu']:.2f}" for r in raws)
    print(
        f"  alone? transactions elsewhere (floor, rounds): {others}; vCPU busy elsewhere: {foreign}"
    )
    if any(r["noisy"] for r in raws):
        print("  WARNING: some measurements shared the machine; WAL and CPU figures are suspect")
    print(
        f"\nmodel: {m['sagas_per_s_per_vcpu']:.0f} sagas/s per server vCPU "
        f"(a saga costs the server {m['saga_in_floor_commits']:.1f} floor commits), "
        f"efficiency {EFFICIENCY}, WAL {WAL_BANDWIDTH / 1e9:.0f} GB/s, "
        f"{FLUSHES_PER_S} flushes/s"
    )
    print(f"  WAL bandwidth bound: {m['wal_bandwidth_bound_sagas_per_s']:,.0f} sagas/s")
    head = ("vCPU", "sagas/s", "steps/s", "tx/s", "WAL MB/s", "flushes/s", "sagas/flush")
    widths = (5, 9, 9, 9, 9, 10, 12)
    print("  " + " ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)) + "  worker vCPU")
    for vcpus, s in m["servers"].items():
        print(
            f"  {vcpus:>5} {s['sagas_per_s']:>9,.0f} {s['steps_per_s']:>9,.0f} "
            f"{s['transactions_per_s']:>9,.0f} {s['wal_mb_per_s']:>9.0f} "
            f"{s['wal_flushes_per_s_at_measured_batching']:>10,.0f} "
            f"{s['sagas_per_flush_needed']:>12.1f}  {s['worker_vcpus_to_feed_it']:>11.0f}"
            f"  ({s['limited_by']})"
        )
    print(
        "  (flushes/s at today's batching; sagas/flush that a volume doing "
        f"{FLUSHES_PER_S:,}/s needs)"
    )
    d = m["dbos"]
    print(
        f"  DBOS published: {d['workflows_per_s']:,} workflows/s on {d['vcpus']} vCPU "
        f"({d['workflows_per_s_per_vcpu']:.0f}/s per vCPU), {d['writes_per_s']:,} single-row "
        f"write transactions/s; at this machine's floor cost those writes would use "
        f"{d['vcpus_its_writes_would_use_at_our_floor_cost']:.1f} vCPUs"
    )
    print(f"  a DBOS workflow there: {d['workflow']}")
    by = result["wal_bytes_per_saga_by"]
    if by["by_relation"]:
        print("\nWAL bytes per saga, by relation (this database, median; pg_waldump):")
        for name, size in list(by["by_relation"].items())[:14]:
            print(f"  {name:30} {size:7.0f}")
        print(
            "  by resource manager: " + ", ".join(f"{k} {v:.0f}" for k, v in by["by_rmgr"].items())
        )
    print("\nper saga, by table (median):")
    for table, c in result["tables_per_saga"].items():
        print(
            f"  {table:14} ins {c['n_tup_ins']:5.2f}  upd {c['n_tup_upd']:5.2f}"
            f" (HOT {c['n_tup_hot_upd']:4.2f})  del {c['n_tup_del']:4.2f}   seq scans"
            f" {c['seq_scan']:5.2f} reading {c['seq_tup_read']:6.1f}, index scans"
            f" {c['idx_scan']:5.2f} fetching {c['idx_tup_fetch']:5.1f}"
        )


def code_version() -> str | None:
    """The commit the engine was measured at (``-dirty``: with uncommitted changes)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parents[1],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    code = code_version()  # now: the modules are imported, the commit may move on
    if not postgres_processes():
        raise SystemExit(
            "no postgres process on this machine: bench.pg_capacity reads the server's CPU "
            "from /proc, so the server in --url must run here"
        )
    parts = urlsplit(args.url)
    dbname = f"sagaline_cap_{uuid.uuid4().hex[:8]}"
    url = urlunsplit(parts._replace(path=f"/{dbname}", query=""))
    mon = await asyncpg.connect(args.url)
    await mon.execute(f'CREATE DATABASE "{dbname}"')  # generated name: hex only
    probe: asyncpg.Connection | None = None
    try:
        probe = await asyncpg.connect(url)
        preload = "pg_stat_statements" in str(await mon.fetchval("SHOW shared_preload_libraries"))
        if preload:  # in the private database only, dropped with it
            await probe.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        waldump = None if args.no_waldump else await Waldump.find(mon, dbname)
        meter = Meter(mon, dbname, probe, preload, waldump)
        tries, wait = args.tries, args.max_wait
        floor_raw = await measured(meter, "floor", tries, wait, lambda: floor(meter, url))
        print(f"floor: {floor_raw['count'] / floor_raw['wall_s']:.0f} commits/s", flush=True)
        raws = []
        for i in range(args.rounds):
            raws.append(
                await measured(
                    meter,
                    f"round {i + 1}",
                    tries,
                    wait,
                    lambda: saga_round(meter, url, args.sagas, args.in_flight),
                )
            )
            figures = per_unit(raws[-1], args.sagas)
            print(
                f"round {i + 1}: {figures['per_s']:.0f} sagas/s, "
                f"{figures['server_cpu_ms']:.3f} server CPU ms per saga"
                + (" (not alone on the machine)" if raws[-1]["noisy"] else ""),
                flush=True,
            )
        version = await mon.fetchval("SHOW server_version")
    finally:
        if probe is not None:
            await probe.close()
        await mon.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await mon.close()
    rounds = [per_unit(r, args.sagas) for r in raws]
    saga = median(rounds)
    tables = {
        t: {
            c: statistics.median(r["pg_stat_user_tables"].get(t, {}).get(c, 0.0) for r in raws)
            / args.sagas
            for c in TABLE_COLUMNS
        }
        for t in sorted({t for r in raws for t in r["pg_stat_user_tables"]})
    }
    dumps = [r["waldump"] for r in raws if r.get("waldump") and "bytes" in r["waldump"]]
    wal_by = {
        part: {
            k: statistics.median(d[part].get(k, 0.0) for d in dumps) / args.sagas
            for k in {k for d in dumps for k in d[part]}
        }
        for part in ("by_relation", "by_rmgr")
    }
    commit = per_unit(floor_raw, floor_raw["count"])
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} vCPUs shared by server and "
        f"client, Python {platform.python_version()}",
        "server": f"PostgreSQL {version} at {parts.hostname}:{parts.port}, fsync on, "
        "synchronous_commit on",
        "command": "python -m bench.pg_capacity",
        "code": code,
        "sagas": args.sagas,
        "in_flight": args.in_flight,
        "per_saga": saga,
        "rounds": rounds,
        "tables_per_saga": tables,
        "wal_bytes_per_saga_by": {
            part: dict(sorted(v.items(), key=lambda kv: -kv[1])) for part, v in wal_by.items()
        },
        "floor": {"connections": 16, "per_commit": commit},
        "model": model(saga, commit),
        "raw": {"floor": floor_raw, "rounds": raws},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--sagas", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tries", type=int, default=6, help="per round, while not alone")
    parser.add_argument(
        "--no-waldump", action="store_true", help="do not read the WAL files with pg_waldump"
    )
    parser.add_argument(
        "--max-wait", type=float, default=600.0, help="seconds to wait for a quiet server"
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "pg_capacity.json")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
