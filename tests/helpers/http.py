"""Raw sockets from chosen loopback addresses, for the server's limits."""
from __future__ import annotations

import socket


def connect(port: int, source: str, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def open_stream(port: int, source: str) -> tuple[socket.socket, bytes]:
    """A live stream opened by a client at ``source``: (socket, its status line)."""
    s = connect(port, source)
    s.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    head = b""
    while b"\r\n" not in head:
        part = s.recv(4096)
        if not part:
            break
        head += part
    return s, head.split(b"\r\n", 1)[0]
