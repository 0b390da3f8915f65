"""The REST control plane's HTTP server: threaded, bounded, with idle connections dropped.

A thread per connection, at most ``max_connections`` at once (one more gets a 503 at
once); a connection that sends nothing for ``IDLE_TIMEOUT`` s is dropped. Long-lived
responses (the monitor's event streams) hold one connection each, so their number is
capped below ``max_connections`` by :class:`vi_stream.live.Hub`.
"""
from __future__ import annotations

import json
import logging
import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle

log = logging.getLogger("vi_stream.rest")


MAX_CONNECTIONS = 64        # concurrent connections; more are answered 503 at once
IDLE_TIMEOUT = 10.0         # seconds a connection may sit without sending its request


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """A thread per connection, at most ``max_connections`` at once: one beyond that gets a
    503 written straight to its socket (no thread), so a flood cannot starve the control plane."""

    daemon_threads = True
    allow_reuse_address = True
    max_connections = MAX_CONNECTIONS

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self.refused = 0

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            try:
                body = json.dumps({"state": "error", "error": "Overloaded",
                                   "message": "too many connections, try again"}).encode()
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
                                + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _QuietHandler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT   # socket timeout: an idle or trickling client is dropped, its thread freed

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def get_stderr(self) -> "_LogStream":
        """wsgiref prints a failed response's traceback here: the journal gets it, at debug level when
        it is only a client gone away mid-stream (a closed monitor tab)."""
        return _LogStream()


class _LogStream:
    """A file for wsgiref's error output: what is written until a flush becomes one log record."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, text: str) -> None:
        self._parts.append(text)

    def flush(self) -> None:
        text, self._parts = "".join(self._parts).strip(), []
        if text:
            gone = any(w in text for w in ("BrokenPipe", "ConnectionReset", "TimeoutError", "timed out"))
            log.log(logging.DEBUG if gone else logging.ERROR, "%s", text)


def serve(app: bottle.Bottle, host: str = "127.0.0.1", port: int = 0,
          max_connections: int = MAX_CONNECTIONS) -> tuple[WSGIServer, threading.Thread]:
    """Start a threaded WSGI server; returns (server, thread). ``server.server_port`` is the port."""
    server_class = type("_Server", (_ThreadingWSGIServer,), {"max_connections": max_connections})
    server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="vi-rest", daemon=True)
    thread.start()
    return server, thread
