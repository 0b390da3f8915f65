"""What the operator's monitor sees live: Server-Sent Events from the daemon's own REST server.

* :class:`Hub` fans events out to a bounded number of listeners (one per open monitor tab),
  at most ``per_client`` of them from one address, so one client cannot shut the others out.
  A new stream from a tab that holds one already (a reloaded page) ends its old one, and only that
  (see :meth:`Hub.subscribe`).
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
from vi_stream.web.trends import TrendRecorder, Trends

log = logging.getLogger("vi_stream.live")

MAX_LISTENERS = 16        # open monitor tabs; one more gets 503 (the REST server keeps 64 connections)
MAX_PER_CLIENT = 4        # of which one address may hold this many
MAX_STREAM_S = 300.0      # a stream's age: a tab that stopped reading holds its slot this long at most (the
                          # daemon cannot see a page stop reading; its kernel takes a few hundred KB first)
HEARTBEAT_S = 15.0        # an idle stream sends a comment this often (proxies and browsers keep it open)
RETRY_MS = 2000           # the browser reconnects after this long when a stream ends
QA_MARGIN = 0.2           # yellow without calibration scores: a score within 20% below the threshold


def yellow_from(threshold: float, calibration: list[float] | None, margin: float = QA_MARGIN) -> float:
    """Where yellow starts: above every good image the model was calibrated on (the highest of its
    ``calibration_scores``: no good module seen scored this high), or, for a model without them, 20%
    below the threshold."""
    if calibration:
        return float(max(calibration))
    return threshold * (1.0 - margin)


def qa_colour(score: float, threshold: float, anomalous: bool, yellow: float | None = None) -> str:
    """green up to ``yellow`` (:func:`yellow_from`; None: a model without calibration scores), yellow from
    it to the threshold, red anomalous (grey is a rejected frame)."""
    if anomalous:
        return "red"
    yellow = yellow_from(threshold, None) if yellow is None else yellow
    return "yellow" if yellow <= score < threshold else "green"


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One Server-Sent Event (the data as one line of JSON)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


class _Listener:
    def __init__(self, size: int, client: str | None = None, tab: str | None = None):
        self.q: queue.Queue = queue.Queue(size)
        self.client, self.tab, self.dropped = client, tab, 0

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
        self.superseded = 0        # streams ended for a newer one from their own tab

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def publish(self, event: str, data: Any) -> None:
        with self._lock:
            self._seq += 1
            chunk = sse(event, data, self._seq)
            for listener in self._listeners:
                listener.offer(chunk)

    def subscribe(self, client: str | None = None, tab: str | None = None) -> _Listener:
        """A new stream for ``client`` (its address; None: not counted per client) from the page ``tab``
        (the page's id for its browser tab, kept across reloads; None: a client without one).

        A stream from the same client and tab as an open one ends that one (it gets a ``superseded``
        event, then its end): a reloaded page's old stream stays open until a write finds its socket
        gone (a second or two, up to about a minute when the browser keeps it half-open), and would
        hold a place the new page needs. Nothing else ends a stream: beyond the caps a new one is
        refused, so more tabs than the cap, or a stranger behind the same address, never take turns
        with the open ones."""
        with self._lock:
            if self.closed:
                raise Overloaded("the daemon is shutting down")
            if tab is not None:
                old = next((x for x in self._listeners if x.client == client and x.tab == tab), None)
                if old is not None:
                    self._listeners.discard(old)
                    old.offer(sse("superseded", {"reason": "a newer stream from this tab"}))
                    old.offer(None)          # its generator returns and the connection closes
                    self.superseded += 1
            if len(self._listeners) >= self.max_listeners:
                self.refused += 1
                raise Overloaded(f"{self.max_listeners} live streams are open already; close a monitor tab")
            if client is not None and sum(x.client == client for x in self._listeners) >= self.per_client:
                self.refused += 1
                raise Overloaded(f"{self.per_client} live streams are open from {client} already (the limit per "
                                 "client address); close a monitor tab there")
            listener = _Listener(self.queue_size, client, tab)
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
                "refused": self.refused, "expired": self.expired, "superseded": self.superseded,
                "max_age_s": self.max_age,
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
                 qa_margin: float = QA_MARGIN, tick: float = 1.0, nice: int = 5,
                 recorder: TrendRecorder | None = None):
        self.hub = hub or Hub()
        self.status = status
        self.preview_side, self.qa_margin, self.tick, self.nice = preview_side, qa_margin, tick, nice
        self.images, self.trends = ImageCache(), Trends()
        self.recorder = recorder or TrendRecorder(None, "")
        self.calibration: list[float] = []   # the running model's good images' scores (the yellow band)
        self.anomalous_run = 0                # modules judged anomalous in a row, now
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
        yellow = yellow_from(threshold, self.calibration, self.qa_margin)
        verdict = {"pulse_id": int(result.frame.pulse_id), "module": result.frame.module,
                   "side": result.frame.side, "tag": result.frame.tag, "score": round(float(result.score), 5),
                   "threshold": threshold, "is_anomalous": bool(result.is_anomalous),
                   "qa": qa_colour(float(result.score), threshold, bool(result.is_anomalous), yellow),
                   "yellow_from": round(yellow, 6),
                   "defects": len(result.defects), "model_id": p.get("model_id"),
                   "latency_ms": round(latency * 1e3, 1), "t_result": time.time()}
        self.trends.add(float(result.score), bool(result.is_anomalous), latency, p.get("model_id"),
                        p.get("model_version"), threshold)
        self.anomalous_run = self.anomalous_run + 1 if result.is_anomalous else 0
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
            self.recorder.tick(self.trends)   # closed bins to the store (a down store: the next tick)
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

    def events(self, client: str | None, tab: str | None = None) -> Iterator[bytes]:
        """A new listener's stream, the snapshot first; Overloaded beyond the cap, before anything is sent
        (``tab``: see :meth:`Hub.subscribe`)."""
        listener = self.hub.subscribe(client, tab)
        try:
            first = self.snapshot()
        except BaseException:
            self.hub.unsubscribe(listener)     # the stream never started: its slot is free again
            raise
        return self.hub.stream(listener, first)

    def trend_bins(self, since: float | None = None, until: float | None = None) -> dict:
        """The bins and drift chunks in [since, until) (default: the last hour), read from the store's
        trend points and the bins not written yet (at most :data:`~vi_stream.web.trends.MAX_POINTS`)."""
        now = time.time()
        until = now + self.trends.bin_s if until is None else until
        since = until - 3600.0 - self.trends.bin_s if since is None else since
        return self.recorder.read(self.trends, since, until)

    def statistics(self) -> dict:
        return {**self.hub.statistics(), "previews_rendered": self.rendered, "previews_skipped": self.skipped,
                "preview_errors": self.render_errors, "trend_points_written": self.recorder.written}

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

