"""The JSONata query language (``"QueryLanguage": "JSONata"``), on ``jsonata-python``.

``jsonata-python`` is a maintained, pure-Python port of the reference implementation (no
JavaScript runtime to ship). Two things are adapted here: JSON ``null`` and JSONata's
*undefined* must stay apart (AWS fails a field whose expression returns nothing), so the
library's null marker is used on the way in and out; and the functions AWS adds
(``$partition``, ``$range``, ``$hash``, ``$random``, ``$uuid``, ``$parse``) plus the
clock functions are bound per evaluation, with the randomness and time of the run, so a
durable run replays the same values.
"""

from __future__ import annotations

import json
import random as random_module
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

import jsonata  # type: ignore[import-untyped]
from jsonata.utils import Utils  # type: ignore[import-untyped]

from sagaline.definitions.asl import intrinsics
from sagaline.definitions.asl.errors import QUERY_EVALUATION, AslError

UNDEFINED: Any = object()
"""What an expression that returned nothing evaluates to (distinct from JSON null)."""


class JsonataFailed(Exception):
    """The expression threw; ``detail`` is the library's message (with its code)."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("{%") and value.endswith("%}")


def expression_text(value: str) -> str:
    return value[2:-2].strip()


@lru_cache(maxsize=2048)
def _compiled(text: str) -> Any:
    try:
        expr = jsonata.Jsonata(text)
    except Exception as exc:
        raise JsonataFailed(str(exc)) from None
    expr.set_output_convert_nulls(False)
    return expr


def to_jsonata(value: Any) -> Any:
    if value is None:
        return Utils.NULL_VALUE
    if isinstance(value, dict):
        return {k: to_jsonata(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_jsonata(v) for v in value]
    return value


def from_jsonata(value: Any) -> Any:
    if value is None:
        return UNDEFINED
    if value is Utils.NULL_VALUE:
        return None
    if isinstance(value, dict):
        return {k: from_jsonata(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [from_jsonata(v) for v in value if v is not None]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _functions(entropy: intrinsics.Entropy, now: Callable[[], datetime]) -> dict[str, Any]:
    def partition(items: Any, size: Any) -> Any:
        return intrinsics._partition(entropy, list(items), size)

    def range_(start: Any, end: Any, step: Any) -> Any:
        values = intrinsics._range(entropy, start, end, step)
        return values[0] if len(values) == 1 else values  # a JSONata singleton sequence

    def hash_(data: Any, algorithm: Any) -> Any:
        return intrinsics._hash(entropy, data, algorithm)

    def random(seed: Any = None) -> float:
        if seed is not None:
            return random_module.Random(seed).random()
        return entropy.random()

    def parse(text: Any) -> Any:
        return to_jsonata(json.loads(text))

    def now_() -> str:
        return now().isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def millis() -> int:
        return int(now().timestamp() * 1000)

    table: dict[str, Callable[..., Any]] = {
        "partition": partition,
        "range": range_,
        "hash": hash_,
        "random": random,
        "uuid": entropy.uuid,
        "parse": parse,
        "now": now_,
        "millis": millis,
    }
    return {name: jsonata.Jsonata.JLambda(fn) for name, fn in table.items()}


def evaluate(
    text: str,
    states: Mapping[str, Any],
    variables: Mapping[str, Any],
    entropy: intrinsics.Entropy,
    now: Callable[[], datetime],
) -> Any:
    """The value of ``text`` (without ``{% %}``); ``UNDEFINED`` if it returned nothing.

    Raises:
        JsonataFailed: the expression does not parse or threw while evaluating.
    """
    expr = _compiled(text)
    bindings: dict[str, Any] = {k: to_jsonata(v) for k, v in variables.items()}
    bindings.update(_functions(entropy, now))
    bindings["states"] = to_jsonata(dict(states))
    try:
        result = expr.evaluate(None, bindings)
    except Exception as exc:
        raise JsonataFailed(str(exc)) from None
    if not _plain(result):
        raise AslError(QUERY_EVALUATION, "unsupported result type")
    return from_jsonata(result)


def _plain(value: Any) -> bool:
    """Is ``value`` JSON (or the library's null / undefined), not a function or a node?"""
    if value is None or value is Utils.NULL_VALUE or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, dict):
        return all(_plain(v) for v in value.values())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return False


def render(template: Any, evaluate_one: Callable[[str, str], Any], field: str) -> Any:
    """A JSONata template: every ``{% %}`` string inside objects and arrays evaluated.

    ``evaluate_one(text, field)`` words its own errors with the field's path
    (``Output/result``), as AWS does.
    """
    if is_expression(template):
        return evaluate_one(expression_text(template), field)
    if isinstance(template, dict):
        return {
            key: render(value, evaluate_one, f"{field}/{key}") for key, value in template.items()
        }
    if isinstance(template, list):
        return [render(item, evaluate_one, field) for item in template]
    return template
