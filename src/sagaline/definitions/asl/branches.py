"""Parallel and Map: branches of states run side by side as asyncio tasks.

In a durable run each task gets its own branch cursor in the engine's history (the engine's
``asyncio.gather`` rule), so branches and iterations replay deterministically whatever
their timing. Every branch is let finish before a failure is raised (the engine lets a
failing gather's siblings finish too, so that what they did is recorded and can be
compensated); the error raised is the first failing branch's, by position.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

from sagaline.definitions.asl import errors, paths
from sagaline.definitions.asl.errors import QUERY_EVALUATION, AslError
from sagaline.definitions.asl.host import History
from sagaline.definitions.asl.machine import run_states
from sagaline.definitions.asl.processing import StateRun
from sagaline.definitions.asl.task import (
    Outcome,
    catching,
    next_state,
    result_output,
    retrying,
)


async def _settle(coros: list[Awaitable[Any]], limit: int) -> list[Any]:
    """Run all, at most ``limit`` at once (0: no limit); results or the AslError raised."""
    gate = asyncio.Semaphore(limit) if limit > 0 else None

    async def one(coro: Awaitable[Any]) -> Any:
        try:
            if gate is None:
                return await coro
            async with gate:
                return await coro
        except AslError as exc:
            return exc

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def run_parallel(run: StateRun) -> Outcome:
    """A Parallel state: every branch on the same input; the result is their outputs."""
    state = run.state

    async def body() -> Outcome:
        if run.jsonata:
            payload = (
                run.evaluate(state["Arguments"], "Arguments") if "Arguments" in state else run.raw
            )
        else:
            payload = run.parameters(run.effective_input())

        async def attempt() -> list[Any]:
            history = run.scope.history
            history.add("ParallelStateStarted", run.name)
            results = await _settle(
                [
                    run_states(b, payload, run.scope.child(run.scope.language))
                    for b in state["Branches"]
                ],
                0,
            )
            failed = next((r for r in results if isinstance(r, AslError)), None)
            if failed is not None:
                history.add("ParallelStateFailed", run.name, error=failed.name)
                raise failed
            history.add("ParallelStateSucceeded", run.name)
            return results

        return next_state(run), result_output(run, await retrying(run, attempt))

    return await catching(run, body)


def _integer(run: StateRun, field: str, data: Any, default: float, kind: str = "integer") -> Any:
    state = run.state
    if field in state:
        value = state[field]
        return run.evaluate(value, field) if run.jsonata else value
    path = state.get(field + "Path")
    if path is None:
        return default
    value = run.read(path, data)
    try:
        if isinstance(value, bool | dict | list):
            raise ValueError
        number = float(value) if kind == "float" else int(value)
    except (TypeError, ValueError):
        shown = value if isinstance(value, str) else paths.compact(value)
        raise run.error(
            f'The {field}Path field refers to value "{shown}" which is not a valid {kind}: {path}'
        ) from None
    return number


def _items(run: StateRun, effective: Any) -> list[Any]:
    state = run.state
    if run.jsonata and "Items" in state:
        items = run.evaluate(state["Items"], "Items")
        if not isinstance(items, list):
            text = state["Items"][2:-2].strip()
            raise run.error(
                f"The JSONata expression '{text}' specified for the field 'Items' returned an "
                f"unexpected result type. Expected 'array', but was '{_type_name(items)}' for "
                f"value: {paths.compact(items)}",
                QUERY_EVALUATION,
            )
        return items
    items = run.raw if run.jsonata else run.field_path("ItemsPath", effective)
    if not isinstance(items, list):
        raise run.error(
            f"Map state input must be an array but was: {paths.compact(items)}",
            QUERY_EVALUATION if run.jsonata else errors.RUNTIME,
        )
    return items


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _batches(run: StateRun, items: list[Any], effective: Any) -> list[Any]:
    batcher = run.state.get("ItemBatcher")
    if batcher is None:
        return items
    size = int(batcher.get("MaxItemsPerBatch", 0) or len(items) or 1)
    extra = batcher.get("BatchInput")
    if extra is not None and not run.jsonata:
        extra = run.template(extra, effective)
    out = []
    for i in range(0, len(items), size):
        batch: dict[str, Any] = {"Items": items[i : i + size]}
        if extra is not None:
            batch["BatchInput"] = extra
        out.append(batch)
    return out


async def run_map(run: StateRun) -> Outcome:
    """A Map state: the processor's states once per item, the results in item order."""
    state = run.state

    async def body() -> Outcome:
        effective = run.raw if run.jsonata else run.effective_input()
        if "ItemReader" in state:
            raise run.error("ItemReader (Distributed Map over S3) is not supported")
        items = _batches(run, _items(run, effective), effective)
        limit = int(_integer(run, "MaxConcurrency", effective, 0))
        count = _integer(run, "ToleratedFailureCount", effective, -1)
        percent = _integer(run, "ToleratedFailurePercentage", effective, -1.0, "float")
        counted = "ToleratedFailureCount" in state or "ToleratedFailureCountPath" in state
        if counted and count < 0:
            raise run.error("ToleratedFailureCount cannot be negative.")
        if (
            "ToleratedFailurePercentage" in state or "ToleratedFailurePercentagePath" in state
        ) and not 0 <= percent <= 100:
            raise run.error("ToleratedFailurePercentage must be between 0 and 100.")

        async def attempt() -> list[Any]:
            return await _iterate(run, items, effective, limit, count, percent)

        return next_state(run), result_output(run, await retrying(run, attempt))

    return await catching(run, body)


async def _iterate(
    run: StateRun, items: list[Any], effective: Any, limit: int, count: int, percent: float
) -> list[Any]:
    state = run.state
    processor: Mapping[str, Any] = state.get("ItemProcessor") or state["Iterator"]
    selector = state.get("ItemSelector", state.get("Parameters"))
    history = run.scope.history
    history.add("MapStateStarted", run.name, length=len(items))
    # A distributed Map's iterations are child executions, with histories of their own.
    distributed = (processor.get("ProcessorConfig") or {}).get("Mode") == "DISTRIBUTED"

    async def iteration(index: int, item: Any) -> Any:
        scope = run.scope.child(run.scope.language, {"Index": index, "Value": item})
        if distributed:
            scope.history = History()
        item_run = StateRun(scope, run.name, state, run.entered, run.raw)
        item_input = item
        if selector is not None:
            if run.jsonata:
                item_input = item_run.evaluate(selector, "ItemSelector")
            else:
                item_input = item_run.template(selector, effective)
        history.add("MapIterationStarted", run.name, index=index)
        try:
            out = await run_states(processor, item_input, scope)
        except AslError:
            history.add("MapIterationFailed", run.name, index=index)
            raise
        history.add("MapIterationSucceeded", run.name, index=index)
        return out

    results = await _settle([iteration(i, item) for i, item in enumerate(items)], limit)
    failures = [r for r in results if isinstance(r, AslError)]
    if not failures:
        history.add("MapStateSucceeded", run.name)
        return results
    tolerated = count >= 0 or percent >= 0
    share = 100.0 * len(failures) / max(len(items), 1)
    if (count >= 0 and len(failures) <= count) or (percent >= 0 and share <= percent):
        history.add("MapStateSucceeded", run.name)
        return [r.output() if isinstance(r, AslError) else r for r in results]
    history.add("MapStateFailed", run.name)
    if tolerated:
        raise AslError(
            errors.EXCEEDED_TOLERATED,
            "The specified tolerated failure threshold was exceeded",
        )
    raise failures[0]
