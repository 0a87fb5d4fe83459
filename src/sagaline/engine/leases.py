"""What this worker knows of its leases, so it never starts work on a run it may have lost.

The database judges leases by its own clock and fences every checkpoint, so a worker that
lost a run can never *record* anything for it. But a step's side effect (a charge, an
email) happens before its checkpoint: a worker that was paused (SIGSTOP, a long GC, a
frozen VM) past its lease must not begin a step of a run another worker has taken over.

Each grant is remembered as a deadline on this process's monotonic clock, taken *before*
the claim or heartbeat was sent, so it is never later than the database's own deadline.
Before a step or compensation begins, :meth:`Leases.fresh` says whether the deadline is
comfortably ahead; when it is not, the run context renews the lease for that one run (a
fenced heartbeat) and stops if it is gone. On the hot path this is one dict lookup.
"""

from __future__ import annotations

import time
from collections.abc import Iterable


class Leases:
    def __init__(self, lease_seconds: float) -> None:
        self.seconds = lease_seconds
        self._until: dict[str, float] = {}

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def granted(self, run_ids: Iterable[str], sent_at: float) -> None:
        """The database extended these runs' leases by a request sent at ``sent_at``."""
        until = sent_at + self.seconds
        for run_id in run_ids:
            self._until[run_id] = until

    def forget(self, run_id: str) -> None:
        self._until.pop(run_id, None)

    def fresh(self, run_id: str) -> bool:
        """True while at least a third of the lease is left: safe to begin work."""
        until = self._until.get(run_id)
        return until is not None and time.monotonic() < until - self.seconds / 3
