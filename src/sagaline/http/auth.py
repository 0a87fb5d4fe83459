"""Who is calling: bearer tokens, stored as SHA-256 digests, checked against the store.

A token is 32 random bytes (``secrets``), shown once when created; the store keeps only its
SHA-256 digest, which is the lookup key. Guessing a token is guessing 256 bits, and a
lookup by digest tells a caller nothing about how near a guess was (the digest of a guess
shares no structure with the token's); the digest found is still compared in constant time.
Every request reads the store, with no cache, so a revoked token stops working at once.

The UI's session cookie is a second way to a :class:`Principal` (``via="session"``,
:mod:`sagaline.http.sessions`): the session keeps the token's digest and is checked through
:func:`find_principal` on every request like a bearer token. Requests that change state
through a session must also carry its CSRF token, which bearer requests need not (a
browser never sends a bearer header by itself).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sagaline.model.names import check_name
from sagaline.store.protocol import Store, TokenRecord

TOKEN_PREFIX = "sgl_"


class Role(StrEnum):
    VIEWER = "viewer"
    """Reads runs, workflows and queues."""
    OPERATOR = "operator"
    """Also starts runs and acts on them (cancel, retry, skip, signal)."""
    WORKER = "worker"
    """Only claims task steps and answers them (``/api/v1/tasks``): it reads no run."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    payloads: bool
    """False: payload values (inputs, outputs, signals) are shown as their shapes only."""
    via: str = "bearer"

    @property
    def may_act(self) -> bool:
        return self.role is Role.OPERATOR


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def create_token(store: Store, name: str, role: Role, payloads: bool, at: float) -> str:
    """A new token for ``name``; returns it in clear, the only time it is ever seen.

    Raises:
        InvalidNameError: ``name`` is not a valid name.
        ValueError: a token that is not revoked already has this name.
    """
    check_name("token name", name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = TokenRecord(name, digest(token), role.value, payloads, at)
    if not await store.create_token(record):
        raise ValueError(
            f"a token named {name!r} exists; revoke it first (`sagaline tokens revoke {name}`)"
            f" or choose another name"
        )
    return token


async def authenticate(store: Store, authorization: str | None) -> Principal | None:
    """The principal an ``Authorization: Bearer …`` header proves, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return await check_token(store, token.strip())


async def check_token(store: Store, token: str) -> Principal | None:
    """The principal a token in clear proves (a bearer header's, or one typed to sign in)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return await find_principal(store, digest(token))


async def find_principal(store: Store, wanted: str, via: str = "bearer") -> Principal | None:
    """The principal of the unrevoked token whose digest is ``wanted``, or None."""
    record = await store.find_token(wanted)
    if record is None or not hmac.compare_digest(record.digest, wanted):
        return None
    return Principal(record.name, Role(record.role), record.payloads, via)
