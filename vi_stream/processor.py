"""The processor: receiver thread -> bounded queue -> worker -> output thread.

It owns the stopped/processing state machine and the statistics. Settings
(ROI, threshold) are swapped atomically between frames: a worker reads the
current :class:`~vi_stream.pipeline.Settings` once per frame.

Frames are never silently lost: a frame taken from the input is processed,
rejected (counted by reason) or, if it could not be finished before stop()'s
deadline, counted as ``discarded_on_stop``.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Protocol

from . import roi as roi_mod
from .errors import ConfigError, InputError
from .frame import Frame, Result
from .pipeline import Pipeline, Settings

if TYPE_CHECKING:  # pragma: no cover
    from .writer import StoreWriter

log = logging.getLogger("vi_stream.processor")

STOPPED = "stopped"
PROCESSING = "processing"


class Source(Protocol):
    def start(self) -> None: ...
    def close(self) -> None: ...
    def receive(self, timeout_ms: int = 100) -> Frame | None: ...


class RateLimitedLog:
    """First occurrence of each key is logged; then at most one summary line per ``interval`` s."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, msg: str, pulse_id: int | None = None, module: str | None = None) -> None:
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            n = self._suppressed.pop(key, 0)
            self._last[key] = now
        self.logger.warning("%s%s", msg, f" ({n} more '{key}' suppressed)" if n else "",
                            extra={"pulse_id": pulse_id, "module_name": module})


class Statistics:
    def __init__(self, clock: Callable[[], float] = time.monotonic, window: float = 10.0):
        self.clock = clock
        self.window = window
        self.lock = threading.Lock()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.received = self.processed = self.sent = self.dropped_output = self.discarded_on_stop = 0
        self.not_stored = 0
        self.rejected: dict[str, int] = {}
        self.last_pulse_id: int | None = None
        self.last_frame_time: float | None = None
        self.last_score: float | None = None
        self.anomalous = 0
        self._done: deque[tuple[float, int]] = deque()
        self._latency: deque[float] = deque(maxlen=2000)

    def reject(self, reason: str) -> None:
        with self.lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def done(self, r: Result, latency: float) -> None:
        now = self.clock()
        with self.lock:
            self.processed += 1
            self.anomalous += int(r.is_anomalous)
            self.last_pulse_id = r.frame.pulse_id
            self.last_frame_time = r.frame.timestamp
            self.last_score = r.score
            self._done.append((now, int(r.image.shape[0] * r.image.shape[1])))
            self._latency.append(latency)
            while self._done and now - self._done[0][0] > self.window:
                self._done.popleft()

    def snapshot(self) -> dict:
        now = self.clock()
        with self.lock:
            while self._done and now - self._done[0][0] > self.window:
                self._done.popleft()
            span = (now - self._done[0][0]) if len(self._done) > 1 else 0.0
            n = len(self._done) - 1 if len(self._done) > 1 else 0
            px = sum(p for _t, p in list(self._done)[1:])
            lat = sorted(self._latency)
            return {
                "start_time": self.started_at,
                "frames_received": self.received,
                "frames_processed": self.processed,
                "frames_anomalous": self.anomalous,
                "frames_rejected": dict(self.rejected),
                "frames_rejected_total": sum(self.rejected.values()),
                "frames_discarded_on_stop": self.discarded_on_stop,
                "output_sent": self.sent,
                "output_dropped": self.dropped_output,
                "not_stored": self.not_stored,
                "last_pulse_id": self.last_pulse_id,
                "last_frame_time": self.last_frame_time,
                "last_score": self.last_score,
                "interval_s": round(span, 3),
                "frames_per_s": round(n / span, 3) if span > 0 else 0.0,
                "megapixels_per_s": round(px / span / 1e6, 3) if span > 0 else 0.0,
                "latency_ms": {"p50": round(_pct(lat, 50) * 1e3, 2) if lat else None,
                               "p99": round(_pct(lat, 99) * 1e3, 2) if lat else None,
                               "samples": len(lat)},
            }


def _pct(sorted_vals: list[float], p: float) -> float:
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


Output = Callable[[Result], bool]  # returns False if the result was dropped


class Processor:
    def __init__(self, source_factory: Callable[[], Source], pipeline: Pipeline, outputs: list[Output],
                 settings: Settings = Settings(), queue_size: int = 4, output_queue_size: int = 8,
                 block_output: bool = False, clock: Callable[[], float] = time.monotonic,
                 store: "StoreWriter | None" = None):
        self.source_factory = source_factory
        self.pipeline = pipeline
        self.outputs = outputs
        self.store = store  # every processed result goes here, even when the stream output drops it
        self._settings = settings
        self.queue_size = queue_size
        self.output_queue_size = output_queue_size
        self.block_output = block_output
        self.stats = Statistics(clock)
        self.rlog = RateLimitedLog(log)
        self.state = STOPPED
        self.last_shape: tuple[int, ...] | None = None
        self._lock = threading.RLock()          # state transitions
        self._settings_lock = threading.Lock()  # settings/pipeline swaps (never held while joining)
        self._stop = threading.Event()
        self._stop_deadline = float("inf")
        self._in: queue.Queue = queue.Queue(queue_size)
        self._out: queue.Queue = queue.Queue(output_queue_size)
        self._threads: list[threading.Thread] = []
        self._source: Source | None = None
        self.healthy_at = clock()   # last time the loops proved alive (watchdog)
        self.clock = clock

    # ------------------------------------------------------------------ settings
    @property
    def settings(self) -> Settings:
        return self._settings

    def set_roi(self, roi) -> list[int] | None:
        clean = roi_mod.validate(roi, self.last_shape)
        with self._settings_lock:
            self._settings = Settings(clean, self._settings.threshold)
        log.info("ROI set to %s", clean or "whole image")
        return clean

    def set_threshold(self, threshold: float | None) -> None:
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0 \
                    or threshold != threshold or threshold == float("inf"):
                raise ConfigError(f"threshold must be a positive number or null, got {threshold!r}")
            threshold = float(threshold)
        with self._settings_lock:
            self._settings = Settings(self._settings.roi, threshold)
        log.info("threshold set to %s", threshold if threshold is not None else "the model's")

    def set_pipeline(self, pipeline: Pipeline) -> None:
        """Swap the model between frames (the worker reads it once per frame)."""
        with self._settings_lock:
            self.pipeline = pipeline

    # ------------------------------------------------------------------ state machine
    def start(self) -> None:
        with self._lock:
            if self.state == PROCESSING:
                return
            source = self.source_factory()
            source.start()
            self._source = source
            self._stop.clear()
            self._stop_deadline = float("inf")
            self._threads = [threading.Thread(target=self._receive_loop, name="vi-receive", daemon=True),
                             threading.Thread(target=self._work_loop, name="vi-work", daemon=True),
                             threading.Thread(target=self._output_loop, name="vi-output", daemon=True)]
            for t in self._threads:
                t.start()
            self.state = PROCESSING
            self.healthy_at = self.clock()
        log.info("processing started")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading, finish frames already taken (within ``timeout``), then close the input."""
        with self._lock:
            if self.state == STOPPED:
                return
            deadline = self._stop_deadline = time.monotonic() + timeout
            self._stop.set()
            for t in self._threads:
                t.join(max(0.0, deadline - time.monotonic()))
            # Anything still queued could not be finished in time: count it, never drop silently.
            lost = 0
            for q in (self._in, self._out):
                while True:
                    try:
                        q.get_nowait()
                        lost += 1
                    except queue.Empty:
                        break
            if lost:
                with self.stats.lock:
                    self.stats.discarded_on_stop += lost
                log.warning("%d frames could not be finished before the stop deadline", lost)
            if self._source is not None:
                self._source.close()
                self._source = None
            self._threads = []
            self.state = STOPPED
        log.info("processing stopped")

    # ------------------------------------------------------------------ loops
    def _receive_loop(self) -> None:
        src = self._source
        while not self._stop.is_set():
            self.healthy_at = self.clock()
            try:
                frame = src.receive(100)
            except InputError as err:
                reason = getattr(err, "reason", "bad_input")
                with self.stats.lock:
                    self.stats.received += 1
                self.stats.reject(reason)
                self.rlog.warning(reason, f"rejected frame: {err}")
                continue
            except Exception as err:  # a broken adapter must not kill the loop silently
                self.stats.reject("receive_error")
                self.rlog.warning("receive_error", f"input error: {err!r}")
                time.sleep(0.1)
                continue
            if frame is None:
                continue
            with self.stats.lock:
                self.stats.received += 1
            # Backpressure: wait for room (the sender's HWM then holds further frames).
            if not self._put(self._in, frame, self._stop.is_set):
                return

    def _put(self, q: queue.Queue, item, give_up: Callable[[], bool]) -> bool:
        """Wait for room in ``q``, staying responsive; on ``give_up()`` count the item as
        discarded on stop (it was taken from the input, so it is never lost silently)."""
        while True:
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                self.healthy_at = self.clock()
                if give_up():
                    with self.stats.lock:
                        self.stats.discarded_on_stop += 1
                    return False

    def _work_loop(self) -> None:
        while True:
            try:
                frame = self._in.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set() and not any(t.is_alive() for t in self._threads[:1]):
                    return
                self.healthy_at = self.clock()
                continue
            self.healthy_at = self.clock()
            # One consistent view per frame: both are immutable references swapped atomically.
            settings, pipeline = self._settings, self.pipeline
            self.last_shape = frame.image.shape
            try:
                result = pipeline.process(frame, settings)
            except ConfigError as err:  # e.g. ROI no longer inside a resized image
                self.stats.reject("roi_outside_image")
                self.rlog.warning("roi_outside_image", f"pulse {frame.pulse_id}: {err}", frame.pulse_id, frame.module)
                continue
            except InputError as err:
                self.stats.reject("bad_image")
                self.rlog.warning("bad_image", f"pulse {frame.pulse_id}: {err}", frame.pulse_id, frame.module)
                continue
            except Exception as err:
                self.stats.reject("processing_error")
                log.exception("pulse %s: processing failed: %r", frame.pulse_id, err,
                              extra={"pulse_id": frame.pulse_id, "module_name": frame.module})
                continue
            if self.store is not None:
                self._store(result)
            if self.block_output:
                self._put(self._out, result, lambda: self._stop.is_set() and not self._threads[2].is_alive())
            else:
                try:
                    self._out.put_nowait(result)
                except queue.Full:
                    with self.stats.lock:
                        self.stats.dropped_output += 1
                    self.stats.done(result, time.monotonic() - frame.received_at)
                    continue

    def _store(self, result: Result) -> None:
        """Hand the result to the store writer, waiting for room (a result is never dropped for the store)."""
        def keep_waiting() -> bool:
            self.healthy_at = self.clock()   # waiting on the writer is not a hang
            return not (self._stop.is_set() and time.monotonic() > self._stop_deadline)
        try:
            if not self.store.submit(result, keep_waiting):
                with self.stats.lock:
                    self.stats.not_stored += 1
                log.error("pulse %s: not stored: the store queue stayed full past the stop deadline",
                          result.frame.pulse_id)
        except Exception as err:
            with self.stats.lock:
                self.stats.not_stored += 1
            self.rlog.warning("store_error", f"pulse {result.frame.pulse_id}: not stored: {err}")

    def _output_loop(self) -> None:
        while True:
            try:
                result = self._out.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set() and not self._threads[1].is_alive():
                    return
                continue
            ok = True
            for out in self.outputs:
                try:
                    ok = out(result) and ok
                except Exception as err:
                    ok = False
                    self.rlog.warning("output_error", f"output failed: {err!r}")
            with self.stats.lock:
                if ok:
                    self.stats.sent += 1
                else:
                    self.stats.dropped_output += 1
            self.stats.done(result, time.monotonic() - result.frame.received_at)

    # ------------------------------------------------------------------ reporting
    def statistics(self) -> dict:
        s = self.stats.snapshot()
        s["state"] = self.state
        s["queues"] = {"input": self._in.qsize(), "input_size": self.queue_size,
                       "output": self._out.qsize(), "output_size": self.output_queue_size}
        s["model_id"] = self.pipeline.model.model_id
        s["roi"] = self._settings.roi or []
        if self.store is not None:
            s["store"] = self.store.statistics()
        return s

    def healthy(self, max_age: float = 5.0) -> bool:
        """True while the loops are alive and turning (for the systemd watchdog)."""
        if self.state != PROCESSING:
            return True
        return all(t.is_alive() for t in self._threads) and self.clock() - self.healthy_at < max_age
