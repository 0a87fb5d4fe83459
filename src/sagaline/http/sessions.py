"""The web UI's sessions: an opaque id in a cookie, everything else kept in the server.

A browser never holds the token it signed in with: the cookie carries 32 random bytes that
mean something only to this process, which maps them to the token's digest. Each request
looks that digest up in the store again (as a bearer request does), so revoking the token
ends every session opened with it at once. Sessions live in memory: a restart signs
everyone out, which costs a sign-in and keeps no secret on disk.

Each session has its own CSRF token, which every state-changing request made with the
session must echo (a form field or the ``x-csrf-token`` header). A cookie is sent by the
browser on its own; the CSRF token only by a page this server rendered.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

COOKIE = "sagaline_session"
SIGNIN_COOKIE = "sagaline_signin"
"""A random value the sign-in form echoes: a page on another site cannot sign a browser
in with the attacker's token (login CSRF), as it can neither read nor set this cookie."""
LIFETIME = 12 * 3600.0
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    digest: str
    """The SHA-256 digest of the token signed in with (the store's key), never the token."""
    csrf: str
    expires: float
    flash: list[tuple[bool, str]] = field(default_factory=list)
    """Results of actions (succeeded?, message), shown once on the next page: for browsers
    without JavaScript, which follow a redirect after acting."""


def same(given: str | None, wanted: str) -> bool:
    """Constant-time comparison of a submitted secret with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), wanted.encode())


class Sessions:
    """Open sessions by id, oldest first; expired ones are dropped as they are met."""

    def __init__(self, lifetime: float = LIFETIME, limit: int = MAX_SESSIONS) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self._open: OrderedDict[str, Session] = OrderedDict()

    def open(self, digest: str) -> Session:
        """A new session for the token with ``digest``: a fresh id on every sign-in, so an
        id planted in a browser before it signed in is worth nothing after."""
        now = time.time()
        while self._open and (
            len(self._open) >= self.limit or next(iter(self._open.values())).expires < now
        ):
            self._open.popitem(last=False)
        session = Session(
            secrets.token_urlsafe(32), digest, secrets.token_urlsafe(32), now + self.lifetime
        )
        self._open[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._open.get(session_id)
        if session is None:
            return None
        if session.expires < time.time():
            self.close(session_id)
            return None
        return session

    def close(self, session_id: str) -> None:
        self._open.pop(session_id, None)
