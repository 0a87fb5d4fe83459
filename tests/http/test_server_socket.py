"""The server's listening socket says TCP, so asyncio turns Nagle off on its connections."""

from __future__ import annotations

import socket

from sagaline.http.server import bind


def test_the_listening_socket_is_tcp_so_accepted_connections_get_nodelay() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
