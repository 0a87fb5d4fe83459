"""ASGI middleware around every response: security headers, authentication, body limit.

Pure ASGI (no ``BaseHTTPMiddleware``), outermost first: :class:`SecurityHeaders` wraps the
whole application, so even a 500 or a refusal below carries the headers; :class:`Guard`
denies every request without a valid token except the public paths; :class:`BodyLimit`
refuses a body over the limit before a handler buffers it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sagaline.http import problems
from sagaline.http.auth import authenticate
from sagaline.http.problems import Problem
from sagaline.store.protocol import Store

log = logging.getLogger("sagaline.http")

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]


def api_policy(path: str) -> str:
    """The Content-Security-Policy for a path; the UI's pages will get their own."""
    return API_CSP


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

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                added = [(n, v) for n, v in HEADERS if n not in names]
                message["headers"] = [
                    *message.get("headers", []),
                    *added,
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
    """Deny by default: every path but ``public`` needs a valid bearer token."""

    def __init__(
        self, app: ASGIApp, store: Callable[[], Store], public: Collection[str] = ("/healthz",)
    ) -> None:
        self.app = app
        self.store = store
        self.public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public:
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
        principal = await authenticate(self.store(), header)
        if principal is None:
            detail = (
                "this endpoint needs `Authorization: Bearer <token>` with a valid token; "
                "create one with `sagaline tokens create NAME --role viewer|operator`"
            )
            problem = Problem(401, "unauthenticated", detail)
            await send_problem(send, problem, scope["path"], [(b"www-authenticate", b"Bearer")])
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


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
