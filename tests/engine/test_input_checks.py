"""What a caller gives the engine is checked at the call, before anything is written.

Identifiers (run ids, workflow, step and queue names), non-finite floats and a reused run
id with other arguments each fail at once with an error that says what to do.
"""

from __future__ import annotations

import asyncio

import pytest

from sagaline import Engine, PayloadError, RunFailedError, RunStatus, step, workflow
from sagaline.model.errors import (
    InvalidNameError,
    InvalidOperationError,
    PayloadNotFiniteError,
    RunConflictError,
)

BAD_IDS = ["a\x00b", "line\n", "\ud800", "x" * 256, "", 42]
BAD_ID_CASES = [
    pytest.param(bad, reason, id=name)
    for bad, reason, name in [
        ("a\x00b", r"'a\\x00b' is not valid: it contains the control character", "nul"),
        ("line\n", r"'line\\n' is not valid: it contains the control character", "newline"),
        ("\ud800", r"'\\ud800' is not valid: it contains the lone surrogate", "surrogate"),
        ("x" * 256, r"'x+\.\.\.x+' is not valid: it is 256 characters long", "too-long"),
        ("", "'' is not valid: it is empty", "empty"),
        (42, "42 is not valid: it is int, not str", "int"),
    ]
]


@step(name="t.checks.pay")
async def pay(amount: float) -> float:
    return amount


@workflow(name="t.checks.echo")
async def echo(text: str) -> str:
    return text


@workflow(name="t.checks.other")
async def other(text: str) -> str:
    return text


@workflow(name="t.checks.totals")
async def totals(counts: dict[str, int], tags: set[str]) -> int:
    return sum(counts.values()) + len(tags)


@workflow(name="t.checks.charge")
async def charge(amount: float) -> float:
    return await pay(amount)


@workflow(name="t.checks.charge_nan_caught")
async def charge_nan_caught() -> str:
    try:
        await pay(float("nan"))
    except PayloadError as exc:
        return str(exc)
    return "no error"


@workflow(name="t.checks.charge_nan")
async def charge_nan() -> float:
    return await pay(float("nan"))


# -- identifiers ------------------------------------------------------------------------


@pytest.mark.parametrize(("run_id", "reason"), BAD_ID_CASES)
async def test_a_malformed_run_id_is_refused_at_the_call(
    engine: Engine, run_id: object, reason: str
) -> None:
    with pytest.raises(InvalidNameError, match=f"^run id {reason}") as info:
        await asyncio.wait_for(engine.start(echo, "hi", run_id=run_id), 5)  # type: ignore[call-overload]
    assert "use a str of 1 to 255 characters with no control characters" in str(info.value)
    assert info.value.what == "run id"
    assert await engine.list_runs() == []


@pytest.mark.parametrize("name", ["t.checks.\x00echo", "t.checks.echo\n", "\ud800", ""])
async def test_a_malformed_workflow_name_is_refused_at_the_call(engine: Engine, name: str) -> None:
    with pytest.raises(InvalidNameError, match=r"^workflow name "):
        await engine.start(name, "hi")
    assert await engine.list_runs() == []


@pytest.mark.parametrize("queue", BAD_IDS)
async def test_a_malformed_queue_name_is_refused_by_set_queue_limit(
    engine: Engine, queue: object
) -> None:
    with pytest.raises(InvalidNameError, match=r"^queue name "):
        await engine.set_queue_limit(queue, 3)  # type: ignore[arg-type]
    assert await engine.queue_limits() == {}


async def test_good_starts_batched_with_bad_ones_all_succeed(engine: Engine) -> None:
    good = [engine.start(echo, f"hi {i}", run_id=f"good-{i}") for i in range(20)]
    bad = [engine.start(echo, "hi", run_id=run_id) for run_id in BAD_IDS]  # type: ignore[call-overload]
    outcomes = await asyncio.gather(*bad[:3], *good, *bad[3:], return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == len(BAD_IDS)
    assert all(isinstance(e, InvalidNameError) for e in errors)
    handles = [o for o in outcomes if not isinstance(o, BaseException)]
    assert [await h.result() for h in handles] == [f"hi {i}" for i in range(20)]
    runs = await engine.list_runs()
    assert sorted(r.run_id for r in runs) == sorted(f"good-{i}" for i in range(20))


@pytest.mark.parametrize("name", ["t.checks.\x00", "two\nlines", "\udc80", "x" * 256, ""])
def test_a_malformed_step_or_workflow_name_is_refused_at_decoration(name: str) -> None:
    with pytest.raises(InvalidNameError, match=r"^@step name "):

        @step(name=name)
        async def a_step() -> None:
            pass

    with pytest.raises(InvalidNameError, match=r"^@workflow name "):

        @workflow(name=name)
        async def a_workflow() -> None:
            pass


@pytest.mark.parametrize("queue", ["pay\tments", "\ud800", "x" * 256, ""])
def test_a_malformed_queue_is_refused_at_decoration(queue: str) -> None:
    with pytest.raises(InvalidNameError, match=r"^@workflow queue "):

        @workflow(name="t.checks.queued", queue=queue)
        async def queued() -> None:
            pass


# -- NaN and infinity -------------------------------------------------------------------


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), float("-inf")])
async def test_non_finite_input_is_refused_before_the_run_is_written(
    engine: Engine, amount: float
) -> None:
    with pytest.raises(PayloadNotFiniteError, match="JSON has no NaN or infinity") as info:
        await engine.start(charge, amount, run_id="nan-input")
    assert str(info.value).startswith("workflow 't.checks.charge' argument 'amount': ")
    assert await engine.list_runs() == []


async def test_a_step_called_with_nan_fails_at_the_call_and_writes_no_step(
    engine: Engine,
) -> None:
    handle = await engine.start(charge_nan_caught, run_id="nan-step")
    message = await handle.result()
    assert message.startswith("step 't.checks.pay' argument 'amount': the value is nan")
    assert "JSON has no NaN or infinity; pass such a value as a string" in message
    assert await engine.steps("nan-step") == []
    events = [e.type for e in await engine.history("nan-step")]
    assert not any("step" in t.lower() for t in events), events


async def test_an_uncaught_nan_fails_the_run_instead_of_blocking_it(engine: Engine) -> None:
    handle = await engine.start(charge_nan, run_id="nan-uncaught")
    with pytest.raises(RunFailedError, match="JSON has no NaN or infinity") as info:
        await asyncio.wait_for(handle.result(), 10)
    assert info.value.status is not RunStatus.BLOCKED
    assert await engine.steps("nan-uncaught") == []


# -- starting again with the same run id ------------------------------------------------


async def test_the_same_start_again_returns_the_existing_run(engine: Engine) -> None:
    first = await engine.start(echo, "hi", run_id="same")
    again = await engine.start(echo, text="hi", run_id="same")
    assert await first.result() == await again.result() == "hi"
    assert [r.run_id for r in await engine.list_runs()] == ["same"]


async def test_equal_arguments_that_encode_differently_are_the_same_start(
    engine: Engine,
) -> None:
    await engine.start(totals, {"a": 1, "b": 2}, {"x", "y", "z"}, run_id="tot")
    again = await engine.start(totals, {"b": 2, "a": 1}, {"z", "y", "x"}, run_id="tot")
    assert await again.result() == 6


async def test_the_same_run_id_with_other_arguments_is_a_conflict(engine: Engine) -> None:
    first = await engine.start(echo, "hi", run_id="taken")
    with pytest.raises(RunConflictError) as info:
        await engine.start(echo, "bye", run_id="taken")
    assert str(info.value) == (
        "run 'taken' already exists and was started with other arguments; choose another "
        "run_id, or follow the existing run with `engine.handle('taken')`"
    )
    assert info.value.run_id == "taken"
    assert info.value.code == "run_conflict"
    assert isinstance(info.value, InvalidOperationError)
    assert await first.result() == "hi"


async def test_the_same_run_id_with_another_workflow_is_a_conflict(engine: Engine) -> None:
    await engine.start(echo, "hi", run_id="wf-taken")
    with pytest.raises(RunConflictError, match=r"as a run of workflow 't.checks.echo', not"):
        await engine.start(other, "hi", run_id="wf-taken")


async def test_concurrent_starts_of_one_run_id_with_other_arguments_conflict(
    engine: Engine,
) -> None:
    outcomes = await asyncio.gather(
        *(engine.start(echo, f"v{i}", run_id="race") for i in range(5)), return_exceptions=True
    )
    conflicts = [o for o in outcomes if isinstance(o, RunConflictError)]
    assert len(conflicts) == 4
    run = await engine.get_run("race")
    assert [r.run_id for r in await engine.list_runs()] == ["race"]
    assert run.input.decode() in {f'["v{i}"]' for i in range(5)}
