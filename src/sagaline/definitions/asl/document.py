"""Reading a definition (JSON text, a dict or a file) and naming its version.

A run stores its definition whole, and the SHA-256 of its canonical JSON names that
version: two loads of the same document share one parsed copy, and a worker tells a run's
own definition from a newer file with the same machine name.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sagaline.model.errors import DefinitionError

Source = str | os.PathLike[str] | Mapping[str, Any]


def read(definition: Source) -> dict[str, Any]:
    """The definition as a dict, from JSON text, a path or a mapping.

    Raises:
        DefinitionError: the file is missing or the text is not a JSON object.
    """
    if isinstance(definition, Mapping):
        return dict(definition)
    text = text_of(definition)
    where = "the definition" if text is definition else str(definition)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefinitionError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; "
            f"check it with `sagaline asl validate FILE`"
        ) from None
    if not isinstance(doc, dict):
        raise DefinitionError(f"{where} must be a JSON object with StartAt and States")
    return doc


def text_of(definition: str | os.PathLike[str]) -> str:
    """JSON text as given, or read from the file it names."""
    if isinstance(definition, str) and definition.lstrip().startswith("{"):
        return definition
    path = Path(definition)
    try:
        return path.read_text("utf-8")
    except OSError as exc:
        raise DefinitionError(
            f"cannot read the state machine definition {str(path)!r}: {exc.strerror}"
        ) from None


def canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(doc: Mapping[str, Any]) -> str:
    """The definition's version: SHA-256 of its canonical JSON, in hex."""
    return hashlib.sha256(canonical(doc)).hexdigest()
