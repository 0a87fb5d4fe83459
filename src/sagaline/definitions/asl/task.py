"""Task states, and the Retry and Catch rules that Task, Parallel and Map share.

A Retrier's wait is the host's ``wait``: in a durable run a durable timer, so a machine
that backs off for an hour holds no worker. Retriers are tried in order and the first
whose ``ErrorEquals`` matches decides, exhausted or not (the spec's rule).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sagaline.definitions.asl import errors
from sagaline.definitions.asl.errors import AslError
from sagaline.definitions.asl.host import TaskRequest
from sagaline.definitions.asl.processing import StateRun

Outcome = tuple[str | None, Any]


def _event_kind(resource: str) -> str:
    if resource.startswith("arn:") and ":lambda:" in resource and ":function:" in resource:
        return "LambdaFunction"
    if ":activity:" in resource:
        return "Activity"
    return "Task"


def _number(run: StateRun, field: str, data: Any) -> float | None:
    value = run.value(field, data)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise run.error(f"The {field} field must be a positive integer: {value}")
    return float(value)


async def run_task(run: StateRun) -> Outcome:
    """A Task state: the resource called (with retries), its result processed."""
    state = run.state

    async def body() -> Outcome:
        if run.jsonata:
            payload = (
                run.evaluate(state["Arguments"], "Arguments") if "Arguments" in state else run.raw
            )
        else:
            payload = run.parameters(run.effective_input())
        timeout = _number(run, "TimeoutSeconds", run.raw)
        heartbeat = _number(run, "HeartbeatSeconds", run.raw)
        resource = str(state["Resource"])
        kind = _event_kind(resource)
        attempts = [0]

        async def invoke() -> Any:
            attempts[0] += 1
            history = run.scope.history
            history.add(f"{kind}Scheduled", run.name, resource=resource, input=payload)
            history.add(f"{kind}Started", run.name)
            request = TaskRequest(
                run.name,
                resource,
                payload,
                attempts[0],
                timeout,
                heartbeat,
                token=run.task_token,
                credentials=state.get("Credentials"),
            )
            try:
                result = await run.scope.host.task(request)
            except AslError as exc:
                kind_failed = "TimedOut" if exc.name == errors.TIMEOUT else "Failed"
                history.add(f"{kind}{kind_failed}", run.name, error=exc.name, cause=exc.cause)
                raise
            history.add(f"{kind}Succeeded", run.name, output=result)
            return result

        result = await retrying(run, invoke)
        return next_state(run), result_output(run, result)

    return await catching(run, body)


def next_state(run: StateRun) -> str | None:
    """Where a state that produced a result goes: its Next, or nowhere when it ends."""
    return None if run.state.get("End") else run.state.get("Next")


def result_output(run: StateRun, result: Any) -> Any:
    """A result-producing state's output (Task, Parallel, Map alike): ResultSelector,
    ResultPath, OutputPath, Assign — or JSONata's Output and Assign."""
    state = run.state
    if run.jsonata:
        return run.finish(
            result,
            assign=state.get("Assign"),
            output=state.get("Output"),
            has_output="Output" in state,
            result=result,
        )
    if "ResultSelector" in state:
        result = run.template(state["ResultSelector"], result)
    return run.finish(
        result,
        assign=state.get("Assign"),
        result_path=state.get("ResultPath", "$"),
        output_path=state.get("OutputPath", "$"),
    )


async def retrying(run: StateRun, attempt: Callable[[], Awaitable[Any]]) -> Any:
    """``attempt()``, again after each matching Retrier's backoff, until it gives up."""
    retriers: list[Mapping[str, Any]] = list(run.state.get("Retry", []))
    counts = [0] * len(retriers)
    while True:
        try:
            return await attempt()
        except AslError as exc:
            index = next(
                (i for i, r in enumerate(retriers) if errors.matches(r["ErrorEquals"], exc.name)),
                None,
            )
            if index is None:
                raise
            retrier = retriers[index]
            if counts[index] >= int(retrier.get("MaxAttempts", 3)):
                raise
            await run.scope.host.wait(_delay(run, retrier, counts[index]))
            counts[index] += 1
            run.retry_count += 1


def _delay(run: StateRun, retrier: Mapping[str, Any], done: int) -> float:
    delay = (
        float(retrier.get("IntervalSeconds", 1)) * float(retrier.get("BackoffRate", 2.0)) ** done
    )
    if "MaxDelaySeconds" in retrier:
        delay = min(delay, float(retrier["MaxDelaySeconds"]))
    if retrier.get("JitterStrategy") == "FULL":
        delay *= run.scope.host.entropy.random()
    return delay


async def catching(run: StateRun, body: Callable[[], Awaitable[Outcome]]) -> Outcome:
    """``body()``, or, when it fails with an error a Catcher matches, that Catcher's way."""
    try:
        return await body()
    except AslError as exc:
        for catcher in run.state.get("Catch", []):
            if errors.matches(catcher["ErrorEquals"], exc.name):
                return catcher["Next"], _caught(run, catcher, exc.output())
        raise


def _caught(run: StateRun, catcher: Mapping[str, Any], error_output: dict[str, Any]) -> Any:
    if run.jsonata:
        return run.finish(
            error_output,
            assign=catcher.get("Assign"),
            output=catcher.get("Output"),
            has_output="Output" in catcher,
            errorOutput=error_output,
        )
    return run.finish(
        error_output,
        assign=catcher.get("Assign"),
        result_path=catcher.get("ResultPath", "$"),
        output_path="$",
    )
