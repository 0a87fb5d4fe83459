"""Identifiers that sort by creation time (UUID version 7, RFC 9562, as 32 hex digits).

A random UUID (version 4) lands each new run on a random leaf of every index keyed by run
id (the runs' primary key, the steps' key, the events by run), so a group commit of a
hundred runs rewrites a hundred scattered pages of each index. Ids that begin with the
creation time put a batch's new rows side by side on the right edge of those indexes. The
74 random bits after the millisecond timestamp keep them unguessable and unique.
"""

from __future__ import annotations

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_MS = (1 << 48) - 1
_RAND_A = (1 << 12) - 1
_RAND_B = (1 << 62) - 1


def uuid7_hex(unix_ms: int, entropy: bytes) -> str:
    """The UUIDv7 of ``unix_ms`` and 10 bytes of ``entropy``, as 32 lowercase hex digits
    (the form run ids always had); the caller reads the clock and the randomness."""
    if len(entropy) != 10:
        raise ValueError(f"uuid7_hex needs 10 bytes of entropy, got {len(entropy)}")
    rand = int.from_bytes(entropy, "big")
    value = (
        (unix_ms & _MS) << 80
        | _VERSION
        | ((rand >> 62) & _RAND_A) << 64
        | _VARIANT
        | (rand & _RAND_B)
    )
    return f"{value:032x}"
