"""Writes that ride on an unwinding's next commit rather than taking one of their own."""

from __future__ import annotations

from sagaline.model.records import NewEvent, OutboxMessage, RunChange


class Pending:
    """Events and a status change waiting for the next commit.

    Safe because each is re-derived after a crash: a run still RUNNING with a failed step
    replays to the same failure and unwinds again; a compensation whose start was not yet
    written simply runs (again), which compensations must tolerate anyway.
    """

    def __init__(self) -> None:
        self.events: list[NewEvent] = []
        self.change: RunChange | None = None
        self.outbox: list[OutboxMessage] = []
        """What the compensation that just succeeded published: sent with its end."""

    def take(self) -> tuple[list[NewEvent], RunChange | None]:
        events, change = self.events, self.change
        self.events, self.change = [], None
        return events, change
