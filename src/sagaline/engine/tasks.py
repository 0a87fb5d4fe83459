"""Task steps: a step whose body runs in an external worker, in any language.

The workflow side (:func:`call_task`) records the task with its WAITING step row, fenced by
the run's lease, and suspends the run like a signal wait: no worker memory is held while
the task waits. The worker side (:class:`TaskService`, called by the HTTP surface) leases
tasks to workers and turns their answers into the step's outcome: a completion writes the
step's result, its event and the run's wake-up in one transaction; the run then resumes by
replay and the step returns the recorded result, decoded to its annotated type, exactly as
an in-process step's. A failed attempt is retried per the step's policy (the task becomes
claimable again after the backoff) until attempts run out, when the step fails and the
run unwinds as for any step.

Every answer is fenced by the token of the claim it answers: a worker that went silent
past its lease, whose task went to another worker, can change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from sagaline.engine.context import LostLease, RunContext, StoreInterrupted, Suspend
from sagaline.engine.registry import TaskTarget, get_task_target, task_queues
from sagaline.model import events as ev
from sagaline.model.codec import Codec
from sagaline.model.errors import (
    DatabaseUnavailableError,
    PayloadDecodeError,
    PayloadError,
    SagalineError,
    UnknownStepError,
)
from sagaline.model.records import NewEvent, StepRecord
from sagaline.model.status import RunStatus, StepKind, StepStatus
from sagaline.store.protocol import (
    TASK_CLAIMED,
    TASK_WAITING,
    NewTask,
    Store,
    TaskFinish,
    TaskRecord,
    TaskRules,
)

if TYPE_CHECKING:
    from sagaline.engine.registry import CompensationDef, StepDef

LIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED})
"""Runs whose task steps may be claimed and answered: a run that unwinds or ended no longer
waits for its task (a cancelled run that is not yet unwinding still takes the answer, and
then compensates the step, as it would an in-process step in flight)."""
RULES = TaskRules(step=LIVE, compensation=LIVE | {RunStatus.COMPENSATING})
"""A task compensation is wanted while its run unwinds: COMPENSATING, or suspended on it
(and woken, and running again) in between; never once the run parked or ended."""
POLL_SECONDS = 0.1
"""How often a long-polling claim looks again for a task another process recorded."""
MESSAGE_LIMIT = 2000
MAX_WAIT_SECONDS = 20.0
MAX_CLAIM = 100


class TaskNotFoundError(SagalineError):
    code = "task_not_found"

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"there is no task {task_id!r}; claim tasks with POST /api/v1/tasks/claim")


class TaskLeaseLostError(SagalineError):
    """The answer's token no longer holds the task: the lease expired and the task went to
    another worker, or it was answered already, or its run stopped waiting for it."""

    code = "task_lease_lost"

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(
            f"task {task_id!r} is not leased to this token any more (the lease expired and "
            f"the task was claimed again, it was answered already, or its run stopped "
            f"waiting); nothing was changed: drop this task and claim again"
        )


class UnknownQueueError(SagalineError):
    """A claim from a queue no task step or task compensation in this process's code uses:
    most likely a typo, which would otherwise long-poll for ever."""

    code = "unknown_queue"

    def __init__(self, queue: str, known: set[str]) -> None:
        self.queue = queue
        listed = ", ".join(repr(q) for q in sorted(known)) or "none"
        super().__init__(
            f"no task step in this server's code is claimed from queue {queue!r} (its task "
            f"queues: {listed}); check the queue's name, or start `sagaline serve` with "
            f"--import MODULE for the module that declares it"
        )


class TaskResultError(SagalineError):
    """A completion whose result does not fit the step's return type; nothing changed."""

    code = "invalid_task_result"


def task_id(run_id: str, seq: int) -> str:
    """A task's id: the same for the same step of the same run (so recording it is
    idempotent on replay), and safe in a URL whatever characters the run id holds."""
    digest = hashlib.sha256(f"{run_id}\x00{seq}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"t_{digest[:32]}"


# -- the workflow side ---------------------------------------------------------------------


async def call_task(
    ctx: RunContext, sdef: StepDef[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]
) -> Any:
    """A task step inside a workflow: its recorded outcome, or record it and suspend."""
    from sagaline.engine.steps import _replay

    values = sdef.signature.bind(args, kwargs)
    call = ctx.begin(StepKind.STEP, sdef.name)
    rec = call.recorded
    if rec is None:
        await _record(ctx, sdef, call.seq, call.branch, values)
        _wake_for_schedule_deadline(ctx, sdef, ctx.rt.clock())
        raise Suspend()
    if rec.status is StepStatus.WAITING:
        limit = sdef.schedule_to_start_timeout
        if limit is not None and ctx.rt.clock() >= rec.started_at + limit:
            failed = await _unclaimed_too_long(ctx, sdef, rec, limit)
            if failed is not None:
                await ctx.finish(call, failed, _failed_event(ctx, sdef, failed))
                return _replay(ctx, sdef, failed)  # raises StepFailedError
        else:
            _wake_for_schedule_deadline(ctx, sdef, rec.started_at)
        raise Suspend()  # still out with a worker; its answer wakes the run
    return _replay(ctx, sdef, rec)


SCHEDULE_TIMEOUT = "ScheduleToStartTimeout"


def _wake_for_schedule_deadline(ctx: RunContext, sdef: StepDef[Any, Any], since: float) -> None:
    """A task step with a schedule-to-start timeout suspends with a wake-up at it, so that
    the run looks whether a worker claimed it (nothing else would wake it)."""
    if sdef.schedule_to_start_timeout is not None:
        due = since + sdef.schedule_to_start_timeout
        ctx.wake_at = due if ctx.wake_at is None else min(ctx.wake_at, due)


async def _unclaimed_too_long(
    ctx: RunContext, sdef: StepDef[Any, Any], rec: StepRecord, limit: float
) -> StepRecord | None:
    """The task's FAILED row if no worker ever claimed it (it is closed, in a transaction
    serialised with claims); None if one did, even just now."""
    rt = ctx.rt
    run_id = ctx.run.run_id
    tid = task_id(run_id, rec.seq)
    task = await rt.store.load_task(tid)
    if task is None or task.status != TASK_WAITING or task.attempt > 0:
        return None
    try:
        closing = await rt.store.close_task(tid, run_id, rt.owner, ctx.run.lease_epoch)
    except Exception as exc:
        raise StoreInterrupted(run_id, isinstance(exc, DatabaseUnavailableError)) from exc
    if closing.state == "lost":
        raise LostLease(run_id)
    if closing.state != "closed":
        return None
    error = {
        "type": SCHEDULE_TIMEOUT,
        "message": (
            f"no worker claimed it from queue {sdef.task_queue!r} within {limit:g} s "
            f"(schedule_to_start_timeout); is a worker serving that queue?"
        ),
    }
    return msgspec.structs.replace(
        rec, status=StepStatus.FAILED, error=error, finished_at=rt.clock()
    )


def _failed_event(ctx: RunContext, sdef: StepDef[Any, Any], row: StepRecord) -> NewEvent:
    assert row.error is not None
    return ctx.event(ev.StepFailed(step=sdef.name, attempts=row.attempts, error=row.error), row.seq)


async def _record(
    ctx: RunContext, sdef: StepDef[Any, Any], seq: int, branch: str, values: list[Any]
) -> None:
    """The task and its WAITING step row, in one transaction fenced by the run's lease.

    The row is written here rather than with the run's suspension, because a fast worker
    may answer before the run has suspended: its answer must find the row to fill in, and
    the suspension must not overwrite the answer (so it writes no row for the task).
    """
    assert sdef.task_queue is not None
    rt = ctx.rt
    data = sdef.signature.encode_args(rt.codec, values)
    run_id = ctx.run.run_id
    await ctx.ensure_lease()
    ctx.done_index += 1
    now = rt.clock()
    row = StepRecord(
        seq=seq,
        name=sdef.name,
        kind=StepKind.STEP,
        status=StepStatus.WAITING,
        input=data,
        output=None,
        error=None,
        attempts=0,
        compensable=False,
        pivot=False,  # only a pivot that succeeded seals the stack
        compensates_seq=None,
        done_index=ctx.done_index,
        started_at=now,
        finished_at=now,
        branch=branch,
    )
    task = NewTask(
        task_id(run_id, seq),
        run_id,
        seq,
        sdef.name,
        sdef.task_queue,
        sdef.heartbeat_timeout,
        now,
        start_to_close=sdef.start_to_close_timeout,
    )
    started = ctx.event(ev.StepStarted(step=sdef.name), seq)
    await _create(ctx, task, row, started)


async def _create(ctx: RunContext, task: NewTask, row: StepRecord, started: NewEvent) -> None:
    """Write the task with its WAITING row, fenced by the run's lease, and tell this
    process's long-polling claims."""
    rt = ctx.rt
    try:
        landed = await rt.store.create_task(task, row, rt.owner, ctx.run.lease_epoch, started)
    except Exception as exc:
        raise StoreInterrupted(task.run_id, isinstance(exc, DatabaseUnavailableError)) from exc
    if not landed:
        raise LostLease(task.run_id)
    rt.task_recorded()


async def record_compensation(
    ctx: RunContext,
    rec: StepRecord,
    comp: CompensationDef,
    seq: int,
    values: list[Any],
    result: Any,
) -> None:
    """The task of ``rec``'s task compensation and its WAITING compensation row, fenced by
    the run's lease; the unwinding then suspends on it like a step on its task.

    The row's input is what the undo is called with: the step's arguments, then its result
    (None when the step timed out), named by the compensation's parameters for the worker.
    """
    assert comp.task_queue is not None
    rt = ctx.rt
    run_id = ctx.run.run_id
    data = rt.codec.encode([*values, result], f"compensation {comp.name!r} input")
    await ctx.ensure_lease()
    now = rt.clock()
    row = StepRecord(
        seq=seq,
        name=comp.name,
        kind=StepKind.COMPENSATION,
        status=StepStatus.WAITING,
        input=data,
        output=None,
        error=None,
        attempts=0,
        compensable=False,
        pivot=False,
        compensates_seq=rec.seq,
        done_index=0,
        started_at=now,
        finished_at=now,
    )
    task = NewTask(
        task_id(run_id, seq), run_id, seq, comp.name, comp.task_queue, comp.heartbeat_timeout, now
    )
    started = ctx.event(ev.CompensationStarted(step=rec.name), seq)
    await _create(ctx, task, row, started)


ABANDONED = "TaskAbandoned"
LEASE_MARGIN = 0.05
"""Seconds past a worker's lease that an unwinding run waiting on its task wakes."""


async def close_outstanding(ctx: RunContext) -> float | None:
    """Before a run unwinds, settle the task steps it still waits for; None, or when to
    wake and look again (a worker holds one of them: what it may have charged must be known
    before unwinding can pass it by).

    A task no worker holds is closed: nothing happened, the step failed. One whose lease ran
    out is closed too: its effect is unknown, so it is compensated if its step declares
    ``compensate_unknown``. One answered meanwhile is read back: a success goes on the
    stack. One a worker holds is waited for (its answer wakes the run), at most until its
    lease ends.
    """
    rt = ctx.rt
    run_id = ctx.run.run_id
    waiting = [
        rec
        for rec in ctx.records.values()
        if rec.kind is StepKind.STEP and rec.status is StepStatus.WAITING and _is_task(rec.name)
    ]
    if not waiting:
        return None
    wake: float | None = None
    reread = False
    failed: list[StepRecord] = []
    events: list[NewEvent] = []
    for rec in waiting:
        try:
            closing = await rt.store.close_task(
                task_id(run_id, rec.seq), run_id, rt.owner, ctx.run.lease_epoch
            )
        except Exception as exc:
            raise StoreInterrupted(run_id, isinstance(exc, DatabaseUnavailableError)) from exc
        if closing.state == "lost":
            raise LostLease(run_id)
        if closing.state == "claimed":
            due = rt.clock() + closing.lease_left + LEASE_MARGIN
            wake = due if wake is None else min(wake, due)
        elif closing.state == "answered":
            reread = True
        else:
            row = _abandoned(rec, closing.state == "expired", rt.clock())
            failed.append(row)
            assert row.error is not None
            events.append(
                NewEvent(
                    ev.StepFailed(step=rec.name, attempts=rec.attempts, error=row.error),
                    rt.clock(),
                    rec.seq,
                )
            )
    if reread:
        for row in await rt.store.load_steps(run_id):
            if row.seq in ctx.records:
                ctx.records[row.seq] = row
    if failed:
        await ctx.checkpoint(steps=failed, events=events)
        for row in failed:
            ctx.records[row.seq] = row
    return wake


def _is_task(step: str) -> bool:
    try:
        return get_task_target(step).step.task_queue is not None
    except UnknownStepError:
        return False


def _abandoned(rec: StepRecord, expired: bool, at: float) -> StepRecord:
    """The row of a task step its run stopped waiting for."""
    sdef = get_task_target(rec.name).step
    if expired:
        message = (
            "its worker's lease ran out while the run was unwinding; whether it had its "
            "effect is unknown"
        )
        error: dict[str, Any] = {"type": ABANDONED, "message": message, "unknown": True}
        compensable = sdef.compensation is not None and sdef.compensate_unknown
    else:
        message = "no worker had claimed it when the run began unwinding"
        error, compensable = {"type": ABANDONED, "message": message}, False
    return msgspec.structs.replace(
        rec, status=StepStatus.FAILED, error=error, compensable=compensable, finished_at=at
    )


# -- the worker side -----------------------------------------------------------------------


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def _clean(text: str) -> str:
    if len(text) > MESSAGE_LIMIT:
        marker = f"... [truncated from {len(text)} characters]"
        text = text[: MESSAGE_LIMIT - len(marker)] + marker
    return text.replace("\x00", "\ufffd")


@dataclasses.dataclass(frozen=True)
class ClaimedTask:
    """A task as a worker sees it: ``input`` maps each parameter to its JSON value."""

    id: str
    token: str
    run_id: str
    step: str
    input: dict[str, msgspec.Raw]
    attempt: int
    deadline: str | None
    """When the lease ends (RFC 3339) unless a heartbeat extends it."""
    queue: str


@dataclasses.dataclass(frozen=True)
class TaskView:
    """A task waiting or claimed, for ``sagaline tasks list`` and the API."""

    id: str
    run_id: str
    step: str
    queue: str
    status: str
    attempt: int
    worker: str | None
    created_at: float
    lease_until: float | None


class TaskService:
    """What workers ask of the engine: claim, heartbeat, complete, fail.

    Each answer is planned here (the step's row and events, or a retry) and applied by the
    store only if the answering token still holds the task: compare-and-set, like an
    operator's action.
    """

    def __init__(
        self,
        store: Callable[[], Store],
        codec: Codec,
        clock: Callable[[], float],
        rand: Callable[[], float] = random.random,
        wake: Callable[[], None] = lambda: None,
        arrived: asyncio.Event | None = None,
    ) -> None:
        """``wake``: tell this process's worker that an answer made a run claimable (without
        it, the run waits for the worker's next poll); ``arrived``: set when this process
        records a task, so that a long-polling claim looks at once rather than at its next
        poll (tasks recorded by other processes are found by the poll)."""
        self._store = store
        self.codec = codec
        self.clock = clock
        self.rand = rand
        self._wake = wake
        self._arrived = arrived

    @property
    def store(self) -> Store:
        return self._store()

    async def claim(
        self, queue: str, worker: str, limit: int, wait_seconds: float
    ) -> list[ClaimedTask]:
        """Up to ``limit`` tasks of ``queue``, waiting up to ``wait_seconds`` for one.

        Raises:
            UnknownQueueError: no task step of this process's code uses ``queue``.
        """
        known = task_queues()
        if queue not in known:
            raise UnknownQueueError(queue, known)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, min(wait_seconds, MAX_WAIT_SECONDS))
        limit = max(1, min(limit, MAX_CLAIM))
        arrived = self._arrived
        while True:
            if arrived is not None:
                arrived.clear()  # before looking: a task recorded after this is seen next
            found = await self._within_attempts(
                await self.store.claim_tasks(queue, worker, limit, RULES)
            )
            left = deadline - loop.time()
            if found or left <= 0:
                return [self._claimed(t) for t in found]
            if arrived is None:
                await asyncio.sleep(min(POLL_SECONDS, left))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), min(POLL_SECONDS, left))

    async def _within_attempts(self, claimed: list[TaskRecord]) -> list[TaskRecord]:
        """The claimed tasks that still have an attempt left; the others fail here.

        A claim counts an attempt. A task claimed again because its last worker's lease
        ran out (it died, hung, or lost the network) has used that attempt: once the
        policy's attempts are all used so, the step (or compensation) fails as if its last
        worker had reported ``TaskLeaseExpired``, instead of going out again for ever.
        """
        kept = []
        for task in claimed:
            target = get_task_target(task.step)
            if task.attempt <= target.retry.max_attempts:
                kept.append(task)
                continue
            assert task.token is not None
            used = task.attempt - 1
            message = (
                f"the lease of each of its {used} attempt(s) ran out before its worker "
                f"answered (last worker stopped heartbeating); no attempt is left"
            )
            with contextlib.suppress(TaskLeaseLostError, TaskNotFoundError):
                await self.fail(
                    task.id, task.token, "TaskLeaseExpired", message, True, attempts=used
                )
        return kept

    def _claimed(self, task: TaskRecord) -> ClaimedTask:
        assert task.token is not None
        return ClaimedTask(
            task.id,
            task.token,
            task.run_id,
            task.step,
            self._input(task),
            task.attempt,
            _iso(task.lease_until),
            task.queue,
        )

    def _input(self, task: TaskRecord) -> dict[str, msgspec.Raw]:
        """The step's stored arguments by parameter name, as the JSON they were stored as
        (decrypted when a payload codec protects them)."""
        if task.input is None:
            return {}
        where = f"task {task.id!r} input"
        raws = msgspec.json.decode(self.codec.unprotect(task.input, where), type=list[msgspec.Raw])
        try:
            names = get_task_target(task.step).param_names()
        except UnknownStepError:
            names = [f"arg{i}" for i in range(len(raws))]
        return dict(zip(names, raws, strict=False))

    async def heartbeat(self, task_id: str, token: str) -> tuple[str | None, bool]:
        """Extend the lease: ``(deadline, cancel_requested)``.

        Raises:
            TaskNotFoundError, TaskLeaseLostError.
        """
        answer = await self.store.heartbeat_task(task_id, token)
        if answer is None:
            await self._leased(task_id, token)  # raises why
            raise TaskLeaseLostError(task_id)
        return _iso(answer[0]), answer[1]

    async def complete(self, task_id: str, token: str, result: bytes) -> None:
        """Record ``result`` (JSON) as the step's result and wake the run.

        Raises:
            TaskNotFoundError, TaskLeaseLostError.
            TaskResultError: ``result`` does not fit the step's return type; the task stays
                leased to this token (and claimable again when the lease runs out).
        """
        task, target, waiting = await self._leased(task_id, token)
        if target.compensation is not None:
            await self._compensated(task, target, waiting, token)
            return
        sdef = target.step
        where = f"task {task_id!r} result"
        try:
            value = self.codec.decode_json(result, sdef.signature.return_type, where)
        except PayloadDecodeError as exc:
            raise TaskResultError(
                f"the result does not fit step {sdef.name!r}'s return type {exc.type_name}: "
                f"{exc.__cause__ or exc}; nothing was recorded and the task is still yours"
            ) from None
        try:
            output = self.codec.encode(value, where)
        except PayloadError as exc:
            raise TaskResultError(str(exc)) from None
        row = msgspec.structs.replace(
            waiting,
            status=StepStatus.SUCCEEDED,
            output=output,
            attempts=task.attempt,
            compensable=sdef.compensation is not None,
            pivot=sdef.pivot,
            finished_at=self.clock(),
        )
        event = ev.StepSucceeded(step=sdef.name, attempts=task.attempt)
        await self._finish(task_id, token, TaskFinish(row, [self._event(event, task.seq)]))

    async def fail(
        self,
        task_id: str,
        token: str,
        error_type: str,
        message: str,
        non_retryable: bool,
        *,
        attempts: int | None = None,
    ) -> bool:
        """Record a failed attempt; returns whether it will be retried. ``attempts``: how
        many were made, when the claim holding ``token`` was not one of them.

        Retried (claimable again after the policy's backoff) while attempts remain and the
        worker did not say ``non_retryable``; otherwise the step fails and the run unwinds.

        Raises:
            TaskNotFoundError, TaskLeaseLostError.
        """
        task, target, waiting = await self._leased(task_id, token)
        if attempts is not None:  # the attempts made, when this claim was not one
            task = dataclasses.replace(task, attempt=attempts)
        error = {"type": _clean(error_type) or "Error", "message": _clean(message)}
        sdef, policy = target.step, target.retry
        retried = not non_retryable and task.attempt < policy.max_attempts
        if target.compensation is not None:
            await self._compensation_failed(task, target, waiting, token, error, retried)
            return retried
        if retried:
            delay = policy.delay(task.attempt, self.rand())
            failed = ev.StepAttemptFailed(
                step=sdef.name, attempt=task.attempt, error=error, retry_in=round(delay, 3)
            )
            finish = TaskFinish(None, [self._event(failed, task.seq)], retry_in=delay)
            await self._finish(task_id, token, finish)
            return True
        row = msgspec.structs.replace(
            waiting,
            status=StepStatus.FAILED,
            error=error,
            attempts=task.attempt,
            compensable=sdef.compensation is not None and sdef.compensate_unknown,
            finished_at=self.clock(),
        )
        event = ev.StepFailed(step=sdef.name, attempts=task.attempt, error=error)
        await self._finish(task_id, token, TaskFinish(row, [self._event(event, task.seq)]))
        return False

    async def list(self, queue: str | None = None) -> list[TaskView]:
        return [
            TaskView(
                t.id,
                t.run_id,
                t.step,
                t.queue,
                t.status,
                t.attempt,
                t.worker,
                t.created_at,
                t.lease_until,
            )
            for t in await self.store.list_tasks(queue)
        ]

    def _event(self, event: ev.Event, seq: int) -> NewEvent:
        return NewEvent(event, self.clock(), seq)

    async def _compensated(
        self, task: TaskRecord, target: TaskTarget, waiting: StepRecord, token: str
    ) -> None:
        """A task compensation done: its row and event; the run, woken, unwinds on."""
        assert target.compensation is not None
        row = msgspec.structs.replace(
            waiting, status=StepStatus.SUCCEEDED, attempts=task.attempt, finished_at=self.clock()
        )
        event = ev.CompensationSucceeded(
            step=target.step.name, compensation=target.compensation.name, attempts=task.attempt
        )
        await self._finish(task.id, token, TaskFinish(row, [self._event(event, task.seq)]))

    async def _compensation_failed(
        self,
        task: TaskRecord,
        target: TaskTarget,
        waiting: StepRecord,
        token: str,
        error: dict[str, Any],
        retried: bool,
    ) -> None:
        """A task compensation's attempt failed: retried after the compensation's backoff,
        or, out of attempts, its row FAILED; the run, woken, then parks for an operator."""
        comp, step = target.compensation, target.step.name
        assert comp is not None
        if retried:
            delay = comp.retry.delay(task.attempt, self.rand())
            failed = ev.CompensationAttemptFailed(
                step=step,
                compensation=comp.name,
                attempt=task.attempt,
                error=error,
                retry_in=round(delay, 3),
            )
            finish = TaskFinish(None, [self._event(failed, task.seq)], retry_in=delay)
            await self._finish(task.id, token, finish)
            return
        row = msgspec.structs.replace(
            waiting,
            status=StepStatus.FAILED,
            error=error,
            attempts=task.attempt,
            finished_at=self.clock(),
        )
        gave_up = ev.CompensationFailed(
            step=step, compensation=comp.name, attempts=task.attempt, error=error
        )
        await self._finish(task.id, token, TaskFinish(row, [self._event(gave_up, task.seq)]))

    async def _leased(self, task_id: str, token: str) -> tuple[TaskRecord, TaskTarget, StepRecord]:
        """The task ``token`` holds, what it stands for, and its WAITING step row."""
        task = await self.store.load_task(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        if task.status != TASK_CLAIMED or task.token != token:
            raise TaskLeaseLostError(task_id)
        target = get_task_target(task.step)
        rows = [r for r in await self.store.load_steps(task.run_id) if r.seq == task.seq]
        if not rows or rows[0].status is not StepStatus.WAITING:
            raise TaskLeaseLostError(task_id)
        return task, target, rows[0]

    async def _finish(self, task_id: str, token: str, finish: TaskFinish) -> None:
        if not await self.store.finish_task(task_id, token, finish, RULES):
            raise TaskLeaseLostError(task_id)
        if finish.step is not None:
            self._wake()  # the run it woke may be this process's to run
