"""ASGI middleware around every response: security headers, authentication, body limit.

Pure ASGI (no ``BaseHTTPMiddleware``), outermost first: :class:`SecurityHeaders` wraps the
whole application, so even a 500 or a refusal below carries the headers; :class:`Guard`
denies every request without a valid token or session except the public paths;
:class:`BodyLimit` refuses a body over the limit before a handler buffers it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sagaline.http import problems
from sagaline.http.auth import Principal, authenticate, find_principal
from sagaline.http.problems import Problem
from sagaline.http.sessions import COOKIE, Session, Sessions, same
from sagaline.store.protocol import Store

log = logging.getLogger("sagaline.http")

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The pages load only their own stylesheet and script: no inline script or style (the
# diagram's SVG is styled by classes), so injected markup could not run even if it escaped.
UI_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SIGN_IN = "/signin"


def is_api(path: str) -> bool:
    """Paths for programs (JSON, metrics): refused with 401, never sent to the sign-in page."""
    return path == "/api" or path.startswith("/api/") or path in ("/metrics", "/healthz")


def api_policy(path: str) -> str:
    """The Content-Security-Policy for a path: none at all for the API, self for the UI."""
    return API_CSP if is_api(path) else UI_CSP


async def send_problem(
    send: Send, problem: Problem, path: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    data = problems.body(problem, path)
    headers = [
        (b"content-type", problems.PROBLEM_JSON.encode()),
        (b"content-length", str(len(data)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class SecurityHeaders:
    def __init__(self, app: ASGIApp, policy: Callable[[str], str] = api_policy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = self.policy(scope["path"]).encode()
        # A page's forms need the browser to send its Origin, which Chromium replaces by
        # "null" under no-referrer; same-origin still tells other sites nothing.
        referrer = b"no-referrer" if is_api(scope["path"]) else b"same-origin"

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                added = [(n, v) for n, v in HEADERS if n not in names]
                message["headers"] = [
                    *message.get("headers", []),
                    *added,
                    (b"referrer-policy", referrer),
                    (b"content-security-policy", csp),
                ]
            await send(message)

        try:
            await self.app(scope, receive, secured)
        except Exception:
            # Starlette's error handler has answered already (a 500 problem). Logged here
            # with the method and path only: never the request's headers, which hold the
            # token.
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])


class Guard:
    """Deny by default: every path but ``public`` needs a valid bearer token or session.

    A session (the UI's cookie) is checked against the store on every request, like a
    token. A state-changing request made with it must come from this origin and, for the
    API, carry the session's CSRF token in ``x-csrf-token``; the UI's form handlers check
    the token in the form (it is in the body, which is theirs to read).
    """

    def __init__(
        self,
        app: ASGIApp,
        store: Callable[[], Store],
        sessions: Sessions,
        public: Collection[str] = ("/healthz",),
        public_prefixes: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.store = store
        self.sessions = sessions
        self.public = frozenset(public)
        self.public_prefixes = tuple(public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path in self.public or path.startswith(self.public_prefixes):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        principal, session = await self.identify(headers)
        if principal is None:
            await self.refuse_anonymous(scope, send)
            return
        if session is not None and scope["method"] not in SAFE_METHODS:
            problem = forged(headers, session, is_api(path))
            if problem is not None:
                await send_problem(send, problem, path)
                return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        state["session"] = session
        await self.app(scope, receive, send)

    async def identify(self, headers: Headers) -> tuple[Principal | None, Session | None]:
        principal = await authenticate(self.store(), headers.get("authorization"))
        if principal is not None:
            return principal, None
        session = self.sessions.get(cookie_parser(headers.get("cookie", "")).get(COOKIE))
        if session is None:
            return None, None
        principal = await find_principal(self.store(), session.digest, via="session")
        if principal is None:  # its token was revoked: the session ends with it
            self.sessions.close(session.id)
            return None, None
        return principal, session

    async def refuse_anonymous(self, scope: Scope, send: Send) -> None:
        path: str = scope["path"]
        if not is_api(path) and scope["method"] in ("GET", "HEAD"):
            query = scope.get("query_string", b"").decode("latin-1")
            back = quote(path + (f"?{query}" if query else ""), safe="")
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [
                        (b"location", f"{SIGN_IN}?next={back}".encode()),
                        (b"content-length", b"0"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        detail = (
            "this endpoint needs `Authorization: Bearer <token>` with a valid token (or, in "
            "a browser, a session: sign in at /signin); create a token with "
            "`sagaline tokens create NAME --role viewer|operator`"
        )
        problem = Problem(401, "unauthenticated", detail)
        await send_problem(send, problem, path, [(b"www-authenticate", b"Bearer")])


def forged(headers: Headers, session: Session, api: bool) -> Problem | None:
    """Why a state-changing request made with a session is refused, or None."""
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != headers.get("host"):
        return Problem(403, "csrf", "a request from another site may not act with this session")
    if api and not same(headers.get("x-csrf-token"), session.csrf):
        return Problem(
            403, "csrf", "a request made with a session must carry its CSRF token (x-csrf-token)"
        )
    return None


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413, announced or streamed.

    The body is read here, up to the limit, before the application sees the request, and
    then handed on whole: the API's bodies are small JSON documents.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = Problem(
            413,
            "body_too_large",
            f"the request body is over the limit of {self.limit} bytes",
            limit=self.limit,
        )
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await send_problem(send, too_large, scope["path"])
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await send_problem(send, too_large, scope["path"])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
