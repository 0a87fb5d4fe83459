"""What a person should know about a run that waits for them, and what to do next.

Pure: decided from the run and its step rows, rendered by the CLI (and later the UI), so
every surface tells the same story: which compensation is stuck, after how many attempts,
with which error, and the command that moves the run on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sagaline.model.records import RunRecord, StepRecord
from sagaline.model.status import RunStatus, StepKind, StepStatus
from sagaline.model.timeline import short_name


@dataclass(frozen=True)
class Advice:
    problem: str
    """One line: what is wrong (empty when nothing is)."""
    actions: list[str] = field(default_factory=list)
    """Commands that move the run on, the likeliest first."""


def advise(run: RunRecord, steps: list[StepRecord], idle: bool = False, db: str = "URL") -> Advice:
    """``idle``: nobody has written to the run for a while (no worker holds it); ``db``:
    the database to name in a worker command, so it can be pasted as printed."""
    rid = run.run_id
    error = run.error or {}
    if run.status is RunStatus.COMPENSATION_FAILED:
        stuck = _stuck_compensation(steps)
        detail = error.get("compensation") or {}
        if stuck is not None:
            cause = (stuck.error or {}).get("message", "")
            target = next((s.name for s in steps if s.seq == stuck.compensates_seq), "?")
            problem = (
                f"compensation {short_name(stuck.name)} (undoing {short_name(target)}) failed "
                f"after {stuck.attempts} attempt(s): {cause}"
            )
        else:
            problem = f"a compensation failed: {detail.get('error', {}).get('message', '')}"
        return Advice(
            problem,
            [
                f"sagaline runs retry {rid}    # after fixing what made it fail",
                f"sagaline runs skip {rid} --reason '...' --by NAME    # if you undid it by hand",
            ],
        )
    if run.status is RunStatus.FAILED_AFTER_PIVOT:
        failed = next(
            (
                s
                for s in reversed(steps)
                if s.kind is StepKind.STEP and s.status is StepStatus.FAILED
            ),
            None,
        )
        what = short_name(failed.name) if failed else error.get("step", "a step")
        problem = (
            f"{what} failed after the pivot {short_name(str(error.get('pivot', '?')))}: "
            f"{error.get('message', '')}; the saga can only go forward"
        )
        return Advice(problem, [f"sagaline runs retry {rid}    # after fixing the cause"])
    if run.status is RunStatus.BLOCKED:
        problem = f"{error.get('type', 'blocked')}: {error.get('message', '')}"
        return Advice(
            problem,
            [
                f"sagaline runs retry {rid}    # after deploying code that matches its "
                f"history (or repairing its data)",
                f"sagaline runs cancel {rid}    # to give up on it and compensate",
            ],
        )
    if _needs_worker(run, idle):
        why = "no worker has touched it for a while" if idle else "no worker holds it"
        return Advice(
            f"{run.status.value} and {why}: it goes on only while a worker runs",
            [f"sagaline worker --import MODULE --db {db}    # MODULE: where {run.workflow} is"],
        )
    signals = [
        s.name for s in steps if s.kind is StepKind.SIGNAL and s.status is StepStatus.WAITING
    ]
    if run.status is RunStatus.SUSPENDED and signals:
        return Advice(
            "",
            [
                f"sagaline runs signal {rid} {name} --payload JSON    # it waits for this signal"
                for name in signals
            ],
        )
    return Advice("")


def _needs_worker(run: RunRecord, idle: bool) -> bool:
    """Unowned and unfinished: after ``runs skip`` or ``runs retry`` the run is only marked
    to go on, and nothing moves it until a worker claims it. A ``PENDING`` run is unowned
    until claimed (a queue limit may hold it back), so only its idleness counts."""
    if run.status is RunStatus.PENDING:
        return idle
    return run.status in (RunStatus.COMPENSATING, RunStatus.RUNNING) and (idle or run.owner is None)


def _stuck_compensation(steps: list[StepRecord]) -> StepRecord | None:
    failed = [s for s in steps if s.kind is StepKind.COMPENSATION and s.status is StepStatus.FAILED]
    return failed[-1] if failed else None
