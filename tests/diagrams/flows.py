"""Workflows and machines the diagram tests draw: a branch, names full of markup, a wait
for a signal before any step, and an ASL saga with Catch routes to compensation states, a
Choice loop, Parallel and Map."""

from __future__ import annotations

from typing import Any

from sagaline import RetryPolicy, step, wait_for_signal, workflow

ODD = 'diagrams.check "stock" <b>|[x]{y}</b> & #1 %% end --> ; `md`'
"""A step name with every character that means something in Mermaid, XML or HTML."""


@step(name=ODD)
async def check(sku: str) -> bool:
    return sku != "none"


@step(name="diagrams.reserve")
async def reserve(sku: str) -> str:
    return f"res-{sku}"


@reserve.compensate
async def unreserve(sku: str, reservation: str) -> None:
    pass


@step(name="diagrams.backorder")
async def backorder(sku: str) -> str:
    return f"back-{sku}"


@step(name="diagrams.notify", pivot=True)
async def notify(sku: str) -> None:
    if sku == "boom":
        raise RuntimeError("notify failed")


@workflow(name="diagrams.branching")
async def branching(sku: str) -> str:
    if await check(sku):
        result = await reserve(sku)
    else:
        result = await backorder(sku)
    await notify(sku)
    return result


@workflow(name="diagrams.approval")
async def approval(sku: str) -> str:
    approved: str = await wait_for_signal("approved")
    return approved + await reserve(sku)


def asl_saga() -> dict[str, Any]:
    """A booking saga in ASL: each reservation's Catch routes to the undo chain."""
    catch_all = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "CancelHotel"}]
    return {
        "Comment": 'Trip <saga> "booking" & co',
        "StartAt": "Validate",
        "States": {
            "Validate": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.nights", "NumericGreaterThan": 0, "Next": "BookHotel"},
                    {
                        "And": [
                            {"Variable": "$.retry", "BooleanEquals": True},
                            {"Variable": "$.nights", "NumericEquals": 0},
                        ],
                        "Next": "Wait a bit",
                    },
                ],
                "Default": "Rejected",
            },
            "Wait a bit": {"Type": "Wait", "Seconds": 5, "Next": "Validate"},
            "BookHotel": {
                "Type": "Task",
                "Resource": "sagaline:diagrams.reserve",
                "Next": "BookBoth",
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed"}],
            },
            "BookBoth": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "BookFlight",
                        "States": {
                            "BookFlight": {"Type": "Task", "Resource": "arn:x", "End": True}
                        },
                    },
                    {
                        "StartAt": "BookCar",
                        "States": {
                            "BookCar": {"Type": "Task", "Resource": "arn:y", "Next": "Car <ok>"},
                            "Car <ok>": {"Type": "Succeed"},
                        },
                    },
                ],
                "Next": "NotifyGuests",
                "Catch": catch_all,
            },
            "NotifyGuests": {
                "Type": "Map",
                "ItemsPath": "$.guests",
                "ItemProcessor": {
                    "StartAt": "Notify",
                    "States": {"Notify": {"Type": "Task", "Resource": "arn:z", "End": True}},
                },
                "Next": "Done",
                "Catch": [{"ErrorEquals": ["Timeout", "States.TaskFailed"], "Next": "CancelHotel"}],
            },
            "Done": {"Type": "Pass", "End": True},
            "CancelHotel": {"Type": "Task", "Resource": "arn:undo", "Next": "Failed"},
            "Rejected": {"Type": "Fail", "Error": "Rejected", "Cause": "no nights"},
            "Failed": {"Type": "Fail", "Error": "BookingFailed"},
        },
    }


FLAKY_FAILS: dict[str, int] = {}
"""How many times each ``diagrams.flaky`` sku still fails before it succeeds."""


@step(name="diagrams.flaky", retry=RetryPolicy(max_attempts=3, initial=0.01))
async def flaky(sku: str) -> str:
    if FLAKY_FAILS.get(sku, 0) > 0:
        FLAKY_FAILS[sku] -= 1
        raise RuntimeError("not yet")
    return f"ok-{sku}"


@workflow(name="diagrams.retried")
async def retried(sku: str) -> str:
    return await flaky(sku)
