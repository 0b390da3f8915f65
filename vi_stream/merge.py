"""``vi_stream merge``: the fan-in of several workers of one camera, back in pulse order.

N ``vi_stream run`` workers PULL from one camera's PUSH stream (ZMQ hands each frame to
one of them). The merger connects to every worker's output, keeps what arrives in a
bounded buffer ordered by pulse id, and publishes one stream:

* the lowest buffered pulse goes out as soon as it is the next one expected (the one
  after the last sent);
* otherwise it waits at most ``max_wait`` s for the ones before it, then goes out and
  the pulse ids skipped are counted as ``gaps`` (a dead or slow worker never stalls the
  output); a full buffer sends its lowest pulse at once, the same way;
* a pulse that arrives after a later one was sent is forwarded at once and counted
  ``late`` (nothing is dropped, but it is out of order); a pulse seen twice is dropped
  and counted ``duplicates``.

Messages are forwarded unchanged (the same bytes); only the main header is read. The
added latency (arrival -> sent) is measured. ``/status`` and ``/statistics`` are served on
``rest_port``. Pulse ids are taken as consecutive: a camera that skips ids shows gaps.
"""
from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from typing import Any

import bottle
import numpy as np
import zmq

from .io import bsread_codec as codec
from .io.bsread_out import bind_sender
from .server import serve

log = logging.getLogger("vi_stream.merge")


class Merger:
    def __init__(self, inputs: list[str], output_port: int = 0, output_host: str = "127.0.0.1",
                 max_wait: float = 2.0, buffer: int = 256, output_mode: str = "push", context: zmq.Context | None = None):
        if not inputs:
            raise ValueError("give at least one worker output to merge")
        self.inputs, self.output_port, self.output_host = list(inputs), output_port, output_host
        self.max_wait, self.buffer, self.output_mode = max_wait, buffer, output_mode
        self._own_context = context is None
        self.context = context or zmq.Context()
        self._heap: list[tuple[int, float, int, list]] = []
        self._seq = 0
        self.next_pulse: int | None = None
        self.counts = {"received": 0, "sent": 0, "gaps": 0, "late": 0, "duplicates": 0, "dropped": 0, "bad": 0}
        self.per_input = {u: {"received": 0, "last_seen_s": None} for u in self.inputs}
        self._latency: list[float] = []
        self._sent_recent: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out = None
        self._lock = threading.Lock()
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifetime
    def start(self) -> int:
        self._out, self.output_port = bind_sender(self.context, self.output_mode, self.output_host,
                                                  self.output_port, hwm=64)
        self._ins = []
        for url in self.inputs:
            s = self.context.socket(zmq.PULL)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RCVHWM, 16)
            s.connect(url)
            self._ins.append((url, s))
        self._thread = threading.Thread(target=self._loop, name="merge", daemon=True)
        self._thread.start()
        log.info("merging %s -> tcp://%s:%d (max wait %.2f s)", ", ".join(self.inputs), self.output_host,
                 self.output_port, self.max_wait)
        return self.output_port

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for _url, s in getattr(self, "_ins", []):
            s.close(0)
        if self._out is not None:
            self._out.close(0)
        if self._own_context:
            self.context.destroy(linger=0)

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        poller = zmq.Poller()
        for _url, s in self._ins:
            poller.register(s, zmq.POLLIN)
        by_socket = {s: url for url, s in self._ins}
        while not self._stop.is_set():
            timeout = self._due_in()
            for sock, _ in poller.poll(int(max(1, min(200, timeout * 1000)))):
                try:
                    while True:
                        self._take(by_socket[sock], sock.recv_multipart(flags=zmq.NOBLOCK, copy=True))
                except zmq.Again:
                    pass
            self._release()

    def _take(self, url: str, parts: list[bytes]) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts["received"] += 1
            self.per_input[url]["received"] += 1
            self.per_input[url]["last_seen_s"] = time.time()
        try:
            _main, pulse, _sec, _ns = codec.main_header(parts)
        except codec.DecodeError as err:
            with self._lock:
                self.counts["bad"] += 1
            log.warning("a message from %s is not bsread (%s); dropped", url, err)
            return
        with self._lock:
            if pulse in self._sent_recent or any(p == pulse for p, *_ in self._heap):
                self.counts["duplicates"] += 1
                return
            if self.next_pulse is not None and pulse < self.next_pulse:
                self.counts["late"] += 1
                self._send(pulse, now, parts)
                return
            self._seq += 1
            heapq.heappush(self._heap, (pulse, now, self._seq, parts))

    def _due_in(self) -> float:
        with self._lock:
            if not self._heap:
                return 0.2
            return max(0.0, self._heap[0][1] + self.max_wait - time.monotonic())

    def _release(self) -> None:
        with self._lock:
            now = time.monotonic()
            while self._heap:
                pulse, arrived = self._heap[0][0], self._heap[0][1]
                in_order = self.next_pulse is not None and pulse == self.next_pulse
                if not (in_order or now - arrived >= self.max_wait or len(self._heap) > self.buffer):
                    break
                parts = heapq.heappop(self._heap)[3]
                if self.next_pulse is not None and pulse > self.next_pulse:
                    self.counts["gaps"] += pulse - self.next_pulse
                self._send(pulse, arrived, parts)
                self.next_pulse = pulse + 1

    def _send(self, pulse: int, arrived: float, parts: list[bytes]) -> None:
        try:
            self._out.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.counts["sent"] += 1
        except zmq.Again:
            self.counts["dropped"] += 1
        self._latency.append(time.monotonic() - arrived)
        if len(self._latency) > 10_000:
            del self._latency[:5_000]
        self._sent_recent.add(pulse)
        if len(self._sent_recent) > 4 * self.buffer:
            floor = (self.next_pulse or pulse) - 2 * self.buffer
            self._sent_recent = {p for p in self._sent_recent if p >= floor}

    # ------------------------------------------------------------------ reporting
    def reset_latency(self) -> None:
        """Forget the latencies so far (a benchmark's warm-up: the first pulse waits ``max_wait``)."""
        with self._lock:
            self._latency.clear()

    def statistics(self) -> dict:
        with self._lock:
            lat = np.asarray(self._latency, np.float64)
            return {**self.counts, "buffered": len(self._heap), "next_pulse": self.next_pulse,
                    "max_wait_s": self.max_wait, "buffer": self.buffer, "output_port": self.output_port,
                    "added_latency_ms": {"p50": round(float(np.percentile(lat, 50)) * 1e3, 3) if lat.size else None,
                                         "p99": round(float(np.percentile(lat, 99)) * 1e3, 3) if lat.size else None},
                    "inputs": {u: dict(v) for u, v in self.per_input.items()},
                    "uptime_s": round(time.time() - self.started_at, 1)}


def make_app(merger: Merger) -> bottle.Bottle:
    app = bottle.Bottle()

    def reply(**fields: Any) -> str:
        bottle.response.content_type = "application/json"
        return json.dumps({"state": "ok", "status": "merging", **fields}, default=str)

    @app.get("/status")
    def status():
        return reply()

    @app.get("/statistics")
    def statistics():
        return reply(statistics=merger.statistics())

    return app


def run(inputs: list[str], output_port: int, output_host: str, max_wait: float, rest_port: int | None,
        rest_host: str = "127.0.0.1", stop: threading.Event | None = None) -> int:
    """The ``vi_stream merge`` command: run until ``stop`` (or SIGTERM/SIGINT in the CLI)."""
    merger = Merger(inputs, output_port, output_host, max_wait)
    port = merger.start()
    server = None
    if rest_port is not None:
        server, _ = serve(make_app(merger), rest_host, rest_port)
        log.info("merge REST on http://%s:%d", rest_host, server.server_port)
    log.info("merged output on tcp://%s:%d", output_host, port)
    try:
        (stop or threading.Event()).wait()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        merger.close()
        log.info("merge: %s", json.dumps(merger.counts))
    return 0
