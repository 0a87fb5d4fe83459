"""JSONPath as ASL uses it: reading paths, writing ``ResultPath``, and ``.$`` templates.

Reads go through ``jsonpath-ng`` (its extended parser: filters, slices, wildcards), except
for plain reference paths (``$.a.b[0]``, ``$['k']``), the vast majority, which are walked
here: faster, and the exact "no such field" rule ASL needs. A path with a wildcard, slice,
filter or descent is *indefinite* and yields a list of matches (possibly empty), as in
AWS (Jayway); a definite path that matches nothing is an error the caller words.

Three roots: ``$`` the state's data, ``$$`` the context object, ``$name`` a variable.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JsonPathParserError
from jsonpath_ng.ext.filter import Filter
from jsonpath_ng.ext.parser import parse as jsonpath_parse
from jsonpath_ng.jsonpath import Descendants, Slice, Wildcard

from sagaline.definitions.asl.errors import RESULT_PATH_MATCH, AslError

Key = str | int

_STEP = re.compile(
    r"""\.(?P<dot>[^.\[\]]+)|\[(?P<index>-?\d+)\]|\[\s*'(?P<sq>(?:[^'\\]|\\.)*)'\s*\]"""
    r"""|\[\s*"(?P<dq>(?:[^"\\]|\\.)*)"\s*\]"""
)
_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class PathMissing(Exception):
    """A definite path matched nothing in the data (``path`` as written)."""

    def __init__(self, path: str, where: str = "", missing: str = "") -> None:
        self.path = path
        self.where = where
        self.missing = missing
        """Jayway's words for it: ``No results for path: $['a']`` or ``Missing property...``."""
        super().__init__(path)


class PathInvalid(Exception):
    """The text is not a JSONPath this interpreter can read."""


def reference(path: str) -> list[Key] | None:
    """The keys of a plain reference path (``$.a['b'][0]``), or None if it is not one."""
    if not path.startswith("$"):
        return None
    keys: list[Key] = []
    pos = 1
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None:
            return None
        if match["dot"] is not None:
            if match["dot"] == "*" or "(" in match["dot"]:
                return None
            keys.append(match["dot"])
        elif match["index"] is not None:
            keys.append(int(match["index"]))
        else:
            if match["sq"] is not None:  # Jayway unescapes only the quote itself
                keys.append(match["sq"].replace("\\'", "'"))
            else:
                keys.append(match["dq"].replace('\\"', '"'))
        pos = match.end()
    return keys


@lru_cache(maxsize=4096)
def _compiled(path: str) -> tuple[JSONPath, bool, bool]:
    """(expression, definite, ends in ``.length()``) for a path jsonpath-ng reads."""
    length = path.endswith(".length()")
    text = path[: -len(".length()")] if length else path
    try:
        expr = jsonpath_parse(text)
    except (JsonPathParserError, Exception) as exc:
        raise PathInvalid(f"invalid JSONPath {path!r}: {exc}") from None
    return expr, _definite(expr), length


def _definite(expr: Any) -> bool:
    # Union by name: importing the class is deprecated in jsonpath-ng.
    if isinstance(expr, Wildcard | Slice | Filter | Descendants) or type(expr).__name__ == "Union":
        return False
    return all(_definite(getattr(expr, side)) for side in ("left", "right") if hasattr(expr, side))


def jayway(keys: list[Key]) -> str:
    return "$" + "".join(f"[{k}]" if isinstance(k, int) else f"['{k}']" for k in keys)


def _has(node: Any, key: Key) -> bool:
    if isinstance(key, int):
        return isinstance(node, list) and -len(node) <= key < len(node)
    return isinstance(node, dict) and key in node


def _walk(keys: list[Key], data: Any, path: str) -> Any:
    node = data
    for i, key in enumerate(keys):
        if _has(node, key):
            node = node[key]
        elif i == len(keys) - 1:
            raise PathMissing(path, missing=f"No results for path: {jayway(keys)}")
        else:
            raise PathMissing(path, missing=f"Missing property in path {jayway(keys[: i + 1])}")
    return node


def read(path: str, data: Any) -> Any:
    """The value at ``path`` in ``data``; a list for an indefinite path.

    Raises:
        PathMissing: a definite path matched nothing.
        PathInvalid: not a path.
    """
    keys = reference(path)
    if keys is not None:
        return _walk(keys, data, path)
    expr, definite, length = _compiled(path)
    found = [match.value for match in expr.find(data)]
    if definite:
        if not found:
            raise PathMissing(path, missing=f"No results for path: {path}")
        value = found[0]
    else:
        value = found
    if length:
        if not isinstance(value, list | str | dict):
            raise PathMissing(path)
        return len(value)
    return value


def resolve(path: str, data: Any, context: Any, variables: Mapping[str, Any]) -> Any:
    """Read ``path`` from its root: ``$$`` context, ``$name`` variable, ``$`` data."""
    try:
        if path.startswith("$$"):
            return read(path[1:], context)
        match = _VARIABLE.match(path)
        if match is not None:
            name = match.group(1)
            if name not in variables:
                raise PathMissing(path, missing=f"No variable ${name}")
            return read("$" + path[match.end() :], variables[name])
        return read(path, data)
    except PathMissing as exc:
        raise PathMissing(path, exc.where, exc.missing) from None


def is_path(text: str) -> bool:
    return text.startswith("$")


def put(data: Any, path: str, value: Any) -> Any:
    """``data`` with ``value`` written at the reference path ``path`` (``ResultPath``).

    The input is copied, never changed: the state's input stays what the history recorded.
    Missing objects on the way are created; a non-object on the way is the ASL error
    ``States.ResultPathMatchFailure``.
    """
    keys = reference(path)
    if keys is None:
        raise PathInvalid(f"ResultPath {path!r} is not a reference path")
    if not keys:
        return value
    root = copy.deepcopy(data)
    node = root
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(key, int):
            if not isinstance(node, list) or not -len(node) <= key < len(node):
                raise _match_failure(path, data)
            if last:
                node[key] = value
            else:
                node = node[key]
            continue
        if not isinstance(node, dict):
            raise _match_failure(path, data)
        if last:
            node[key] = value
        else:
            node = node.setdefault(key, {})
    return root


def _match_failure(path: str, data: Any) -> AslError:
    return AslError(
        RESULT_PATH_MATCH,
        f"Unable to apply ResultPath '{path}' to input '{compact(data)}'",
    )


def compact(value: Any) -> str:
    """JSON text as AWS prints it in messages: no spaces, unicode kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


Resolver = Callable[[str], Any]
Intrinsic = Callable[[str, Resolver], Any]


def render(template: Any, resolve_path: Resolver, intrinsic: Intrinsic, field: str) -> Any:
    """A payload template (``Parameters``, ``ResultSelector``, ``ItemSelector``...).

    Keys ending in ``.$`` take the value of a path or an intrinsic function, under the key
    without its suffix; other values are copied. Raises :class:`PathMissing` with
    ``where`` naming the field (``value.$``), as AWS words the error.
    """
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                try:
                    if value.startswith("States."):
                        out[key[:-2]] = intrinsic(value, resolve_path)
                    else:
                        out[key[:-2]] = resolve_path(value)
                except PathMissing as exc:
                    raise PathMissing(exc.path, exc.where or key) from None
            else:
                out[key] = render(value, resolve_path, intrinsic, field)
        return out
    if isinstance(template, list):
        return [render(item, resolve_path, intrinsic, field) for item in template]
    return template
