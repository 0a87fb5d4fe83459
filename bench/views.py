"""How fast the views answer with a million runs stored: the runs list, a run's detail and
the needs-attention page, over HTTP from a real ``sagaline serve``, on each store; and
with a million choreographed sagas in the tracker's tables: the sagas list (with its counts
by status), its pages, one saga's detail.

    python -m bench.views [--runs 1000000] [--store sqlite|postgres|both] [--requests 200]
    python -m bench.views --part sagas [--sagas 1000000]   # only the sagas

The database is made with the store's own migrations (``Engine(url)`` opens it once), then
filled with SQL straight into those tables: a bench may, the engine never does. The spread:
about 90 % COMPLETED, some COMPENSATED, FAILED and CANCELLED, a few active, 0.1 % parked
(COMPENSATION_FAILED, FAILED_AFTER_PIVOT, BLOCKED); five workflows; ``created_at`` over 90
days, inserted oldest first as a live system would; uuid4 ids. ``--detailed`` runs spread
over the 90 days (and every parked one) also get their steps (about 4) and events (about
10), shaped like the engine's. Secondary indexes are dropped during the load and created
again from their own definitions; PostgreSQL is then ``VACUUM ANALYZE``d (autovacuum would
get there), SQLite is not analysed (sagaline never runs ``ANALYZE``).

Each endpoint gets a warm-up, then ``--requests`` sequential requests on one keep-alive
connection; p50 and p99 of the wall time each took are compared with issue 11's targets
(p50 <= 20 ms, p99 <= 100 ms). The store calls behind them are timed in-process too, and
the plans of the slow ones printed. Writes ``bench/results/views.json``.

The sagas get a database of their own: a store's schema (for the server's tokens) and the
tracker's tables, made by the tracker store's own ``open``, then filled by set-based SQL
(``INSERT ... SELECT`` over a series) with indexes dropped and made again as for the runs.
The spread: three choreographies (deadlines of 5 min, 1 h, none); about 90.5 % COMPLETED,
5 % COMPENSATED, 3 % FAILED, the rest open (STALLED past the deadline, IN_PROGRESS
otherwise), the newest 500 all open; ``started_at`` over 90 days; each saga has its 2 or 3
events (start, an answer, how it ended), caused one by the other, so that what the reading
tracker shows matches its summary row. Its figures go under ``sagas`` in the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from sagaline import Engine
from sagaline.model.choreography import Declaration, SagaQuery, SagaStatus, Subscription
from sagaline.store import open_store
from sagaline.store.postgres import tracker as postgres_tracker
from sagaline.store.protocol import RunQuery
from sagaline.store.sqlite import tracker as sqlite_tracker
from sagaline.store.tracker import open_tracker_store

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "bench" / "results" / "views.json"
PG_URL = "postgresql://postgres@127.0.0.1:5432/sagaline_bench_views"
PG_SAGAS_URL = "postgresql://postgres@127.0.0.1:5432/sagaline_bench_sagas"
P50_MS, P99_MS = 20.0, 100.0
DAY = 86400.0
CHUNK = 50_000
WORKFLOWS = {"order": 40, "payment": 25, "shipment": 15, "refund": 10, "signup": 10}
STATUSES = {
    "COMPLETED": 90.5,
    "COMPENSATED": 5.0,
    "FAILED": 3.0,
    "CANCELLED": 1.0,
    "SUSPENDED": 0.2,
    "RUNNING": 0.1,
    "PENDING": 0.1,
    "COMPENSATION_FAILED": 0.04,
    "FAILED_AFTER_PIVOT": 0.03,
    "BLOCKED": 0.03,
}
PARKED = ("COMPENSATION_FAILED", "FAILED_AFTER_PIVOT", "BLOCKED")
RUN_COLUMNS = [
    *("run_id", "workflow", "status", "input", "output", "error", "queue", "owner"),
    *("lease_until", "lease_epoch", "wake_at", "parent_run_id", "app_version"),
    *("cancel_requested", "created_at", "updated_at", "traceparent"),
]
STEP_COLUMNS = [
    *("run_id", "seq", "name", "kind", "status", "input", "output", "error", "attempts"),
    *("compensable", "pivot", "compensates_seq", "done_index", "started_at", "finished_at"),
    "branch",
]
EVENT_COLUMNS = ["run_id", "at", "type", "seq", "data"]
Row = tuple[Any, ...]


# --- the data -------------------------------------------------------------------------------


def error(kind: str, message: str, step: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"type": kind, "message": message}
    if step is not None:
        found["step"] = step
    return found


class History:
    """One run's steps and events, written as the engine writes them."""

    def __init__(self, run_id: str, workflow: str, at: float, item: bytes) -> None:
        self.run_id, self.workflow, self.at, self.item = run_id, workflow, at, item
        self.steps: list[Row] = []
        self.events: list[Row] = []
        self.event("RunStarted", None, workflow=workflow)

    def tick(self) -> float:
        self.at += 0.003
        return self.at

    def event(self, kind: str, seq: int | None, **data: Any) -> None:
        self.events.append((self.run_id, self.tick(), kind, seq, json.dumps(data)))

    def step(self, seq: int, name: str, fails: int = 0, final: bool = False) -> None:
        """A forward step: ``fails`` failed attempts, and (``final``) no success after."""
        step, started = f"{self.workflow}.{name}", self.tick()
        self.event("StepStarted", seq, step=step)
        oops = error("builtins.RuntimeError", f"{name} is unavailable")
        for attempt in range(1, fails + 1):
            self.event("StepAttemptFailed", seq, step=step, attempt=attempt, error=oops, retry_in=1)
        attempts = fails + (0 if final else 1)
        if final:
            self.event("StepFailed", seq, step=step, attempts=attempts, error=oops)
        else:
            self.event("StepSucceeded", seq, step=step, attempts=attempts)
        output = None if final else b'{"ref": "' + self.run_id[:12].encode() + b'"}'
        self.steps.append(
            (
                *(self.run_id, seq, step, "step", "FAILED" if final else "SUCCEEDED", self.item),
                *(output, json.dumps(oops) if final else None, attempts),
                *(name in ("reserve", "charge"), name == "ship", None, seq, started, self.tick()),
                "",
            )
        )

    def undo(self, seq: int, of: int, name: str, ok: bool = True) -> None:
        step, compensation = f"{self.workflow}.{name}", f"{self.workflow}.un{name}"
        started = self.tick()
        self.event("CompensationStarted", seq, step=step)
        if ok:
            self.event(
                "CompensationSucceeded", seq, step=step, compensation=compensation, attempts=1
            )
        else:
            oops = error("builtins.RuntimeError", f"cannot undo {name}")
            self.event(
                "CompensationAttemptFailed",
                seq,
                step=step,
                compensation=compensation,
                attempt=1,
                error=oops,
                retry_in=1,
            )
            self.event("CompensationFailed", seq, step=step, compensation=compensation, attempts=2)
        self.steps.append(
            (
                *(self.run_id, seq, compensation, "compensation", "SUCCEEDED" if ok else "FAILED"),
                *(None, None, None if ok else json.dumps(error("builtins.RuntimeError", "no"))),
                *(1 if ok else 2, False, False, of, 0, started, self.tick(), ""),
            )
        )


def history(run: Row) -> History:
    """The steps and events that end in ``run``'s status."""
    h = History(run[0], run[1], run[14], run[3])
    status, failure = run[2], error("builtins.RuntimeError", "unavailable", "x")
    if status == "FAILED":
        h.step(1, "reserve", fails=2, final=True)
        h.event("RunFailed", None, error=failure)
    elif status in ("COMPLETED", "FAILED_AFTER_PIVOT"):
        for seq, name in enumerate(("reserve", "charge", "ship"), 1):
            h.step(seq, name)
        h.step(4, "notify", fails=2, final=status != "COMPLETED")
        if status == "COMPLETED":
            h.event("RunCompleted", None)
        else:
            h.event("RunFailedAfterPivot", None, error=failure)
    elif status in ("COMPENSATED", "COMPENSATION_FAILED", "CANCELLED"):
        h.step(1, "reserve")
        h.step(2, "charge", fails=1, final=status == "COMPENSATION_FAILED")
        h.event("RunCompensating", None, error=failure, steps=["reserve"])
        h.undo(3, 1, "reserve", ok=status != "COMPENSATION_FAILED")
        if status == "COMPENSATED":
            h.event("RunCompensated", None, error=failure)
        elif status == "CANCELLED":
            h.event("RunCancelled", None, by="ops", reason="customer asked")
    elif status != "PENDING":
        h.step(1, "reserve")
        h.step(2, "charge")
        if status == "BLOCKED":
            h.event("RunBlocked", None, error=error("HistoryMismatch", "code changed"))
        elif status == "SUSPENDED":
            h.event("RunSuspended", None, waits=["approved"])
    return h


@dataclass
class Spread:
    """The runs to insert, made chunk by chunk (oldest first), and which got a history."""

    runs: int
    detailed: int
    seed: int = 11
    now: float = field(default_factory=time.time)
    detail_ids: list[str] = field(default_factory=list)
    parked_ids: list[str] = field(default_factory=list)

    def chunks(self) -> Iterator[tuple[list[Row], list[Row], list[Row]]]:
        rng = random.Random(self.seed)
        times = sorted(self.now - 90 * DAY + rng.random() * 90 * DAY for _ in range(self.runs))
        statuses = rng.choices(list(STATUSES), list(STATUSES.values()), k=self.runs)
        workflows = rng.choices(list(WORKFLOWS), list(WORKFLOWS.values()), k=self.runs)
        every = max(1, self.runs // max(1, self.detailed))
        for start in range(0, self.runs, CHUNK):
            runs, steps, events = [], [], []
            for i in range(start, min(start + CHUNK, self.runs)):
                run = self.run(rng, times[i], statuses[i], workflows[i])
                runs.append(run)
                parked = run[2] in PARKED
                if parked or (i % every == 0 and len(self.detail_ids) < self.detailed):
                    (self.parked_ids if parked else self.detail_ids).append(run[0])
                    h = history(run)
                    steps += h.steps
                    events += h.events
            yield runs, steps, events

    def run(self, rng: random.Random, at: float, status: str, workflow: str) -> Row:
        run_id = f"{rng.getrandbits(128):032x}"
        item = b'[{"customer": "c-%d", "amount": %d.%02d, "items": %d}]' % (
            rng.randrange(100_000),
            rng.randrange(500),
            rng.randrange(100),
            rng.randrange(1, 9),
        )
        output = b'{"ref": "' + run_id[:12].encode() + b'"}' if status == "COMPLETED" else None
        failed = status not in ("COMPLETED", "PENDING", "RUNNING", "SUSPENDED")
        err = json.dumps(error("builtins.RuntimeError", "unavailable", "x")) if failed else None
        wake = self.now + 3600 if status == "SUSPENDED" else None
        ended = at + rng.random() * 2
        return (
            *(run_id, workflow, status, item, output, err, "default", None, None, 1, wake),
            *(None, None, False, at, ended, None),
        )


# --- filling each store ---------------------------------------------------------------------


def sqlite_fill(path: str, spread: Spread) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    tables = "('runs', 'steps', 'events')"
    indexes = conn.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN {tables}"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    conn.execute("BEGIN")
    for runs, steps, events in spread.chunks():
        insert = "INSERT INTO {} ({}) VALUES ({})"
        for table, columns, rows in (
            ("runs", RUN_COLUMNS, runs),
            ("steps", STEP_COLUMNS, steps),
            ("events", EVENT_COLUMNS, events),
        ):
            sql = insert.format(table, ", ".join(columns), ", ".join("?" * len(columns)))
            conn.executemany(sql, rows)
    conn.execute("COMMIT")
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


async def postgres_fill(url: str, spread: Spread) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        indexes = await conn.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' "
            "AND i.tablename IN ('runs', 'steps', 'events') AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        for runs, steps, events in spread.chunks():
            await conn.copy_records_to_table("runs", records=runs, columns=RUN_COLUMNS)
            await conn.copy_records_to_table("steps", records=steps, columns=STEP_COLUMNS)
            await conn.copy_records_to_table("events", records=events, columns=EVENT_COLUMNS)
        for index in indexes:
            await conn.execute(index["indexdef"])
        await conn.execute("VACUUM ANALYZE runs")
        await conn.execute("VACUUM ANALYZE steps")
        await conn.execute("VACUUM ANALYZE events")
    finally:
        await conn.close()


async def postgres_database(url: str, create: bool) -> None:
    import asyncpg

    base, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def fill(url: str, spread: Spread) -> float:
    """Seconds the load took (schema, rows, indexes), after making the schema."""
    started = time.perf_counter()
    async with Engine(url, worker=False):
        pass
    if url.startswith("sqlite"):
        await asyncio.to_thread(sqlite_fill, url.removeprefix("sqlite:///"), spread)
    else:
        await postgres_fill(url, spread)
    return time.perf_counter() - started


# --- the server and its clients -------------------------------------------------------------


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sagaline.serve_cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sagaline {' '.join(args)} failed: {done.stderr}{done.stdout}")
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


NODELAY = """
import socket, sys
import sagaline.http.server as server
from sagaline.serve_cli import _standalone

shipped = server.bind
def bind(host, port):
    sock = shipped(host, port)
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
server.bind = bind
_standalone()()
"""
"""``sagaline serve`` with one change: its listening socket is made with proto IPPROTO_TCP,
so asyncio sets TCP_NODELAY on each accepted connection (it does only for such sockets)."""


def serve(url: str, log: Path, nodelay: bool) -> tuple[subprocess.Popen[bytes], str]:
    """A ``sagaline serve`` process (no worker: only the views are measured) and its URL."""
    port = free_port()
    how = ["-c", NODELAY] if nodelay else ["-m", "sagaline.serve_cli"]
    process = subprocess.Popen(
        [sys.executable, *how, "serve", "--db", url, "--port", str(port), "--no-worker"],
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server did not start:\n{log.read_text()}")


def signed_in(base: str, token: str) -> httpx.Client:
    """A browser-like client holding a session: the sign-in form's nonce, then the post."""
    client = httpx.Client(base_url=base, timeout=60)
    client.get("/signin").raise_for_status()
    nonce = client.cookies.get("sagaline_signin", path="/signin")
    answer = client.post("/signin", data={"nonce": nonce, "token": token, "next": "/"})
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in failed: {answer.status_code} {answer.text[:200]}")
    return client


@dataclass
class Timing:
    name: str
    samples: list[float]

    def summary(self) -> dict[str, Any]:
        ms = sorted(s * 1000 for s in self.samples)
        p50 = statistics.median(ms)
        p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        met = p50 <= P50_MS and p99 <= P99_MS
        return {"n": len(ms), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "met": met}


def timed(
    client: httpx.Client, name: str, path: Callable[[int], str], n: int, budget: float
) -> Timing:
    """``n`` requests after a warm-up, fewer if ``budget`` seconds ran out first."""
    for i in range(max(5, n // 10)):
        client.get(path(i)).raise_for_status()
    samples, ends = [], time.monotonic() + budget
    for i in range(n):
        started = time.perf_counter()
        answer = client.get(path(i))
        samples.append(time.perf_counter() - started)
        answer.raise_for_status()
        if time.monotonic() > ends:
            break
    return Timing(name, samples)


def tenth_page(api: httpx.Client) -> str:
    cursor = ""
    for _ in range(9):
        cursor = api.get("/api/v1/runs", params={"cursor": cursor} if cursor else {}).json()[
            "next_cursor"
        ]
    return f"/api/v1/runs?cursor={cursor}"


def endpoints(api: httpx.Client, spread: Spread) -> Paths:
    rng = random.Random(7)
    details = rng.sample(spread.detail_ids, min(1000, len(spread.detail_ids)))
    page10 = tenth_page(api)
    statuses = ["COMPLETED", "COMPENSATED", "FAILED", "COMPENSATION_FAILED"]
    workflows = list(WORKFLOWS)
    prefixes = [f"{rng.randrange(16**3):03x}" for _ in range(100)]
    return {
        "api runs (first page)": lambda i: "/api/v1/runs",
        "api runs status=": lambda i: f"/api/v1/runs?status={statuses[i % len(statuses)]}",
        "api runs workflow=": lambda i: f"/api/v1/runs?workflow={workflows[i % len(workflows)]}",
        "api runs prefix=": lambda i: f"/api/v1/runs?prefix={prefixes[i % len(prefixes)]}",
        "api runs 10th page": lambda i: page10,
        "api run detail": lambda i: f"/api/v1/runs/{details[i % len(details)]}",
        "ui / (needs attention)": lambda i: "/",
        "ui /runs": lambda i: "/runs",
        "ui /runs/{id}": lambda i: f"/runs/{details[i % len(details)]}",
    }


Paths = dict[str, Callable[[int], str]]


def measure_http(
    url: str,
    paths: Callable[[httpx.Client], Paths],
    n: int,
    budget: float,
    log: Path,
    nodelay: bool,
) -> dict[str, Any]:
    name = "bench-nodelay" if nodelay else "bench-viewer"
    token = cli("tokens", "create", name, "--role", "viewer", "--quiet", "--db", url)
    process, base = serve(url, log, nodelay)
    try:
        api = httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=60)
        ui = signed_in(base, token)
        results = {}
        for name, path in paths(api).items():
            client = ui if name.startswith("ui") else api
            results[name] = timed(client, name, path, n, budget).summary()
            print(f"  {name:26} {results[name]}", flush=True)
        return results
    finally:
        process.terminate()
        process.wait(30)


# --- where the time goes --------------------------------------------------------------------


async def store_calls(url: str, spread: Spread, n: int) -> dict[str, Any]:
    """The store calls behind the pages, in-process: which one is slow."""
    store = open_store(url)
    await store.open(create=False)
    some = spread.detail_ids[: max(1, n)]
    calls: dict[str, Callable[[int], Awaitable[Any]]] = {
        "search_runs(first page)": lambda i: store.search_runs(RunQuery(), 51),
        "count_runs(all)": lambda i: store.count_runs(RunQuery()),
        "count_runs(workflow)": lambda i: store.count_runs(RunQuery(workflow="refund")),
        "search_runs(parked)": lambda i: store.search_runs(
            RunQuery(statuses=tuple(map(_status, PARKED))), 51
        ),
        "load_steps": lambda i: store.load_steps(some[i % len(some)]),
        "read_events": lambda i: store.read_events(some[i % len(some)]),
    }
    found = {}
    try:
        for name, call in calls.items():
            await call(0)
            samples = []
            for i in range(n):
                started = time.perf_counter()
                await call(i)
                samples.append(time.perf_counter() - started)
            found[name] = Timing(name, samples).summary()
            print(f"  {name:26} {found[name]}", flush=True)
    finally:
        await store.aclose()
    return found


def _status(name: str) -> Any:
    from sagaline.model.status import RunStatus

    return RunStatus(name)


COUNT_ALL = "SELECT status, count(*) FROM runs GROUP BY status"


async def plans(url: str) -> dict[str, str]:
    """The plan of the counts every list and the landing page run (no filter)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        rows = conn.execute(f"EXPLAIN QUERY PLAN {COUNT_ALL}").fetchall()
        conn.close()
        return {"count_runs": "\n".join(str(r[-1]) for r in rows)}
    import asyncpg

    pg = await asyncpg.connect(url)
    try:
        rows = await pg.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {COUNT_ALL}")
        return {"count_runs": "\n".join(r[0] for r in rows)}
    finally:
        await pg.close()


# --- the sagas: the tracker's tables ---------------------------------------------------------

CHOREOGRAPHIES = [
    # name, share %, deadline, (start, answer, completed, compensated, failed) and who sends each
    ("order", 50, 300.0, ("OrderPlaced", "StockReserved", "OrderShipped", "OrderRefunded",
                          "OrderFailed"), ("orders", "inventory", "shipping")),
    ("payment", 35, 3600.0, ("PaymentRequested", "PaymentAuthorised", "PaymentCaptured",
                             "PaymentReversed", "PaymentDeclined"), ("checkout", "bank", "ledger")),
    ("signup", 15, None, ("SignupStarted", "EmailSent", "SignupConfirmed", "SignupUndone",
                          "SignupRejected"), ("web", "mailer", "accounts")),
]  # fmt: skip
OPEN_NEWEST = 500
"""The newest sagas are all open: some in progress, some past a 5 min deadline."""
KIND_COLUMNS = "name, lo, hi, deadline, t1, t2, t_done, t_undone, t_failed, s1, s2, s3"


def kinds() -> list[Row]:
    rows, lo = [], 0
    for name, share, deadline, types, sources in CHOREOGRAPHIES:
        rows.append((name, lo, lo + share, deadline, *types, *sources))
        lo += share
    return rows


def declarations() -> list[Declaration]:
    return [
        Declaration(name, t[0], (t[2],), (t[3],), (t[4],), deadline)
        for name, _, deadline, t, _ in CHOREOGRAPHIES
    ]


def subscriptions() -> list[Subscription]:
    """Who answers what: the handler of each answer and of each ending."""
    subs = []
    for name, _, _, t, src in CHOREOGRAPHIES:
        subs.append(Subscription(f"{name}.answer", src[1], t[0], t[4]))
        subs.append(Subscription(f"{name}.finish", src[2], t[1], None))
    return subs


# The spread and the events, the same in both dialects but for the series and the ids.
# Statuses are decided from a multiplicative hash of the row number; times rise with it.
SAGAS_SELECT = """
spread AS (
    SELECT i, (i * 2654435761) % 10000 AS roll, (i * 40503) % 100 AS pick,
        round(CAST(CAST(:start AS DOUBLE PRECISION)
            + (i + ((i * 7919) % 1000) / 1000.0) * CAST(:step AS DOUBLE PRECISION)
            AS NUMERIC), 6) AS at
    FROM n
), decided AS (
    SELECT s.i, s.at, k.name, k.deadline,
        CASE WHEN s.i >= CAST(:count AS INTEGER) - CAST(:open AS INTEGER) THEN NULL
             WHEN s.roll < 9050 THEN 'COMPLETED'
             WHEN s.roll < 9550 THEN 'COMPENSATED' WHEN s.roll < 9850 THEN 'FAILED' END
            AS ended
    FROM spread s JOIN bench_kinds k ON s.pick >= k.lo AND s.pick < k.hi
)
INSERT INTO tracker_sagas
    (correlation_id, name, ended, started_at, updated_at, deadline_at, events)
SELECT {id}, name, ended, at, at + CASE WHEN ended IS NULL THEN 1 ELSE 2 END,
    at + deadline, CASE WHEN ended IS NULL THEN 2 ELSE 3 END
FROM decided
"""
EVENTS_SELECT = """
INSERT INTO tracker_events (id, correlation_id, type, source, causation_id, time, recorded_at)
SELECT s.correlation_id || '-1', s.correlation_id, k.t1, k.s1, NULL, s.started_at,
    s.started_at
FROM tracker_sagas s JOIN bench_kinds k ON k.name = s.name
UNION ALL
SELECT s.correlation_id || '-2', s.correlation_id, k.t2, k.s2, s.correlation_id || '-1',
    s.started_at + 1, s.started_at + 1
FROM tracker_sagas s JOIN bench_kinds k ON k.name = s.name
UNION ALL
SELECT s.correlation_id || '-3', s.correlation_id,
    CASE s.ended WHEN 'COMPLETED' THEN k.t_done WHEN 'COMPENSATED' THEN k.t_undone
        ELSE k.t_failed END,
    k.s3, s.correlation_id || '-2', s.started_at + 2, s.started_at + 2
FROM tracker_sagas s JOIN bench_kinds k ON k.name = s.name WHERE s.ended IS NOT NULL
"""
LINKS = [(src[1], t[0], t[1]) for _, _, _, t, src in CHOREOGRAPHIES] + [
    (src[2], t[1], end) for _, _, _, t, src in CHOREOGRAPHIES for end in t[2:]
]
TRACKER_TABLES = ("tracker_sagas", "tracker_events")


@dataclass
class SagaSpread:
    sagas: int
    now: float = field(default_factory=time.time)

    def params(self) -> dict[str, Any]:
        start = self.now - 90 * DAY
        step = 90 * DAY / self.sagas
        return {"count": self.sagas, "open": OPEN_NEWEST, "start": start, "step": step}


def sqlite_fill_sagas(path: str, spread: SagaSpread) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN {TRACKER_TABLES}"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    conn.execute("BEGIN")
    conn.execute(f"CREATE TEMP TABLE bench_kinds ({KIND_COLUMNS})")
    conn.executemany(f"INSERT INTO bench_kinds VALUES ({', '.join('?' * 12)})", kinds())
    series = "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :count - 1),"
    conn.execute(series + SAGAS_SELECT.format(id="lower(hex(randomblob(16)))"), spread.params())
    conn.execute(EVENTS_SELECT)
    conn.executemany("INSERT INTO tracker_links (service, cause, event) VALUES (?, ?, ?)", LINKS)
    conn.execute("COMMIT")
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def postgres_sql(sql: str, names: list[str]) -> str:
    """``:name`` parameters as ``$n`` (the order of ``names``; none a prefix of another)."""
    for i, name in enumerate(names, 1):
        sql = sql.replace(f":{name}", f"${i}")
    return sql


async def postgres_fill_sagas(url: str, spread: SagaSpread) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        indexes = await conn.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' "
            f"AND i.tablename IN {TRACKER_TABLES} AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        await conn.execute(
            "CREATE TEMP TABLE bench_kinds (name text, lo int, hi int, deadline float8, "
            "t1 text, t2 text, t_done text, t_undone text, t_failed text, "
            "s1 text, s2 text, s3 text)"
        )
        await conn.copy_records_to_table("bench_kinds", records=kinds())
        params = spread.params()
        names = list(params)
        series = "WITH n(i) AS (SELECT generate_series(0, CAST(:count AS BIGINT) - 1)),"
        sql = postgres_sql(series + SAGAS_SELECT.format(id="md5(i::text)"), names)
        await conn.execute(sql, *params.values())
        await conn.execute(EVENTS_SELECT)
        await conn.executemany(
            "INSERT INTO tracker_links (service, cause, event) VALUES ($1, $2, $3)", LINKS
        )
        for index in indexes:
            await conn.execute(index["indexdef"])
        for table in TRACKER_TABLES:
            await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


async def fill_sagas(url: str, spread: SagaSpread) -> float:
    """Seconds the load took: the store's schema, the tracker's tables, rows, indexes."""
    started = time.perf_counter()
    async with Engine(url, worker=False):
        pass
    store = open_tracker_store(url)
    await store.open(create=True)
    await store.save_knowledge(declarations(), subscriptions())
    await store.aclose()
    if url.startswith("sqlite"):
        await asyncio.to_thread(sqlite_fill_sagas, url.removeprefix("sqlite:///"), spread)
    else:
        await postgres_fill_sagas(url, spread)
    return time.perf_counter() - started


async def saga_ids(url: str, n: int) -> list[str]:
    """``n`` sagas picked at random, for the detail views."""
    sql = f"SELECT correlation_id FROM tracker_sagas ORDER BY random() LIMIT {int(n)}"
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return [r[0] for r in conn.execute(sql)]
        finally:
            conn.close()
    import asyncpg

    pg = await asyncpg.connect(url)
    try:
        return [r[0] for r in await pg.fetch(sql)]
    finally:
        await pg.close()


def saga_tenth_page(api: httpx.Client, status: str | None = None) -> str:
    params = {"status": status} if status else {}
    cursor = ""
    for _ in range(9):
        body = api.get("/api/v1/sagas", params={**params, **({"cursor": cursor} if cursor else {})})
        cursor = body.json()["next_cursor"]
    return "/api/v1/sagas?" + "&".join(f"{k}={v}" for k, v in {**params, "cursor": cursor}.items())


def saga_endpoints(api: httpx.Client, ids: list[str]) -> Paths:
    statuses = [s.value for s in SagaStatus]
    page10 = saga_tenth_page(api)
    stalled10 = saga_tenth_page(api, "STALLED")
    return {
        "api sagas (first page)": lambda i: "/api/v1/sagas",
        "api sagas status=": lambda i: f"/api/v1/sagas?status={statuses[i % len(statuses)]}",
        "api sagas 10th page": lambda i: page10,
        "api sagas STALLED 10th pg": lambda i: stalled10,
        "api saga detail": lambda i: f"/api/v1/sagas/{ids[i % len(ids)]}",
        "ui /sagas": lambda i: "/sagas",
        "ui /sagas/{id}": lambda i: f"/sagas/{ids[i % len(ids)]}",
        "ui / (needs attention)": lambda i: "/",
    }


async def saga_store_calls(url: str, ids: list[str], n: int) -> dict[str, Any]:
    """The tracker store's calls behind the sagas views, in-process."""
    store = open_tracker_store(url)
    await store.open(create=False)
    now = time.time()
    stalled, running = SagaQuery(stalled=True), SagaQuery(running=True)
    calls: dict[str, Callable[[int], Awaitable[Any]]] = {
        "count_sagas": lambda i: store.count_sagas(now),
        "list_sagas(first page)": lambda i: store.list_sagas(SagaQuery(), now, 51),
        "list_sagas(FAILED)": lambda i: store.list_sagas(SagaQuery(ended="FAILED"), now, 51),
        "list_sagas(STALLED)": lambda i: store.list_sagas(stalled, now, 51),
        "list_sagas(IN_PROGRESS)": lambda i: store.list_sagas(running, now, 51),
        "events(one saga)": lambda i: store.events([ids[i % len(ids)]]),
        "events(a page of 50)": lambda i: store.events(ids[:50]),
    }
    found = {}
    try:
        for name, call in calls.items():
            await call(0)
            samples = []
            for i in range(n):
                started = time.perf_counter()
                await call(i)
                samples.append(time.perf_counter() - started)
            found[name] = Timing(name, samples).summary()
            print(f"  {name:26} {found[name]}", flush=True)
        found["counts"] = {s.value: n for s, n in (await store.count_sagas(now)).items()}
    finally:
        await store.aclose()
    return found


SAGA_PLANS = ["list_sagas_all", "list_sagas_ended", "list_sagas_stalled", "list_sagas_running"]


async def saga_plans(url: str) -> dict[str, str]:
    """The plan of each list query (a 10th-page keyset, 51 rows) and of the counts."""
    now = time.time()
    at, cid = now - 30 * DAY, "8"
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        params = {"at": at, "id": cid, "limit": 51, "ended": "FAILED", "now": now}
        params |= {"stalled": "STALLED", "in_progress": "IN_PROGRESS"}
        try:
            return {
                name: "; ".join(
                    str(r[-1])
                    for r in conn.execute(f"EXPLAIN QUERY PLAN {sqlite_tracker._Q[name]}", params)
                )
                for name in [*SAGA_PLANS, "count_sagas"]
            }
        finally:
            conn.close()
    import asyncpg

    args: dict[str, tuple[Any, ...]] = {
        "list_sagas_all": (at, cid, 51),
        "list_sagas_ended": (at, cid, 51, "FAILED"),
        "list_sagas_stalled": (at, cid, 51, now),
        "list_sagas_running": (at, cid, 51, now),
        "count_sagas": (now, "STALLED", "IN_PROGRESS"),
    }
    pg = await asyncpg.connect(url)
    try:
        found = {}
        for name, values in args.items():
            sql = postgres_tracker._Q[name]
            rows = await pg.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *values)
            found[name] = "\n".join(r[0] for r in rows)
        return found
    finally:
        await pg.close()


async def bench_sagas(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    spread = SagaSpread(args.sagas)
    if kind == "sqlite":
        for old in workdir.glob("sagas.db*"):
            old.unlink()
        url = f"sqlite:///{workdir / 'sagas.db'}"
    else:
        url = args.pg_sagas_url
        await postgres_database(url, create=True)
    try:
        seconds = await fill_sagas(url, spread)
        print(f"{kind}: filled {args.sagas:,} sagas in {seconds:.1f} s", flush=True)
        ids = await saga_ids(url, 1000)
        load = os.getloadavg()
        log, http = workdir / f"{kind}-sagas.log", {}
        for nodelay in (False, True) if args.nodelay else (False,):
            print(f"{kind}: over HTTP, {'TCP_NODELAY' if nodelay else 'as shipped'}", flush=True)
            http["nodelay" if nodelay else "shipped"] = await asyncio.to_thread(
                measure_http,
                url,
                lambda api: saga_endpoints(api, ids),
                args.requests,
                args.budget,
                log,
                nodelay,
            )
        calls = await saga_store_calls(url, ids, min(args.requests, 100))
        plan = await saga_plans(url)
        for name, text in plan.items():
            print(f"{kind} plan of {name}:\n{text}", flush=True)
        return {
            "fill_seconds": round(seconds, 1),
            "load_average_before": [round(x, 2) for x in load],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "http": http,
            "store_calls": calls,
            "plans": plan,
            "uptime": uptime(),
        }
    finally:
        if kind == "postgres" and not args.keep:
            await postgres_database(url, create=False)


# --- the whole bench ------------------------------------------------------------------------


async def bench_store(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    spread = Spread(args.runs, min(args.detailed, args.runs))
    if kind == "sqlite":
        for old in workdir.glob("views.db*"):
            old.unlink()
        url = f"sqlite:///{workdir / 'views.db'}"
    else:
        url = args.pg_url
        await postgres_database(url, create=True)
    try:
        seconds = await fill(url, spread)
        print(
            f"{kind}: filled {args.runs:,} runs ({len(spread.detail_ids):,} detailed, "
            f"{len(spread.parked_ids):,} parked) in {seconds:.1f} s",
            flush=True,
        )
        load = os.getloadavg()
        log, http = workdir / f"{kind}.log", {}
        for nodelay in (False, True) if args.nodelay else (False,):
            print(f"{kind}: over HTTP, {'TCP_NODELAY' if nodelay else 'as shipped'}", flush=True)
            http["nodelay" if nodelay else "shipped"] = await asyncio.to_thread(
                measure_http,
                url,
                lambda api: endpoints(api, spread),
                args.requests,
                args.budget,
                log,
                nodelay,
            )
        calls = await store_calls(url, spread, min(args.requests, 100))
        plan = await plans(url)
        print(f"{kind} plan of count_runs:\n{plan['count_runs']}", flush=True)
        return {
            "fill_seconds": round(seconds, 1),
            "detailed_runs": len(spread.detail_ids),
            "parked_runs": len(spread.parked_ids),
            "load_average_before": [round(x, 2) for x in load],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "http": http,
            "store_calls": calls,
            "plans": plan,
        }
    finally:
        if kind == "postgres" and not args.keep:
            await postgres_database(url, create=False)


def table(results: dict[str, Any]) -> str:
    columns = [(store, mode) for store, r in results["stores"].items() for mode in r["http"]]
    lines = [f"{'p50 / p99 ms':26}" + "".join(f"{f'{s} {m}':>27}" for s, m in columns)]
    first = results["stores"][columns[0][0]]["http"][columns[0][1]]
    for name in first:
        cells = []
        for store, mode in columns:
            r = results["stores"][store]["http"][mode][name]
            cells.append(
                f"{r['p50_ms']:8.1f} / {r['p99_ms']:6.1f} {'met' if r['met'] else 'NOT MET':>8}"
            )
        lines.append(f"{name:26}" + "".join(f"{c:>27}" for c in cells))
    return "\n".join(lines)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["runs", "sagas", "both"], default="both")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--sagas", type=int, default=1_000_000, help="choreographed sagas")
    parser.add_argument("--detailed", type=int, default=100_000, help="runs with history")
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--budget", type=float, default=90.0, help="seconds per endpoint")
    parser.add_argument(
        "--nodelay",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure a server whose connections set TCP_NODELAY",
    )
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--pg-sagas-url", default=PG_SAGAS_URL)
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite file goes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="sagaline-views-"))
    before = json.loads(args.out.read_text()) if args.out.exists() else {}
    # One part or one store at a time: the figures of the others (same N) are kept.
    results = before if args.part == "sagas" else runs_part(args, kinds, workdir, before)
    if args.part in ("sagas", "both"):
        results["sagas"] = sagas_part(args, kinds, workdir, before.get("sagas") or {})
    if not args.keep and "sqlite" in kinds:
        for leftover in [*workdir.glob("views.db*"), *workdir.glob("sagas.db*")]:
            leftover.unlink()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if "stores" in results and args.part != "sagas":
        print(f"\nsagaline views · {args.runs:,} runs · {results['machine']}\n{results['uptime']}")
        print(table(results))
    if "sagas" in results and args.part != "runs":
        sagas = results["sagas"]
        print(f"\nsagaline saga views · {args.sagas:,} sagas · {sagas['machine']}")
        print(table(sagas))
    print(f"wrote {args.out}")


def header(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        "uptime": uptime(),
        "requests_per_endpoint": args.requests,
        "targets_ms": {"p50": P50_MS, "p99": P99_MS},
    }


def all_met(results: dict[str, Any]) -> dict[str, bool]:
    return {
        mode: all(r["met"] for s in results["stores"].values() for r in s["http"][mode].values())
        for mode in next(iter(results["stores"].values()))["http"]
    }


def runs_part(
    args: argparse.Namespace, kinds: list[str], workdir: Path, before: dict[str, Any]
) -> dict[str, Any]:
    results: dict[str, Any] = {**header(args), "runs": args.runs, "stores": {}}
    if before.get("runs") == args.runs:
        results["stores"] = {k: v for k, v in before["stores"].items() if k not in kinds}
    if "sagas" in before:
        results["sagas"] = before["sagas"]
    for kind in kinds:
        results["stores"][kind] = asyncio.run(bench_store(kind, args, workdir))
        results["stores"][kind]["uptime"] = uptime()
    results["all_met"] = all_met(results)
    return results


def sagas_part(
    args: argparse.Namespace, kinds: list[str], workdir: Path, before: dict[str, Any]
) -> dict[str, Any]:
    results: dict[str, Any] = {**header(args), "sagas": args.sagas, "stores": {}}
    if before.get("sagas") == args.sagas:
        results["stores"] = {k: v for k, v in before["stores"].items() if k not in kinds}
    for kind in kinds:
        results["stores"][kind] = asyncio.run(bench_sagas(kind, args, workdir))
    results["all_met"] = all_met(results)
    return results


if __name__ == "__main__":
    main()
