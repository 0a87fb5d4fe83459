"""The tracker's model: recorded envelopes in; order, status, expectations and the map out."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagaline.model import choreography as choreo
from sagaline.model.choreography import (
    Declaration,
    Envelope,
    Expectation,
    Link,
    SagaStatus,
    Subscription,
)
from sagaline.model.errors import DefinitionError, InvalidNameError

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ORDER = choreo.declare(
    "order",
    start="OrderCreated",
    completed="InventoryReserved",
    compensated=["PaymentRefunded"],
    failed="RefundFailed",
    deadline=timedelta(seconds=60),
)
BY_START = {ORDER.start: ORDER}
HANDLERS = [
    Subscription("payment.charge", "payment", "OrderCreated"),
    Subscription("notify.order_created", "notify", "OrderCreated"),
    Subscription("inventory.reserve", "inventory", "PaymentSucceeded", "InventoryFailed"),
    Subscription("refunds.refund", "refunds", "InventoryFailed"),
]


def env(
    id_: str, type_: str, at: float, cause: str | None = None, source: str | None = None
) -> Envelope:
    return Envelope(id_, type_, "saga-1", source, cause, T0 + timedelta(seconds=at))


def happy() -> list[Envelope]:
    return [
        env("e1", "OrderCreated", 0, None, "order"),
        env("e2", "PaymentSucceeded", 1, "e1", "payment"),
        env("e3", "InventoryReserved", 2, "e2", "inventory"),
    ]


def status_of(events: list[Envelope], now: float = 10) -> SagaStatus:
    summary = choreo.summarize("saga-1", events, BY_START)
    return choreo.status_at(summary, T0.timestamp() + now)


# -- causal order ----------------------------------------------------------------------------


def test_an_event_comes_after_its_cause_even_when_its_clock_says_earlier() -> None:
    events = [
        env("e3", "InventoryReserved", -5, "e2", "inventory"),  # a clock far behind
        env("e2", "PaymentSucceeded", 1, "e1", "payment"),
        env("e1", "OrderCreated", 0, None, "order"),
    ]
    assert [e.id for e in choreo.causal_order(events)] == ["e1", "e2", "e3"]


def test_independent_events_are_ordered_by_time() -> None:
    events = [
        env("b", "PaymentSucceeded", 2, "root"),
        env("a", "Notified", 1, "root"),
        env("root", "OrderCreated", 0),
        env("c", "InventoryReserved", 1.5, "b"),  # after its cause b, though earlier than b
    ]
    assert [e.id for e in choreo.causal_order(events)] == ["root", "a", "b", "c"]


@given(st.randoms(use_true_random=False))
def test_causal_order_does_not_depend_on_arrival_order(rnd: random.Random) -> None:
    events = [*happy(), env("n1", "Notified", 0.5, "e1", "notify")]
    shuffled = events[:]
    rnd.shuffle(shuffled)
    assert choreo.causal_order(shuffled) == choreo.causal_order(events)
    assert [e.id for e in choreo.causal_order(shuffled)] == ["e1", "n1", "e2", "e3"]


def test_a_duplicate_counts_once_and_a_cycle_of_causes_loses_nothing() -> None:
    events = happy() + happy()[:1] + [env("x", "A", 5, "y"), env("y", "B", 4, "x")]
    assert [e.id for e in choreo.causal_order(events)] == ["e1", "e2", "e3", "y", "x"]
    assert choreo.summarize("saga-1", events, BY_START).events == 5


# -- status ------------------------------------------------------------------------------------


def test_each_status_from_the_terminal_events_and_the_deadline() -> None:
    start = happy()[:1]
    assert status_of(start) is SagaStatus.IN_PROGRESS
    assert status_of(start, now=60) is SagaStatus.STALLED
    assert status_of(happy(), now=3600) is SagaStatus.COMPLETED
    refunded = [*start, env("r", "PaymentRefunded", 3, "e1", "refunds")]
    assert status_of(refunded) is SagaStatus.COMPENSATED
    assert status_of([*refunded, env("f", "RefundFailed", 4, "r", "refunds")]) is SagaStatus.FAILED


def test_the_worst_end_wins_whatever_the_order_of_the_terminal_events() -> None:
    undone = [*happy(), env("r", "PaymentRefunded", 9, "e3", "refunds")]
    assert status_of(undone) is SagaStatus.COMPENSATED
    assert status_of(list(reversed(undone))) is SagaStatus.COMPENSATED


def test_a_saga_belongs_to_the_declaration_its_first_event_starts() -> None:
    summary = choreo.summarize("saga-1", happy(), BY_START)
    assert summary.name == "order" and summary.ended is SagaStatus.COMPLETED
    assert summary.started_at == T0.timestamp()
    assert summary.deadline_at == T0.timestamp() + 60
    assert summary.updated_at == T0.timestamp() + 2
    stranger = choreo.summarize("saga-1", [env("x", "Unrelated", 0)], BY_START)
    assert stranger.name is None and stranger.deadline_at is None
    assert choreo.status_at(stranger, T0.timestamp() + 10**6) is SagaStatus.IN_PROGRESS


def test_declarations_are_checked() -> None:
    with pytest.raises(DefinitionError, match="at least one completed"):
        choreo.declare("x", start="A", completed=())
    with pytest.raises(DefinitionError, match="both a completed and a failed"):
        choreo.declare("x", start="A", completed="B", failed=["C", "B"])
    with pytest.raises(DefinitionError, match="deadline must be positive"):
        choreo.declare("x", start="A", completed="B", deadline=timedelta(0))
    with pytest.raises(InvalidNameError, match="topic"):
        choreo.declare("x", start="A B", completed="B")
    d = choreo.declare("x", start="A", completed=("B", "B"), deadline=1.5)
    assert d == Declaration("x", "A", ("B",), (), (), 1.5)
    assert d.topics() == ["A", "B"]


# -- waiting for -------------------------------------------------------------------------------


def waiting(events: list[Envelope], observed: set[Link] | None = None) -> list[str]:
    timeline = choreo.causal_order(events)
    summary = choreo.summarize("saga-1", events, BY_START)
    status = choreo.status_at(summary, T0.timestamp())
    return [str(x) for x in choreo.waiting_for(timeline, status, HANDLERS, observed or set())]


def test_a_saga_waits_for_what_the_next_service_answered_elsewhere_or_its_failure() -> None:
    other_saga = choreo.links(happy())
    partial = happy()[:2]
    assert waiting(partial, other_saga) == ["InventoryReserved or InventoryFailed from inventory"]
    assert waiting(partial) == ["InventoryFailed from inventory"]


def test_an_answered_event_is_waited_on_no_more_and_a_silent_handler_never() -> None:
    observed = choreo.links(happy())
    assert waiting(happy()[:1], observed) == ["PaymentSucceeded from payment"]  # not notify
    assert waiting(happy(), observed) == []  # ended
    assert Expectation(["A", "B"], "svc").events == ["A", "B"]
    assert str(Expectation(["A"], "")) == "A"


def test_parallel_branches_each_wait_for_their_own_answer() -> None:
    handlers = [*HANDLERS, Subscription("ship.book", "shipping", "OrderCreated", "ShipFailed")]
    events = [env("e1", "OrderCreated", 0, None, "order")]
    status = SagaStatus.IN_PROGRESS
    found = choreo.waiting_for(events, status, handlers, choreo.links(happy()))
    assert [str(x) for x in found] == [
        "PaymentSucceeded from payment",
        "ShipFailed from shipping",
    ]


def test_without_a_known_handler_a_declared_saga_waits_for_its_completed_event() -> None:
    timeline = happy()[:2]
    found = choreo.waiting_for(timeline, SagaStatus.STALLED, [], choreo.links(happy()), ORDER)
    assert [str(x) for x in found] == ["InventoryReserved from inventory"]
    unknown = choreo.waiting_for(timeline, SagaStatus.STALLED, [], set(), ORDER)
    assert [str(x) for x in unknown] == ["InventoryReserved"]


def test_a_view_puts_it_together() -> None:
    now = T0.timestamp() + 61
    view = choreo.view("saga-1", reversed(happy()[:2]), BY_START, now, HANDLERS)
    assert view.status is SagaStatus.STALLED and view.name == "order"
    assert [e.type for e in view.timeline] == ["OrderCreated", "PaymentSucceeded"]
    assert [str(x) for x in view.waiting_for] == ["InventoryFailed from inventory"]
    assert view.started_at == T0 and view.updated_at == T0 + timedelta(seconds=1)
    assert choreo.lanes(view.timeline) == ["order", "payment"]


# -- the map -----------------------------------------------------------------------------------


def test_the_map_joins_declared_handlers_and_observed_traffic() -> None:
    failed = [
        env("e1", "OrderCreated", 0, None, "order"),
        env("e2", "PaymentSucceeded", 1, "e1", "payment"),
        env("f", "InventoryFailed", 2, "e2", "inventory"),
        env("r", "PaymentRefunded", 3, "f", "refunds"),
    ]
    observed = choreo.links(happy()) | choreo.links(failed)
    assert choreo.mermaid(HANDLERS, observed) == (
        "flowchart LR\n"
        '    s0["inventory"]\n'
        '    s1["notify"]\n'
        '    s2["order"]\n'
        '    s3["payment"]\n'
        '    s4["refunds"]\n'
        '    nobody(["(no consumer)"])\n'
        "    s0 -->|InventoryFailed| s4\n"
        "    s0 -->|InventoryReserved| nobody\n"
        "    s2 -->|OrderCreated| s1\n"
        "    s2 -->|OrderCreated| s3\n"
        "    s4 -->|PaymentRefunded| nobody\n"
        "    s3 -->|PaymentSucceeded| s0\n"
    )


def test_the_map_before_any_traffic_and_with_unsafe_service_names() -> None:
    handlers = [Subscription("h", 'we"ird]', "Foreign", "Oops")]
    assert choreo.mermaid(handlers, set()) == (
        "flowchart LR\n"
        '    s0["we#34;ird#93;"]\n'
        '    outside(["(outside)"])\n'
        '    nobody(["(no consumer)"])\n'
        "    outside -->|Foreign| s0\n"
        "    s0 -->|Oops| nobody\n"
    )
    assert choreo.mermaid([], set()) == "flowchart LR\n"


def test_links_say_who_answered_what() -> None:
    events = [*happy(), env("x", "Foreign", 0), env("y", "Late", 1, "missing", "svc")]
    assert choreo.links(events) == {
        Link("order", "", "OrderCreated"),
        Link("payment", "OrderCreated", "PaymentSucceeded"),
        Link("inventory", "PaymentSucceeded", "InventoryReserved"),
        Link("svc", "", "Late"),
    }


def test_a_status_filter_as_the_store_applies_it() -> None:
    assert choreo.query_for(None).everything
    assert choreo.query_for(SagaStatus.STALLED) == choreo.SagaQuery(stalled=True)
    assert choreo.query_for(SagaStatus.IN_PROGRESS) == choreo.SagaQuery(running=True)
    assert choreo.query_for(SagaStatus.FAILED) == choreo.SagaQuery(ended="FAILED")
