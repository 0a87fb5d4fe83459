"""SQLite on a small private tmpfs, filled to the brim while a worker runs, then freed.

The tmpfs is mounted on a temporary folder of the experiment's own and unmounted after;
nothing else on the machine sees it. Mounting needs root: elsewhere the experiment is
skipped with the reason locally and fails under CI (``missing_service``).
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagaline import Engine
from tests.chaos import harness, oracle, saga
from tests.chaos.harness import ROOT, Workers, until
from tests.conftest import missing_service

OK = ("ok", "waited")
BACKED_OFF = re.compile(r"claiming runs failed .*; retrying in (\d+(?:\.\d+)?) s")


@contextmanager
def tmpfs(where: Path, size: str = "8m") -> Iterator[Path]:
    """A private tmpfs of ``size`` mounted at ``where`` (created), unmounted after."""
    if os.geteuid() != 0:
        missing_service("the full-disk experiment mounts a private tmpfs, which needs root")
    where.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)]
    done = subprocess.run(mount, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        missing_service(f"cannot mount a tmpfs at {where}: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True, capture_output=True, timeout=30)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem has not one byte left; the bytes written."""
    written = 0
    with path.open("wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            chunk = b"\0" * size
            while True:
                try:
                    written += f.write(chunk) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


@dataclass
class DiskResult:
    verdict: oracle.Verdict
    database: str = ""
    starts_while_full: list[str] = field(default_factory=list)
    """Each start attempted while the disk was full: "ok", "waited", or the error."""
    runs_list_while_full: tuple[int, str] = (0, "")
    """``sagaline runs list``'s exit code and last line of output, while full."""
    seconds_full: float = 0.0
    seconds_to_a_commit_after_freeing: float = 0.0
    seconds_to_all_done_after_freeing: float = 0.0
    worker_log: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def figures(self) -> dict[str, Any]:
        errors = [s for s in self.starts_while_full if s not in OK]
        return {
            "starts_while_full": len(self.starts_while_full),
            "starts_refused_while_full": len(errors),
            "start_error_while_full": errors[0] if errors else None,
            "runs_list_exit_code_while_full": self.runs_list_while_full[0],
            "runs_list_last_line_while_full": self.runs_list_while_full[1],
            "seconds_full": round(self.seconds_full, 1),
            "seconds_to_a_commit_after_freeing": round(self.seconds_to_a_commit_after_freeing, 2),
            "seconds_to_all_done_after_freeing": round(self.seconds_to_all_done_after_freeing, 2),
            **self.extra,
            **self.verdict.figures,
        }


def _longest_backoff(log: Path) -> float:
    text = log.read_text(errors="replace") if log.exists() else ""
    return max((float(m) for m in BACKED_OFF.findall(text)), default=0.0)


async def _start_while_full(client: Engine, batch: list[saga.Plan]) -> list[asyncio.Task[Any]]:
    """Start each run in a task of its own: a start may fail, or wait for space."""
    tasks = [asyncio.create_task(client.start(saga.saga, plan, run_id=plan.run)) for plan in batch]
    await asyncio.wait(tasks, timeout=3.0)
    return tasks


def _outcome(task: asyncio.Task[Any], waited: bool) -> str:
    if not task.done():
        task.cancel()
        return "still waiting two minutes after the space returned"
    exc = task.exception()
    if exc is None:
        return "waited" if waited else "ok"
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"


def _runs_list(url: str) -> tuple[int, str]:
    command = [sys.executable, "-m", "sagaline.cli", "runs", "list", "--db", url]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode, lines[-1] if lines else ""


async def disk_full(tmp: Path, seed: int, full_for: float = 20.0, lease: float = 3.0) -> DiskResult:
    """Fill the disk under a running worker; start runs; free it; let everything finish.

    The disk stays full for ``full_for`` seconds, or less once the worker has logged a
    claim backoff of 8 s or more (the space then returns while it sleeps).
    """
    rng = random.Random(seed)
    before, during, after = (harness.plans(20, rng, prefix=p, seconds=0.05) for p in "bwa")
    result = DiskResult(oracle.Verdict())
    began = time.monotonic()
    with tmpfs(tmp / "disk") as disk:
        result.database = str(disk / "chaos.db")
        url = f"sqlite:///{result.database}"
        workers = Workers(url, tmp, concurrency=10, lease_seconds=lease)
        try:
            workers.spawn()
            async with Engine(url, worker=False) as client:
                await harness.start_all(client, before)
                await until(lambda: workers.tail.done() >= 5, "some sagas to finish", 60.0)
                await until(lambda: bool(workers.busy()), "steps in flight at the fill", 60.0)
                wal = disk / "chaos.db-wal"
                result.extra["wal_bytes_when_filled"] = wal.stat().st_size if wal.exists() else 0
                with workers.fault("disk-full", None) as fault:
                    result.extra["filler_bytes"] = fill(disk / "filler")
                    full_at = time.monotonic()
                    tasks = await _start_while_full(client, during)
                    pending = [t for t in tasks if not t.done()]
                    result.runs_list_while_full = _runs_list(url)
                    log = tmp / "worker-0.log"
                    await until(
                        lambda: _longest_backoff(log) >= 8 or time.monotonic() > full_at + full_for,
                        "the disk to have been full long enough",
                        full_for + 10,
                    )
                    await asyncio.sleep(0.5)  # past any burst of wake-ups in the worker
                    (disk / "filler").unlink()
                    freed = time.monotonic()
                    result.seconds_full = freed - full_at
                await asyncio.wait(tasks, timeout=120.0)
                result.starts_while_full = [_outcome(t, t in pending) for t in tasks]
                await until(lambda: workers.tail.committed_after(fault), "a commit", 120.0)
                result.seconds_to_a_commit_after_freeing = time.monotonic() - freed
                await harness.start_all(client, after)
                await until(lambda: harness.settled(client), "every saga to settle", 120.0)
                result.seconds_to_all_done_after_freeing = time.monotonic() - freed
                everything = [*before, *during, *after]
                final = await harness.final_state(client, [p.run for p in everything])
        finally:
            workers.stop_all()
    result.extra["seconds"] = round(time.monotonic() - began, 1)
    result.worker_log = (tmp / "worker-0.log").read_text(errors="replace")
    result.extra["claim_backoffs_logged_s"] = [
        float(m) for m in BACKED_OFF.findall(result.worker_log)
    ]
    accepted = {p.run for p, s in zip(during, result.starts_while_full, strict=True) if s in OK}
    started = [p for p in everything if p.run[0] != "w" or p.run in accepted or p.run in final]
    workers.tail.poll()
    result.verdict = oracle.check({p.run: p.fail_at for p in started}, workers.tail.lines, final)
    return result
