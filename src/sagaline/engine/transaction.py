"""``sagaline.Transaction``: what a transactional step is handed.

Only the user's half of the store's transaction: SQL in, rows out, in the database's own
placeholder style (``?`` on SQLite, ``$1`` on PostgreSQL). The engine writes the step's
checkpoint (its result, its events, its outbox rows) into the same transaction after the
step returns, and commits; if the step raises, everything it did is rolled back and the
attempt counts as failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagaline.store.protocol import StoreTransaction


class Transaction:
    def __init__(self, inner: StoreTransaction) -> None:
        self._inner = inner

    @property
    def dialect(self) -> str:
        """``"sqlite"`` (``?`` placeholders) or ``"postgresql"`` (``$1``, ``$2``...)."""
        return self._inner.dialect

    def placeholder(self, n: int) -> str:
        """The ``n``-th (1-based) parameter's placeholder in this database's style."""
        return "?" if self.dialect == "sqlite" else f"${n}"

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement (parameters bound, never interpolated)."""
        await self._inner.execute(sql, params)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one query and return its rows as tuples."""
        return await self._inner.fetch(sql, params)
