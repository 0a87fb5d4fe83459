"""The rule for identifiers: run ids and signal, queue, workflow and step names.

They are checked where the user gives them, before anything reaches a store: a NUL byte
that SQLite accepts but cannot match again, or a lone surrogate that the driver cannot
encode, would otherwise fail far from the call (or fail a whole group-committed batch).
"""

from __future__ import annotations

import re
import reprlib
import unicodedata

MAX_NAME_LENGTH = 255

# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F. Every surrogate in a
# Python str is a lone one: a valid pair is always one code point.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


def shown(value: object) -> str:
    """``repr(value)``, shortened, so that user text is shown literally but not at length."""
    return _repr.repr(value)


def check_name(what: str, value: object) -> str:
    """``value`` if it is a valid identifier, else :class:`InvalidNameError`.

    Valid: a ``str`` of 1 to 255 characters with no control characters (Unicode category
    Cc: NUL, newline, tab, ...) and no lone surrogates.

    Args:
        what: the argument, as the error should name it (``"run id"``, ``"signal name"``).
        value: what the caller gave.
    """
    reason = _problem(value)
    if reason is not None:
        from sagaline.model.errors import InvalidNameError

        raise InvalidNameError(what, value, reason)
    assert isinstance(value, str)
    return value


def _problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"it is {type(value).__name__}, not str"
    if not value:
        return "it is empty"
    if len(value) > MAX_NAME_LENGTH:
        return f"it is {len(value)} characters long"
    bad = _FORBIDDEN.search(value)
    if bad is None:
        return None
    char = bad.group()
    kind = "lone surrogate" if unicodedata.category(char) == "Cs" else "control character"
    return f"it contains the {kind} {char!r} (U+{ord(char):04X}) at index {bad.start()}"
