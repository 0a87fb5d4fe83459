"""A state machine as an ordinary durable workflow.

``load(definition, name=...)`` registers a workflow named ``name`` whose stored input is
``[input, definition]``: the definition travels *with the run*, in the run's own row, so
the worker that recovers it after a crash runs the document the run started with, even if
the file has changed since (a new deploy only affects new runs). A worker still needs the
name registered (it imported the module that calls ``load``, as for any workflow), which
is also what routes runs by queue.

Durability comes from the engine's own calls, so a crash at any state resumes from the last
recorded one by replay: each Task attempt is a step call (``sagaline:NAME`` the user's
step, with its compensation and pivot; any other resource the recorded step
``sagaline.asl.resource``); Wait states and Retry intervals are ``sagaline.sleep``; the time
and the randomness the machine reads come from ``sagaline.now()``/``uuid4()``; Parallel
and Map branches are asyncio tasks, each with its own branch cursor. Pass and Choice are
pure, recomputed on replay.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sagaline.definitions.asl import document, resources
from sagaline.definitions.asl.errors import AslError, ExecutionFailed, python_error_name
from sagaline.definitions.asl.host import TaskRequest
from sagaline.definitions.asl.intrinsics import Entropy
from sagaline.definitions.asl.machine import Outcome, execute
from sagaline.definitions.asl.validate import validate
from sagaline.engine import durable
from sagaline.engine.context import current_context
from sagaline.engine.registry import StepDef, WorkflowDef, get_step, step, workflow
from sagaline.model.codec import Signature
from sagaline.model.errors import DefinitionError, StepFailedError, UnknownStepError
from sagaline.model.retry import RetryPolicy

STEP_PREFIX = "sagaline:"


@step(name="sagaline.asl.resource", retry=RetryPolicy(max_attempts=1))
async def resource_task(
    state: str,
    resource: str,
    payload: Any,
    attempt: int,
    timeout: float | None,
    heartbeat: float | None,
    token: str | None,
) -> dict[str, Any]:
    """One attempt of a Task on a registered resource handler, recorded as a step.

    It always succeeds as a step: an ASL failure is recorded as ``{"Error", "Cause"}``
    data, so the machine's own Retry and Catch decide, and replay sees the same failure.
    """
    request = TaskRequest(state, resource, payload, attempt, timeout, heartbeat, token)
    handler = resources.handler_for(resource)
    if handler is None:
        return {
            "Error": "States.Runtime",
            "Cause": f"no handler for resource {resource!r}; "
            "register one with sagaline.definitions.asl.register_resource",
        }
    try:
        return {"Output": await resources.call(handler, request)}
    except AslError as exc:
        return exc.output()


class DurableHost:
    """The engine's effects, from inside a running workflow."""

    def __init__(self) -> None:
        self.entropy = Entropy(uuid=lambda: str(durable.uuid4()), random=self._random)

    @staticmethod
    def _random() -> float:
        return durable.uuid4().int / 2**128

    async def task(self, request: TaskRequest) -> Any:
        if request.resource.startswith(STEP_PREFIX):
            return await _call_step(request)
        envelope = await resource_task(
            request.state,
            request.resource,
            request.payload,
            request.attempt,
            request.timeout,
            request.heartbeat,
            request.token,
        )
        if "Output" in envelope:
            return envelope["Output"]
        raise AslError(envelope.get("Error"), envelope.get("Cause"))

    async def wait(self, seconds: float) -> None:
        if seconds > 0:
            await durable.sleep(seconds)

    def now(self) -> Any:
        return durable.now()


async def _call_step(request: TaskRequest) -> Any:
    name = request.resource[len(STEP_PREFIX) :]
    try:
        sdef: StepDef[Any, Any] = get_step(name)
    except UnknownStepError:
        raise AslError("States.Runtime", f"no step {name!r} is registered") from None
    args, kwargs = step_arguments(sdef, request.payload)
    try:
        result = await sdef(*args, **kwargs)
    except StepFailedError as exc:
        raise AslError(python_error_name(exc.error_type), exc.error_message) from None
    return msgspec.to_builtins(result)


def step_arguments(sdef: StepDef[Any, Any], payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """A JSON object whose keys are the step's parameters is passed as keywords; any
    other input as the single argument."""
    names = {p.name for p in sdef.signature.params}
    if isinstance(payload, dict) and payload and set(payload) <= names:
        return [], dict(payload)
    return [payload], {}


class _MachineSignature(Signature):
    """The workflow's arguments, with the definition filled in when a run is started."""

    def __init__(self, fn: Any, owner: str, doc: dict[str, Any]) -> None:
        super().__init__(fn, owner)
        self.doc = doc

    def bind(self, args: Any, kwargs: dict[str, Any]) -> list[Any]:
        values = super().bind(args, kwargs)
        if values[1] is None:
            values[1] = self.doc
        return values


def load(
    definition: document.Source, *, name: str, queue: str = "default"
) -> WorkflowDef[Any, Any]:
    """The state machine ``definition`` as a workflow named ``name``; start it with
    ``engine.start(machine, input, run_id=...)`` (or by name).

    Raises:
        DefinitionError: the document is not valid ASL (every problem is listed).
    """
    doc = document.read(definition)
    problems = validate(doc)
    if problems:
        listed = "; ".join(str(p) for p in problems[:10])
        raise DefinitionError(
            f"state machine {name!r} is not valid ASL: {listed}; check it with "
            f"`sagaline asl validate FILE`"
        )

    async def machine(input: Any = None, definition: dict[str, Any] | None = None) -> Any:
        outcome = await run(definition or doc, input, name)
        if outcome.status != "SUCCEEDED":
            raise ExecutionFailed(outcome.error, outcome.cause)
        return outcome.output

    wdef: WorkflowDef[Any, Any] = workflow(name=name, queue=queue)(machine)
    wdef.signature = _MachineSignature(machine, f"workflow {name!r}", doc)
    return wdef


async def run(doc: dict[str, Any], input: Any, name: str) -> Outcome:
    """Interpret ``doc`` inside the current run, on the durable host."""
    ctx = current_context()
    execution = ctx.run.run_id if ctx is not None else "execution"
    return await execute(doc, input, DurableHost(), name=name, execution=execution)
