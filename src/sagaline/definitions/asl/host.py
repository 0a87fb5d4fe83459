"""What the interpreter asks of the world: tasks, waits, time, randomness; and its history.

The interpreter (``machine``, ``branches``, ``task``) is the same code whether a machine
runs as a durable workflow or as plain data in a test: every effect goes through a
:class:`Host`. The durable host (``durable.py``) makes each task a recorded step and each
wait a durable timer; :class:`PureHost` answers at once, with a virtual clock, which is what
lets the conformance corpus run in seconds.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sagaline.definitions.asl.intrinsics import Entropy

START = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TaskRequest:
    """One attempt of a Task state: what a resource handler is called with."""

    state: str
    resource: str
    payload: Any
    attempt: int
    timeout: float | None = None
    heartbeat: float | None = None
    token: str | None = None
    credentials: Any = None
    beat: Callable[[], None] = lambda: None
    """Call it while working: a Task with ``HeartbeatSeconds`` fails without it."""


class Host(Protocol):
    """The effects of a running machine."""

    entropy: Entropy

    async def task(self, request: TaskRequest) -> Any:
        """The task's result; raises :class:`~.errors.AslError` when it failed."""
        ...

    async def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass (a Wait state, a Retry interval)."""
        ...

    def now(self) -> datetime:
        """The run's current time (the same on replay, for a durable run)."""
        ...


Handler = Callable[[TaskRequest], Awaitable[Any]]


@dataclass
class PureHost:
    """Tasks answered by ``handler``, time that passes only when a state waits."""

    handler: Handler | None = None
    clock: datetime = START
    entropy: Entropy = field(default_factory=Entropy)
    waited: float = 0.0

    async def task(self, request: TaskRequest) -> Any:
        from sagaline.definitions.asl.errors import AslError

        if self.handler is None:
            raise AslError("States.Runtime", f"no handler for resource {request.resource!r}")
        return await self.handler(request)

    async def wait(self, seconds: float) -> None:
        self.waited += seconds
        self.clock += timedelta(seconds=seconds)

    def now(self) -> datetime:
        return self.clock


@dataclass
class Event:
    """One entry of the execution history, shaped like AWS's ``GetExecutionHistory``."""

    id: int
    type: str
    name: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class History:
    """The execution's events, numbered as AWS numbers them (from 1)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, type_: str, name: str | None = None, **details: Any) -> int:
        event = Event(len(self.events) + 1, type_, name, details)
        self.events.append(event)
        return event.id

    def pairs(self) -> list[tuple[str, str | None]]:
        """(type, state name) of each event: what the conformance report compares."""
        return [(e.type, e.name) for e in self.events]


def fresh_uuid() -> str:
    return str(uuid_module.uuid4())
