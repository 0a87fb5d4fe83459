"""The one workflow the property tests run: an interpreter of a generated plan.

Workflows must be registered at import time under stable names, so one generic workflow
takes the plan as its JSON input and dispatches to a fixed set of generic steps, whose
attempts look up their fate by key in ``WORLD``. Every attempt and every compensation
appends to ``WORLD.ledger``: the tests' own record, independent of sagaline's tables.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

import sagaline
from sagaline import Engine, InvalidOperationError, NonRetryable, RetryPolicy, step, workflow
from tests.property.model import Entry
from tests.property.plans import (
    Cancel,
    CancelMode,
    Child,
    Gather,
    Kind,
    Node,
    Scenario,
    Signal,
    Sleep,
    Step,
)

FAST = RetryPolicy(max_attempts=3, initial=0.001, backoff=2.0, max_interval=0.004, jitter=0)
SLOW = RetryPolicy(max_attempts=3, initial=0.5, backoff=1.0, max_interval=0.5, jitter=0)
SIGNAL_TIMEOUT = 3600.0
CANCEL_IN_BACKOFF_AFTER = 0.1
"""Seconds into the target's 0.5 s backoff at which the cancel is sent."""


class Retryable(Exception):
    pass


class Fatal(NonRetryable):
    pass


@dataclass
class CancelHook:
    """Sends the scenario's cancel once, from where the scenario says."""

    cancel: Cancel
    run_id: str
    engine: Callable[[], Engine]
    fired: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def fire(self) -> None:
        self.fired = True
        WORLD.note("cancel-requested", self.cancel.target)
        try:
            await self.engine().cancel(self.run_id)
        except InvalidOperationError as exc:
            WORLD.note("cancel-refused", str(exc))
        else:
            WORLD.note("cancel-accepted", self.cancel.target)

    def fire_soon(self, delay: float) -> None:
        self.fired = True

        async def later() -> None:
            await asyncio.sleep(delay)
            await self.fire()

        self.tasks.append(asyncio.create_task(later()))


@dataclass
class World:
    """Everything the steps share with the test, reset for each example."""

    ledger: list[Entry] = field(default_factory=list)
    steps: dict[str, Step] = field(default_factory=dict)
    attempts: Counter[str] = field(default_factory=Counter)
    undo_attempts: Counter[str] = field(default_factory=Counter)
    fixed: set[str] = field(default_factory=set)
    """Steps an operator repaired: their next attempt succeeds."""
    fixed_undo: set[str] = field(default_factory=set)
    dead: bool = False
    """The worker "process" has died: no step of it may do anything more."""
    frozen: list[asyncio.Task[object]] = field(default_factory=list)
    """Tasks of dead workers, frozen in place until the test buries them."""
    cancel: CancelHook | None = None

    def reset(self, sc: Scenario) -> None:
        self.__dict__.update(World(steps=sc.steps()).__dict__)

    def note(self, what: str, key: str = "") -> None:
        self.ledger.append((what, key))


WORLD = World()


async def _alive() -> None:
    """A step of a dead worker freezes where it is, as if its process had been killed."""
    if WORLD.dead:
        task = asyncio.current_task()
        assert task is not None
        WORLD.frozen.append(task)  # held here, so that it is not collected while frozen
        await asyncio.get_running_loop().create_future()


async def bury_frozen() -> None:
    """Cancel the frozen tasks of dead workers (their process is gone)."""
    frozen, WORLD.frozen = WORLD.frozen, []
    for task in frozen:
        task.cancel()
    await asyncio.gather(*frozen, return_exceptions=True)


async def _attempt(key: str) -> str:
    await _alive()
    WORLD.attempts[key] += 1
    n = WORLD.attempts[key]
    WORLD.note("try", key)
    plan = WORLD.steps[key]
    if plan.delay:
        await asyncio.sleep(plan.delay)
    await _alive()
    hook = WORLD.cancel
    if hook is not None and hook.cancel.target == key and not hook.fired:
        if hook.cancel.mode is CancelMode.DURING:
            await hook.fire()
        elif hook.cancel.mode is CancelMode.BACKOFF:
            hook.fire_soon(CANCEL_IN_BACKOFF_AFTER)
        await _alive()
    if key not in WORLD.fixed and plan.fate.fails(n):
        WORLD.note("fail", key)
        error = Retryable if plan.fate.retryable else Fatal
        raise error(f"{key}: attempt {n} fails ({plan.fate.value})")
    WORLD.note("ok", key)  # no await from here to the engine: completion order is kept
    return f"out-{key}"


async def _undo(key: str, result: str) -> None:
    await _alive()
    if result != f"out-{key}":
        WORLD.note("bad-result", f"{key} got {result!r}")
        raise Retryable(f"compensation of {key} got the result {result!r}")
    WORLD.undo_attempts[key] += 1
    n = WORLD.undo_attempts[key]
    await asyncio.sleep(0)
    await _alive()
    if key not in WORLD.fixed_undo and WORLD.steps[key].undo.fails(n):
        WORLD.note("undo-fail", key)
        raise Retryable(f"compensation of {key}: attempt {n} fails")
    WORLD.note("undo", key)


@step(name="prop.plain", retry=FAST)
async def plain(key: str) -> str:
    return await _attempt(key)


@step(name="prop.undoable", retry=FAST)
async def undoable(key: str) -> str:
    return await _attempt(key)


@undoable.compensate(retry=FAST)
async def undo(key: str, result: str) -> None:
    await _undo(key, result)


@step(name="prop.pivot", retry=FAST, pivot=True)
async def pivot(key: str) -> str:
    return await _attempt(key)


@step(name="prop.slow", retry=SLOW)
async def slow(key: str) -> str:
    return await _attempt(key)


@slow.compensate(retry=FAST)
async def undo_slow(key: str, result: str) -> None:
    await _undo(key, result)


STEPS = {Kind.PLAIN: plain, Kind.UNDOABLE: undoable, Kind.PIVOT: pivot, Kind.SLOW: slow}


def encode(nodes: list[Node] | list[Step | Sleep]) -> str:
    return msgspec.json.encode(nodes).decode()


@workflow(name="prop.saga")
async def saga(plan: str) -> list[str]:
    out: list[str] = []
    for node in msgspec.json.decode(plan, type=list[Node]):
        out += await _run(node)
    return out


async def _run(node: Node) -> list[str]:
    if isinstance(node, Step):
        return [await STEPS[node.kind](node.key)]
    if isinstance(node, Sleep):
        WORLD.note("reach", node.key)
        await sagaline.sleep(node.seconds)
        return []
    if isinstance(node, Signal):
        WORLD.note("reach", node.key)
        timeout = None if node.sent else SIGNAL_TIMEOUT
        payload: str = await sagaline.wait_for_signal(node.key, timeout=timeout, type=str)
        return [payload]
    if isinstance(node, Gather):
        results = await asyncio.gather(*(_branch(b) for b in node.branches))
        return [out for branch in results for out in branch]
    assert isinstance(node, Child)
    child = await sagaline.start_child(saga, encode(node.nodes))
    return await child.result()


async def _branch(nodes: list[Step | Sleep]) -> list[str]:
    out: list[str] = []
    for node in nodes:
        out += await _run(node)
    return out
