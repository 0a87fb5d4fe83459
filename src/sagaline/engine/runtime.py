"""What a running workflow needs from its engine, passed down explicitly (no globals)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from random import random
from typing import TYPE_CHECKING

from sagaline.engine.commit import GroupCommitter
from sagaline.engine.leases import Leases
from sagaline.model.codec import Codec
from sagaline.store.protocol import Store

if TYPE_CHECKING:
    from sagaline.engine.observe import Observer


@dataclass
class Runtime:
    store: Store
    codec: Codec
    committer: GroupCommitter
    owner: str
    threads: ThreadPoolExecutor
    lease_seconds: float
    clock: Callable[[], float] = time.time
    rand: Callable[[], float] = field(default=random)
    durable_backoff_after: float = 30.0
    """A step's retry backoff longer than this many seconds suspends the run (a stored
    wake-up) instead of sleeping in memory under the lease."""
    wake: Callable[[], None] = field(default=lambda: None)
    """Tell this process's worker that a run became claimable (a child asked to unwind)."""
    service: str | None = None
    """The service this engine runs (``Engine(service=...)``): the source of its events."""
    task_recorded: Callable[[], None] = field(default=lambda: None)
    """Tell this process's task claims (long polls of the HTTP API) that a task arrived."""
    outbox_written: Callable[[], None] = field(default=lambda: None)
    """Tell the relay that a commit put events in the outbox."""
    watch_event: Callable[[str, str, str], Awaitable[None]] | None = None
    """Record that a run waits for (topic, correlation id) and make sure the bus link
    listens to the topic; None: this engine has no bus."""
    observer: Observer | None = None
    """Metrics and spans; None when both are off, so the hot path tests one attribute."""
    leases: Leases = field(init=False)
    """When this worker's lease on each run it executes ends, as far as it knows."""

    def __post_init__(self) -> None:
        self.leases = Leases(self.lease_seconds)
