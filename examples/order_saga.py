"""A trip booking saga: book a flight, a hotel and a car; undo them if payment fails.

    python examples/order_saga.py            # both runs, on ./example.db

Run it twice: the runs are idempotent by run_id, so the second time returns the recorded
results without booking anything again.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from sagaline import Engine, NonRetryable, RetryPolicy, RunFailedError, step, workflow


@dataclass
class Trip:
    traveller: str
    budget_cents: int


@dataclass
class Booking:
    ref: str
    cents: int


class InsufficientFunds(NonRetryable):
    """Not worth retrying: the card will not grow richer in a second."""


@step(retry=RetryPolicy(max_attempts=5, initial=0.1))
async def book_flight(trip: Trip) -> Booking:
    print(f"  booking flight for {trip.traveller}")
    return Booking(f"FL-{trip.traveller}", 30000)


@book_flight.compensate
async def cancel_flight(trip: Trip, booking: Booking) -> None:
    print(f"  cancelling flight {booking.ref}")


@step
async def book_hotel(trip: Trip) -> Booking:
    print(f"  booking hotel for {trip.traveller}")
    return Booking(f"HT-{trip.traveller}", 45000)


@book_hotel.compensate
async def cancel_hotel(trip: Trip, booking: Booking) -> None:
    print(f"  cancelling hotel {booking.ref}")


@step
def charge_card(trip: Trip, total_cents: int) -> str:
    print(f"  charging {total_cents / 100:.2f}")
    if total_cents > trip.budget_cents:
        raise InsufficientFunds(f"{total_cents} over a budget of {trip.budget_cents}")
    return f"PAY-{trip.traveller}"


@workflow(name="examples.trip")
async def book_trip(trip: Trip) -> list[str]:
    flight = await book_flight(trip)
    hotel = await book_hotel(trip)
    payment = await charge_card(trip, flight.cents + hotel.cents)
    return [flight.ref, hotel.ref, payment]


async def main(url: str) -> int:
    async with Engine(url) as engine:
        print("trip for ada (enough budget):")
        refs = await (
            await engine.start(book_trip, Trip("ada", 100000), run_id="trip-ada")
        ).result()
        print(f"  -> booked {refs}")

        print("trip for bob (too expensive):")
        handle = await engine.start(book_trip, Trip("bob", 50000), run_id="trip-bob")
        try:
            await handle.result()
        except RunFailedError as exc:
            print(f"  -> {exc.status.value}: {exc.cause['message']}")
        for event in await engine.history("trip-bob"):
            print(f"     {event.when:%H:%M:%S.%f} {event.type} {event.data.get('step', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///example.db")))
