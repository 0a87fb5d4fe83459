"""Fault injection: a store wrapper that kills its own process at a chosen commit.

For crash tests: the process dies with SIGKILL, as it would from the OOM killer or a pulled
plug, exactly before or after the N-th commit, so a test can pin a crash to a checkpoint
boundary and then check what a restarted worker does.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from typing import Any, cast

from sagaline.model.records import Checkpoint, CommitResult
from sagaline.store.protocol import Store


class CrashingStore:
    """Delegates to ``inner``; SIGKILLs the process around its ``commit_number``-th commit.

    Args:
        inner: the real store.
        commit_number: which ``commit`` call (1-based, counted in this process) to die at;
            0 never dies, and only counts (see :attr:`commits`).
        before: die before that commit reaches the database (else just after it landed).
    """

    def __init__(self, inner: Store, commit_number: int, before: bool = False) -> None:
        self._inner = inner
        self._target = commit_number
        self._before = before
        self._commits = 0
        self.url = inner.url

    @property
    def commits(self) -> int:
        """Commits begun so far in this process: how a test learns a run's boundaries."""
        return self._commits

    def as_store(self) -> Store:
        return cast(Store, self)

    async def commit(self, batch: Sequence[Checkpoint]) -> list[CommitResult]:
        self._commits += 1
        if self._commits == self._target and self._before:
            os.kill(os.getpid(), signal.SIGKILL)
        result = await self._inner.commit(batch)
        if self._commits == self._target:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
