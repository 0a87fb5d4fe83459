"""The chaos experiments of ``tests/chaos`` at any size, with their figures.

    python -m bench.chaos [--long | --profile fast|medium|long] [--seed N] [--only NAME]

``fast`` is what CI runs; ``--long`` (by hand, about half an hour) SIGKILLs workers 1,000
times over 10,000 sagas on each backend and restarts PostgreSQL 20 times. Every experiment
is judged by the ledger oracle (``tests/chaos/oracle.py``). Prints the figures, writes
``bench/results/chaos.json``, and exits 1 if any invariant was broken.

PostgreSQL: the SIGKILL and pause experiments use a fresh schema on ``--pg`` (dropped
after); the restarts use a private cluster made with ``initdb`` (``tests/pgcluster.py``),
never the server at ``--pg``. The full-disk experiment mounts a tmpfs and needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import disk, experiments
from tests.chaos.experiments import Profile
from tests.conftest import POSTGRES_URL
from tests.pgcluster import Cluster, _make

RESULTS = Path(__file__).with_name("results")
NAMES = ["kills-sqlite", "kills-postgres", "restarts", "pause-sqlite", "pause-postgres", "disk"]


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="sagaline-pg-"))
    root.chmod(0o755)
    try:
        cluster = _make(root)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_schema(server: str) -> Iterator[str]:
    import asyncpg

    schema = f"chaos_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in server else "?"
    try:
        yield f"{server}{sep}schema={schema}"
    finally:

        async def drop() -> None:
            conn = await asyncpg.connect(server)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # hex only
            finally:
                await conn.close()

        asyncio.run(drop())


def run_one(name: str, profile: Profile, seed: int, pg: str, tmp: Path) -> dict[str, Any]:
    def go(experiment: Callable[[], Coroutine[Any, Any, Any]]) -> dict[str, Any]:
        result: Any = asyncio.run(experiment())
        figures: dict[str, Any] = result.figures
        return {**figures, "explain": result.verdict.explain(), "ok": result.verdict.ok}

    sqlite = f"sqlite:///{tmp / 'chaos.db'}"
    if name == "kills-sqlite":
        return go(lambda: experiments.kills(sqlite, tmp, profile, seed))
    if name == "pause-sqlite":
        return go(lambda: experiments.pause(sqlite, tmp, profile, seed))
    if name in ("kills-postgres", "pause-postgres"):
        run = experiments.kills if name == "kills-postgres" else experiments.pause
        with fresh_schema(pg) as url:
            return go(lambda: run(url, tmp, profile, seed))
    if name == "restarts":
        with private_cluster() as cluster:
            return go(lambda: experiments.restarts(cluster, tmp, profile, seed))
    try:
        return go(lambda: disk.disk_full(tmp, seed))
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        return {"skipped": str(exc), "ok": True}


def describe(name: str, f: dict[str, Any]) -> str:
    if "skipped" in f:
        return f"{name:<15} skipped: {f['skipped']}"
    v = f["violations"]
    judged = (
        f"lost {v['lost']}, stuck {v['stuck']}, wrong status {v['wrong_status']}, "
        f"compensations {v['compensations']}, recorded twice {v['recorded_once']}; "
        f"duplicates {f['duplicates']} <= in flight {f['in_flight_at_faults']} "
        f"(unexplained {v['duplicates']}, late starts {v['late_starts']})"
    )
    if name.startswith("kills"):
        head = f"{f['sagas']} sagas ({f['planned_failures']} to fail), {f['kills']} SIGKILLs"
    elif name == "restarts":
        head = (
            f"{f['sagas']} sagas, {f['restarts']} immediate restarts under {f['workers']} "
            f"workers; last restart to all done {f['seconds_from_last_restart_to_all_done']} s "
            f"({f['sagas_unfinished_at_last_restart']} sagas unfinished then)"
        )
    elif name.startswith("pause"):
        head = (
            f"{f['sagas']} sagas, a worker paused past a {f['lease_seconds']:g} s lease with "
            f"{f['steps_in_flight_when_paused']} steps in flight and "
            f"{f['runs_between_steps_when_paused']} runs between steps: late writes that got "
            f"through {f['late_writes_that_got_through']} of {f['steps_ended_after_waking']}; "
            f"steps begun after losing the run {f['steps_begun_after_losing_the_run']}"
        )
    else:
        head = (
            f"disk full {f['seconds_full']} s: {f['starts_refused_while_full']} of "
            f"{f['starts_while_full']} starts refused ({f['start_error_while_full']}); first "
            f"commit {f['seconds_to_a_commit_after_freeing']} s after space returned"
        )
    return f"{name:<15} {head}\n{'':<15} {judged}; {f['seconds']} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", choices=sorted(experiments.PROFILES), default="fast")
    parser.add_argument("--long", action="store_true", help="the long profile")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    parser.add_argument("--only", choices=NAMES, action="append")
    parser.add_argument("--pg", default=POSTGRES_URL, help="server for fresh schemas")
    parser.add_argument("--json", type=Path, default=RESULTS / "chaos.json")
    args = parser.parse_args()
    profile = experiments.LONG if args.long else experiments.PROFILES[args.profile]
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "profile": asdict(profile),
        "seed": args.seed,
        "command": f"python -m bench.chaos --profile {profile.name} --seed {args.seed}",
        "experiments": {},
    }
    print(f"sagaline chaos · profile {profile.name} · seed {args.seed} · {out['machine']}")
    for name in args.only or NAMES:
        with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as tmp:
            figures = run_one(name, profile, args.seed, args.pg, Path(tmp))
        out["experiments"][name] = figures
        print(describe(name, figures), flush=True)
    out["ok"] = all(f["ok"] for f in out["experiments"].values())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'every invariant held' if out['ok'] else 'INVARIANTS BROKEN'}; written to {args.json}")
    raise SystemExit(0 if out["ok"] else 1)


if __name__ == "__main__":
    main()
