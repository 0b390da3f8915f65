"""Raw sockets from chosen loopback addresses, for the server's limits."""
from __future__ import annotations

import socket
import time

import requests
from requests.adapters import HTTPAdapter


def connect(port: int, source: str, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def get_from(port: int, source: str, path: str, headers: bytes = b"") -> tuple[socket.socket, bytes]:
    """A GET of ``path`` sent by a client at ``source``: (socket, the answer's status line)."""
    s = connect(port, source)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + headers + b"\r\n")
    head = b""
    while b"\r\n" not in head:
        part = s.recv(4096)
        if not part:
            break
        head += part
    return s, head.split(b"\r\n", 1)[0]


def open_stream(port: int, source: str, tab: str | None = None) -> tuple[socket.socket, bytes]:
    """A live stream opened by a client at ``source`` (from the page ``tab``, as a page sends it):
    (socket, its status line)."""
    return get_from(port, source, "/api/events" + (f"?tab={tab}" if tab else ""), b"Accept: text/event-stream\r\n")


def read_stream(s: socket.socket, until: bytes | None = None, timeout: float = 15.0) -> tuple[bytes, bool]:
    """What arrives on ``s`` until ``until`` is among it, the server closes it or ``timeout`` s pass:
    (the bytes, whether it was closed)."""
    got, end = b"", time.monotonic() + timeout
    while (until is None or until not in got) and (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            part = s.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return got, True
        if not part:
            return got, True
        got += part
    return got, False


def stream_from(base: str, source: str, tab: str | None = None) -> requests.Response:
    """A live stream opened with requests from another loopback address (another host, as the server counts),
    from the page ``tab`` when given."""
    session = requests.Session()
    adapter = HTTPAdapter()
    adapter.init_poolmanager(1, 1, source_address=(source, 0))
    session.mount("http://", adapter)
    return session.get(base + "/api/events", params={"tab": tab} if tab else None, stream=True, timeout=10)
