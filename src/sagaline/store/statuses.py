"""The status sets that the stores' SQL is handed as parameters, so that no query copies one.

Each is built from the one definition in ``sagaline.model.status``. A status set written
into SQL text drifts from the model unseen; a parameter cannot.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from sagaline.model.status import PARKED, TERMINAL, RunStatus, StepStatus

SETTLED = TERMINAL | PARKED
"""``RunStatus.is_settled`` as a set: a child settled so wakes a parent suspended on it."""
CLAIM_STARTS = frozenset({RunStatus.PENDING, RunStatus.SUSPENDED})
"""What a claim moves to RUNNING; a RUNNING or COMPENSATING run it recovers keeps its status."""
PIVOT_STARTED = frozenset({StepStatus.RUNNING, StepStatus.SUCCEEDED})
"""A pivot step in one of these has started: a cancel ``unless_pivot`` is refused."""


def values(statuses: Iterable[StrEnum]) -> list[str]:
    """The stored names, sorted so that the bound value is the same on every call."""
    return sorted(s.value for s in statuses)


def status_counts(rows: Iterable[tuple[str, int]]) -> dict[RunStatus, int]:
    """(stored status, count) rows as counts by status. A stored name this version does
    not know (a damaged row, or a newer sagaline's status) is left out of the counts
    rather than failing them: the run itself is listed as undecodable, and every list
    and page that shows counts keeps working."""
    counts: dict[RunStatus, int] = {}
    for name, n in rows:
        try:
            status = RunStatus(name)
        except ValueError:
            continue
        counts[status] = counts.get(status, 0) + int(n)
    return counts
