"""The worker process of :func:`sagaline.testing.crash_test`: :func:`main` given a job file.

One process plays one part: the uncrashed reference run, a run that SIGKILLs itself at a
commit boundary, or the worker that resumes it. Whichever survives reads the database and
writes what it found (statuses, steps, events, commits) as JSON, so the parent never opens
a database or an event loop itself and works from sync and async tests alike.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from sagaline.engine.engine import Engine
from sagaline.engine.registry import get_workflow, workflow_names
from sagaline.model.errors import RunNotFoundError, SagalineError, UnknownWorkflowError
from sagaline.model.records import Checkpoint, CommitResult, RunRecord
from sagaline.store import open_store
from sagaline.store.protocol import Store
from sagaline.testing.clock import FakeClock
from sagaline.testing.faults import CrashingStore


class Job(msgspec.Struct, kw_only=True):
    """What the parent asks of one process (written by ``crash.py``)."""

    db: str
    module: str
    module_file: str | None
    workflow: str
    input: str
    run_id: str
    out: str
    path: list[str]
    start: bool = False
    kill_commit: int = 0
    kill_before: bool = False
    timeout: float = 60.0
    fake_clock: bool = True
    drop_schema: bool = False


class Found(msgspec.Struct, kw_only=True):
    """What the surviving process found in the database (read back by ``crash.py``)."""

    error: str | None = None
    settled: bool = False
    status: str | None = None
    run_error: dict[str, Any] | None = None
    commits: int = 0
    commit_log: list[str] = msgspec.field(default_factory=list)
    steps: list[dict[str, Any]] = msgspec.field(default_factory=list)
    events: list[dict[str, Any]] = msgspec.field(default_factory=list)
    runs: list[dict[str, Any]] = msgspec.field(default_factory=list)


class _Recording(CrashingStore):
    """Counts commits (and dies at one, when asked) and notes what each one wrote, so the
    report can say what a boundary is: "after commit 3 (charge succeeded)"."""

    def __init__(self, inner: Store, commit_number: int, before: bool, prefix: str) -> None:
        super().__init__(inner, commit_number, before)
        self.log: list[str] = []
        self._prefix = prefix

    async def commit(self, batch: Sequence[Checkpoint]) -> list[CommitResult]:
        self.log.append("; ".join(describe(cp, self._prefix) for cp in batch))
        return await super().commit(batch)


def name_prefix(workflow: str) -> str:
    """What the names of a workflow's own module start with, left out when reporting."""
    module, dot, _ = workflow.rpartition(".")
    return f"{module}{dot}"


_SAID = {
    "StepSucceeded": "{} succeeded",
    "StepFailed": "{} failed",
    "StepAttemptFailed": "an attempt of {} failed",
    "StepStarted": "{} started",
    "CompensationSucceeded": "compensation {} succeeded",
    "CompensationFailed": "compensation {} failed",
    "CompensationAttemptFailed": "an attempt of compensation {} failed",
}


def describe(cp: Checkpoint, prefix: str) -> str:
    """A checkpoint in a few words: what its events say happened."""
    said: list[str] = []
    for new in cp.events:
        data = new.data
        name = str(data.get("compensation") or data.get("step") or "").removeprefix(prefix)
        if new.type == "StepStarted" and any(e.type in _SAID and e is not new for e in cp.events):
            continue  # started and finished in one commit: the finish says it
        if new.type in _SAID:
            said.append(_SAID[new.type].format(name))
        else:  # RunSuspended → "run suspended", TimerFired → "timer fired"
            words = "".join(f" {c.lower()}" if c.isupper() else c for c in new.type).strip()
            said.append(words)
    return ", ".join(said) or "progress"


def import_module(name: str, file: str | None) -> None:
    """Import the user's module under the name it has in the parent, so its workflows and
    steps register under the same names; by file when the name is not importable here
    (a script, or a test module pytest imported in its own way)."""
    try:
        importlib.import_module(name)
        return
    except ModuleNotFoundError as exc:
        if file is None or not (exc.name == name or name.startswith(f"{exc.name}.")):
            raise
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise SagalineError(f"cannot import {file!r} as module {name!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


async def run(job: Job) -> Found:
    sys.path[:0] = [p for p in job.path if p not in sys.path]
    import_module(job.module, job.module_file)
    try:
        wdef = get_workflow(job.workflow)
    except UnknownWorkflowError:
        known = ", ".join(workflow_names()) or "none"
        return Found(
            error=f"importing {job.module!r} registered no workflow {job.workflow!r} "
            f"(it registered: {known}); pass module= the module that defines it"
        )
    prefix = name_prefix(job.workflow)
    store = _Recording(open_store(job.db), job.kill_commit, job.kill_before, prefix)
    clock = FakeClock(skip=True) if job.fake_clock else None
    engine = Engine(store=store.as_store(), clock=clock, poll_interval=0.05)
    async with engine:
        if job.start:
            values = wdef.signature.decode_args(engine.codec, job.input.encode())
            args, kwargs = wdef.signature.call_parts(values)
            await engine.start(wdef, *args, run_id=job.run_id, **kwargs)
        found = await _settle(engine, job)
    found.commits, found.commit_log = store.commits, store.log
    if job.drop_schema:
        await _drop_schema(job.db)
    return found


async def _settle(engine: Engine, job: Job) -> Found:
    """Wait for the run (and any child runs) to settle, then read what is recorded."""
    deadline = time.monotonic() + job.timeout
    settled = True
    try:
        await engine.wait(job.run_id, job.timeout)
        while not all(r.status.is_settled for r in await engine.list_runs(limit=1000)):
            if time.monotonic() > deadline:
                settled = False
                break
            await asyncio.sleep(0.05)
    except TimeoutError:
        settled = False
    except RunNotFoundError:
        return Found(error=f"run {job.run_id!r} was never created")
    run = await engine.get_run(job.run_id)
    runs = await engine.list_runs(limit=1000)
    found = Found(settled=settled, status=run.status.value, run_error=run.error)
    found.runs = [_run_row(r) for r in runs]
    for other in runs:
        for s in await engine.steps(other.run_id):
            found.steps.append(
                {
                    "run": other.run_id,
                    "seq": s.seq,
                    "name": s.name,
                    "kind": s.kind.value,
                    "status": s.status.value,
                    "branch": s.branch,
                }
            )
        for e in await engine.history(other.run_id):
            found.events.append(
                {**e.data, "run": other.run_id, "id": e.id, "type": e.type, "seq": e.seq}
            )
    return found


def _run_row(run: RunRecord) -> dict[str, Any]:
    return {"run": run.run_id, "workflow": run.workflow, "status": run.status.value}


async def _drop_schema(url: str) -> None:
    """Drop a PostgreSQL boundary's own schema once read (only ever one this test made)."""
    import asyncpg

    from sagaline.store.postgres.store import parse_url

    dsn, schema = parse_url(url)
    conn = await asyncpg.connect(dsn)
    try:
        # The server quotes the identifier (format %I): the name never goes into SQL raw.
        drop = await conn.fetchval(
            "SELECT format('DROP SCHEMA IF EXISTS %I CASCADE', $1::text)", schema
        )
        await conn.execute(str(drop))
    finally:
        await conn.close()


def main(argv: Sequence[str]) -> int:
    job = msgspec.json.decode(Path(argv[0]).read_bytes(), type=Job)
    try:
        found = asyncio.run(run(job))
    except Exception as exc:
        found = Found(error=f"{type(exc).__name__}: {exc}")
    Path(job.out).write_bytes(msgspec.json.encode(found))
    return 0
