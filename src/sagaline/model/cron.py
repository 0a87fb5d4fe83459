"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC.

Supports ``*``, ``*/n``, ``a-b``, ``a-b/n`` and lists. As in cron, when both day fields
are restricted a day matches if either does. Pure: times in, times out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sagaline.model.errors import DefinitionError

_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
_NAMES = ["minute", "hour", "day of month", "month", "day of week"]


def _field(text: str, lo: int, hi: int, what: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = lo, hi
        elif "-" in body:
            a, b = body.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = end = int(body)
        if step < 1 or not lo <= start <= end <= hi:
            raise ValueError(f"{what} {part!r} is outside {lo}-{hi}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        fields = expression.split()
        try:
            if len(fields) != 5:
                raise ValueError(f"it has {len(fields)} fields, not 5")
            parsed = [
                _field(f.replace("7", "0") if i == 4 else f, *_RANGES[i], _NAMES[i])
                for i, f in enumerate(fields)
            ]
        except ValueError as exc:
            raise DefinitionError(
                f"bad cron schedule {expression!r}: {exc}; write 'minute hour day month "
                f"weekday', e.g. '*/5 * * * *'"
            ) from exc
        minutes, hours, days, months, weekdays = parsed
        return cls(
            expression, minutes, hours, days, months, weekdays, fields[2] == "*", fields[4] == "*"
        )

    def _day_matches(self, t: datetime) -> bool:
        weekday = (t.weekday() + 1) % 7  # cron counts from Sunday = 0
        day_ok, weekday_ok = t.day in self.days, weekday in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def matches(self, t: datetime) -> bool:
        return (
            t.minute in self.minutes
            and t.hour in self.hours
            and t.month in self.months
            and self._day_matches(t)
        )

    def previous(self, at: datetime) -> datetime | None:
        """The latest fire time at or before ``at`` (within the past ~4 years)."""
        t = at.astimezone(UTC).replace(second=0, microsecond=0)
        for _ in range(4 * 366 * 24 * 60):
            if t.month not in self.months or not self._day_matches(t):
                t = t.replace(hour=0, minute=0) - timedelta(minutes=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) - timedelta(minutes=1)
            elif t.minute not in self.minutes:
                t -= timedelta(minutes=1)
            else:
                return t
        return None

    def next(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (within the next ~4 years)."""
        t = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(4 * 366 * 24 * 60):
            if t.month not in self.months or not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        return None
