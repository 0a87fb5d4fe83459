"""ASL intrinsic functions (``States.Format('{}', $.x)`` and the rest), parsed and run.

No maintained package implements them, so the grammar is parsed here: a call is
``States.Name(arg, ...)``; an argument is a quoted string (``\\'``, ``\\{``, ``\\}`` and
``\\\\`` escapes), a number, ``true``/``false``/``null``, a path (``$.x``, ``$$.x``,
``$var``) or a nested call. ``States.UUID`` and ``States.MathRandom`` take their
randomness from the caller (``Entropy``), so that a durable run replays the same values.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random as random_module
import re
import uuid as uuid_module
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sagaline.definitions.asl.errors import INTRINSIC_FAILURE, AslError
from sagaline.definitions.asl.paths import Resolver, compact

_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")
_NAME = re.compile(r"States\.[A-Za-z0-9]+")


@dataclass
class Entropy:
    """Where ``States.UUID`` and ``States.MathRandom`` get their values."""

    uuid: Callable[[], str] = field(default=lambda: str(uuid_module.uuid4()))
    random: Callable[[], float] = field(default=random_module.random)


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class _Path:
    text: str


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> AslError:
        return AslError(INTRINSIC_FAILURE, f"invalid intrinsic function {self.text!r}: {why}")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def call(self) -> _Call:
        self.skip()
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a States.* function")
        self.pos = match.end()
        self.skip()
        if self.text[self.pos : self.pos + 1] != "(":
            raise self.fail("expected '('")
        self.pos += 1
        args: list[Any] = []
        self.skip()
        if self.text[self.pos : self.pos + 1] == ")":
            self.pos += 1
            return _Call(match.group(), ())
        while True:
            args.append(self.arg())
            self.skip()
            char = self.text[self.pos : self.pos + 1]
            self.pos += 1
            if char == ")":
                return _Call(match.group(), tuple(args))
            if char != ",":
                raise self.fail("expected ',' or ')'")

    def arg(self) -> Any:
        self.skip()
        rest = self.text[self.pos :]
        if rest.startswith("'"):
            return self.string()
        if rest.startswith("States."):
            return self.call()
        if rest.startswith("$"):
            return self.path()
        for word, value in (("true", True), ("false", False), ("null", None)):
            if rest.startswith(word):
                self.pos += len(word)
                return value
        match = _NUMBER.match(self.text, self.pos)
        if match is None:
            raise self.fail(f"unexpected argument at {rest[:20]!r}")
        self.pos = match.end()
        number = match.group()
        return float(number) if match.group(1) or match.group(2) else int(number)

    def string(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append("\\" + self.text[self.pos + 1])  # kept for Format's {} rule
                self.pos += 2
                continue
            if char == "'":
                self.pos += 1
                return "".join(out)
            out.append(char)
            self.pos += 1
        raise self.fail("unterminated string")

    def path(self) -> _Path:
        start, depth = self.pos, 0
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in "[(":
                depth += 1
            elif char in "])":
                if depth == 0:
                    break
                depth -= 1
            elif char == "," and depth == 0:
                break
            self.pos += 1
        return _Path(self.text[start : self.pos].strip())


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _parse(text: str) -> _Call:
    parser = _Parser(text)
    call = parser.call()
    parser.skip()
    if parser.pos != len(text):
        raise parser.fail("unexpected text after the call")
    return call


def known(name: str) -> bool:
    return name == "States.Format" or name in _FUNCTIONS


def evaluate(text: str, resolve_path: Resolver, entropy: Entropy | None = None) -> Any:
    """The value of the intrinsic call ``text``; paths are read with ``resolve_path``."""
    return _run(_parse(text), resolve_path, entropy or Entropy())


def _run(call: _Call, resolve_path: Resolver, entropy: Entropy) -> Any:
    args: list[Any] = []
    for arg in call.args:
        if isinstance(arg, _Call):
            args.append(_run(arg, resolve_path, entropy))
        elif isinstance(arg, _Path):
            args.append(resolve_path(arg.text))
        else:
            args.append(arg)
    if call.name == "States.Format":
        return _format(call.args[0] if call.args else None, args)
    args = [
        _unescape(a) if isinstance(a, str) and isinstance(b, str) else a
        for a, b in zip(args, call.args, strict=True)
    ]
    function = _FUNCTIONS.get(call.name)
    if function is None:
        raise AslError(INTRINSIC_FAILURE, f"unknown intrinsic function {call.name}")
    try:
        return function(entropy, *args)
    except AslError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError) as exc:
        raise AslError(INTRINSIC_FAILURE, f"{call.name} failed: {exc}") from None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else compact(value)


def _java(value: Any) -> str:
    """A value as AWS's States.Format prints it: Java's ``toString`` of maps and lists."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_java(v) for v in value) + "]"
    return compact(value)


def _format(raw: Any, args: list[Any]) -> str:
    if not args or not isinstance(args[0], str):
        raise AslError(INTRINSIC_FAILURE, "States.Format needs a template string first")
    # Escapes are a literal's: a template read from a path is taken as it is.
    pattern = r"(\\.|\{\})" if isinstance(raw, str) else r"(\{\})"
    pieces = re.split(pattern, args[0])
    values = iter(args[1:])
    out: list[str] = []
    for piece in pieces:
        if piece == "{}":
            try:
                out.append(_java(next(values)))
            except StopIteration:
                raise AslError(
                    INTRINSIC_FAILURE, "States.Format has more {} than arguments"
                ) from None
        elif piece.startswith("\\"):
            out.append(piece[1:])
        else:
            out.append(piece)
    return "".join(out)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AslError(INTRINSIC_FAILURE, f"{what} must be an integer, not {compact(value)}")
    return math.floor(value + 0.5)  # Java's Math.round, as AWS rounds a number argument


def _partition(_: Entropy, items: list[Any], size: Any) -> list[list[Any]]:
    n = _int(size, "chunk size")
    if n <= 0:
        raise AslError(INTRINSIC_FAILURE, "chunk size must be positive")
    return [items[i : i + n] for i in range(0, len(items), n)]


def _range(_: Entropy, start: Any, end: Any, step: Any) -> list[int]:
    first, last, by = _int(start, "start"), _int(end, "end"), _int(step, "step")
    if by == 0:
        raise AslError(INTRINSIC_FAILURE, "step must not be 0")
    values = list(range(first, last + (1 if by > 0 else -1), by))
    if len(values) > 1000:
        raise AslError(INTRINSIC_FAILURE, "States.ArrayRange returns at most 1000 items")
    return values


def _unique(_: Entropy, items: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if not any(item == s and type(item) is type(s) for s in seen):
            seen.append(item)
    return seen


_HASHES = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


def _hash(_: Entropy, data: Any, algorithm: str) -> str:
    if algorithm not in _HASHES:
        raise AslError(INTRINSIC_FAILURE, f"unsupported hash algorithm {algorithm!r}")
    return hashlib.new(_HASHES[algorithm], _text(data).encode()).hexdigest()


def _merge(_: Entropy, left: Any, right: Any, deep: Any) -> dict[str, Any]:
    if deep is not False:
        raise AslError(INTRINSIC_FAILURE, "States.JsonMerge supports only a shallow merge")
    if not isinstance(left, dict) or not isinstance(right, dict):
        raise AslError(INTRINSIC_FAILURE, "States.JsonMerge merges two objects")
    return {**left, **right}


def _random(entropy: Entropy, start: Any, end: Any, seed: Any = None) -> int:
    low, high = _int(start, "start"), _int(end, "end")
    if seed is not None:
        return random_module.Random(_int(seed, "seed")).randrange(low, high)
    return low + math.floor(entropy.random() * (high - low))


def _split(_: Entropy, text: str, delimiters: str) -> list[str]:
    if not isinstance(text, str) or not isinstance(delimiters, str):
        raise AslError(INTRINSIC_FAILURE, "States.StringSplit splits a string by a string")
    pattern = "[" + re.escape(delimiters) + "]" if delimiters else None
    parts = re.split(pattern, text) if pattern else [text]
    return [part for part in parts if part]


def _get_item(_: Entropy, items: list[Any], index: Any) -> Any:
    i = _int(index, "index")
    if not isinstance(items, list) or not 0 <= i < len(items):
        raise AslError(INTRINSIC_FAILURE, f"index {i} is out of range")
    return items[i]


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "States.StringToJson": lambda _, s: json.loads(s) if s.strip() else None,
    "States.JsonToString": lambda _, v: compact(v),
    "States.Array": lambda _, *items: list(items),
    "States.ArrayPartition": _partition,
    "States.ArrayContains": lambda _, items, v: any(v == i and type(v) is type(i) for i in items),
    "States.ArrayRange": _range,
    "States.ArrayGetItem": _get_item,
    "States.ArrayLength": lambda _, items: len(items),
    "States.ArrayUnique": _unique,
    "States.Base64Encode": lambda _, s: base64.b64encode(s.encode()).decode(),
    "States.Base64Decode": lambda _, s: base64.b64decode(s.encode()).decode(),
    "States.Hash": _hash,
    "States.JsonMerge": _merge,
    "States.MathRandom": _random,
    "States.MathAdd": lambda _, a, b: _int(a, "value") + _int(b, "step"),
    "States.StringSplit": _split,
    "States.UUID": lambda entropy: entropy.uuid(),
}
