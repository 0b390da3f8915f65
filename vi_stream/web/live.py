"""What the operator's monitor sees live: Server-Sent Events from the daemon's own REST server.

* :class:`Hub` fans events out to a bounded number of listeners (one per open monitor tab),
  at most ``per_client`` of them from one address, so one client cannot shut the others out.
  A listener that cannot keep up loses its oldest events, never slows the others or the
  processor. Each stream starts with ``retry:`` and a snapshot, sends a heartbeat comment
  when idle, and ends when the daemon closes or after ``max_age`` s: a live tab reconnects, a
  frozen one does not (see :data:`MAX_STREAM_S`).
* :class:`Live` is the processor's watcher. For every scored frame it records a verdict
  at once (QA colour, trends of the last hour) and hands the frame to its own
  low-priority thread, which renders a preview (image and heatmap PNGs, at most
  ``preview_side`` px) into a small cache served by ``/api/images/<id>``. When frames
  come faster than previews are drawn, the newest wins.
* :class:`LogTail` keeps the last lines of the daemon's log for the page.

Nothing here blocks the processor: the watcher's methods take a lock for microseconds.

Longer than 300 lines: the monitor's one feed (the hub of streams, the preview cache, the trends,
the log tail) is started, fed by the processor and closed as one; each part is its own class.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Iterator

import numpy as np

from vi_stream.model import postprocess
from vi_stream.store import record as rec
from vi_stream.errors import Overloaded
from vi_stream.frame import Frame, Result
from vi_stream.processing.settings import PREVIEW_SIDE
from vi_stream.threads import lower_priority

log = logging.getLogger("vi_stream.live")

MAX_LISTENERS = 16        # open monitor tabs; one more gets 503 (the REST server keeps 64 connections)
MAX_PER_CLIENT = 4        # of which one address may hold this many
MAX_STREAM_S = 300.0      # a stream's age: a tab that stopped reading holds its slot this long at most (the
                          # daemon cannot see a page stop reading; its kernel takes a few hundred KB first)
HEARTBEAT_S = 15.0        # an idle stream sends a comment this often (proxies and browsers keep it open)
RETRY_MS = 2000           # the browser reconnects after this long when a stream ends
QA_MARGIN = 0.2           # yellow: a score within 20% below the threshold
TREND_BIN_S = 10.0        # trends: one bin per 10 s ...
TREND_BINS = 360          # ... for the last hour
_SAMPLES = 256            # scores/latencies kept per bin for its quantiles


def qa_colour(score: float, threshold: float, anomalous: bool, margin: float = QA_MARGIN) -> str:
    """green below the threshold's margin, yellow within it, red anomalous (grey is a rejected frame)."""
    if anomalous:
        return "red"
    return "yellow" if score >= threshold * (1.0 - margin) else "green"


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One Server-Sent Event (the data as one line of JSON)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class _Listener:
    def __init__(self, size: int, client: str | None = None):
        self.q: queue.Queue = queue.Queue(size)
        self.client, self.dropped = client, 0

    def offer(self, item: Any) -> None:
        while True:
            try:
                self.q.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.q.get_nowait()     # a slow tab loses its oldest event
                    self.dropped += 1
                except queue.Empty:
                    pass


class Hub:
    """Event fan-out to at most ``max_listeners`` streams, ``per_client`` of them from one address."""

    def __init__(self, max_listeners: int = MAX_LISTENERS, heartbeat: float = HEARTBEAT_S,
                 retry_ms: int = RETRY_MS, queue_size: int = 64, per_client: int = MAX_PER_CLIENT,
                 max_age: float = MAX_STREAM_S):
        self.max_listeners, self.heartbeat, self.retry_ms = max_listeners, heartbeat, retry_ms
        self.max_age, self.expired = max_age, 0
        self.per_client, self.queue_size = per_client, queue_size
        self._listeners: set[_Listener] = set()
        self._lock = threading.Lock()
        self._seq, self.closed, self.refused = 0, False, 0

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def publish(self, event: str, data: Any) -> None:
        with self._lock:
            self._seq += 1
            chunk = sse(event, data, self._seq)
            for listener in self._listeners:
                listener.offer(chunk)

    def subscribe(self, client: str | None = None) -> _Listener:
        """A new stream for ``client`` (its address; None: not counted per client)."""
        with self._lock:
            if self.closed:
                raise Overloaded("the daemon is shutting down")
            if len(self._listeners) >= self.max_listeners:
                self.refused += 1
                raise Overloaded(f"{self.max_listeners} live streams are open already; close a monitor tab")
            if client is not None and sum(x.client == client for x in self._listeners) >= self.per_client:
                self.refused += 1
                raise Overloaded(f"{self.per_client} live streams are open from {client} already (the limit per "
                                 "client); close a monitor tab")
            listener = _Listener(self.queue_size, client)
            self._listeners.add(listener)
            return listener

    def unsubscribe(self, listener: _Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    def stream(self, listener: _Listener, first: list[tuple[str, Any]]) -> Iterator[bytes]:
        """The bytes of one stream: ``retry:``, the ``first`` events, then what is published, with
        heartbeats, until :meth:`close`. Unsubscribes when it ends or the client goes away."""
        end = time.monotonic() + self.max_age
        try:
            yield f"retry: {self.retry_ms}\n\n".encode() + b"".join(sse(e, d) for e, d in first)
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    self.expired += 1      # the page reconnects; a tab that stopped reading does not
                    return
                try:
                    chunk = listener.q.get(timeout=min(self.heartbeat, left))
                except queue.Empty:
                    if self.closed:
                        return
                    yield b": heartbeat\n\n"
                    continue
                if chunk is None:
                    return
                yield chunk
        finally:
            self.unsubscribe(listener)

    def close(self) -> None:
        """End every stream (the daemon is stopping); new ones are refused."""
        with self._lock:
            self.closed = True
            for listener in self._listeners:
                listener.offer(None)

    def statistics(self) -> dict:
        return {"listeners": self.listeners, "max_listeners": self.max_listeners, "per_client": self.per_client,
                "refused": self.refused, "expired": self.expired, "max_age_s": self.max_age,
                "dropped_events": sum(x.dropped for x in list(self._listeners))}


class ImageCache:
    """The last previews by content id (the same ids as the store's images: SHA-256 prefix)."""

    def __init__(self, size: int = 48):
        self.size, self._items = size, OrderedDict()
        self._lock = threading.Lock()

    def put(self, png: bytes) -> str:
        key = rec.image_id(png)
        with self._lock:
            self._items[key] = png
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._items.get(key)


class Trends:
    """The last hour in bins of ``bin_s``: frames, anomalous, rejected, score quantiles, latency p99."""

    def __init__(self, bin_s: float = TREND_BIN_S, bins: int = TREND_BINS, clock: Callable[[], float] = time.time):
        self.bin_s, self.clock = bin_s, clock
        self._bins: deque[dict] = deque(maxlen=bins)
        self._lock = threading.Lock()

    def _current(self) -> dict:
        start = self.clock() // self.bin_s * self.bin_s
        if not self._bins or self._bins[-1]["t"] != start:
            self._bins.append({"t": start, "n": 0, "anomalous": 0, "rejected": 0, "scores": [], "latency": []})
        return self._bins[-1]

    def add(self, score: float, anomalous: bool, latency_s: float) -> None:
        with self._lock:
            b = self._current()
            b["n"] += 1
            b["anomalous"] += int(anomalous)
            _keep(b["scores"], score, b["n"])
            _keep(b["latency"], latency_s, b["n"])

    def reject(self) -> None:
        with self._lock:
            self._current()["rejected"] += 1

    def summary(self, since: float | None = None) -> list[dict]:
        """Per bin: start time (epoch s), frames/s, fraction anomalous, score p50/p90/max, latency p99 (ms)."""
        with self._lock:
            bins = [dict(b, scores=list(b["scores"]), latency=list(b["latency"])) for b in self._bins
                    if since is None or b["t"] >= since]
        out = []
        for b in bins:
            s = np.sort(np.asarray(b["scores"], float))
            lat = np.sort(np.asarray(b["latency"], float))
            out.append({"t": b["t"], "frames": b["n"], "rejected": b["rejected"],
                        "fps": round(b["n"] / self.bin_s, 3),
                        "anomalous_fraction": round(b["anomalous"] / b["n"], 4) if b["n"] else None,
                        "score_p50": _q(s, 0.5), "score_p90": _q(s, 0.9), "score_max": _q(s, 1.0),
                        "latency_p99_ms": None if not lat.size else round(_q(lat, 0.99) * 1e3, 1)})
        return out


def _keep(samples: list, value: float, n: int) -> None:
    """Reservoir sampling: ``samples`` stays a uniform sample of the bin's ``n`` values so far."""
    if len(samples) < _SAMPLES:
        samples.append(value)
    else:
        j = int(np.random.randint(n))
        if j < _SAMPLES:
            samples[j] = value


def _q(sorted_vals: np.ndarray, p: float) -> float | None:
    if not sorted_vals.size:
        return None
    return round(float(sorted_vals[min(len(sorted_vals) - 1, int(p * (len(sorted_vals) - 1) + 0.5))]), 5)


class LogTail(logging.Handler):
    """The last ``size`` log lines, each also published to the hub as a ``log`` event."""

    def __init__(self, hub: Hub, size: int = 300, level: int = logging.INFO):
        super().__init__(level)
        self.hub, self._seq = hub, 0
        self.lines: deque[dict] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._seq += 1
            line = {"seq": self._seq, "t": record.created, "level": record.levelname, "logger": record.name,
                    "message": record.getMessage()[:2000]}
            self.lines.append(line)
            self.hub.publish("log", line)
        except Exception:  # pragma: no cover - logging must never raise into the caller
            self.handleError(record)


class Live:
    """The processor's watcher (see the module docstring). ``snapshot()`` gives a new stream its
    first events; ``status()`` is published every ``tick`` s while anyone listens."""

    def __init__(self, status: Callable[[], dict], hub: Hub | None = None, preview_side: int = PREVIEW_SIDE,
                 qa_margin: float = QA_MARGIN, tick: float = 1.0, nice: int = 5):
        self.hub = hub or Hub()
        self.status = status
        self.preview_side, self.qa_margin, self.tick, self.nice = preview_side, qa_margin, tick, nice
        self.images, self.trends = ImageCache(), Trends()
        self.log = LogTail(self.hub)
        self.recent: deque[dict] = deque(maxlen=60)   # the last verdicts (the page's colour strip)
        self.last_frame: dict | None = None
        self.rendered = self.skipped = self.render_errors = 0
        self._pending: tuple[Result, dict] | None = None
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ the processor's side
    def result(self, result: Result) -> None:
        """A scored frame (called by the processor's worker: cheap, never blocks)."""
        p = result.parameters
        threshold = float(p.get("threshold") or 0.0)
        latency = time.monotonic() - result.frame.received_at
        verdict = {"pulse_id": int(result.frame.pulse_id), "module": result.frame.module,
                   "side": result.frame.side, "tag": result.frame.tag, "score": round(float(result.score), 5),
                   "threshold": threshold, "is_anomalous": bool(result.is_anomalous),
                   "qa": qa_colour(float(result.score), threshold, bool(result.is_anomalous), self.qa_margin),
                   "defects": len(result.defects), "model_id": p.get("model_id"),
                   "latency_ms": round(latency * 1e3, 1), "t_result": time.time()}
        self.trends.add(float(result.score), bool(result.is_anomalous), latency)
        self.recent.append(verdict)
        self.hub.publish("verdict", verdict)
        with self._wake:
            if self._pending is not None:
                self.skipped += 1        # not drawn: a newer frame came first
            self._pending = (result, verdict)
            self._wake.notify()

    def rejected(self, reason: str, frame: Frame | None = None) -> None:
        """A frame refused (by reason); ``frame`` when it was decoded."""
        item = {"qa": "grey", "reason": reason, "t_result": time.time(),
                "pulse_id": None if frame is None else int(frame.pulse_id),
                "module": None if frame is None else frame.module, "side": None if frame is None else frame.side}
        self.trends.reject()
        self.recent.append(item)
        self.hub.publish("reject", item)

    # ------------------------------------------------------------------ previews
    def render(self, result: Result, verdict: dict) -> dict:
        """The frame event: the verdict plus preview image ids, the preview's scale and the defect boxes."""
        img = rec.to_8bit(result.image)
        h, w = img.shape[:2]
        scale = min(1.0, self.preview_side / max(h, w))
        small = rec.shrink(img, scale)
        heat = rec.shrink(result.heatmap.astype(np.float32, copy=False), scale)
        levels = postprocess.heat_levels(heat, verdict["threshold"] or 1.0)
        image_id = self.images.put(rec.encode_png(small))
        heat_id = self.images.put(rec.encode_indexed_png(levels, postprocess.turbo_palette()))
        boxes = [{"bbox": [int(v) for v in d["bbox"]], "peak": round(float(d["peak"]), 4), "area": int(d["area"])}
                 for d in result.defects[:100]]
        return {**verdict, "image_id": image_id, "heatmap_id": heat_id, "width": int(w), "height": int(h),
                "preview_scale": round(scale, 6), "boxes": boxes, "boxes_total": len(result.defects),
                "roi": list(result.parameters.get("roi") or [])}

    def _render_loop(self) -> None:
        lower_priority(self.nice)
        while not self._stop.is_set():
            with self._wake:
                while self._pending is None and not self._stop.is_set():
                    self._wake.wait(0.5)
                job, self._pending = self._pending, None
            if job is None:
                continue
            try:
                event = self.render(*job)
            except Exception as err:   # a preview is not worth a crash; the verdict went out already
                self.render_errors += 1
                log.warning("live preview of pulse %s failed: %r", job[1]["pulse_id"], err)
                continue
            self.rendered += 1
            self.last_frame = event
            self.hub.publish("frame", event)

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick):
            if self.hub.listeners:
                try:
                    self.hub.publish("status", self.status_event())
                except Exception as err:  # pragma: no cover - statistics are plain reads
                    log.warning("live status failed: %r", err)

    def status_event(self) -> dict:
        trend = self.trends.summary(since=time.time() - 2 * self.trends.bin_s)
        return {**self.status(), "trend": trend, "live": self.statistics()}

    # ------------------------------------------------------------------ streams
    def snapshot(self) -> list[tuple[str, Any]]:
        """The first events of a new stream: status, the hour's trends, recent verdicts, the last
        frame and the log's tail, so a tab opened now shows everything at once."""
        first: list[tuple[str, Any]] = [("status", self.status_event()),
                                        ("trends", self.trend_bins()),
                                        ("recent", list(self.recent)), ("logs", list(self.log.lines))]
        if self.last_frame is not None:
            first.append(("frame", self.last_frame))
        return first

    def events(self, client: str | None) -> Iterator[bytes]:
        """A new listener's stream, the snapshot first; Overloaded beyond the cap, before anything is sent."""
        return self.hub.stream(self.hub.subscribe(client), self.snapshot())

    def trend_bins(self) -> dict:
        return {"bin_s": self.trends.bin_s, "bins": self.trends.summary()}

    def statistics(self) -> dict:
        return {**self.hub.statistics(), "previews_rendered": self.rendered, "previews_skipped": self.skipped,
                "preview_errors": self.render_errors}

    # ------------------------------------------------------------------ lifetime
    def start(self) -> "Live":
        logging.getLogger("vi_stream").addHandler(self.log)
        for target, name in ((self._render_loop, "vi-live-render"), (self._tick_loop, "vi-live-tick")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self) -> None:
        """End the streams and the threads; the log is no longer tailed."""
        self.hub.close()
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for t in self._threads:
            t.join(2.0)
        self._threads = []
        logging.getLogger("vi_stream").removeHandler(self.log)

