"""``vi_stream merge``: the fan-in of several workers of one camera, back in pulse order.

N ``vi_stream run`` workers PULL from one camera's PUSH stream (ZMQ hands each frame to
one of them). The merger connects to every worker's output, keeps what arrives in a
bounded buffer ordered by pulse id, and publishes one stream:

* in pulse order: the next one expected goes out at once; a missing one is waited for at most ``max_wait``
  s, then counted in ``gaps`` (a dead or slow worker never stalls the output); a pulse that comes after a
  later one was sent is forwarded at once and counted ``late``; one seen twice is dropped (``duplicates``);
* one bogus pulse id is forwarded as an ``outlier`` without moving the sequence, and a camera restart (ids
  from 0 again) is detected and ordered again (``restarts``): :mod:`vi_stream.scale.merge_order` has the rules.

Messages are forwarded unchanged (the same bytes); only the main header is read. The
added latency (arrival -> sent) is measured. ``/status`` and ``/statistics`` are served on
``rest_port``. Pulse ids are taken as consecutive: a camera that skips ids shows gaps.
"""
from __future__ import annotations

import json
import logging
import threading
import time

import bottle
import numpy as np
import zmq

from vi_stream.io import bsread_codec as codec
from vi_stream.io.bsread_out import bind_sender
from vi_stream.scale.merge_order import MAX_HELD, Sequencer
from vi_stream.ratelog import RateLimitedLog
from vi_stream.processing.control import PROCESSING, STOPPED
from vi_stream.web import replies
from vi_stream.web.server import serve
from vi_stream.service.systemd import Notifier, supervise, watchdog_interval

log = logging.getLogger("vi_stream.merge")


class Merger:
    def __init__(self, inputs: list[str], output_port: int = 0, output_host: str = "127.0.0.1",
                 max_wait: float = 2.0, buffer: int = 256, output_mode: str = "push", context: zmq.Context | None = None,
                 window: int = 4096):
        if not inputs:
            raise ValueError("give at least one worker output to merge")
        self.inputs, self.output_port, self.output_host = list(inputs), output_port, output_host
        self.max_wait, self.buffer, self.output_mode = max_wait, buffer, output_mode
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.rlog = RateLimitedLog(log)
        self.order = Sequencer(max_wait, buffer, window, log=self.rlog)
        self.counts = {"received": 0, "sent": 0, "dropped": 0, "bad": 0}
        self.per_input = {u: {"received": 0, "last_seen_s": None} for u in self.inputs}
        self._latency: list[float] = []
        self._beat: float | None = None            # the loop's last turn (monotonic), for the watchdog
        self.health_max_age = 2.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out = None
        self._lock = threading.Lock()
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifetime
    def start(self) -> int:
        # room for a whole buffer going out at once (a flush after max_wait, a restart): with less, a burst
        # overflowed the pipe to a reader that was keeping up (244 of 256 dropped with the old 64)
        self._out, self.output_port = bind_sender(self.context, self.output_mode, self.output_host,
                                                  self.output_port, hwm=2 * self.buffer + MAX_HELD)
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
        self.rlog.flush()
        for _url, s in getattr(self, "_ins", []):
            s.close(0)
        if self._out is not None:
            self._out.close(0)
        if self._own_context:
            self.context.destroy(linger=0)

    # ------------------------------------------------------------------ the loop
    DRAIN = 256   # messages taken from one input per turn: a flooding input cannot hold up the releases

    def _loop(self) -> None:
        poller = zmq.Poller()
        for _url, s in self._ins:
            poller.register(s, zmq.POLLIN)
        by_socket = {s: url for url, s in self._ins}
        while not self._stop.is_set():
            self._beat = time.monotonic()
            with self._lock:
                timeout = self.order.due_in(time.monotonic())
            for sock, _ in poller.poll(int(max(1, min(200, timeout * 1000)))):
                try:
                    for _ in range(self.DRAIN):
                        self._take(by_socket[sock], sock.recv_multipart(flags=zmq.NOBLOCK, copy=True))
                except zmq.Again:
                    pass
            with self._lock:
                self._send_all(self.order.release(time.monotonic()))

    def _take(self, url: str, parts: list[bytes]) -> None:
        now = time.monotonic()
        with self._lock:
            self.counts["received"] += 1
            self.per_input[url]["received"] += 1
            self.per_input[url]["last_seen_s"] = time.time()
        try:
            _main, pulse, sec, ns = codec.main_header(parts)
        except codec.DecodeError as err:
            with self._lock:
                self.counts["bad"] += 1
            self.rlog.warning(err.reason, f"a message from {url} is not bsread ({err}); dropped")
            return
        with self._lock:
            self._send_all(self.order.offer(pulse, (sec, ns), now, parts))

    def _send_all(self, out: list) -> None:
        for _pulse, arrived, parts in out:
            try:
                self._out.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                self.counts["sent"] += 1
            except zmq.Again:
                self.counts["dropped"] += 1
            self._latency.append(time.monotonic() - arrived)
        if len(self._latency) > 10_000:
            del self._latency[:5_000]

    def state(self) -> str:
        """One of :data:`vi_stream.processing.control.STATES`, as the daemon's ``/status`` answers."""
        running = self._thread is not None and self._thread.is_alive() and not self._stop.is_set()
        return PROCESSING if running else STOPPED

    def healthy(self) -> bool:
        """Progress, for the systemd watchdog: the loop thread lives and turned within ``health_max_age`` s
        (it turns at least every 0.2 s, messages or not)."""
        beat = self._beat
        return self._thread is not None and self._thread.is_alive() and beat is not None and \
            time.monotonic() - beat < self.health_max_age

    # ------------------------------------------------------------------ reporting
    def reset_latency(self) -> None:
        """Forget the latencies so far (a benchmark's warm-up: the first pulse waits ``max_wait``)."""
        with self._lock:
            self._latency.clear()

    def statistics(self) -> dict:
        with self._lock:
            lat = np.asarray(self._latency, np.float64)
            return {**self.counts, **self.order.counts, "buffered": self.order.buffered, "next_pulse": self.order.next,
                    "max_wait_s": self.max_wait, "buffer": self.buffer, "window": self.order.window,
                    "output_port": self.output_port,
                    "added_latency_ms": {"p50": round(float(np.percentile(lat, 50)) * 1e3, 3) if lat.size else None,
                                         "p99": round(float(np.percentile(lat, 99)) * 1e3, 3) if lat.size else None},
                    "inputs": {u: dict(v) for u, v in self.per_input.items()},
                    "uptime_s": round(time.time() - self.started_at, 1)}


def make_app(merger: Merger) -> bottle.Bottle:
    """``/status`` and ``/statistics`` in the daemon's envelope: ``status`` is one of the documented
    states (``processing`` while the merge loop runs, else ``stopped``), and an unknown route or a wrong
    method is the same JSON error as the daemon's (:mod:`vi_stream.web.replies`)."""
    app = replies.install(bottle.Bottle(), merger.state)

    @app.get("/status")
    def status():
        return replies.reply()

    @app.get("/statistics")
    def statistics():
        return replies.reply(statistics=merger.statistics())

    return app


def status_line(stats: dict) -> str:
    """One line for systemd's STATUS= (``systemctl status vi_stream-merge@CAM1``)."""
    return (f"merging: received {stats['received']}, sent {stats['sent']}, gaps {stats['gaps']}, "
            f"late {stats['late']}, duplicates {stats['duplicates']}, outliers {stats['outliers']}, "
            f"restarts {stats['restarts']}, stale {stats['stale']}, bad {stats['bad']}, dropped {stats['dropped']}, "
            f"buffered {stats['buffered']}")


def run(inputs: list[str], output_port: int, output_host: str, max_wait: float, rest_port: int | None,
        rest_host: str = "127.0.0.1", stop: threading.Event | None = None) -> int:
    """The ``vi_stream merge`` command: run until ``stop`` (or SIGTERM/SIGINT in the CLI).

    Under systemd (``Type=notify``): READY=1 once the output is bound and the REST port serves; WATCHDOG=1
    only while the merge loop keeps turning; STATUS= with the counts; STOPPING=1 when asked to stop."""
    stop = stop or threading.Event()
    notifier = Notifier()
    watchdog = watchdog_interval()
    merger = Merger(inputs, output_port, output_host, max_wait)
    merger.health_max_age = max(2.0, watchdog or 0.0)
    port = merger.start()
    server = None
    try:
        if rest_port is not None:
            server, _ = serve(make_app(merger), rest_host, rest_port)
            log.info("merge REST on http://%s:%d", rest_host, server.server_port)
        log.info("merged output on tcp://%s:%d", output_host, port)
        notifier.notify(READY="1", STATUS=status_line(merger.statistics()))
        supervise(merger, notifier, stop, watchdog=watchdog, line=status_line)
        notifier.notify(STOPPING="1", STATUS="stopping: " + status_line(merger.statistics()))
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        merger.close()
        notifier.close()
        log.info("merge: %s", json.dumps({**merger.counts, **merger.order.counts}))
    return 0
