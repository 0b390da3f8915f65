"""The REST control plane's HTTP server: threaded, bounded, with deadlines on every request.

Longer than 300 lines: the slots (per server, per address, the reserve), the deadline reader and
the handler that applies both are one mechanism; split, each part would reach into the others.

* A thread per connection, at most ``max_connections`` at once and at most ``per_address``
  (:data:`MAX_PER_ADDRESS`) from one client address; one more gets a 503 at once (no thread).
  ``reserve`` connections more are kept for the control routes (:data:`CONTROL_ROUTES`:
  ``/status``, ``/start``, ``/stop``, ``/statistics`` ...), at most :data:`RESERVE_PER_ADDRESS`
  of them per address and within its cap: a connection that lands in the reserve has
  ``reserve_head_timeout`` s to send its head and is answered 503 unless it names a control
  route. So one address (or a few) trickling requests and reconnecting at once holds at most
  its cap and never the reserve; what fills every slot is 6 addresses at once by default (4
  of them holding 4 live streams each besides their cap: streams leave the count, below), and
  the reserve too 7 (an address below its cap takes ``RESERVE_PER_ADDRESS`` of it once the
  rest is full) - on the machine itself that is any local user, who may bind any of 127.0.0.0/8.
  A live stream (an answer of type ``text/event-stream``) leaves its address's count once it
  is answered; it keeps its place among the ``max_connections``. The app caps its streams
  itself (:class:`vi_stream.web.live.Hub`: 4 per address, 16 in all), and a page reloaded a
  few times leaves its old streams open until the daemon's writes find them gone: counted,
  they held the connections the new page's scripts need (a module answered 503 leaves the
  page dead). A connection is counted until then, so one refused as a stream is too.
* Deadlines, not idle timeouts: the whole request head must arrive within ``head_timeout``
  s of the accept (a client trickling one byte every few seconds is cut off with a 408),
  and a body at :data:`BODY_MIN_RATE` after :data:`BODY_GRACE` s: at every moment the bytes
  received must be at least ``(elapsed - grace) * rate`` (:mod:`vi_stream.web.bodylimit` reads
  it, after checking its size against the route's limit), so a huge declared body trickled
  is cut off a few seconds after the grace, not after its size at the rate; and every write
  (a response, one event of a stream) within ``timeout`` s, so a live stream whose reader
  stopped is dropped once the little it may buffer is full (and by :mod:`vi_stream.web.live`
  once it stops taking its events).
* The listen backlog is ``BACKLOG`` (socketserver's default of 5 dropped SYNs under a burst
  of clients, which then waited seconds for the kernel to retry).
* A client that times out or goes away is logged at debug level on one line; a fault in the
  server is one error line. Nothing goes raw to stderr.
"""
from __future__ import annotations

import io
import json
import logging
import math
import socket
import socketserver
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

import bottle

from vi_stream.web import bodylimit

log = logging.getLogger("vi_stream.rest")


MAX_CONNECTIONS = 64        # concurrent connections; more are answered 503 at once ...
RESERVED = 8                # ... except these few more, for the control routes only
MAX_PER_ADDRESS = 8         # connections from one client address: a browser opens 6 per host, plus a live
                            # stream or two; without a cap one address trickling requests held all 64 + 8
RESERVE_PER_ADDRESS = 2     # reserve connections from one address (within its cap): the reserve is for
                            # a control request now and then, and one address cannot take all of it;
                            # 2, as a client's next request may arrive before its last one's slot is back
BACKLOG = 1024              # connections the kernel queues before the server accepts them (capped by somaxconn)
HEAD_TIMEOUT = 5.0          # seconds from accept to the end of the request head
RESERVE_HEAD_TIMEOUT = 2.0  # the same for a connection in the reserve
WRITE_TIMEOUT = 10.0        # seconds one write may take (a response; one event of a live stream)
BODY_GRACE = 10.0           # a body must arrive at BODY_MIN_RATE after this grace: received bytes >=
BODY_MIN_RATE = 256 * 1024  # (elapsed - grace) * rate at every moment, checked as it arrives
STREAM_SNDBUF = 64 * 1024   # a live stream's send buffer: what a stalled reader may leave unread
CONTROL_ROUTES = frozenset({("GET", "/status"), ("POST", "/start"), ("POST", "/stop"), ("GET", "/statistics"),
                            ("GET", "/metrics"), ("GET", "/config"), ("POST", "/config"), ("GET", "/model"),
                            ("POST", "/model/reload"), ("GET", "/roi"), ("POST", "/roi")})


class Late(TimeoutError):
    """A client did not send its request (head or body) before its deadline."""


class _DeadlineReader(io.RawIOBase):
    """The connection's input with a deadline over everything read (``deadline``, monotonic s)
    rather than a timeout per read: a trickle of one byte per timeout cannot keep it waiting."""

    def __init__(self, sock: socket.socket, write_timeout: float):
        self.sock, self.write_timeout = sock, write_timeout
        self.deadline, self.what = math.inf, "request"
        self.rate = 0.0          # > 0: each byte received moves the deadline on by 1/rate s (a body)

    def readable(self) -> bool:
        return True

    def at_rate(self, grace: float, rate: float) -> None:
        """From now on: the bytes received must keep up with ``rate`` after ``grace`` s."""
        self.deadline, self.rate = time.monotonic() + grace, rate

    def readinto(self, buf) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Late(f"{self.what} not complete within its deadline")
        self.sock.settimeout(min(left, 3600.0))
        try:
            n = self.sock.recv_into(buf)
        except socket.timeout:
            raise Late(f"{self.what} not complete within its deadline") from None
        finally:
            self.sock.settimeout(self.write_timeout)   # writes keep their own timeout
        if self.rate:
            self.deadline += n / self.rate
        return n


def _json_reply(code: str, error: str, message: str, extra: bytes = b"") -> bytes:
    body = json.dumps({"state": "error", "error": error, "message": message}).encode()
    return (f"HTTP/1.0 {code}\r\nContent-Type: application/json\r\nConnection: close\r\n".encode() + extra
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class _Seat:
    """One connection's place: its address, the slots it took (``reserved``: the reserve's), and
    whether it counts toward its address's cap (a live stream stops counting once answered)."""

    __slots__ = ("address", "slots", "reserved", "counted")

    def __init__(self, address: str, slots: threading.BoundedSemaphore, reserved: bool):
        self.address, self.slots, self.reserved, self.counted = address, slots, reserved, True


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """A thread per connection, at most ``max_connections`` (+ ``reserve`` for control routes) at
    once: one beyond that gets a 503 written straight to its socket (no thread)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = BACKLOG
    max_connections = MAX_CONNECTIONS
    reserve = RESERVED
    per_address = MAX_PER_ADDRESS

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._reserve = threading.BoundedSemaphore(self.reserve) if self.reserve else None
        self._held: dict[str, list[int]] = {}       # address -> [connections, of which in the reserve]
        self._held_lock = threading.Lock()
        self.refused = self.reserve_used = self.late = self.refused_address = 0

    def _take(self, address: str) -> threading.BoundedSemaphore | None:
        with self._held_lock:
            held = self._held.setdefault(address, [0, 0])
            if held[0] >= self.per_address:
                self.refused_address += 1
                slots = None
            elif self._slots.acquire(blocking=False):
                slots = self._slots
            elif (self._reserve is not None and held[1] < RESERVE_PER_ADDRESS
                  and self._reserve.acquire(blocking=False)):
                slots = self._reserve
                self.reserve_used += 1
                held[1] += 1
            else:
                slots = None
            if slots is not None:
                held[0] += 1
            elif not held[0]:
                del self._held[address]
            return slots

    def _uncount(self, seat: _Seat) -> None:
        """The connection is a live stream now: it leaves its address's count (the app caps streams)."""
        with self._held_lock:
            if not seat.counted or seat.reserved:      # the reserve answers no stream
                return
            seat.counted = False
            self._drop(seat.address, False)

    def _give_back(self, seat: _Seat) -> None:
        with self._held_lock:
            if seat.counted:
                self._drop(seat.address, seat.reserved)
        seat.slots.release()

    def _drop(self, address: str, reserved: bool) -> None:
        held = self._held[address]
        held[0] -= 1
        held[1] -= reserved
        if not held[0]:
            del self._held[address]

    def process_request(self, request, client_address) -> None:
        address = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        slots = self._take(address)
        if slots is None:
            self.refused += 1
            try:
                request.settimeout(1.0)
                request.sendall(_json_reply("503 Service Unavailable", "Overloaded", "too many connections, "
                                            "try again", b"Retry-After: 1\r\n"))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        seat = _Seat(address, slots, slots is self._reserve)
        t = threading.Thread(target=self._serve_one, args=(request, client_address, seat), daemon=True,
                             name="vi-rest-conn")
        t.seat = seat
        try:
            t.start()
        except BaseException:
            self._give_back(seat)
            self.shutdown_request(request)
            raise

    def _serve_one(self, request, client_address, seat: _Seat) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._give_back(seat)             # the answer is out: the slot is free before the close
            self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        """socketserver prints a traceback to stderr here: one log line instead, debug for a client
        that timed out or went away, error for anything else."""
        err = sys.exc_info()[1]
        who = client_address[0] if isinstance(client_address, tuple) else client_address
        if isinstance(err, (TimeoutError, ConnectionError)):
            log.debug("client %s: %s", who, err or type(err).__name__)
        else:
            tb = err.__traceback__ if err is not None else None
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""
            log.error("request from %s failed: %r%s", who, err, where)


class _StreamAwareHandler(ServerHandler):
    """wsgiref's response writer; a live stream gets a small send buffer, so a reader that stops
    reading blocks the stream's next write soon, and the write deadline ends it, and it leaves its
    address's count of connections (the app caps its streams)."""

    def send_preamble(self) -> None:
        if (self.headers.get("Content-Type") or "").startswith("text/event-stream"):
            try:
                self.request_handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
            except OSError:
                pass
            if self.request_handler.seat is not None:
                self.request_handler.server._uncount(self.request_handler.seat)
        super().send_preamble()


class _QuietHandler(WSGIRequestHandler):
    timeout = WRITE_TIMEOUT                     # the socket's timeout: one write's deadline
    head_timeout = HEAD_TIMEOUT
    reserve_head_timeout = RESERVE_HEAD_TIMEOUT

    def setup(self) -> None:
        super().setup()
        self._reader = _DeadlineReader(self.connection, self.timeout)
        self.seat: _Seat | None = getattr(threading.current_thread(), "seat", None)
        self.reserved = self.seat is not None and self.seat.reserved
        self._reader.what = "request head"
        self._reader.deadline = time.monotonic() + (self.reserve_head_timeout if self.reserved else self.head_timeout)
        self.rfile = io.BufferedReader(self._reader, 65536)

    def handle(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.parse_request():     # an error was sent
                return
        except Late as err:
            self._late(err)
            return
        if self.reserved and (self.command, urlsplit(self.path).path) not in CONTROL_ROUTES:
            self.connection.sendall(_json_reply("503 Service Unavailable", "Overloaded", "too many connections; "
                                                "only the control routes are answered now, try again",
                                                b"Retry-After: 1\r\n"))
            return
        environ = self.get_environ()
        environ[bodylimit.DEADLINE_KEY] = self._body_deadline
        handler = _StreamAwareHandler(self.rfile, self.wfile, self.get_stderr(), environ, multithread=True)
        handler.request_handler = self
        handler.run(self.server.get_app())

    def _body_deadline(self, size: int) -> None:
        """The body's deadline, from now (called before it is read): its bytes must keep up with
        BODY_MIN_RATE after a grace; in the reserve the grace is the reserve's head deadline, so a slow
        body cannot hold a reserve slot either. (``size``, the most it may be, is not needed.)"""
        self._reader.what = "request body"
        self._reader.at_rate(self.reserve_head_timeout if self.reserved else BODY_GRACE, BODY_MIN_RATE)

    def _late(self, err: Late) -> None:
        self.server.late += 1
        log.debug("client %s did not send its request head within the %g s deadline: dropped",
                  self.client_address[0], self.reserve_head_timeout if self.reserved else self.head_timeout)
        try:
            self.connection.settimeout(1.0)
            self.connection.sendall(_json_reply("408 Request Timeout", "Late", str(err)))
        except OSError:
            pass

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            _linger(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def get_stderr(self) -> "_LogStream":
        """wsgiref prints a failed response's traceback here: the journal gets it, at debug level when
        it is only a client gone away mid-stream (a closed monitor tab)."""
        return _LogStream()


def _linger(sock: socket.socket, seconds: float = 1.0, most: int = 4 << 20) -> None:
    """Closing with unread input makes the kernel reset the connection, and the client may lose the
    answer already sent (a 413 before the body it is still sending): half-close, then read and
    discard what keeps coming, for ``seconds`` or ``most`` bytes at most."""
    try:
        sock.setblocking(False)
        try:
            if not sock.recv(1, socket.MSG_PEEK):
                return                                  # the client closed: nothing pending
        except BlockingIOError:
            return                                      # nothing unread
        sock.shutdown(socket.SHUT_WR)
        end, got = time.monotonic() + seconds, 0
        while got < most and (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            part = sock.recv(65536)
            if not part:
                return
            got += len(part)
    except OSError:
        pass


class _LogStream:
    """A file for wsgiref's error output: what is written until a flush becomes one log record."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, text: str) -> None:
        self._parts.append(text)

    def flush(self) -> None:
        text, self._parts = "".join(self._parts).strip(), []
        if text:
            gone = any(w in text for w in ("BrokenPipe", "ConnectionReset", "TimeoutError", "timed out", "Late"))
            last = text.splitlines()[-1]
            if gone:
                log.debug("client gone or too slow: %s", last)
            else:
                log.error("response failed: %s", " | ".join(x.strip() for x in text.splitlines()[-3:]))


def serve(app: bottle.Bottle, host: str = "127.0.0.1", port: int = 0, max_connections: int = MAX_CONNECTIONS,
          reserve: int = RESERVED, limits: bodylimit.Limits | None = None,
          per_address: int = MAX_PER_ADDRESS) -> tuple[WSGIServer, threading.Thread]:
    """Start a threaded WSGI server for ``app`` behind the body limits (``limits``, the REST
    routes' by default); returns (server, thread). ``server.server_port`` is the port."""
    server_class = type("_Server", (_ThreadingWSGIServer,), {"max_connections": max_connections, "reserve": reserve,
                                                             "per_address": per_address})
    wrapped = bodylimit.BodyLimit(app, limits or bodylimit.rest_limits())
    server = make_server(host, port, wrapped, server_class=server_class, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="vi-rest", daemon=True)
    thread.start()
    return server, thread
