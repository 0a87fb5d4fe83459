"""What a running workflow needs from its engine, passed down explicitly (no globals)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from random import random

from sagaline.engine.commit import GroupCommitter
from sagaline.model.codec import Codec
from sagaline.store.protocol import Store


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
    wake: Callable[[], None] = field(default=lambda: None)
    """Tell this process's worker that a run became claimable (a child asked to unwind)."""
