"""Choice rules: the JSONPath comparison operators, ``And``/``Or``/``Not``.

Types must match for a comparison to be true (a number is never ``StringEquals``, a
boolean never numeric); timestamps compare as instants and a string that is not one makes
the comparison false, as AWS does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sagaline.definitions.asl import paths

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
MISSING: Any = object()

Reader = Callable[[str], Any]


def timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (``2016-03-14T01:59:00Z``), or None if ``value`` is not one."""
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        return None
    text = value.replace("Z", "+00:00")
    if "." in text:  # Python takes at most 6 fraction digits
        head, rest = text.split(".", 1)
        digits = re.match(r"\d+", rest)
        assert digits is not None
        text = head + "." + digits.group()[:6].ljust(6, "0") + rest[digits.end() :]
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _matches(value: str, pattern: str) -> bool:
    parts = re.split(r"(\\\\|\\\*|\*)", pattern)
    regex = "".join(
        ".*" if p == "*" else re.escape(p[1]) if p in ("\\*", "\\\\") else re.escape(p)
        for p in parts
    )
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _compare(kind: str, op: str, left: Any, right: Any) -> bool:
    if kind == "String":
        if not isinstance(left, str) or not isinstance(right, str):
            return False
        if op == "Matches":
            return _matches(left, right)
        a: Any = left
        b: Any = right
    elif kind == "Numeric":
        if not _number(left) or not _number(right):
            return False
        a, b = left, right
    elif kind == "Boolean":
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    else:
        a, b = timestamp(left), timestamp(right)
        if a is None or b is None:
            return False
    outcome: bool = {
        "Equals": a == b,
        "LessThan": a < b,
        "GreaterThan": a > b,
        "LessThanEquals": a <= b,
        "GreaterThanEquals": a >= b,
    }[op]
    return outcome


_COMPARISON = re.compile(
    r"^(String|Numeric|Boolean|Timestamp)"
    r"(Equals|LessThanEquals|GreaterThanEquals|LessThan|GreaterThan|Matches)(Path)?$"
)
_TESTS: dict[str, Callable[[Any], bool]] = {
    "IsNull": lambda v: v is None,
    "IsPresent": lambda v: v is not MISSING,
    "IsNumeric": _number,
    "IsString": lambda v: isinstance(v, str),
    "IsBoolean": lambda v: isinstance(v, bool),
    "IsTimestamp": lambda v: timestamp(v) is not None,
}


def operator_of(rule: Mapping[str, Any]) -> str | None:
    """The comparison operator a rule uses, if any."""
    for key in rule:
        if key in _TESTS or _COMPARISON.match(key):
            return key
    return None


def evaluate(rule: Mapping[str, Any], read: Reader) -> bool:
    """Does ``rule`` hold? ``read(path)`` reads a path (raises PathMissing if absent)."""
    if "And" in rule:
        return all(evaluate(r, read) for r in rule["And"])
    if "Or" in rule:
        return any(evaluate(r, read) for r in rule["Or"])
    if "Not" in rule:
        return not evaluate(rule["Not"], read)
    op = operator_of(rule)
    if op is None:
        raise ValueError("a choice rule needs a comparison operator")
    try:
        value = read(rule["Variable"])
    except paths.PathMissing:
        value = MISSING
    if op in _TESTS:
        expected = rule[op]
        if op == "IsPresent":
            return _TESTS[op](value) is bool(expected)
        if value is MISSING:
            raise paths.PathMissing(rule["Variable"])
        return _TESTS[op](value) is bool(expected)
    if value is MISSING:
        raise paths.PathMissing(rule["Variable"])
    match = _COMPARISON.match(op)
    assert match is not None
    kind, name, by_path = match.groups()
    right = read(rule[op]) if by_path else rule[op]
    return _compare(kind, name, value, right)
