"""XML text the SVG and BPMN writers share: user strings made safe, documents serialised.

ElementTree escapes ``<``, ``&`` and quotes, but writes control characters as they are, and
XML 1.0 forbids most of them: a state name holding a ``\\x07`` would make the whole
document unreadable. They are shown as visible escapes instead, like ``repr`` would.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def clean(value: str) -> str:
    """``value`` with the characters XML 1.0 cannot hold written as ``\\xNN``/``\\uNNNN``."""
    return _ILLEGAL.sub(lambda m: repr(m.group())[1:-1], value)


def serialize(root: ET.Element, declaration: bool = True) -> str:
    """The document, indented (diffs of committed diagrams stay readable), with an XML
    declaration unless it is to be embedded in another document."""
    ET.indent(root)
    head = '<?xml version="1.0" encoding="UTF-8"?>\n' if declaration else ""
    return head + ET.tostring(root, encoding="unicode") + "\n"
