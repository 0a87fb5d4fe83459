"""The ``TrackerStore`` protocol: where choreography's tracker keeps what it heard.

The tracker's tables (all named ``tracker_*``) live in a database of its own or beside a
sagaline store or an embedded bus in the same file or schema. The store only writes and
reads: what a saga's status is, and whether an event is new, the tracker decides from
the rows (:mod:`sagaline.model.choreography`).

Lists are newest first by ``(started_at, correlation_id)`` descending, and pages follow that
key: ``before`` is the last saga of the previous page, and a page holds the sagas strictly
after it in that order. Each status filter has a query of its own over an index that holds
that status's sagas in that order (the ended ones by how they ended, the open ones apart
with their deadlines), so a page reads about ``limit`` index entries however many sagas
there are. Counts read the ended sagas' from ``tracker_saga_counts`` (kept by triggers on
``tracker_sagas`` in the same transaction, since tracker schema version 3) and count the
open ones from their index, so that what they cost grows with the open sagas alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sagaline.model.choreography import (
    Declaration,
    Envelope,
    Link,
    SagaQuery,
    SagaStatus,
    Subscription,
    Summary,
)
from sagaline.model.errors import DatabaseError

Keyset = tuple[float, str]
"""Where a page of sagas starts: the ``(started_at, correlation_id)`` of the last one shown."""
NEWEST: Keyset = (1e308, "")
"""A keyset before every saga: the first page."""


class TrackerStore(Protocol):
    url: str

    async def open(self, create: bool = True) -> None:
        """Connect; create the tracker's tables when absent (``create``), or else refuse.

        Raises:
            DatabaseError: the database holds someone else's tables, tracker tables of a
                newer version, or (``create=False``) no tracker tables at all.
        """

    async def aclose(self) -> None: ...

    async def record(self, envelopes: Sequence[Envelope], at: float) -> list[str]:
        """Keep each envelope not kept yet (by id) and count it in its saga's row, in one
        transaction: a duplicate changes nothing. Returns the ids that were new."""

    async def events(self, correlation_ids: Sequence[str]) -> dict[str, list[Envelope]]:
        """The envelopes of each saga, each list read at one moment (any order)."""

    async def save_summary(self, summary: Summary, links: Iterable[Link]) -> bool:
        """Add ``links`` (idempotent), and apply ``summary`` only if its saga still counts
        ``summary.events`` events (compare-and-set): a summary decided from fewer events
        than were recorded since never lands. Returns whether it was applied."""

    async def summary(self, correlation_id: str) -> Summary | None: ...

    async def list_sagas(
        self, query: SagaQuery, now: float, limit: int, before: Keyset | None = None
    ) -> list[Summary]:
        """At most ``limit`` sagas matching ``query`` at ``now``, the most recently started
        first (see above), strictly after ``before`` (a page's last saga) when given."""

    async def count_sagas(self, now: float) -> dict[SagaStatus, int]:
        """How many sagas are in each status at ``now``, judged from their rows exactly as
        :func:`~sagaline.model.choreography.status_at` judges a summary (statuses with no
        saga are left out), in one statement: the ended sagas from the kept counts, the
        open ones from their index."""

    async def links(self) -> list[Link]: ...

    async def save_knowledge(
        self, declarations: Iterable[Declaration], subscriptions: Iterable[Subscription]
    ) -> None:
        """Keep (replacing by name) the declarations and handlers a tracker process knows,
        so that a reader that imported none of them (the CLI) knows them too."""

    async def declarations(self) -> list[Declaration]: ...

    async def subscriptions(self) -> list[Subscription]: ...


def open_tracker_store(url: str) -> TrackerStore:
    """The tracker's store for ``url`` (not yet opened: call ``await store.open()``)."""
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        from sagaline.store.sqlite.tracker import SqliteTrackerStore

        return SqliteTrackerStore(url)
    if scheme in ("postgresql", "postgres"):
        try:
            from sagaline.store.postgres.tracker import PostgresTrackerStore
        except ImportError as exc:
            raise DatabaseError(
                f"PostgreSQL needs the postgres extra: pip install 'sagaline[postgres]' ({exc})"
            ) from exc
        return PostgresTrackerStore(url)
    raise DatabaseError(
        f"unsupported database URL {url!r} for the tracker; use sqlite:///path/to/tracker.db "
        f"or postgresql://user@host:5432/db"
    )


def saga_filters(query: SagaQuery) -> list[str]:
    """The list queries a store runs for ``query``, one per status filter it names (each
    over its own index; the pages are merged by :func:`newest_first`): ``all``, ``ended``,
    ``stalled``, ``running``."""
    if query.everything:
        return ["all"]
    named = (("ended", query.ended is not None), ("stalled", query.stalled))
    return [name for name, on in (*named, ("running", query.running)) if on]


def newest_first(pages: Sequence[Sequence[Summary]], limit: int) -> list[Summary]:
    """One page out of several (one per filter), each already newest first."""
    sagas = [s for page in pages for s in page]
    sagas.sort(key=lambda s: (s.started_at, s.correlation_id), reverse=True)
    return sagas[:limit]


def counts_from_rows(rows: Iterable[Any]) -> dict[SagaStatus, int]:
    """``count_sagas`` rows, ``(status, n)``, as counts by status."""
    found = {SagaStatus(row[0]): int(row[1]) for row in rows if row[1]}
    return {status: found[status] for status in SagaStatus if status in found}


# -- rows, the same in every dialect (a row is read by column name) -----------------------


def envelope_params(e: Envelope) -> dict[str, Any]:
    return {
        "id": e.id,
        "correlation_id": e.correlation_id,
        "type": e.type,
        "source": e.source,
        "causation_id": e.causation_id,
        "time": e.time.timestamp(),
    }


def envelope_from_row(row: Any) -> Envelope:
    return Envelope(
        id=row["id"],
        type=row["type"],
        correlation_id=row["correlation_id"],
        source=row["source"],
        causation_id=row["causation_id"],
        time=datetime.fromtimestamp(row["time"], UTC),
    )


def summary_params(s: Summary) -> dict[str, Any]:
    return {
        "correlation_id": s.correlation_id,
        "name": s.name,
        "ended": None if s.ended is None else s.ended.value,
        "started_at": s.started_at,
        "updated_at": s.updated_at,
        "deadline_at": s.deadline_at,
        "events": s.events,
    }


def summary_from_row(row: Any) -> Summary:
    return Summary(
        correlation_id=row["correlation_id"],
        name=row["name"],
        ended=None if row["ended"] is None else SagaStatus(row["ended"]),
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        deadline_at=row["deadline_at"],
        events=row["events"],
    )


def declaration_params(d: Declaration) -> dict[str, Any]:
    return {
        "name": d.name,
        "start": d.start,
        "completed": json.dumps(d.completed),
        "compensated": json.dumps(d.compensated),
        "failed": json.dumps(d.failed),
        "deadline": d.deadline,
    }


def declaration_from_row(row: Any) -> Declaration:
    return Declaration(
        name=row["name"],
        start=row["start"],
        completed=tuple(json.loads(row["completed"])),
        compensated=tuple(json.loads(row["compensated"])),
        failed=tuple(json.loads(row["failed"])),
        deadline=row["deadline"],
    )


def subscription_params(s: Subscription) -> dict[str, Any]:
    return {
        "handler": s.handler,
        "service": s.service,
        "topic": s.topic,
        "on_failure": s.on_failure,
    }
