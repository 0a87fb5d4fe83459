"""Semantic locks on business keys: the pure rules both stores apply.

A lock is a queue of requests on one key, in arrival order. A request is granted when
nothing ahead of it conflicts: an exclusive request needs the queue ahead of it empty, a
shared one needs no exclusive request ahead of it. So grants are first in, first out, and
a steady stream of shared holders cannot starve an exclusive waiter.

A run that must wait may close a cycle of runs waiting on each other; the store finds it
when the wait begins (:func:`find_cycle`) and refuses the wait of the cycle's youngest run
(:func:`victim`), which unwinds and so releases what it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from sagaline.model.errors import SagalineError
from sagaline.model.names import check_name

EXCLUSIVE = "exclusive"
SHARED = "shared"
LockMode = Literal["exclusive", "shared"]
MODES = (EXCLUSIVE, SHARED)

DEADLOCK = "deadlock"
"""Why a wait was refused (``locks.refused``)."""


def check_mode(mode: str) -> LockMode:
    if mode == "exclusive":
        return "exclusive"
    if mode == "shared":
        return "shared"
    raise SagalineError(f"lock mode {mode!r} is not one of 'exclusive', 'shared'")


def check_key(key: object) -> str:
    """A lock key names a business object (``"order:42"``), by the rule for names."""
    return check_name("lock key", key)


def conflicts(mode: str, ahead: str) -> bool:
    """Whether a request in ``mode`` must wait behind one in ``ahead`` mode."""
    return mode == EXCLUSIVE or ahead == EXCLUSIVE


def find_cycle(start: str, blockers: Callable[[str], Iterable[str]]) -> list[str] | None:
    """A cycle of waits through ``start``, as the runs in wait order (``start`` first).

    ``blockers(run)`` names the runs ``run`` waits behind (none for a run that waits for
    nothing). Depth-first, so the cycle found is a real path back to ``start``.
    """
    path = [start]
    seen = {start}
    stack = [iter(blockers(start))]
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            path.pop()
            continue
        if nxt == start:
            return list(path)
        if nxt in seen:
            continue
        seen.add(nxt)
        path.append(nxt)
        stack.append(iter(blockers(nxt)))
    return None


def victim(cycle: Iterable[str], started: Mapping[str, float]) -> str:
    """The youngest run of the cycle, by start time (ties by run id): it has done the least
    work, so undoing it costs the least."""
    return max(cycle, key=lambda r: (started.get(r, 0.0), r))


@dataclass(frozen=True)
class NewLock:
    """A run's request for a key, made by its durable call number ``seq``."""

    key: str
    run_id: str
    seq: int
    mode: str
    at: float


@dataclass(frozen=True)
class ReleaseLock:
    """A run gives ``key`` back (its durable call ``seq`` recorded it)."""

    key: str
    run_id: str
    at: float


@dataclass(frozen=True)
class LockRequest:
    """One run's place in one key's queue."""

    key: str
    run_id: str
    seq: int
    mode: str
    requested_at: float
    granted_at: float | None
    refused: str | None
    run_status: str | None = None

    @property
    def held(self) -> bool:
        return self.granted_at is not None


@dataclass(frozen=True)
class LockInfo:
    """Who holds a key and who waits for it, in order; empty lists for a free key."""

    key: str
    holders: list[LockRequest]
    waiters: list[LockRequest]

    @property
    def free(self) -> bool:
        return not self.holders and not self.waiters

    @staticmethod
    def of(key: str, requests: Iterable[LockRequest]) -> LockInfo:
        mine = [r for r in requests if r.key == key and r.refused is None]
        return LockInfo(key, [r for r in mine if r.held], [r for r in mine if not r.held])


@dataclass(frozen=True)
class LockAnswer:
    """What the store decided about a lock request, or found when asked again."""

    state: Literal["granted", "waiting", "deadlock", "lost", "gone"]
    cycle: tuple[str, ...] = ()
    """For ``deadlock``: the runs that waited on each other, this one first."""


def grantable(queue: Iterable[tuple[int, str, bool]]) -> list[int]:
    """Of a key's live requests ``(id, mode, granted)`` in arrival order, the ids that may
    be granted now and are not yet."""
    out: list[int] = []
    ahead_exclusive = False
    ahead_any = False
    for rid, mode, granted in queue:
        if not granted and not (ahead_exclusive if mode == SHARED else ahead_any):
            out.append(rid)
        ahead_any = True
        ahead_exclusive = ahead_exclusive or mode == EXCLUSIVE
    return out


def blocking(queue: Iterable[tuple[str, str]], run_id: str, mode: str) -> list[str]:
    """The runs ahead of ``run_id``'s request in a key's queue ``(run_id, mode)`` (arrival
    order) that it waits behind."""
    out = []
    for other, other_mode in queue:
        if other == run_id:
            break
        if conflicts(mode, other_mode):
            out.append(other)
    return out
