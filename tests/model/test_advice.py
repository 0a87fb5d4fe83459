"""What a parked run needs, decided from its rows alone."""

from __future__ import annotations

from sagaline.model.advice import advise
from sagaline.model.records import RunRecord, StepRecord
from sagaline.model.status import RunStatus, StepKind, StepStatus


def run(status: RunStatus, error: dict[str, object] | None = None) -> RunRecord:
    return RunRecord("r1", "wf", status, b"[]", None, error, "default", None, 1, False, 0, 0)


def row(seq: int, name: str, kind: StepKind, status: StepStatus, **kw: object) -> StepRecord:
    base: dict[str, object] = dict(
        input=None,
        output=None,
        error=None,
        attempts=1,
        compensable=True,
        pivot=False,
        compensates_seq=None,
        done_index=seq,
        started_at=0.0,
        finished_at=0.0,
    )
    base.update(kw)
    return StepRecord(seq, name, kind, status, **base)  # type: ignore[arg-type]


def test_a_failed_compensation_is_named_with_its_attempts_and_error() -> None:
    steps = [
        row(1, "m.reserve", StepKind.STEP, StepStatus.SUCCEEDED),
        row(2, "m.charge", StepKind.STEP, StepStatus.FAILED),
        row(
            3,
            "m.release",
            StepKind.COMPENSATION,
            StepStatus.FAILED,
            attempts=8,
            compensates_seq=1,
            error={"type": "IOError", "message": "down"},
        ),
    ]
    advice = advise(run(RunStatus.COMPENSATION_FAILED, {"type": "X", "message": "y"}), steps)
    assert (
        advice.problem == "compensation release (undoing reserve) failed after 8 attempt(s): down"
    )
    assert advice.actions[0].startswith("sagaline runs retry r1")
    assert advice.actions[1].startswith("sagaline runs skip r1 --reason")


def test_blocked_and_after_pivot_runs_say_how_to_go_on() -> None:
    blocked = advise(run(RunStatus.BLOCKED, {"type": "NonDeterminismError", "message": "m"}), [])
    assert blocked.problem == "NonDeterminismError: m" and "runs retry r1" in blocked.actions[0]
    pivot = advise(run(RunStatus.FAILED_AFTER_PIVOT, {"pivot": "m.ship", "message": "x"}), [])
    assert "the saga can only go forward" in pivot.problem


def test_an_unowned_unwinding_run_asks_for_a_worker_and_a_healthy_one_says_nothing() -> None:
    assert "sagaline worker" in advise(run(RunStatus.COMPENSATING), [], idle=True).actions[0]
    assert advise(run(RunStatus.COMPLETED), []).problem == ""


def test_a_run_marked_to_go_on_but_held_by_no_worker_names_the_worker_command() -> None:
    advice = advise(run(RunStatus.COMPENSATING), [], db="sqlite:///shop.db")
    assert (
        advice.problem == "COMPENSATING and no worker holds it: it goes on only while a worker runs"
    )
    assert advice.actions[0].startswith("sagaline worker --import MODULE --db sqlite:///shop.db")
    held = RunRecord(
        "r1", "wf", RunStatus.COMPENSATING, b"[]", None, None, "default", "w1", 1, False, 0, 0
    )
    assert advise(held, []).problem == ""  # a worker has it: nothing to do
    assert advise(run(RunStatus.PENDING), []).problem == ""  # unclaimed only until a worker looks


def test_a_run_waiting_for_a_signal_says_how_to_send_it() -> None:
    waiting = row(2, "approved", StepKind.SIGNAL, StepStatus.WAITING)
    advice = advise(run(RunStatus.SUSPENDED), [waiting])
    assert advice.problem == ""
    assert advice.actions == [
        "sagaline runs signal r1 approved --payload JSON    # it waits for this signal"
    ]
