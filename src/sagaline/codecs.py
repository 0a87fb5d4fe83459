"""Payload codecs: protect every payload sagaline stores or sends (encryption, compression).

A payload codec runs after JSON encoding, bytes to bytes, as Temporal's ``PayloadCodec``
does; pass one as ``Engine(..., payload_codec=...)``. Shipped: :class:`AesGcm`
(``pip install 'sagaline[crypto]'``), which encrypts each payload and stores the id of its
key with it, so keys rotate without rewriting history. Your own (compression, a KMS) is
any object with ``encode(data: bytes) -> bytes`` and ``decode(data: bytes) -> bytes``
(:class:`PayloadCodec`); :class:`Chain` applies several in turn::

    from sagaline.codecs import AesGcm, Chain

    keys = {"k1": old_key, "k2": new_key}           # 32 random bytes each
    engine = Engine(url, payload_codec=Chain(Compress(), AesGcm(keys, current="k2")))

The command line (``sagaline worker``, ``serve``, ``runs ...``) reads its keys from the
environment (:func:`from_env`)::

    SAGALINE_KEYS=k1:<base64 key>,k2:<base64 key>   # every key still needed to read
    SAGALINE_KEY_CURRENT=k2                         # the key that writes (default: the last)

Make a key with ``python -c "import base64, os; print(base64.b64encode(os.urandom(32))
.decode())"``. Keys are never logged or shown; key ids are stored in the clear.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from sagaline.model.codec import Chain, PayloadCodec, describe
from sagaline.model.crypto import (
    ENV_CURRENT,
    ENV_KEYS,
    AesGcm,
    PayloadCodecError,
    PayloadKeyError,
    PayloadTamperedError,
)

__all__ = [
    "AesGcm",
    "Chain",
    "ENV_CURRENT",
    "ENV_KEYS",
    "PayloadCodec",
    "PayloadCodecError",
    "PayloadKeyError",
    "PayloadTamperedError",
    "describe",
    "from_env",
]


def from_env(environ: Mapping[str, str] | None = None) -> AesGcm | None:
    """The :class:`AesGcm` that ``SAGALINE_KEYS`` and ``SAGALINE_KEY_CURRENT`` describe, or
    None when ``SAGALINE_KEYS`` is unset or empty (payloads are then stored as plain JSON).

    Raises:
        SagalineError: the variables are malformed (the message names the entry, never a
            key's bytes).
    """
    return AesGcm.from_env(os.environ if environ is None else environ)
