"""Group commit: many runs' writes share one database transaction.

While one batch is being written, new items queue up and go together in the next, so under
load the number of commits grows far slower than the number of steps or starts. A caller
is answered only after its batch has committed: a step is reported done only once durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from sagaline.model.records import Checkpoint, CommitResult
from sagaline.store.protocol import Store

if TYPE_CHECKING:
    from sagaline.engine.metrics import Metrics

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


class Batcher(Generic[I, O]):
    """Feeds items to ``write(batch) -> results`` in batches, one batch at a time."""

    def __init__(
        self, write: Callable[[Sequence[I]], Awaitable[list[O]]], max_batch: int = 256
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[I, asyncio.Future[O]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> O:
        future: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="sagaline-group-commit")
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    results = await self._write([item for item, _ in batch])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._flusher = None


class GroupCommitter(Batcher[Checkpoint, CommitResult]):
    """Checkpoints of many runs, one transaction per batch.

    With ``metrics``, each transaction's batch size and latency are measured around the
    store's ``commit``: the figures that say whether group commit is doing its job.
    """

    def __init__(self, store: Store, max_batch: int = 256, metrics: Metrics | None = None) -> None:
        write = store.commit if metrics is None else metrics.timed_commit(store.commit)
        super().__init__(write, max_batch)

    async def commit(self, checkpoint: Checkpoint) -> CommitResult:
        return await self.submit(checkpoint)
