"""Run the application on uvicorn: bind first (a taken port is one clear error), serve until
SIGINT or SIGTERM, then finish the requests in flight and close the engine."""

from __future__ import annotations

import errno
import logging
import socket

import uvicorn

from sagaline.engine.engine import Engine
from sagaline.http.app import create_app
from sagaline.http.limits import DEFAULT_MAX_BODY_BYTES
from sagaline.model.errors import SagalineError

GRACE_SECONDS = 10.0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a SagalineError that says what to do when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose protocol
    # says TCP, and without it Nagle holds each response's body behind its headers for the
    # client's delayed ACK (~40 ms on every request of a kept-alive connection).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SagalineError(
                f"port {port} on {host} is already in use; stop what listens there or "
                f"choose another with --port"
            ) from None
        raise SagalineError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    return sock


async def serve(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 8080,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Serve ``engine``'s API and UI until signalled; the app opens and closes the engine."""
    sock = bind(host, port)
    config = uvicorn.Config(
        create_app(engine, max_body_bytes=max_body_bytes, stopping=lambda: server.should_exit),
        lifespan="on",
        log_level="info",
        timeout_graceful_shutdown=int(GRACE_SECONDS),
        server_header=False,
    )
    server = uvicorn.Server(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise SagalineError("the server did not start; see the log above")
