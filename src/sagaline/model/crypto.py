"""Encrypted payloads: the frame every one is stored in, and the AES-GCM codec that writes it.

A payload codec (:class:`sagaline.model.codec.PayloadCodec`) turns the JSON the engine
encoded into the bytes it stores or sends. :class:`AesGcm` encrypts each payload with the
*current* key and frames it so that the frame says which key it needs::

    magic     4 bytes   b"\\x00SGL"   no JSON text starts with NUL, so a frame is never
                                      mistaken for a payload written before encryption
    version   1 byte    1             AES-GCM, 96-bit nonce, 128-bit tag
    key id    1 byte length + ASCII   which key decrypts it (never the key itself)
    nonce     12 bytes                random per payload
    sealed    the rest                ciphertext followed by the tag

The header (magic, version, key id) is the associated data: changing the key id or the
version of a frame fails authentication like changing its ciphertext does.

Keys rotate without rewriting history: a payload decodes with the key its frame names, so
an engine given ``keys={"k1": old, "k2": new}, current="k2"`` writes with ``k2`` and still
reads everything written with ``k1``. Bytes without the frame (written before encryption
was turned on) pass through unchanged. A frame whose key is not given, or which does not
authenticate, raises a :class:`PayloadCodecError` naming the key id and what to do; no
message ever contains key material.

The associated data does not bind a payload to the row it is stored in: the engine
legitimately moves payload bytes between places (a consumed signal becomes a step's
result, a child's output its parent's, an outbox body a consumer's input, on another
service), and the codec protocol is bytes to bytes, as Temporal's is. Someone who can
write to the database can therefore swap two encrypted payloads of the same key, but can
neither read nor forge one.

Pure apart from the nonces (``os.urandom``, safe across ``fork``); the ``cryptography``
package is imported when an :class:`AesGcm` is made (``pip install 'sagaline[crypto]'``),
so reading frames (:func:`parse_frame`) never needs it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sagaline.model.errors import PayloadDecodeError, PayloadError, SagalineError

MAGIC = b"\x00SGL"
VERSION_AES_GCM = 1
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = (16, 24, 32)
"""AES-128, -192 and -256; 32 (AES-256) is what :meth:`AesGcm.generate_key` makes."""
MAX_KEY_ID = 64
ENV_KEYS = "SAGALINE_KEYS"
ENV_CURRENT = "SAGALINE_KEY_CURRENT"

_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SOMEWHERE = "a stored payload"


class PayloadCodecError(PayloadDecodeError):
    """A stored payload's protection (encryption, a user's compression) cannot be undone.

    A kind of :class:`PayloadDecodeError`, so the engine treats it as one: the run that
    needs the payload is parked ``BLOCKED`` (nothing is re-executed or compensated), and
    ``sagaline runs retry`` resumes it once the cause is fixed.
    """

    code = "payload_codec_error"

    def __init__(self, detail: str, where: str = _SOMEWHERE) -> None:
        self.detail = detail
        self.type_name = "protected payload"
        self._set_where(where)

    def _text(self) -> str:
        return f"{self.where}: {self.detail}"

    def _set_where(self, where: str) -> None:
        self.where = where
        PayloadError.__init__(self, self._text())

    def located(self, where: str) -> PayloadCodecError:
        """This error, saying which payload it is about (the codec alone cannot know)."""
        self._set_where(where)
        return self


class PayloadKeyError(PayloadCodecError):
    """The payload is encrypted with a key this process was not given."""

    code = "payload_key_unknown"

    def __init__(self, key_id: str, known: Sequence[str] = (), where: str = _SOMEWHERE) -> None:
        self.key_id = key_id
        self.known = tuple(known)
        super().__init__("", where)

    def _text(self) -> str:
        have = (
            f"it has {', '.join(repr(k) for k in self.known)}"
            if self.known
            else f"it has no payload keys: give the engine payload_codec=AesGcm(...), or set "
            f"{ENV_KEYS}"
        )
        return (
            f"{self.where}: the stored value is encrypted with key {self.key_id!r}, which this "
            f"process does not have ({have}); give it that key as well (keep every key as long "
            f"as payloads written with it are stored), then `sagaline runs retry RUN_ID` for a "
            f"run parked on it"
        )


class PayloadTamperedError(PayloadCodecError):
    """The frame does not authenticate: damaged, altered, or the key id names other bytes."""

    code = "payload_tampered"

    def __init__(self, key_id: str | None, reason: str = "", where: str = _SOMEWHERE) -> None:
        self.key_id = key_id
        self.reason = reason
        super().__init__("", where)

    def _text(self) -> str:
        if self.key_id is None:
            return (
                f"{self.where}: the stored value is an encrypted frame that is damaged "
                f"({self.reason}); the stored data is damaged: check it with `sagaline db "
                f"check` and restore it from a backup"
            )
        return (
            f"{self.where}: the stored value, encrypted with key {self.key_id!r}, does not "
            f"authenticate: the stored data is damaged or was altered, or the key this process "
            f"has under the id {self.key_id!r} is not the one it was written with (an id must "
            f"never be reused for other key bytes); compare that key with the writer's, else "
            f"restore the data from a backup"
        )


class Frame(NamedTuple):
    version: int
    key_id: str
    header: bytes
    """Magic, version and key id: the associated data."""
    nonce: bytes
    sealed: bytes


def is_framed(data: bytes) -> bool:
    return data[:4] == MAGIC


def parse_frame(data: bytes) -> Frame | None:
    """The frame of ``data``, or None when ``data`` is not framed (plain JSON).

    Raises:
        PayloadTamperedError: it starts like a frame but is cut short or malformed.
    """
    if not is_framed(data):
        return None
    end = len(MAGIC) + 2
    if len(data) < end:
        raise PayloadTamperedError(None, f"{len(data)} bytes, shorter than a frame header")
    version, size = data[len(MAGIC)], data[len(MAGIC) + 1]
    key_id = data[end : end + size].decode("ascii", "replace")
    if size == 0 or len(data) < end + size + NONCE_BYTES + TAG_BYTES:
        raise PayloadTamperedError(None, f"{len(data)} bytes, cut short")
    if not _KEY_ID.fullmatch(key_id):
        raise PayloadTamperedError(None, "its key id is not valid")
    header = data[: end + size]
    nonce = data[end + size : end + size + NONCE_BYTES]
    return Frame(version, key_id, header, nonce, data[end + size + NONCE_BYTES :])


def header(key_id: str, version: int = VERSION_AES_GCM) -> bytes:
    return MAGIC + bytes((version, len(key_id))) + key_id.encode("ascii")


def check_key_id(key_id: object) -> str:
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise SagalineError(
            f"payload key id {key_id!r} is not valid; use 1 to {MAX_KEY_ID} letters, digits, "
            f"'.', '_' or '-' (it is stored with every payload, in the clear)"
        )
    return key_id


class AesGcm:
    """Encrypts payloads with AES-GCM; rotates keys without rewriting what is stored.

    Args:
        keys: key id -> key (16, 24 or 32 random bytes; 32 recommended, see
            :meth:`generate_key`). Keep every key that wrote payloads still stored; a key
            id must never be given other bytes later.
        current: the id of the key new payloads are written with; may be omitted when
            there is one key.

    Example::

        codec = AesGcm(keys={"k1": old_key, "k2": new_key}, current="k2")
        engine = Engine("sqlite:///orders.db", payload_codec=codec)

    Every payload gets a fresh random 96-bit nonce, so one key should write well under
    2**32 payloads (NIST SP 800-38D); rotate to a new current key long before that.
    """

    def __init__(self, keys: Mapping[str, bytes], current: str | None = None) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise SagalineError(
                "AesGcm needs the cryptography package: pip install 'sagaline[crypto]'"
            ) from exc
        if not keys:
            raise SagalineError("AesGcm needs at least one key")
        if current is None:
            if len(keys) != 1:
                raise SagalineError(
                    f"AesGcm has {len(keys)} keys: say which one writes with current=..."
                )
            current = next(iter(keys))
        self._ciphers: dict[str, Any] = {}
        for key_id, key in keys.items():
            check_key_id(key_id)
            if not isinstance(key, bytes) or len(key) not in KEY_BYTES:
                size = f"{len(key)} bytes" if isinstance(key, bytes) else type(key).__name__
                raise SagalineError(
                    f"payload key {key_id!r} is {size}; AES-GCM takes 16, 24 or 32 bytes "
                    f"(make one with AesGcm.generate_key())"
                )
            self._ciphers[key_id] = AESGCM(key)
        if current not in self._ciphers:
            raise SagalineError(
                f"current key {current!r} is not among the keys "
                f"({', '.join(repr(k) for k in self._ciphers)})"
            )
        self.current = current
        self._header = header(current)
        self._cipher = self._ciphers[current]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def encode(self, data: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed: bytes = self._cipher.encrypt(nonce, data, self._header)
        return b"".join((self._header, nonce, sealed))

    def decode(self, data: bytes) -> bytes:
        frame = parse_frame(data)
        if frame is None:
            return data  # written before encryption was turned on
        if frame.version != VERSION_AES_GCM:
            raise PayloadCodecError(
                f"the stored value is encrypted in frame version {frame.version}, which this "
                f"version of sagaline does not know; upgrade sagaline here to the writer's"
            )
        cipher = self._ciphers.get(frame.key_id)
        if cipher is None:
            raise PayloadKeyError(frame.key_id, self.key_ids)
        from cryptography.exceptions import InvalidTag

        try:
            plain: bytes = cipher.decrypt(frame.nonce, frame.sealed, frame.header)
        except InvalidTag:
            raise PayloadTamperedError(frame.key_id) from None
        return plain

    @staticmethod
    def generate_key() -> bytes:
        """32 random bytes: a new AES-256 key (store it as base64, e.g. in SAGALINE_KEYS)."""
        return os.urandom(32)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AesGcm | None:
        """The codec described by ``environ``, or None when it names no keys.

        ``SAGALINE_KEYS`` lists ``id:base64key`` pairs separated by commas
        (``k1:q2F...,k2:Zm9...``); ``SAGALINE_KEY_CURRENT`` names the key that writes
        (default: the last one listed, so appending a key rotates to it).
        """
        text = environ.get(ENV_KEYS, "").strip()
        if not text:
            return None
        keys: dict[str, bytes] = {}
        for number, item in enumerate(text.split(","), 1):
            key_id, sep, encoded = item.strip().partition(":")
            if not sep:
                raise SagalineError(
                    f"{ENV_KEYS}: entry {number} is not 'id:base64key'; separate entries "
                    f"with commas"
                )
            try:
                keys[check_key_id(key_id)] = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise SagalineError(
                    f"{ENV_KEYS}: the key of {key_id!r} (entry {number}) is not valid base64"
                ) from None
        current = environ.get(ENV_CURRENT, "").strip() or list(keys)[-1]
        return cls(keys, current)

    def __repr__(self) -> str:
        return f"AesGcm(keys={list(self._ciphers)!r}, current={self.current!r})"
