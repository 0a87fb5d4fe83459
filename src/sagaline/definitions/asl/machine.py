"""The interpreter: a machine's states run one after another until an end.

Pass, Choice, Wait, Succeed and Fail are here; Task, Retry and Catch in ``task.py``;
Parallel and Map in ``branches.py``. All of it is deterministic given the host's answers
(task results, the time, the randomness), which is what lets a durable run replay it: the
pure states are recomputed, the effects come back from the run's history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sagaline.definitions.asl import choice, paths
from sagaline.definitions.asl.errors import DATA_LIMIT, NO_CHOICE, QUERY_EVALUATION, AslError
from sagaline.definitions.asl.host import Event, History, Host
from sagaline.definitions.asl.processing import StateRun
from sagaline.definitions.asl.scope import JSONPATH, Scope

MAX_PAYLOAD = 256 * 1024
MAX_WAIT_SECONDS = 99999999
ACCOUNT = "arn:aws:states:us-east-1:000000000000"


@dataclass
class Outcome:
    """How an execution ended: ``SUCCEEDED`` with an output, or ``FAILED`` with an error."""

    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    events: list[Event] = field(default_factory=list)


async def execute(
    definition: Mapping[str, Any],
    input: Any,
    host: Host,
    *,
    name: str = "machine",
    execution: str = "execution",
) -> Outcome:
    """Run ``definition`` on ``input`` to its end; ASL failures become a FAILED outcome."""
    history = History()
    started = host.now().isoformat().replace("+00:00", "Z")
    scope = Scope(
        host,
        history,
        execution={
            "Id": f"{ACCOUNT}:execution:{name}:{execution}",
            "Input": input,
            "Name": execution,
            "RoleArn": "arn:aws:iam::000000000000:role/sagaline",
            "StartTime": started,
            "RedriveCount": 0,
        },
        state_machine={"Id": f"{ACCOUNT}:stateMachine:{name}", "Name": name},
        language=str(definition.get("QueryLanguage", JSONPATH)),
    )
    history.add("ExecutionStarted", input=input)
    try:
        output = await run_states(definition, input, scope)
    except AslError as exc:
        history.add("ExecutionFailed", error=exc.name, cause=exc.cause)
        return Outcome("FAILED", error=exc.name, cause=exc.cause, events=history.events)
    history.add("ExecutionSucceeded", output=output)
    return Outcome("SUCCEEDED", output=output, events=history.events)


async def run_states(graph: Mapping[str, Any], data: Any, scope: Scope) -> Any:
    """Run the states of ``graph`` (a machine, a branch, a Map processor) from StartAt."""
    from sagaline.definitions.asl.branches import run_map, run_parallel
    from sagaline.definitions.asl.task import run_task

    name: str | None = graph["StartAt"]
    while name is not None:
        state = graph["States"][name]
        kind = state["Type"]
        entered = scope.history.add(f"{kind}StateEntered", name, input=data)
        await asyncio.sleep(0)  # branches take turns at each state, as AWS's history shows
        run = StateRun(scope, name, state, entered, data)
        if kind == "Fail":
            raise _failure(run)
        handler = {
            "Pass": _pass,
            "Choice": _choice,
            "Wait": _wait,
            "Succeed": _succeed,
            "Task": run_task,
            "Parallel": run_parallel,
            "Map": run_map,
        }.get(kind)
        if handler is None:
            raise run.error(f"unsupported state type {kind!r}")
        next_name, data = await handler(run)
        _check_size(name, data)
        scope.history.add(f"{kind}StateExited", name, output=data)
        name = next_name
    return data


def next_of(run: StateRun) -> str | None:
    return None if run.state.get("End") else run.state.get("Next")


def _check_size(name: str, data: Any) -> None:
    # Characters first: only text that long can be over the limit in UTF-8 bytes.
    text = paths.compact(data) if isinstance(data, str | dict | list) else ""
    if len(text) > MAX_PAYLOAD // 4 and len(text.encode()) > MAX_PAYLOAD:
        raise AslError(
            DATA_LIMIT,
            f"The state/task '{name}' returned a result with a size exceeding the "
            f"maximum number of bytes service limit.",
        )


async def _pass(run: StateRun) -> tuple[str | None, Any]:
    state = run.state
    if run.jsonata:
        out = run.finish(
            run.raw,
            assign=state.get("Assign"),
            output=state.get("Output"),
            has_output="Output" in state,
        )
        return next_of(run), out
    effective = run.effective_input()
    result = state["Result"] if "Result" in state else run.parameters(effective)
    out = run.finish(
        result,
        assign=state.get("Assign"),
        result_path=state.get("ResultPath", "$"),
        output_path=state.get("OutputPath", "$"),
    )
    return next_of(run), out


async def _succeed(run: StateRun) -> tuple[str | None, Any]:
    if run.jsonata:
        out = run.finish(run.raw, output=run.state.get("Output"), has_output="Output" in run.state)
        return None, out
    effective = run.effective_input()
    return None, run.finish(
        effective, result_path="$", output_path=run.state.get("OutputPath", "$")
    )


def _failure(run: StateRun) -> AslError:
    state = run.state
    if run.jsonata:
        error = run.evaluate(state["Error"], "Error") if "Error" in state else None
        cause = run.evaluate(state["Cause"], "Cause") if "Cause" in state else None
    else:
        error = run.value("Error", run.raw)
        cause = run.value("Cause", run.raw)
    text = [
        None if v is None else v if isinstance(v, str) else paths.compact(v) for v in (error, cause)
    ]
    return AslError(text[0], text[1])


async def _choice(run: StateRun) -> tuple[str | None, Any]:
    state = run.state
    if run.jsonata:
        for rule in state.get("Choices", []):
            if _condition(run, rule):
                return rule["Next"], _choice_end(run, rule, run.raw)
        if "Default" in state:
            return state["Default"], _choice_end(run, state, run.raw)
        raise _no_choice(run)
    effective = run.effective_input()
    for rule in state.get("Choices", []):
        try:
            held = choice.evaluate(rule, lambda p: run.read(p, effective))
        except paths.PathMissing as exc:
            raise run.error(
                f"Invalid path '{exc.path}': The choice state's condition path references "
                f"an invalid value."
            ) from None
        if held:
            return rule["Next"], _choice_end(run, rule, effective)
    if "Default" in state:
        return state["Default"], _choice_end(run, state, effective)
    raise _no_choice(run)


def _no_choice(run: StateRun) -> AslError:
    return AslError(
        NO_CHOICE,
        f"An error occurred while executing the state '{run.name}' (entered at the event id "
        f"#{run.entered}). Failed to transition out of the state. The state does not point "
        f"to a next state.",
    )


def _condition(run: StateRun, rule: Mapping[str, Any]) -> bool:
    held = run.evaluate(rule["Condition"], "Condition")
    if not isinstance(held, bool):
        raise run.error(
            f"The JSONata expression '{rule['Condition']}' specified for the field "
            f"'Condition' returned an unexpected result type. Expected 'boolean'.",
            QUERY_EVALUATION,
        )
    return held


def _choice_end(run: StateRun, where: Mapping[str, Any], effective: Any) -> Any:
    if run.jsonata:
        return run.finish(
            run.raw,
            assign=where.get("Assign"),
            output=where.get("Output"),
            has_output="Output" in where,
        )
    return run.finish(
        effective,
        assign=where.get("Assign"),
        result_path="$",
        output_path=run.state.get("OutputPath", "$"),
    )


async def _wait(run: StateRun) -> tuple[str | None, Any]:
    state = run.state
    effective = run.raw if run.jsonata else run.effective_input()
    seconds = _wait_seconds(run, effective)
    await run.scope.host.wait(seconds)
    if run.jsonata:
        out = run.finish(
            run.raw,
            assign=state.get("Assign"),
            output=state.get("Output"),
            has_output="Output" in state,
        )
    else:
        out = run.finish(
            effective, assign=state.get("Assign"), output_path=state.get("OutputPath", "$")
        )
    return next_of(run), out


def _wait_seconds(run: StateRun, effective: Any) -> float:
    state = run.state
    if "Seconds" in state or "SecondsPath" in state:
        value = run.value("Seconds", effective)
        where = "SecondsPath"
        shown = f"{state.get('SecondsPath')} == {paths.compact(value)}"
        if "SecondsPath" in state and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            raise run.error(
                f"The SecondsPath parameter does not reference an input value: "
                f"{state['SecondsPath']}"
            )
        if isinstance(value, float) and not value.is_integer():
            raise run.error(f"The {where} parameter cannot be parsed as a long value: {shown}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise run.error("The Seconds field must be a positive integer.", QUERY_EVALUATION)
        if value < 0:
            raise run.error(f"The {where} parameter references a negative value: {shown}")
        if value > MAX_WAIT_SECONDS:
            raise run.error("Wait state delay is too long.")
        return float(value)
    value = run.value("Timestamp", effective)
    when = choice.timestamp(value)
    if when is None:
        if "TimestampPath" in state:
            raise run.error(
                "The TimestampPath parameter does not reference a valid ISO-8601 extended "
                f"offset date-time format string: {state['TimestampPath']} == {value}"
            )
        raise run.error(
            "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time "
            f"format string: {value}",
            QUERY_EVALUATION if run.jsonata else "States.Runtime",
        )
    delay = (when - run.scope.host.now()).total_seconds()
    if delay > timedelta(days=365).total_seconds():
        raise run.error("Wait state delay is too long.")
    return max(0.0, delay)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
