"""No store's SQL copies a status or an event type: each is bound from the one definition."""

from __future__ import annotations

import json
import sqlite3
from importlib import resources
from pathlib import Path

import pytest

from sagaline.model import events as ev
from sagaline.model.status import ACTIVE, RunStatus, StepStatus
from sagaline.store.queries import load_queries
from sagaline.store.sqlite.store import SqliteStore
from sagaline.store.statuses import CLAIM_STARTS, SETTLED, values

DIALECTS = ["sagaline.store.sqlite", "sagaline.store.postgres"]
_Q = load_queries("sagaline.store.sqlite")
_SUSPENDED = RunStatus.SUSPENDED


def _event_types(cls: type[ev.Event] = ev.Event) -> set[str]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub.__name__} | _event_types(sub)
    return found


NAMES = sorted({s.value for s in RunStatus} | {s.value for s in StepStatus} | _event_types())


@pytest.mark.parametrize("package", DIALECTS)
def test_queries_name_no_status_or_event_type(package: str) -> None:
    sql = resources.files(package).joinpath("queries.sql").read_text("utf-8")
    assert "PENDING" in NAMES and "RunStarted" in NAMES
    copied = [name for name in NAMES if f"'{name}'" in sql]
    assert not copied, f"{package} names {copied}; bind them as parameters from sagaline.model"


def test_settled_is_what_a_run_status_calls_settled() -> None:
    assert {s for s in RunStatus if s.is_settled} == SETTLED


def test_suspended_runs_are_not_active() -> None:
    """The SQLite claim takes active and due suspended runs in two branches, each once."""
    assert RunStatus.SUSPENDED not in ACTIVE


@pytest.mark.parametrize("analyzed", [False, True])
async def test_sqlite_claim_searches_its_indexes(tmp_path: Path, analyzed: bool) -> None:
    """Bound as JSON, a status set is an IN (subquery): the claim must still use an index
    for each kind of claimable run, with and without ANALYZE's statistics."""
    path = tmp_path / "plan.db"
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    await store.aclose()
    conn = sqlite3.connect(path)
    statuses = [RunStatus.COMPLETED] * 97 + [RunStatus.PENDING, RunStatus.RUNNING, _SUSPENDED]
    conn.executemany(
        "INSERT INTO runs (run_id, workflow, status, input, queue, created_at, updated_at)"
        " VALUES (?, 'wf', ?, x'', 'default', ?, ?)",
        [(f"r{i}", statuses[i % 100].value, i, i) for i in range(5000)],
    )
    if analyzed:
        conn.execute("ANALYZE")
    conn.commit()
    params = {
        "owner": "w",
        "lease": 30.0,
        "workflows": json.dumps(["wf"]),
        "limit": 10,
        "queue": "default",
        "run_id": None,
        "now": 0.0,
        "active": json.dumps(values(ACTIVE)),
        "claim_starts": json.dumps(values(CLAIM_STARTS)),
        "running": RunStatus.RUNNING.value,
        "suspended": _SUSPENDED.value,
    }
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + _Q["claim"], params)]
    conn.close()
    assert "SCAN runs" not in plan
    assert any("runs_by_queue" in step for step in plan)
    assert any("runs_by_wake" in step for step in plan)
