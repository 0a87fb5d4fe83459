"""Group commit: checkpoints from many runs share one database transaction.

While one batch is being written, new checkpoints queue up and go together in the next,
so under load the number of commits grows far slower than the number of steps. A caller
is answered only after its batch has committed: a step is reported done only once durable.
"""

from __future__ import annotations

import asyncio

from sagaline.model.records import Checkpoint, CommitResult
from sagaline.store.protocol import Store


class GroupCommitter:
    def __init__(self, store: Store, max_batch: int = 256) -> None:
        self._store = store
        self._max_batch = max_batch
        self._pending: list[tuple[Checkpoint, asyncio.Future[CommitResult]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def commit(self, checkpoint: Checkpoint) -> CommitResult:
        future: asyncio.Future[CommitResult] = asyncio.get_running_loop().create_future()
        self._pending.append((checkpoint, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="sagaline-group-commit")
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    results = await self._store.commit([cp for cp, _ in batch])
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
