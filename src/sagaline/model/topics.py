"""The rule for topic names, the same on every bus.

A topic is a NATS subject token, an AMQP routing key and a database value at once, so it
is kept to what all three take literally: no wildcards (``*``, ``>``, ``#``), no spaces.
"""

from __future__ import annotations

import re

from sagaline.model.names import check_name

_TOPIC = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")


def check_topic(value: object) -> str:
    """``value`` if it is a valid topic, else :class:`InvalidNameError` saying what is allowed."""
    name = check_name("topic", value)
    if _TOPIC.fullmatch(name) is None:
        from sagaline.model.errors import InvalidNameError

        raise InvalidNameError(
            "topic",
            name,
            "a topic is letters, digits, '_' and '-', in words joined by single dots "
            "(like 'OrderCreated' or 'orders.created'); no wildcards or spaces",
        )
    return name
