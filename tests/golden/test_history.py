"""Golden histories: recorded rows in, replay decisions out, with no database.

``histories/branches.json`` was recorded from a real run of ``asyncio.gather(a1->a2,
b1->b2)`` then a sleep, where branch b reached its second step first (seq 3) - the case
that once parked such runs BLOCKED on resume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sagaline.model.errors import NonDeterminismError
from sagaline.model.history import Cursor, History
from sagaline.model.records import StepRecord
from sagaline.model.status import StepKind, StepStatus

HERE = Path(__file__).parent / "histories"
STEP, SLEEP, PATCH = StepKind.STEP, StepKind.SLEEP, StepKind.PATCH


def load(name: str) -> list[StepRecord]:
    rows: list[dict[str, Any]] = json.loads((HERE / name).read_text())
    return [
        StepRecord(
            seq=r["seq"],
            name=r["name"],
            kind=StepKind(r["kind"]),
            status=StepStatus(r["status"]),
            input=None,
            output=None if r["output"] is None else r["output"].encode(),
            error=None,
            attempts=1,
            compensable=False,
            pivot=False,
            compensates_seq=None,
            done_index=r["done_index"],
            started_at=r["finished_at"],
            finished_at=r["finished_at"],
            branch=r["branch"],
        )
        for r in rows
    ]


def replay(history: History, root: Cursor, order: str) -> dict[str, int]:
    """Make the gather's calls in the given order of branches ('a' or 'b' per call)."""
    branches = {"a": root.fork(), "b": root.fork()}
    seqs: dict[str, int] = {}
    made = {"a": 0, "b": 0}
    for which in order:
        made[which] += 1
        call = history.take(branches[which], STEP, "c.charge")
        assert call.recorded is not None
        seqs[f"{which}{made[which]}"] = call.seq
    return seqs


@pytest.mark.parametrize("order", ["abab", "aabb", "bbaa", "abba", "baab"])
def test_parallel_branches_replay_the_same_whatever_order_they_run_in(order: str) -> None:
    records = load("branches.json")
    history = History.of("g1", records)
    root = Cursor("", 0.0)
    assert replay(history, root, order) == {"a1": 1, "b1": 2, "b2": 3, "a2": 4}
    sleep = history.take(root, SLEEP, "sleep")
    assert sleep.seq == 5
    assert sleep.recorded is not None and sleep.recorded.status is StepStatus.WAITING
    after = history.take(root, STEP, "c.charge")
    assert after.recorded is None and after.seq == 6  # runs for real, a fresh number
    assert history.unconsumed() is None


def test_a_call_the_history_did_not_record_there_is_non_deterministic() -> None:
    history = History.of("o-1", load("order_then_changed.json"))
    root = Cursor("", 0.0)
    assert history.take(root, STEP, "shop.create_order").seq == 1
    with pytest.raises(NonDeterminismError) as raised:
        history.take(root, STEP, "shop.charge")  # the new code skips shop.reserve
    assert raised.value.seq == 2
    assert (raised.value.expected, raised.value.actual) == ("shop.reserve", "shop.charge")


def test_a_branch_that_changed_its_calls_is_caught_in_that_branch() -> None:
    history = History.of("g1", load("branches.json"))
    root = Cursor("", 0.0)
    first, second = root.fork(), root.fork()
    history.take(first, STEP, "c.charge")
    with pytest.raises(NonDeterminismError, match=r"'c\.charge' but the code now calls 'sleep"):
        history.take(second, SLEEP, "sleep")


def test_patches_in_flight_steps_and_compensations() -> None:
    history = History.of("o-1", load("order_then_changed.json"))
    root = Cursor("", 1767225600.0 - 5)
    history.take(root, STEP, "shop.create_order")
    assert history.patched(root, "fraud-check") is False  # another call is recorded here
    history.take(root, STEP, "shop.reserve")
    assert root.time == 1767225601.0  # now(): the end of the latest recorded call
    assert history.patched(root, "fraud-check") is True
    history.take(root, PATCH, "fraud-check")
    charge = history.take(root, STEP, "shop.charge")
    # recorded RUNNING (in flight at a crash): it runs again, under the same number
    assert charge.recorded is None and charge.seq == 4
    assert history.patched(root, "later-change") is None  # nothing recorded: new path
    # compensations belong to unwinding: never met by replay, but never renumbered over
    assert history.take(root, STEP, "shop.ship").seq == 6
    assert history.unconsumed() is None


def test_a_recorded_call_the_code_no_longer_reaches_is_reported() -> None:
    history = History.of("o-1", load("order_then_changed.json"))
    root = Cursor("", 0.0)
    history.take(root, STEP, "shop.create_order")
    left = history.unconsumed()
    assert left is not None and left.name == "shop.reserve"


def test_forked_cursors_start_at_their_parents_time_and_nest() -> None:
    root = Cursor("", 10.0)
    child = root.fork()
    grandchild = child.fork()
    assert (child.path, grandchild.path, root.fork().path) == ("1", "1.1", "2")
    assert child.time == grandchild.time == 10.0
