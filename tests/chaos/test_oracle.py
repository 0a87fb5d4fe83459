"""The oracle's self-test: a clean finished result passes; each planted fault is caught.

The result is written line by line as the chaos saga and the harness write it: four runs,
two of them hit by a SIGKILL (one between a step's end and its commit, one mid
compensation), each of which legitimately ran one act twice.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.chaos import oracle
from tests.chaos.oracle import FinalRun, Row

A, B, C = 101, 202, 303  # worker pids; A is killed twice
PLANS = {"ok": -1, "fails": 2, "killed": -1, "undone": 1}


class Result:
    """A finished experiment: its ledger lines and the runs' final state."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.final: dict[str, FinalRun] = {}

    def begin(self, run: str, act: str, pid: int) -> None:
        self.lines.append({"run": run, "act": act, "ev": "begin", "attempt": 1, "pid": pid})

    def end(self, run: str, act: str, pid: int, ok: bool = True) -> None:
        line = {"run": run, "act": act, "ev": "end", "attempt": 1, "pid": pid, "ok": ok}
        self.lines.append(line)

    def ack(self, run: str, act: str, pid: int) -> None:
        self.lines.append({"run": run, "act": act, "ev": "ack", "pid": pid})

    def act(self, run: str, act: str, pid: int, ok: bool = True) -> None:
        self.begin(run, act, pid)
        self.end(run, act, pid, ok)
        if act[0] == "s" and ok:
            self.ack(run, act, pid)

    def kill(self, pid: int, name: str) -> None:
        self.lines.append({"fault": name, "ev": "begin", "pids": [pid]})
        self.lines.append({"fault": name, "ev": "end", "pids": [pid]})

    def record(self, run: str, status: str, rows: list[Row]) -> None:
        self.final[run] = FinalRun(status, tuple(rows), tuple(range(len(rows))))


def clean() -> Result:
    r = Result()
    for act in ("s0", "s1", "s2", "s3"):
        r.act("ok", act, A)
    r.record("ok", "COMPLETED", [Row(f"s{i}", "SUCCEEDED", A) for i in range(4)])
    for act in ("s0", "s1"):
        r.act("fails", act, B)
    r.act("fails", "s2", B, ok=False)
    r.act("fails", "u1", B)
    r.act("fails", "u0", B)
    steps = [Row("s0", "SUCCEEDED", B), Row("s1", "SUCCEEDED", B), Row("s2", "FAILED")]
    r.record("fails", "COMPENSATED", [*steps, Row("u1", "SUCCEEDED"), Row("u0", "SUCCEEDED")])
    r.act("killed", "s0", A)
    r.begin("killed", "s1", A)
    r.end("killed", "s1", A)  # ended, then killed before its commit: no ack
    r.kill(A, "kill-1")
    for act in ("s1", "s2", "s3"):
        r.act("killed", act, C)
    r.record(
        "killed",
        "COMPLETED",
        [Row("s0", "SUCCEEDED", A)] + [Row(f"s{i}", "SUCCEEDED", C) for i in (1, 2, 3)],
    )
    r.act("undone", "s0", C)
    r.act("undone", "s1", C, ok=False)
    r.begin("undone", "u0", A)  # A took the run over, and is killed mid-compensation
    r.kill(A, "kill-2")
    r.act("undone", "u0", C)
    undone = [Row("s0", "SUCCEEDED", C), Row("s1", "FAILED"), Row("u0", "SUCCEEDED")]
    r.record("undone", "COMPENSATED", undone)
    return r


def check(r: Result) -> oracle.Verdict:
    return oracle.check(PLANS, r.lines, r.final)


def test_a_clean_result_passes_with_its_duplicates_explained_by_the_kills() -> None:
    verdict = check(clean())
    assert verdict.ok, verdict.explain()
    assert (verdict.runs, verdict.faults, verdict.duplicates) == (4, 2, 2)
    assert verdict.in_flight >= verdict.duplicates


def test_a_step_killed_between_its_end_and_its_commit_counts_as_in_flight() -> None:
    r = clean()
    ledger = oracle.Ledger(r.lines)
    first = ledger.executions["killed", "s1"][0]
    assert first.end is not None and first.end < ledger.faults[0].begin  # it had ended
    assert check(r).in_flight == 2  # and still counts, as does undone's u0 (mid-execution)


def plant_lost(r: Result) -> None:
    del r.final["ok"]


def plant_stuck(r: Result) -> None:
    r.final["fails"] = FinalRun("COMPENSATING", r.final["fails"].rows)


def plant_wrong_status(r: Result) -> None:
    r.final["fails"] = FinalRun("COMPLETED", r.final["fails"].rows)


def plant_skipped_compensation(r: Result) -> None:
    r.lines = [x for x in r.lines if not (x.get("run") == "fails" and x.get("act") == "u1")]


def plant_compensations_out_of_order(r: Result) -> None:
    first = next(i for i, x in enumerate(r.lines) if x.get("run") == "fails" and x["act"] == "u1")
    r.lines[first : first + 4] = r.lines[first + 2 : first + 4] + r.lines[first : first + 2]


def plant_compensation_of_the_failed_step(r: Result) -> None:
    r.act("fails", "u2", B)


def plant_duplicate_without_a_fault(r: Result) -> None:
    r.act("ok", "s2", C)


def plant_duplicate_of_an_acknowledged_step(r: Result) -> None:
    r.kill(A, "kill-3")  # a fault, but s2 of "ok" was acknowledged before it began
    r.act("ok", "s2", C)


def plant_duplicate_of_another_workers_step(r: Result) -> None:
    r.begin("fails", "u1", B)
    r.kill(C, "kill-3")  # the kill hit C, while the execution was B's
    r.act("fails", "u1", C)


def plant_step_recorded_twice(r: Result) -> None:
    run = r.final["ok"]
    r.final["ok"] = FinalRun(run.status, (*run.rows, Row("s1", "SUCCEEDED", A)), run.outcomes)


def plant_outcome_event_twice(r: Result) -> None:
    run = r.final["ok"]
    r.final["ok"] = FinalRun(run.status, run.rows, (*run.outcomes, 2))


def plant_row_by_a_worker_that_never_ran_it(r: Result) -> None:
    run = r.final["ok"]
    rows = (Row("s0", "SUCCEEDED", C), *run.rows[1:])
    r.final["ok"] = FinalRun(run.status, rows, run.outcomes)


PLANTED = [
    (plant_lost, "lost"),
    (plant_stuck, "stuck"),
    (plant_wrong_status, "wrong_status"),
    (plant_skipped_compensation, "compensations"),
    (plant_compensations_out_of_order, "compensations"),
    (plant_compensation_of_the_failed_step, "compensations"),
    (plant_duplicate_without_a_fault, "duplicates"),
    (plant_duplicate_of_an_acknowledged_step, "duplicates"),
    (plant_duplicate_of_another_workers_step, "duplicates"),
    (plant_step_recorded_twice, "recorded_once"),
    (plant_outcome_event_twice, "recorded_once"),
    (plant_row_by_a_worker_that_never_ran_it, "recorded_once"),
]


@pytest.mark.parametrize(("plant", "invariant"), PLANTED, ids=[p.__name__ for p, _ in PLANTED])
def test_the_oracle_catches_a_planted_fault(plant: Any, invariant: str) -> None:
    r = copy.deepcopy(clean())
    plant(r)
    verdict = check(r)
    assert not verdict.ok
    assert verdict.counts()[invariant] >= 1, verdict.explain()


def test_a_step_begun_by_a_woken_worker_after_losing_its_run_is_a_late_start() -> None:
    r = Result()
    r.act("x", "s0", B)
    r.lines.append({"fault": "pause-1", "ev": "begin", "pids": [B]})  # B is between steps
    for act in ("s1", "s2", "s3"):
        r.act("x", act, C)  # C took the run over and finished it
    r.lines.append({"fault": "pause-1", "ev": "end", "pids": [B]})
    r.begin("x", "s1", B)  # B wakes up and starts the next step all the same
    r.end("x", "s1", B)
    r.record(
        "x",
        "COMPLETED",
        [Row("s0", "SUCCEEDED", B)] + [Row(f"s{i}", "SUCCEEDED", C) for i in (1, 2, 3)],
    )
    verdict = oracle.check({"x": -1}, r.lines, r.final)
    assert verdict.counts() == {**verdict.counts(), "late_starts": 1, "duplicates": 0}
    assert sum(verdict.counts().values()) == 1, verdict.explain()


def test_a_late_write_by_a_paused_worker_is_counted() -> None:
    r = clean()
    r.begin("ok", "s3", B)  # B was paused mid-step past its lease
    pause = {"fault": "pause-1", "ev": "begin", "pids": [B]}
    r.lines[-1:-1] = [pause]
    r.act("ok", "s3", C)  # C took the run over
    r.lines.append({"fault": "pause-1", "ev": "end", "pids": [B]})
    r.end("ok", "s3", B)
    assert oracle.late_writes(r.lines, r.final, B) == []  # A's row stands: nothing late
    run = r.final["ok"]
    r.final["ok"] = FinalRun(run.status, (*run.rows[:3], Row("s3", "SUCCEEDED", B)))
    assert oracle.late_writes(r.lines, r.final, B) == ["ok s3"]
