"""Stores: where runs live. Adapters are chosen by URL scheme and imported lazily."""

from __future__ import annotations

from sagaline.model.errors import DatabaseError
from sagaline.store.protocol import Store

__all__ = ["Store", "open_store"]


def open_store(url: str) -> Store:
    """The store for ``url`` (not yet opened: call ``await store.open()``)."""
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        from sagaline.store.sqlite.store import SqliteStore

        return SqliteStore(url)
    if scheme in ("postgresql", "postgres"):
        try:
            from sagaline.store.postgres.store import PostgresStore
        except ImportError as exc:
            raise DatabaseError(
                f"PostgreSQL needs the postgres extra: pip install 'sagaline[postgres]' ({exc})"
            ) from exc
        return PostgresStore(url)
    raise DatabaseError(
        f"unsupported database URL {url!r}; use sqlite:///path/to/file.db or "
        f"postgresql://user@host:5432/db"
    )
