"""The four buses the suite runs on, each with a fresh namespace per test.

``bus_url(kind)`` gives a URL no other test uses; ``cleanup(url)`` removes what the test
left on a shared broker (a stream, an exchange and its queues, a schema). The machine's
brokers are only ever used through such private namespaces: never stopped or
reconfigured. Outage tests put a :class:`tests.proxy.Proxy` in between instead.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path

from tests.conftest import POSTGRES_URL, missing_service, require_postgres

BUSES = ["embedded-sqlite", "embedded-postgres", "nats", "rabbitmq"]
NATS_URL = os.environ.get("SAGALINE_TEST_NATS_URL", "nats://127.0.0.1:4222")
AMQP_URL = os.environ.get("SAGALINE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _reachable(url: str, default_port: int) -> bool:
    rest = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = rest.partition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or default_port)), 3):
            return True
    except OSError:
        return False


def require(kind: str) -> None:
    if kind == "embedded-postgres":
        require_postgres()
    elif kind == "nats" and not _reachable(NATS_URL, 4222):
        missing_service(
            f"NATS is unreachable at {NATS_URL}; start nats-server -js (the README's "
            f"'Choreography' section says how) or set SAGALINE_TEST_NATS_URL"
        )
    elif kind == "rabbitmq" and not _reachable(AMQP_URL, 5672):
        missing_service(
            f"RabbitMQ is unreachable at {AMQP_URL}; start rabbitmq-server (the README's "
            f"'Choreography' section says how) or set SAGALINE_TEST_AMQP_URL"
        )


def _with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


def bus_url(kind: str, tmp_path: Path) -> str:
    """A URL on a namespace of its own (created on first open)."""
    require(kind)
    tag = uuid.uuid4().hex[:12]
    if kind == "embedded-sqlite":
        return f"sqlite:///{tmp_path / f'bus-{tag}.db'}"
    if kind == "embedded-postgres":
        return _with_query(POSTGRES_URL, schema=f"bus_{tag}")
    if kind == "nats":
        return _with_query(NATS_URL, stream=f"T{tag}", prefix=f"t{tag}")
    if kind == "rabbitmq":
        return _with_query(AMQP_URL, exchange=f"t{tag}")
    raise ValueError(kind)


def cleanup(kind: str, url: str) -> None:
    """Remove the namespace ``url`` made on a shared broker (best effort)."""
    if kind == "embedded-postgres":
        import asyncpg

        schema = url.rsplit("schema=", 1)[1].split("&")[0]

        async def drop() -> None:
            conn = await asyncpg.connect(POSTGRES_URL)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # hex name
            finally:
                await conn.close()

        asyncio.run(drop())
    elif kind == "nats":
        from sagaline.bus.nats import delete_namespace as delete_nats

        asyncio.run(delete_nats(url))
    elif kind == "rabbitmq":
        from sagaline.bus.amqp import delete_namespace as delete_amqp

        asyncio.run(delete_amqp(url))
