"""The worker: claims runs, keeps their leases alive, and executes them.

Leases are judged by the database's clock. A run held by a process on this host that no
longer exists is freed at once (a restarted worker resumes its predecessor's runs without
waiting out the lease); a run held by a live or remote worker is freed when its lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence

from sagaline.engine.context import RunContext, RunInterrupted, StoreInterrupted
from sagaline.engine.executor import execute
from sagaline.engine.registry import workflow_names
from sagaline.engine.runtime import Runtime
from sagaline.engine.schedule import Scheduler
from sagaline.engine.wake import wait_event
from sagaline.model.errors import DatabaseError, DiskFullError, SagalineError
from sagaline.model.records import RunRecord, SignalRecord, StepRecord

log = logging.getLogger("sagaline.worker")

FIRST_RETRY = 0.05
LONGEST_RETRY = 1.0
"""The claim loop's pauses while claiming fails: they double from FIRST_RETRY up to this.
A full disk or a restarting database server is tried again often (each try is a query or
two), so work resumes within about a second of the database's return."""
RATE_RETRY_FLOOR = 0.001
"""The shortest pause before claiming again from a queue its rate limit held back."""
STILL_FAILING_EVERY = 60.0
"""While something keeps failing, a reminder in the log this often (not on every retry)."""

_HOST = socket.gethostname()
_live_owners: set[str] = set()


def new_owner_id() -> str:
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def owner_is_dead(owner: str) -> bool:
    """True only when certain: the owner was a process on this host that is gone."""
    try:
        host, pid_text, _ = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != _HOST:
        return False
    if pid == os.getpid():
        return owner not in _live_owners
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _why_paused(cause: BaseException | None) -> str:
    """The log names the real cause: a full disk is not a database that went away."""
    if isinstance(cause, DiskFullError):
        return f"the disk is full ({cause.where}: {cause.detail})"
    return f"the database went away mid-run ({cause})"


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, SagalineError) else f"{type(exc).__name__}: {exc}"


class _Episode:
    """One warning when something starts failing and one when it works again.

    A database that is gone for a minute is retried about once a second; a line for each
    try would bury the one that says why.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.since: float | None = None
        self.tries = 0
        self._remind_at = 0.0

    def failed(self, exc: BaseException, retry_in: float) -> None:
        now = time.monotonic()
        self.tries += 1
        if self.since is None:
            self.since, self._remind_at = now, now + STILL_FAILING_EVERY
            log.warning("%s failed (%s); retrying in %.2f s", self.what, _describe(exc), retry_in)
        elif now >= self._remind_at:
            self._remind_at = now + STILL_FAILING_EVERY
            log.warning(
                "%s still fails after %.0f s and %d tries (%s); still retrying",
                self.what,
                now - self.since,
                self.tries,
                _describe(exc),
            )
        else:
            log.debug("%s failed again (%s)", self.what, _describe(exc))

    def ended(self) -> None:
        if self.since is not None:
            log.info(
                "%s works again, after %.1f s and %d failed tries",
                self.what,
                time.monotonic() - self.since,
                self.tries,
            )
            self.since, self.tries = None, 0


class Worker:
    def __init__(
        self,
        rt: Runtime,
        concurrency: int,
        poll_interval: float,
        on_settled: Callable[[str, RunRecord | None], None],
        queues: Sequence[str] = ("default",),
    ) -> None:
        self.rt = rt
        self.queues = list(queues)
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self._on_settled = on_settled
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._contexts: dict[str, RunContext] = {}
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self.scheduler = Scheduler(rt, self.queues)
        self._next_owner_check = 0.0
        self._backlog = False
        self._rate_due: float | None = None
        """When (``time.monotonic``) a queue's rate limit, which cut a claim short, has its
        next token: the claim loop looks again then rather than at its next poll."""

    @property
    def capacity(self) -> int:
        return self.concurrency - len(self._tasks)

    async def start(self) -> None:
        _live_owners.add(self.rt.owner)
        await self.rt.store.listen(self.wake)
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="sagaline-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="sagaline-heartbeat"),
        ]

    async def stop(self, drain_seconds: float = 0.0) -> None:
        """Stop; with ``drain_seconds``, first let runs finish the step they are in.

        Draining runs stop at their next step boundary, so the step that was running is
        recorded and not run again by the worker that resumes the run.
        """
        for loop in self._loops[:1]:
            loop.cancel()  # claim no more; the heartbeat keeps the leases while draining
        if drain_seconds > 0 and self._tasks:
            for ctx in self._contexts.values():
                ctx.request_drain()
            await asyncio.wait(list(self._tasks.values()), timeout=drain_seconds)
        tasks = [*self._loops, *self._tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        _live_owners.discard(self.rt.owner)
        with contextlib.suppress(Exception):
            await self.rt.store.release(self.rt.owner)

    def wake(self) -> None:
        self._wake.set()

    def request_cancel(self, run_id: str) -> None:
        """Tell a run executing here about a cancel now, not at its next commit."""
        ctx = self._contexts.get(run_id)
        if ctx is not None:
            ctx.request_cancel()

    def executing(self, run_id: str) -> bool:
        return run_id in self._tasks

    def adopt(
        self,
        run: RunRecord,
        fresh: bool = False,
        granted_at: float | None = None,
        history: tuple[list[StepRecord], list[SignalRecord]] | None = None,
    ) -> None:
        """Execute a run this worker has just claimed (``fresh``: just created, no history).

        ``granted_at``: when the claim that leased it was sent (on ``Leases.now``'s clock).
        ``history``: its steps and unconsumed signals, read after the claim (else they are
        read when it starts).
        """
        if run.run_id in self._tasks:
            return
        leases = self.rt.leases
        leases.granted([run.run_id], leases.now() if granted_at is None else granted_at)
        task = asyncio.create_task(
            self._execute(run, fresh, history), name=f"sagaline-run-{run.run_id}"
        )
        self._tasks[run.run_id] = task

    async def _execute(
        self,
        run: RunRecord,
        fresh: bool,
        history: tuple[list[StepRecord], list[SignalRecord]] | None = None,
    ) -> None:
        look_again = True  # whether the claim loop should look for work when this ends
        settled: RunRecord | None = None
        try:
            store = self.rt.store
            if history is not None:
                records, signals = history
            else:
                records = [] if fresh else await store.load_steps(run.run_id)
                signals = [] if fresh else await store.load_signals(run.run_id)
            ctx = RunContext(self.rt, run, records, signals)
            self._contexts[run.run_id] = ctx
            await execute(ctx)
            settled = ctx.settled
            # A suspended run may be due before the loop's next look; a full worker has
            # room now; a claim that got all it asked for may have left more behind.
            look_again = bool(ctx.waits) or self._backlog or len(self._tasks) >= self.concurrency
        except asyncio.CancelledError:
            raise
        except StoreInterrupted as exc:
            if exc.transient:
                log.warning(
                    "run %r paused: %s; it resumes when the database can be written again",
                    run.run_id,
                    _why_paused(exc.__cause__),
                )
                await self._release_when_possible(run.run_id)
            else:
                log.error(
                    "run %r paused: writing its checkpoint failed (%r); it is retried when "
                    "its lease ends",
                    run.run_id,
                    exc.__cause__,
                )
        except DatabaseError as exc:  # reading its history failed: the message says why
            log.error("run %r stopped: %s; it is retried when its lease ends", run.run_id, exc)
        except (Exception, RunInterrupted):
            # The lease runs out and the run is claimed again; nothing is lost.
            log.exception("run %r stopped on an internal error; it will be retried", run.run_id)
        finally:
            self._tasks.pop(run.run_id, None)
            self._contexts.pop(run.run_id, None)
            self.rt.leases.forget(run.run_id)
            self._on_settled(run.run_id, settled)
            if look_again:
                self._wake.set()

    async def _release_when_possible(self, run_id: str) -> None:
        """Hand the run back so it is claimed again at once, not after its lease."""
        delay = 0.05
        deadline = asyncio.get_running_loop().time() + self.rt.lease_seconds
        while asyncio.get_running_loop().time() < deadline:
            try:
                await self.rt.store.release(self.rt.owner, run_id)
                return
            except Exception:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _claim_loop(self) -> None:
        backoff = FIRST_RETRY
        failing = _Episode("claiming runs")
        while True:
            timeout = backoff
            try:
                await self.scheduler.start_due()
                await self._claim_once()
                timeout = await self._until_next_timer()
                backoff = FIRST_RETRY
                failing.ended()
            except Exception as exc:
                failing.failed(exc, backoff)
                backoff = min(backoff * 2, LONGEST_RETRY)
            await wait_event(self._wake, timeout)
            self._wake.clear()

    async def _until_next_timer(self) -> float:
        """Sleep until the earliest timer or schedule is due, but no longer than a poll."""
        timeout = self.poll_interval
        if self.capacity <= 0:
            return timeout
        timer = await self.rt.store.next_wake_at(self.queues, workflow_names())
        skip_to = getattr(self.rt.clock, "skip_to", None)
        if timer is not None and not self._tasks and callable(skip_to) and skip_to(timer):
            return 0.0  # a time-skipping test clock jumped: the timer is due now
        for at in (timer, self.scheduler.next_due()):
            if at is not None:
                # Due yet unclaimed (its queue is at its limit, say): look again soon, not hot.
                timeout = min(timeout, max(at - self.rt.clock(), 0.05))
        if self._rate_due is not None:
            timeout = min(timeout, max(self._rate_due - time.monotonic(), RATE_RETRY_FLOOR))
        return timeout

    async def _free_dead_owners(self) -> None:
        """At most once a poll interval: free runs held by dead processes on this host."""
        now = time.monotonic()
        if now < self._next_owner_check:
            return
        self._next_owner_check = now + self.poll_interval
        owners = await self.rt.store.active_owners()
        dead = [o for o in owners if o != self.rt.owner and owner_is_dead(o)]
        if dead:
            freed = await self.rt.store.expire_owners(dead)
            log.info("freed %d run(s) held by dead worker(s) %s", freed, ", ".join(dead))

    async def _claim_once(self) -> None:
        await self._free_dead_owners()
        self._backlog = False
        self._rate_due = None
        for queue in self.queues:
            if self.capacity <= 0:
                return
            wanted = self.capacity
            sent_at = self.rt.leases.now()
            sent = time.monotonic()
            claim = await self.rt.store.claim(
                self.rt.owner,
                self.rt.lease_seconds,
                workflow_names(),
                wanted,
                queue,
                now=self.rt.clock(),
            )
            self._backlog |= len(claim.runs) == wanted
            if claim.retry_in is not None:
                # Counted from when the claim was sent: the database read its clock after.
                due = sent + claim.retry_in
                self._rate_due = due if self._rate_due is None else min(self._rate_due, due)
            if not claim.runs:
                continue
            # What each run replays, read for all of them at once: after a crash, a
            # worker takes over hundreds of runs, and one read each would queue them up.
            ids = [run.run_id for run in claim.runs]
            try:
                steps = await self.rt.store.load_steps_many(ids)
                signals = await self.rt.store.load_signals_many(ids)
            except Exception:  # each run reads its own, and deals with the failure itself
                steps, signals = {}, {}
            for run in claim.runs:
                found = run.run_id in steps and run.run_id in signals
                history = (steps[run.run_id], signals[run.run_id]) if found else None
                self.adopt(run, granted_at=sent_at, history=history)

    async def _heartbeat_loop(self) -> None:
        interval = self.rt.lease_seconds / 3
        failing = _Episode("the lease heartbeat")
        while True:
            await asyncio.sleep(interval)
            if not self._tasks:
                continue
            run_ids = list(self._tasks)
            sent_at = self.rt.leases.now()
            try:
                held = await self.rt.store.heartbeat(self.rt.owner, self.rt.lease_seconds, run_ids)
                # Fewer than asked: some run was lost, which one is unknown; each of them
                # confirms its own lease before its next step.
                if held == len(run_ids):
                    self.rt.leases.granted(run_ids, sent_at)
                failing.ended()
            except Exception as exc:
                failing.failed(exc, interval)
