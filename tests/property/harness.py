"""Playing a scenario on a real engine, and judging the outcome against the model.

A crash is played in-process: the worker's store "dies" at a chosen commit (before it
lands or just after), every later call on it fails, and every step of that worker freezes
where it is; the test then drops that engine and opens a new one on the same database, as
a restarted process would. The operator (signals, cancel, retry, skip) is a client engine
that executes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sagaline import Engine, InvalidOperationError, RunStatus
from sagaline.model.records import Checkpoint, CommitResult, RunRecord
from sagaline.store import Store, open_store
from sagaline.testing import FakeClock
from tests.property.model import Entry, completion_order, expect
from tests.property.plans import CancelMode, Crash, Scenario, UndoFate
from tests.property.saga import WORLD, CancelHook, bury_frozen, encode, saga

SETTLE_SECONDS = 20.0
"""A run that is not settled by then is taken to hang (a lost wake-up or cancel)."""
OPERATOR_ACTIONS = 20


class Died(RuntimeError):
    """The worker's process is gone: nothing it does reaches the database any more."""


def _not_a_death(record: logging.LogRecord) -> bool:
    died = record.exc_info is not None and isinstance(record.exc_info[1], Died)
    return not died and "the worker died" not in record.getMessage()


# What a dead worker logs is expected; everything else the engine logs stays visible.
logging.getLogger("sagaline.worker").addFilter(_not_a_death)


class DyingStore:
    """Delegates to ``inner`` until its ``crash.commit``-th commit, then dies."""

    def __init__(self, inner: Store, crash: Crash | None) -> None:
        self._inner = inner
        self._crash = crash
        self._commits = 0
        self.dead = False
        self.url = inner.url

    def as_store(self) -> Store:
        return cast(Store, self)

    def _die(self) -> Died:
        self.dead = WORLD.dead = True
        WORLD.note("crash")
        return Died("the worker died")

    async def commit(self, batch: Sequence[Checkpoint]) -> list[CommitResult]:
        if self.dead:
            raise Died("the worker died")
        self._commits += 1
        crash = self._crash
        if crash is None or self._commits != crash.commit:
            return await self._inner.commit(batch)
        if not crash.before:
            await self._inner.commit(batch)  # it lands, but the worker never learns
        raise self._die()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name == "aclose" or not inspect.iscoroutinefunction(attr):
            return attr

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise Died("the worker died")
            return await attr(*args, **kwargs)

        return guarded


class Workers:
    """The worker engine of the moment; a crash replaces it with a fresh one."""

    def __init__(self, url: str, clock: FakeClock, crashes: Sequence[Crash]) -> None:
        self.url = url
        self.clock = clock
        self.crashes = list(crashes)
        self.crashed = 0
        self.store: DyingStore | None = None
        self.engine: Engine | None = None

    async def open(self) -> Engine:
        crash = self.crashes.pop(0) if self.crashes else None
        self.store = DyingStore(open_store(self.url), crash)
        self.engine = Engine(store=self.store.as_store(), poll_interval=0.05, clock=self.clock)
        await self.engine.open()
        return self.engine

    def current(self) -> Engine:
        assert self.engine is not None
        return self.engine

    async def restart_if_dead(self) -> None:
        if self.store is not None and self.store.dead:
            await self.close()
            await bury_frozen()
            WORLD.dead = False
            self.crashed += 1
            await self.open()

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.aclose()
            self.engine = None


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    output: list[str] | None
    ledger: list[Entry]
    crashes: int


async def play(sc: Scenario, url: str) -> Outcome:
    """Run the scenario to its end on a fresh database at ``url``."""
    WORLD.reset(sc)
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    run_id = f"prop-{uuid.uuid4().hex[:12]}"
    workers = Workers(url, clock, sc.crashes)
    async with Engine(url, worker=False, clock=clock) as client:
        try:
            worker = await workers.open()
            if sc.cancel is not None:
                via = workers.current if sc.cancel.via_worker else (lambda: client)
                WORLD.cancel = CancelHook(sc.cancel, run_id, via)
            await worker.start(saga, encode(sc.nodes), run_id=run_id)
            for name in sc.signals(late=False):
                with contextlib.suppress(InvalidOperationError):  # it may have ended already
                    await client.signal(run_id, name, f"sig-{name}")
            run = await _drive(sc, run_id, client, workers, clock)
            await _children_settle(client)
            output = None
            if run.status is RunStatus.COMPLETED:
                output = list(await client.handle(run_id).result())
        finally:
            await workers.close()
            await bury_frozen()
    return Outcome(run.status, output, list(WORLD.ledger), workers.crashed)


async def _drive(
    sc: Scenario, run_id: str, client: Engine, workers: Workers, clock: FakeClock
) -> RunRecord:
    """Move the fake clock, restart dead workers and play the operator until it settles."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_SECONDS
    actions = 0
    late = sc.signals(late=True)
    while loop.time() < deadline:
        await workers.restart_if_dead()
        run = await client.get_run(run_id)
        if run.status.is_settled:
            if actions >= OPERATOR_ACTIONS or not await _operate(sc, run, client):
                return run
            actions += 1
        elif run.status is RunStatus.SUSPENDED:
            await _while_suspended(sc, run_id, client, clock, late)
        await asyncio.sleep(0.005)
    raise AssertionError(
        f"run {run_id} did not settle in {SETTLE_SECONDS:g} s: it is {run.status.value}; "
        f"ledger {WORLD.ledger}"
    )


async def _while_suspended(
    sc: Scenario, run_id: str, client: Engine, clock: FakeClock, late: list[str]
) -> None:
    """Cancel at the target sleep, send a late signal at its wait, or move the clock on."""
    reached = [key for what, key in WORLD.ledger if what == "reach"]
    at = reached[-1] if reached else None
    hook = WORLD.cancel
    if hook is not None and hook.fired:
        return  # a cancel must wake the run by itself, not wait for its timer
    if hook is not None and hook.cancel.mode is CancelMode.SUSPENDED and at == hook.cancel.target:
        await hook.fire()
    elif at in late:
        late.remove(at)
        with contextlib.suppress(InvalidOperationError):  # refused only if it has ended
            await client.signal(run_id, at, f"sig-{at}")
    else:
        clock.advance(timedelta(days=2))  # every timer and signal timeout is due


async def _operate(sc: Scenario, run: RunRecord, client: Engine) -> bool:
    """What the operator does with a parked run; False when there is nothing to do."""
    if run.status is RunStatus.COMPENSATION_FAILED:
        stuck = [key for what, key in WORLD.ledger if what == "undo-fail"]
        fate = WORLD.steps[stuck[-1]].undo if stuck else None
        if fate is UndoFate.STUCK_RETRY:
            WORLD.fixed_undo.add(stuck[-1])
            await client.retry(run.run_id)
            return True
        if fate is UndoFate.STUCK_SKIP:
            await client.skip_compensation(run.run_id, reason="undone by hand", by="prop")
            return True
    if run.status is RunStatus.FAILED_AFTER_PIVOT and sc.fix_after_pivot:
        failed = [key for what, key in WORLD.ledger if what == "fail"]
        if failed and failed[-1] in sc.main_line_steps() and failed[-1] not in WORLD.fixed:
            WORLD.fixed.add(failed[-1])
            await client.retry(run.run_id)
            return True
    return False


async def _children_settle(client: Engine) -> None:
    """Children may still be unwinding when their parent ends; give them a moment."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while loop.time() < deadline:
        runs = await client.list_runs(limit=1000)
        if all(r.status.is_settled for r in runs):
            return
        await asyncio.sleep(0.01)


def verdict(sc: Scenario, outcome: Outcome, strict: bool = False) -> list[str]:
    """Everything about the outcome that the model (and DESIGN §2) says is wrong; with
    ``strict``, a disputed status (see ``Expected.disputed``) is wrong too."""
    ledger = outcome.ledger
    exp = expect(sc, ledger)
    problems = list(exp.impossible)
    if outcome.status is not exp.status and (strict or outcome.status is not exp.disputed):
        problems.append(f"ended {outcome.status.value}, the model says {exp.status.value}")
    completed = completion_order(ledger)
    if completed != exp.completed:
        problems.append(f"steps completed {completed}, the model says {exp.completed}")
    undone = list(dict.fromkeys(key for what, key in ledger if what == "undo"))
    if undone != exp.undone:
        problems.append(f"compensations ran {undone}, the model says {exp.undone}")
    tried = [key for what, key in ledger if what == "try"]
    if set(tried) - exp.may_try:
        problems.append(f"steps {sorted(set(tried) - exp.may_try)} ran, but never should")
    if exp.output is not None and outcome.output != exp.output:
        problems.append(f"result {outcome.output}, the model says {exp.output}")
    problems += _once_each(ledger, "ok") + _once_each(ledger, "undo")
    problems += [f"a compensation got a wrong result: {k}" for w, k in ledger if w == "bad-result"]
    problems += _cancel_problems(ledger)
    return problems


def _once_each(ledger: Sequence[Entry], what: str) -> list[str]:
    """Each success is recorded once: it may repeat only for a crash while it ran."""
    problems = []
    for key, n in Counter(key for w, key in ledger if w == what).items():
        first = next(i for i, (w, k) in enumerate(ledger) if k == key and w in ("try", what))
        last = max(i for i, (w, k) in enumerate(ledger) if (w, k) == (what, key))
        crashes = sum(1 for w, _ in ledger[first:last] if w == "crash")
        if n > 1 + crashes:
            kind = "step" if what == "ok" else "compensation of"
            problems.append(f"{kind} {key} succeeded {n} times with {crashes} crash(es) meanwhile")
    return problems


def _cancel_problems(ledger: Sequence[Entry]) -> list[str]:
    problems = [f"cancel refused: {key}" for what, key in ledger if what == "cancel-refused"]
    accepted = [i for i, (what, _) in enumerate(ledger) if what == "cancel-accepted"]
    if accepted:
        late = [key for what, key in ledger[accepted[0] :] if what == "try"]
        if late:
            problems.append(f"after the cancel was accepted, attempts of {late} started")
    return problems


def report(sc: Scenario, outcome: Outcome, problems: list[str]) -> str:
    lines = [f"scenario: {sc.describe()}", *[f"  - {p}" for p in problems]]
    lines.append(f"ledger: {' '.join(f'{w}:{k}' if k else w for w, k in outcome.ledger)}")
    return "\n".join(lines)
