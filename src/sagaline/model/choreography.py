"""Choreography's central view, decided from recorded envelopes alone (DESIGN §7).

A tracker records the envelope of every event it hears (never the data) and rebuilds each
saga from them; everything it shows is derived here, without I/O or a clock:

- **Causal order.** An event comes after the event that caused it, then by time; among
  events that do not depend on each other the earlier goes first. Buses promise no order,
  and publishers' clocks drift, so causation decides wherever it can.
- **Which saga.** A saga (all events of one correlation id) belongs to the
  :class:`Declaration` whose ``start`` is the type of its first start event.
- **Status.** A saga that saw one of its declaration's terminal events ended so; the worst
  end wins (failed, then compensated, then completed), so a success followed by an undo
  reads as undone. A saga not ended ``deadline`` seconds after its start is STALLED (judged
  at read time: it may still end later). A saga without a declaration is IN_PROGRESS.
- **What it waits for.** For each event nothing in the saga answered yet (for a saga
  that runs in a line: its latest), each handler subscribed to its type is expected to
  answer: with one of the events its service was seen publishing in answer to that type
  in any saga (causation links), or with its ``on_failure`` event. A handler with
  nothing known to answer with (a notification sink) is expected to say nothing; when no
  handler is expected at all, a declared saga waits for its completed events.
- **Summary and view.** What lists are filtered on (name, how it ended, when its
  deadline falls) is decided as each event is recorded; what a reader is shown is decided
  afresh from the events it read, so it is never behind them.
- **The map.** Who publishes and who consumes each event, from handler declarations
  (topic and ``on_failure``) and observed causation links, drawn as a Mermaid flowchart.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sagaline.model.errors import DefinitionError, SagalineError
from sagaline.model.names import check_name
from sagaline.model.topics import check_topic


class SagaStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    FAILED = "FAILED"
    STALLED = "STALLED"
    """Not ended by its declaration's deadline: someone is not answering."""


ENDS = (SagaStatus.FAILED, SagaStatus.COMPENSATED, SagaStatus.COMPLETED)
"""The statuses a terminal event gives, worst first: the worst one seen wins."""


class SagaNotFoundError(SagalineError):
    code = "saga_not_found"

    def __init__(self, correlation_id: str) -> None:
        self.correlation_id = correlation_id
        super().__init__(
            f"saga {correlation_id!r} not found in the tracker's store (it records events "
            f"published after it subscribed); list sagas with `sagaline sagas list`"
        )


@dataclass(frozen=True)
class Declaration:
    """A choreographed saga: its first event, its terminal events, its deadline (seconds)."""

    name: str
    start: str
    completed: tuple[str, ...]
    compensated: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    deadline: float | None = None

    def topics(self) -> list[str]:
        return sorted({self.start, *self.completed, *self.compensated, *self.failed})

    def end_of(self, topic: str) -> SagaStatus | None:
        for status, topics in zip(
            ENDS, (self.failed, self.compensated, self.completed), strict=True
        ):
            if topic in topics:
                return status
        return None


def declare(
    name: str,
    *,
    start: str,
    completed: str | Sequence[str],
    compensated: str | Sequence[str] = (),
    failed: str | Sequence[str] = (),
    deadline: float | timedelta | None = None,
) -> Declaration:
    """A checked :class:`Declaration`; :class:`DefinitionError` says what is wrong."""
    check_name("choreography name", name)
    check_topic(start)
    ends = [_topics(name, "completed", completed)]
    ends += [_topics(name, "compensated", compensated), _topics(name, "failed", failed)]
    if not ends[0]:
        raise DefinitionError(f"choreography {name!r} needs at least one completed= event")
    seen: dict[str, str] = {}
    for what, topics in zip(("completed", "compensated", "failed"), ends, strict=True):
        for topic in topics:
            if topic in seen:
                raise DefinitionError(
                    f"choreography {name!r}: {topic!r} is both a {seen[topic]} and a {what} "
                    f"event; a terminal event says one thing"
                )
            seen[topic] = what
    seconds = deadline.total_seconds() if isinstance(deadline, timedelta) else deadline
    if seconds is not None and not seconds > 0:
        raise DefinitionError(
            f"choreography {name!r}: deadline must be positive (seconds or a timedelta), "
            f"not {deadline!r}"
        )
    return Declaration(name, start, ends[0], ends[1], ends[2], seconds)


def _topics(name: str, what: str, value: str | Sequence[str]) -> tuple[str, ...]:
    topics = (value,) if isinstance(value, str) else tuple(value)
    if any(not isinstance(t, str) for t in topics):
        raise DefinitionError(f"choreography {name!r}: {what}= takes a topic or a list of them")
    return tuple(check_topic(t) for t in dict.fromkeys(topics))


@dataclass(frozen=True)
class Envelope:
    """One recorded event: everything of it but its data."""

    id: str
    type: str
    correlation_id: str
    source: str | None
    causation_id: str | None
    time: datetime


@dataclass(frozen=True)
class Subscription:
    """A handler as declared: its service listens to ``topic`` and fails with ``on_failure``."""

    handler: str
    service: str
    topic: str
    on_failure: str | None = None


@dataclass(frozen=True, order=True)
class Link:
    """``service`` was seen publishing ``event`` in answer to an event of type ``cause``
    (``""``: with no recorded cause)."""

    service: str
    cause: str
    event: str


@dataclass(frozen=True)
class Expectation:
    """Events a saga waits for, and the service expected to send one of them."""

    events: list[str]
    service: str

    def __str__(self) -> str:
        text = " or ".join(self.events)
        return f"{text} from {self.service}" if self.service else text


@dataclass(frozen=True)
class Summary:
    """What the tracker keeps per saga, decided when it records: the store filters on it."""

    correlation_id: str
    name: str | None
    ended: SagaStatus | None
    started_at: float
    updated_at: float
    deadline_at: float | None
    events: int
    """How many events it was decided from: the store applies it only while that holds."""


@dataclass(frozen=True)
class SagaView:
    correlation_id: str
    name: str | None
    status: SagaStatus
    timeline: list[Envelope]
    """Every recorded event, in causal order."""
    waiting_for: list[Expectation]
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SagaQuery:
    """A status filter as the store applies it: ended so, or open and past/before deadline."""

    ended: str | None = None
    stalled: bool = False
    running: bool = False

    @property
    def everything(self) -> bool:
        return self.ended is None and not self.stalled and not self.running


def query_for(status: SagaStatus | None) -> SagaQuery:
    if status is None:
        return SagaQuery()
    if status is SagaStatus.STALLED:
        return SagaQuery(stalled=True)
    if status is SagaStatus.IN_PROGRESS:
        return SagaQuery(running=True)
    return SagaQuery(ended=status.value)


# -- one saga ------------------------------------------------------------------------------


def causal_order(envelopes: Iterable[Envelope]) -> list[Envelope]:
    """Each event after its cause, then by (time, id); a duplicate id counts once."""
    by_id: dict[str, Envelope] = {}
    for e in envelopes:
        by_id.setdefault(e.id, e)
    children: defaultdict[str, list[Envelope]] = defaultdict(list)
    ready: list[tuple[datetime, str, Envelope]] = []
    for e in by_id.values():
        if e.causation_id in by_id and e.causation_id != e.id:
            children[e.causation_id].append(e)
        else:
            ready.append((e.time, e.id, e))
    heapq.heapify(ready)
    out: list[Envelope] = []
    while ready:
        _, _, e = heapq.heappop(ready)
        out.append(e)
        for child in children.pop(e.id, ()):
            heapq.heappush(ready, (child.time, child.id, child))
    # Only a cycle of causes is left (a producer's bug): by time, after the rest.
    rest = sorted((e for group in children.values() for e in group), key=lambda e: (e.time, e.id))
    return out + rest


def declaration_of(
    timeline: Sequence[Envelope], declarations: Mapping[str, Declaration]
) -> Declaration | None:
    """The declaration of the saga's first start event (``declarations`` keyed by start)."""
    for e in timeline:
        if e.type in declarations:
            return declarations[e.type]
    return None


def summarize(
    correlation_id: str, envelopes: Iterable[Envelope], declarations: Mapping[str, Declaration]
) -> Summary:
    timeline = causal_order(envelopes)
    if not timeline:
        raise ValueError("a saga has at least one event")
    declaration = declaration_of(timeline, declarations)
    ended = None
    if declaration is not None:
        found = {declaration.end_of(e.type) for e in timeline}
        ended = next((status for status in ENDS if status in found), None)
    started = timeline[0].time.timestamp()
    deadline = declaration.deadline if declaration is not None else None
    return Summary(
        correlation_id,
        declaration.name if declaration is not None else None,
        ended,
        started,
        max(e.time.timestamp() for e in timeline),
        None if deadline is None else started + deadline,
        len(timeline),
    )


def status_at(summary: Summary, now: float) -> SagaStatus:
    if summary.ended is not None:
        return summary.ended
    if summary.deadline_at is not None and now >= summary.deadline_at:
        return SagaStatus.STALLED
    return SagaStatus.IN_PROGRESS


def links(timeline: Iterable[Envelope]) -> set[Link]:
    """What each service answered to what, in this saga (events without a source say
    nothing about who sent them)."""
    by_id = {e.id: e for e in timeline}
    out = set()
    for e in by_id.values():
        if e.source is not None:
            cause = by_id.get(e.causation_id or "")
            out.add(Link(e.source, cause.type if cause is not None else "", e.type))
    return out


def waiting_for(
    timeline: Sequence[Envelope],
    status: SagaStatus,
    subscriptions: Iterable[Subscription],
    observed: Iterable[Link],
    declaration: Declaration | None = None,
) -> list[Expectation]:
    """The events the saga waits for, and who is expected to send them (see above).

    When no handler is known to answer, a declared saga still waits for its completed
    events, from whoever was seen publishing them.
    """
    if status in ENDS:
        return []
    answers: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    publishers: defaultdict[str, set[str]] = defaultdict(set)
    for link in observed:
        answers[(link.service, link.cause)].add(link.event)
        publishers[link.event].add(link.service)
    by_topic: defaultdict[str, list[Subscription]] = defaultdict(list)
    for sub in sorted(subscriptions, key=lambda s: (s.service, s.handler)):
        by_topic[sub.topic].append(sub)
    answered = {e.causation_id for e in timeline}
    expected: dict[str, list[str]] = {}
    for e in timeline:
        if e.id in answered:
            continue
        for sub in by_topic[e.type]:
            events = sorted(answers[(sub.service, e.type)] - {sub.on_failure})
            events += [sub.on_failure] if sub.on_failure else []
            merged = expected.setdefault(sub.service, [])
            merged += [event for event in events if event not in merged]
    found = [Expectation(events, service) for service, events in expected.items() if events]
    if found or declaration is None:
        return found
    senders = sorted({s for event in declaration.completed for s in publishers[event]})
    return [
        Expectation([ev for ev in declaration.completed if s in publishers[ev]], s) for s in senders
    ] or [Expectation(list(declaration.completed), "")]


def view(
    correlation_id: str,
    envelopes: Iterable[Envelope],
    declarations: Mapping[str, Declaration],
    now: float,
    subscriptions: Iterable[Subscription] = (),
    observed: Iterable[Link] = (),
) -> SagaView:
    """The saga as its events say at ``now`` (decided afresh, not read from a summary)."""
    timeline = causal_order(envelopes)
    summary = summarize(correlation_id, timeline, declarations)
    status = status_at(summary, now)
    declared = declaration_of(timeline, declarations)
    return SagaView(
        correlation_id=correlation_id,
        name=summary.name,
        status=status,
        timeline=timeline,
        waiting_for=waiting_for(timeline, status, subscriptions, observed, declared),
        started_at=datetime.fromtimestamp(summary.started_at, UTC),
        updated_at=datetime.fromtimestamp(summary.updated_at, UTC),
    )


def lanes(timeline: Iterable[Envelope]) -> list[str | None]:
    """The services of a timeline in the order they first speak (``None``: no source)."""
    return list(dict.fromkeys(e.source for e in timeline))


# -- the map -------------------------------------------------------------------------------

OUTSIDE = "(outside)"
"""The publisher of an event no known service was seen sending."""
NOBODY = "(no consumer)"


def flows(
    subscriptions: Iterable[Subscription], observed: Iterable[Link]
) -> list[tuple[str, str, str]]:
    """(publisher, event, consumer) for every event known to be published or consumed."""
    publishers: defaultdict[str, set[str]] = defaultdict(set)
    consumers: defaultdict[str, set[str]] = defaultdict(set)
    for sub in subscriptions:
        consumers[sub.topic].add(sub.service)
        if sub.on_failure:
            publishers[sub.on_failure].add(sub.service)
    for link in observed:
        publishers[link.event].add(link.service)
        if link.cause:
            consumers[link.cause].add(link.service)
    out = []
    for event in sorted(publishers.keys() | consumers.keys()):
        for sender in sorted(publishers[event]) or [OUTSIDE]:
            out += [(sender, event, c) for c in sorted(consumers[event]) or [NOBODY]]
    return out


def mermaid(subscriptions: Iterable[Subscription], observed: Iterable[Link]) -> str:
    """The map as a Mermaid flowchart: services as nodes, events as labelled edges."""
    edges = flows(subscriptions, observed)
    services = sorted({s for p, _, c in edges for s in (p, c)} - {OUTSIDE, NOBODY})
    ids = {name: f"s{i}" for i, name in enumerate(services)}
    ids |= {OUTSIDE: "outside", NOBODY: "nobody"}
    lines = ["flowchart LR"]
    lines += [f'    {ids[name]}["{_label(name)}"]' for name in services]
    if any(p == OUTSIDE for p, _, _ in edges):
        lines.append(f'    outside(["{OUTSIDE}"])')
    if any(c == NOBODY for _, _, c in edges):
        lines.append(f'    nobody(["{NOBODY}"])')
    lines += [f"    {ids[p]} -->|{event}| {ids[c]}" for p, event, c in edges]
    return "\n".join(lines) + "\n"


def _label(text: str) -> str:
    """Service names are free text: anything Mermaid could read as syntax becomes an
    entity code (``#34;``), so a name is shown as written and cannot break the chart."""
    return "".join(ch if ch.isalnum() or ch in " _-.:/@" else f"#{ord(ch)};" for ch in text)
