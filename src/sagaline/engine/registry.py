"""``@workflow`` and ``@step``: definitions, and the registry that finds them by name.

A worker can only run what its process has imported: runs and steps are stored by name
(``module.qualname`` unless ``name=`` is given) and looked up here on recovery.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from sagaline.engine.transaction import Transaction
from sagaline.model.codec import Signature
from sagaline.model.cron import Cron
from sagaline.model.errors import (
    DefinitionError,
    StepOutsideWorkflowError,
    UnknownStepError,
    UnknownWorkflowError,
)
from sagaline.model.names import check_name
from sagaline.model.retry import DEFAULT_COMPENSATION_RETRY, DEFAULT_STEP_RETRY, RetryPolicy

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_HEARTBEAT_TIMEOUT = 30.0
"""Seconds a task's worker may stay silent (no heartbeat, no answer) before it is presumed
dead and the task goes to another worker."""

_workflows: dict[str, WorkflowDef[Any, Any]] = {}
_steps: dict[str, StepDef[Any, Any]] = {}
_task_compensations: dict[str, StepDef[Any, Any]] = {}
"""Task compensations by their name, to the step they undo."""


def default_name(fn: Callable[..., Any]) -> str:
    return f"{_module_of(fn)}.{fn.__qualname__}"


def _module_of(fn: Callable[..., Any]) -> str:
    """The module's importable name, also for the script that was run as ``__main__``.

    A run is stored with the names of its workflow and steps, and a worker that later
    imports the script as a module (``--import orders``) knows them as ``orders.x``: the
    name ``__main__.x`` would park the run BLOCKED. So a script's definitions are named
    after the module it is when imported: ``python -m pkg.orders`` → ``pkg.orders``,
    ``python orders.py`` → ``orders``.
    """
    module = fn.__module__
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name)
    path = getattr(main, "__file__", None)
    return Path(path).stem if path else module


def _positive(what: str, option: str, value: float | timedelta | None) -> float | None:
    """A duration option in seconds (``timedelta`` too); refused unless positive."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds > 0:
        raise DefinitionError(f"{what}: {option} must be positive (seconds or a timedelta)")
    return seconds


def _register(table: dict[str, Any], kind: str, name: str, definition: Any) -> None:
    existing = table.get(name)
    if existing is not None and default_name(existing.fn) != default_name(definition.fn):
        raise DefinitionError(
            f"{kind} name {name!r} is already used by {default_name(existing.fn)}; "
            f"give one of them another name=..."
        )
    table[name] = definition


@dataclass(frozen=True)
class CompensationDef:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    retry: RetryPolicy
    timeout: float | None
    task_queue: str | None = None
    """Set: the undo runs in an external worker that claims it from this queue."""
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT

    def param_names(self) -> list[str]:
        """How a worker sees the undo's arguments: the step's, then the step's result."""
        return list(inspect.signature(self.fn).parameters)


@dataclass(frozen=True)
class TaskTarget:
    """What a task's name stands for: a task step, or the task compensation of a step."""

    step: StepDef[Any, Any]
    compensation: CompensationDef | None = None

    @property
    def name(self) -> str:
        return self.step.name if self.compensation is None else self.compensation.name

    @property
    def retry(self) -> RetryPolicy:
        return self.step.retry if self.compensation is None else self.compensation.retry

    def param_names(self) -> list[str]:
        if self.compensation is not None:
            return self.compensation.param_names()
        return [p.name for p in self.step.signature.params]


class StepDef(Generic[P, R]):
    """A step: awaited inside a workflow, it runs once and its result is recorded."""

    def __init__(
        self,
        fn: Callable[P, Any],
        *,
        name: str | None,
        retry: RetryPolicy | None,
        timeout: float | None,
        pivot: bool,
        compensate_unknown: bool = False,
        transactional: bool = False,
        task_queue: str | None = None,
        heartbeat_timeout: float | timedelta | None = None,
        schedule_to_start_timeout: float | timedelta | None = None,
        start_to_close_timeout: float | timedelta | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or default_name(fn)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.retry = retry or DEFAULT_STEP_RETRY
        self.retry_given = retry is not None
        """False: a handler's ``retry=`` may stand in for the default policy."""
        self.timeout = timeout
        self.pivot = pivot
        self.compensate_unknown = compensate_unknown
        self.transactional = transactional
        if transactional and (not self.is_async or not inspect.signature(fn).parameters):
            raise DefinitionError(
                f"step {self.name!r}: a transactional step is an `async def` whose first "
                f"parameter receives the transaction: `async def {fn.__name__}(tx: "
                f"sagaline.Transaction, ...)`"
            )
        self.signature = Signature(fn, f"step {self.name!r}", skip_first=transactional)
        self.compensation: CompensationDef | None = None
        self.task_queue = task_queue
        """Set: the body runs in an external worker that claims it from this queue."""
        beat = _positive(f"step {self.name!r}", "heartbeat_timeout", heartbeat_timeout)
        self.heartbeat_timeout = beat or DEFAULT_HEARTBEAT_TIMEOUT
        where = f"step {self.name!r}"
        self.schedule_to_start_timeout = _positive(
            where, "schedule_to_start_timeout", schedule_to_start_timeout
        )
        """A task no worker claimed this long after it was recorded fails, not retried (no
        worker serves its queue: another attempt would wait as long)."""
        self.start_to_close_timeout = _positive(
            where, "start_to_close_timeout", start_to_close_timeout
        )
        """How long one attempt may take from its claim, heartbeats or not: then its lease
        ends, its effect is unknown, and the task goes to another attempt."""
        if task_queue is None and (schedule_to_start_timeout or start_to_close_timeout):
            raise DefinitionError(
                f"step {self.name!r}: schedule_to_start_timeout and start_to_close_timeout "
                f"are for task steps (task_queue=...); an in-process step has timeout="
            )
        """A task's lease: a worker silent for longer is presumed dead, and the task is
        claimable again."""
        if task_queue is not None:
            check_name("@step task_queue", task_queue)
            if transactional:
                raise DefinitionError(
                    f"step {self.name!r}: a task step runs in an external worker; it cannot "
                    f"be transactional"
                )
        if timeout is not None and timeout <= 0:
            raise DefinitionError(f"step {self.name!r}: timeout must be positive seconds")

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        from sagaline.engine.context import current_context
        from sagaline.engine.steps import call_step

        ctx = current_context()
        if ctx is None:
            raise StepOutsideWorkflowError(self.name)
        result: R = await call_step(ctx, self, args, kwargs)
        return result

    @overload
    def compensate(self, fn: F) -> F: ...

    @overload
    def compensate(
        self,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        task_queue: str | None = None,
        heartbeat_timeout: float | timedelta | None = None,
    ) -> Callable[[F], F]: ...

    def compensate(
        self,
        fn: Any = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        name: str | None = None,
        task_queue: str | None = None,
        heartbeat_timeout: float | timedelta | None = None,
    ) -> Any:
        """Register the undo of this step, called with the step's arguments and its result.

        Returns the function unchanged, so it stays directly callable in unit tests.

        ``task_queue="payments"``: the undo (body ``...``) runs in an external worker that
        claims it, by ``name``, from that queue, with the step's arguments and its result
        as input; unwinding suspends until the worker answers, and a failed attempt is
        retried per ``retry=`` until the run parks in COMPENSATION_FAILED, as in-process.
        """
        if name is not None:
            check_name("compensate name", name)
        if task_queue is not None:
            check_name("compensate task_queue", task_queue)
        beat = _positive(f"compensation of {self.name!r}", "heartbeat_timeout", heartbeat_timeout)

        def register(comp: Any) -> Any:
            if self.pivot:
                raise DefinitionError(
                    f"step {self.name!r} is a pivot: it cannot be undone, so it cannot have "
                    f"a compensation"
                )
            if self.compensation is not None and self.compensation.fn is not comp:
                raise DefinitionError(f"step {self.name!r} already has a compensation")
            definition = CompensationDef(
                name=name or default_name(comp),
                fn=comp,
                is_async=inspect.iscoroutinefunction(comp),
                retry=retry or DEFAULT_COMPENSATION_RETRY,
                timeout=timeout,
                task_queue=task_queue,
                heartbeat_timeout=beat or DEFAULT_HEARTBEAT_TIMEOUT,
            )
            if task_queue is not None:
                _register_task_compensation(definition.name, self)
            self.compensation = definition
            return comp

        return register if fn is None else register(fn)

    def __repr__(self) -> str:
        return f"<step {self.name}>"


class WorkflowDef(Generic[P, R]):
    """A workflow: an ``async def`` that drives steps; started with ``engine.start``."""

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]],
        *,
        name: str | None,
        queue: str,
        schedule: str | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or default_name(fn)
        self.queue = queue
        if not inspect.iscoroutinefunction(fn):
            raise DefinitionError(
                f"workflow {self.name!r} must be an `async def`: it awaits its steps"
            )
        self.signature = Signature(fn, f"workflow {self.name!r}")
        self.schedule = None if schedule is None else Cron.parse(schedule)
        required = [p for p in self.signature.params if p.default is p.empty]
        if self.schedule is not None and required:
            raise DefinitionError(
                f"scheduled workflow {self.name!r} is started with no arguments, but it "
                f"requires {', '.join(p.name for p in required)}; give them defaults"
            )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        raise DefinitionError(
            f"workflow {self.name!r} is not called directly; start it with "
            f"`await engine.start({self.fn.__name__}, ...)`"
        )

    def __repr__(self) -> str:
        return f"<workflow {self.name}>"


class _StepDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> StepDef[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> StepDef[P, R]: ...


class _TransactionalStepDecorator(Protocol):
    def __call__(
        self, fn: Callable[Concatenate[Transaction, P], Awaitable[R]], /
    ) -> StepDef[P, R]: ...


@overload
def step(fn: Callable[P, Awaitable[R]], /) -> StepDef[P, R]: ...
@overload
def step(fn: Callable[P, R], /) -> StepDef[P, R]: ...
@overload
def step(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    pivot: bool = False,
    compensate_unknown: bool = False,
    transactional: Literal[True],
) -> _TransactionalStepDecorator: ...
@overload
def step(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    pivot: bool = False,
    compensate_unknown: bool = False,
    transactional: Literal[False] = False,
    task_queue: str | None = None,
    heartbeat_timeout: float | timedelta | None = None,
    schedule_to_start_timeout: float | timedelta | None = None,
    start_to_close_timeout: float | timedelta | None = None,
) -> _StepDecorator: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    pivot: bool = False,
    compensate_unknown: bool = False,
    transactional: bool = False,
    task_queue: str | None = None,
    heartbeat_timeout: float | timedelta | None = None,
    schedule_to_start_timeout: float | timedelta | None = None,
    start_to_close_timeout: float | timedelta | None = None,
) -> Any:
    """Declare a step: ``@step`` or ``@step(retry=..., timeout=seconds, pivot=True)``.

    A timed-out attempt's effect is unknown: the step may have charged the card before it
    ran out of time. When the last attempt timed out, the step fails; with
    ``compensate_unknown=True`` its compensation is still pushed on the stack (called with
    ``None`` for the result it never returned), so unwinding undoes whatever it may have done.

    ``transactional=True``: the step's first parameter receives a
    :class:`sagaline.Transaction` on the engine's own database; the step's SQL, the events
    it publishes and its recorded result commit in one transaction — exactly once. The
    step is called without that argument: ``await reserve(sku)``.

    ``task_queue="payments"``: the body (``...``) runs in an external worker, in any
    language, that claims the step from that queue over the HTTP API; the function gives
    the step's name, typed arguments and typed result. The run suspends until a worker
    answers (``heartbeat_timeout`` seconds of silence hand the task to another worker), and
    a failed attempt is retried per ``retry=`` like an in-process step's. Timeouts, in
    seconds or as a ``timedelta``: ``schedule_to_start_timeout`` fails the step if no
    worker claimed it that long after it was recorded; ``start_to_close_timeout`` bounds
    one attempt from its claim, heartbeats or not (then another attempt gets it).
    """
    if name is not None:
        check_name("@step name", name)

    def make(f: Callable[..., Any]) -> StepDef[Any, Any]:
        definition: StepDef[Any, Any] = StepDef(
            f,
            name=name,
            retry=retry,
            timeout=timeout,
            pivot=pivot,
            compensate_unknown=compensate_unknown,
            transactional=transactional,
            task_queue=task_queue,
            heartbeat_timeout=heartbeat_timeout,
            schedule_to_start_timeout=schedule_to_start_timeout,
            start_to_close_timeout=start_to_close_timeout,
        )
        _register(_steps, "step", definition.name, definition)
        return definition

    return make if fn is None else make(fn)


class _WorkflowDecorator(Protocol):
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> WorkflowDef[P, R]: ...


@overload
def workflow(fn: Callable[P, Awaitable[R]], /) -> WorkflowDef[P, R]: ...
@overload
def workflow(
    *, name: str | None = None, queue: str = "default", schedule: str | None = None
) -> _WorkflowDecorator: ...


def workflow(
    fn: Callable[..., Awaitable[Any]] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str = "default",
    schedule: str | None = None,
) -> Any:
    """Declare a workflow: ``@workflow``, ``@workflow(name="order", queue="payments")``.

    ``schedule="*/5 * * * *"`` (cron, UTC) starts one run per period across all workers.
    """
    if name is not None:
        check_name("@workflow name", name)
    check_name("@workflow queue", queue)

    def make(f: Callable[..., Awaitable[Any]]) -> WorkflowDef[Any, Any]:
        definition: WorkflowDef[Any, Any] = WorkflowDef(
            f, name=name, queue=queue, schedule=schedule
        )
        _register(_workflows, "workflow", definition.name, definition)
        return definition

    return make if fn is None else make(fn)


def get_workflow(name: str) -> WorkflowDef[Any, Any]:
    try:
        return _workflows[name]
    except KeyError:
        raise UnknownWorkflowError(name) from None


def get_step(name: str) -> StepDef[Any, Any]:
    try:
        return _steps[name]
    except KeyError:
        raise UnknownStepError(name) from None


def _register_task_compensation(name: str, step: StepDef[Any, Any]) -> None:
    """A task compensation's name is what workers dispatch on: unique among task names."""
    other = _task_compensations.get(name)
    if (other is not None and other.name != step.name) or (
        name in _steps and _steps[name].task_queue is not None
    ):
        raise DefinitionError(
            f"task name {name!r} is already used by another task step or compensation; "
            f"give this compensation another name=..."
        )
    _task_compensations[name] = step


def task_queues() -> set[str]:
    """Every queue a registered task step or task compensation is claimed from."""
    queues = {s.task_queue for s in _steps.values() if s.task_queue is not None}
    queues |= {
        s.compensation.task_queue
        for s in _task_compensations.values()
        if s.compensation is not None and s.compensation.task_queue is not None
    }
    return queues


def get_task_target(name: str) -> TaskTarget:
    """The task step, or the step whose task compensation, ``name`` is.

    Raises:
        UnknownStepError: no task of that name in this process's code.
    """
    step = _task_compensations.get(name)
    if step is not None and step.compensation is not None:
        return TaskTarget(step, step.compensation)
    return TaskTarget(get_step(name))


def workflow_names() -> list[str]:
    return sorted(_workflows)


def workflow_defs() -> list[WorkflowDef[Any, Any]]:
    """Every registered workflow, by name (a read-only view for the surfaces)."""
    return [_workflows[name] for name in sorted(_workflows)]


def step_defs() -> list[StepDef[Any, Any]]:
    """Every registered step, by name (a read-only view for the surfaces)."""
    return [_steps[name] for name in sorted(_steps)]


def scheduled_workflows() -> list[WorkflowDef[Any, Any]]:
    return [w for w in _workflows.values() if w.schedule is not None]
