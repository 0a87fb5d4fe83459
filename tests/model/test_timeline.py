"""The timeline model: typed events in, one line per event out, user text kept literal."""

from __future__ import annotations

from sagaline.model import events as ev
from sagaline.model import timeline
from sagaline.model.records import EventRecord, RunRecord
from sagaline.model.status import RunStatus


def _run() -> RunRecord:
    return RunRecord(
        run_id="o-1",
        workflow="shop.order",
        status=RunStatus.COMPENSATED,
        input=b"[]",
        output=None,
        error=None,
        queue="default",
        owner=None,
        lease_epoch=1,
        cancel_requested=False,
        created_at=100.0,
        updated_at=101.0,
    )


def _row(i: int, at: float, event: ev.Event, seq: int | None = None) -> EventRecord:
    return EventRecord(i, "o-1", at, event.type, seq, event.fields())


def test_each_event_becomes_one_entry_with_its_step_and_detail() -> None:
    error = {"type": "shop.PaymentDeclined", "message": "[bold]card declined[/]"}
    rows = [
        _row(1, 100.0, ev.RunStarted(workflow="shop.order")),
        _row(2, 100.001, ev.StepStarted(step="shop.charge"), 1),
        _row(
            3,
            100.002,
            ev.StepAttemptFailed(step="shop.charge", attempt=1, error=error, retry_in=0.5),
            1,
        ),
        _row(4, 100.5, ev.StepFailed(step="shop.charge", attempts=2, error=error), 1),
        _row(
            5,
            100.6,
            ev.CompensationSucceeded(step="shop.reserve", compensation="shop.release", attempts=1),
            2,
        ),
        _row(6, 100.7, ev.RunCompensated(error=error)),
    ]
    view = timeline.build(_run(), rows)
    assert [(e.offset_ms, e.type, e.subject) for e in view.entries] == [
        (0.0, "RunStarted", ""),
        (1.0, "StepStarted", "charge"),
        (2.0, "StepAttemptFailed", "charge"),
        (500.0, "StepFailed", "charge"),
        (600.0, "CompensationSucceeded", "reserve"),
        (700.0, "RunCompensated", ""),
    ]
    assert view.entries[2].detail == (
        "PaymentDeclined: [bold]card declined[/]; attempt 1, retry in 500 ms"
    )
    assert view.entries[3].detail == "PaymentDeclined: [bold]card declined[/]; 2 attempts"


def test_an_event_type_from_a_newer_version_still_renders() -> None:
    row = EventRecord(1, "o-1", 100.0, "SomethingNew", None, {"x": 1})
    assert isinstance(row.event, ev.Unknown)
    entry = timeline.build(_run(), [row]).entries[0]
    assert entry.type == "SomethingNew" and "{'x': 1}" in entry.detail


def test_stored_fields_round_trip_to_the_typed_event() -> None:
    event = ev.RunSuspended(waits=["sleep sleep"], wake_at=123.0)
    row = _row(1, 100.0, event)
    assert row.data == {"waits": ["sleep sleep"], "wake_at": 123.0}
    assert row.event == event


def test_durations_read_as_people_say_them() -> None:
    shown = [timeline.duration(s) for s in (0, 0.0018, 0.35, 2.44, 192, 7260, 187200)]
    assert shown == ["0 ms", "1.8 ms", "350 ms", "2.4 s", "3 min 12 s", "2 h 1 min", "2 d 4 h"]
    assert timeline.duration(3600) == "1 h"


def test_compensation_events_sit_under_the_step_they_undo() -> None:
    error = {"type": "IOError", "message": "down"}
    rows = [
        _row(1, 100.0, ev.CompensationStarted(step="shop.reserve"), 3),
        _row(
            2,
            100.1,
            ev.CompensationAttemptFailed(
                step="shop.reserve",
                compensation="shop.release",
                attempt=1,
                error=error,
                retry_in=2.5,
            ),
            3,
        ),
        _row(
            3,
            100.2,
            ev.CompensationFailed(
                step="shop.reserve", compensation="shop.release", attempts=2, error=error
            ),
            3,
        ),
        _row(4, 100.3, ev.CompensationSkipped(compensation="shop.release", reason="r", by="b"), 3),
        _row(
            5,
            100.4,
            ev.CompensationSucceeded(step="shop.charge", compensation="shop.refund", attempts=1),
            4,
        ),
    ]
    entries = timeline.build(_run(), rows).entries
    assert [e.subject for e in entries] == ["reserve"] * 4 + ["charge"]
    assert entries[0].detail == "via release"
    assert entries[1].detail == "via release; IOError: down; attempt 1, retry in 2.5 s"
    assert entries[2].detail == "via release; IOError: down; 2 attempts"
    assert entries[3].detail == "release resolved by hand; reason: r; by: b"
    assert entries[4].detail == "via refund"


def test_a_sleep_reads_as_a_timer_and_a_signal_by_its_name() -> None:
    rows = [
        _row(1, 100.0, ev.RunSuspended(waits=["sleep sleep"], wake_at=86400.0)),
        _row(2, 100.0, ev.RunSuspended(waits=["signal approved"], wake_at=None)),
    ]
    first, second = timeline.build(_run(), rows).entries
    assert first.detail == "waiting on a timer until 1970-01-02 00:00:00 UTC"
    assert second.detail == "waiting on signal approved"
