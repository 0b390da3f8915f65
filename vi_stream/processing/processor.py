"""The processor: receiver thread -> bounded queue -> worker -> output thread.

It owns the stopped/processing state machine and the statistics. Settings
(ROI, threshold) are swapped atomically between frames: a worker reads the
current :class:`~vi_stream.processing.settings.Settings` once per frame.

Frames are never silently lost: a frame taken from the input is processed,
rejected (counted by reason) or, if it could not be finished before stop()'s
deadline, counted as ``discarded_on_stop``.

Longer than 300 lines: the state machine and its three loops share one run's queues, progress
and lock; split, stop()'s promise (the books settled under the lock) would span files.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from vi_stream.processing.control import PROCESSING, STOPPED
from vi_stream.errors import InputError
from vi_stream.frame import Frame, Result
from vi_stream.ratelog import RateLimitedLog
from vi_stream.processing.statistics import Statistics
from vi_stream.processing.pipeline import Pipeline
from vi_stream.processing.settings import Settings

log = logging.getLogger("vi_stream.processor")


class Source(Protocol):
    def start(self) -> None: ...
    def close(self) -> None: ...
    def receive(self, timeout_ms: int = 100) -> Frame | None: ...


Output = Callable[[Result], bool]  # returns False if the result was dropped


@dataclass(eq=False)
class _Run:
    """One start..stop of processing: its own input, queues and threads. A thread only ever
    touches its own run, so a stop that gives up on a slow thread cannot hand it the next run's
    queues, and a new start never sees the old threads."""

    source: Source
    inq: queue.Queue
    outq: queue.Queue
    stop: threading.Event = field(default_factory=threading.Event)
    deadline: float = float("inf")
    abandoned: bool = False                 # stop() gave up waiting: late results are discarded
    busy: bool = False                      # the worker holds a frame it has not yet accounted for
    lock: threading.Lock = field(default_factory=threading.Lock)
    receiver: threading.Thread | None = None
    worker: threading.Thread | None = None
    output: threading.Thread | None = None
    progress: dict[str, float] = field(default_factory=dict)   # stage -> last time it moved or idled

    def threads(self) -> list[threading.Thread]:
        return [t for t in (self.receiver, self.worker, self.output) if t is not None]


class Processor:
    def __init__(self, source_factory: Callable[[], Source], pipeline: Pipeline, outputs: list[Output],
                 settings: Settings = Settings(), queue_size: int = 4, output_queue_size: int = 8,
                 block_output: bool = False, clock: Callable[[], float] = time.monotonic,
                 store: "StoreSink | None" = None, watch: "Watcher | tuple[Watcher, ...] | None" = None):
        self.source_factory = source_factory
        self.pipeline = pipeline
        self.outputs = outputs
        self.store = store  # every processed result goes here, even when the stream output drops it
        # the live monitor, the drift watch: told of every verdict and reject, never waited for
        self.watchers: tuple = () if watch is None else watch if isinstance(watch, tuple) else (watch,)
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
        self._run: _Run | None = None
        self.clock = clock

    # ------------------------------------------------------------------ settings
    @property
    def settings(self) -> Settings:
        return self._settings

    def apply(self, clean: dict) -> None:
        """Apply settings already checked by :func:`vi_stream.processing.settings.validate`, all in one swap."""
        with self._settings_lock:
            s = self._settings
            self._settings = Settings(clean.get("roi", s.roi), clean.get("threshold", s.threshold))
            if "block" in clean:
                self.block_output = clean["block"]
        if "roi" in clean:
            log.info("ROI set to %s", clean["roi"] or "whole image")
        if "threshold" in clean:
            log.info("threshold set to %s", clean["threshold"] if clean["threshold"] is not None else "the model's")

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
            run = _Run(source, queue.Queue(self.queue_size), queue.Queue(self.output_queue_size))
            now = self.clock()
            run.progress = {"receive": now, "work": now, "output": now}
            run.receiver = threading.Thread(target=self._receive_loop, args=(run,), name="vi-receive", daemon=True)
            run.worker = threading.Thread(target=self._work_loop, args=(run,), name="vi-work", daemon=True)
            run.output = threading.Thread(target=self._output_loop, args=(run,), name="vi-output", daemon=True)
            for t in run.threads():
                t.start()
            self._run = run
            self.state = PROCESSING
        log.info("processing started")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading, finish frames already taken (within ``timeout``), then close the input."""
        with self._lock:
            run = self._run
            if self.state == STOPPED or run is None:
                return
            # Waiting is real time whatever clock measures: a thread join cannot wait on a test's clock.
            run.deadline = time.monotonic() + timeout
            run.stop.set()
            for t in run.threads():
                t.join(max(0.0, run.deadline - time.monotonic()))
            late = [t.name for t in run.threads() if t.is_alive()]
            with run.lock:   # from here on the books are final: what a late thread finishes is not counted
                run.abandoned = bool(late)
                lost = _drain(run.inq) + int(run.busy)
            # Anything not finished in time is counted, never dropped silently.
            if lost:
                self.stats.count("discarded_on_stop", lost)
                log.warning("%d frames could not be finished before the stop deadline", lost)
            unsent = _drain(run.outq)
            if unsent:
                self.stats.count("dropped_output", unsent)
                log.warning("%d processed frames were not sent before the stop deadline", unsent)
            if late:
                log.error("thread(s) %s still busy at the stop deadline: what they finish is discarded",
                          ", ".join(late))
            if run.receiver is not None and not run.receiver.is_alive():
                run.source.close()
            # else: the receiver closes its own source when it ends (a socket is not shared across threads)
            self._run = None
            self.state = STOPPED
        log.info("processing stopped")

    # ------------------------------------------------------------------ loops
    def _receive_loop(self, run: _Run) -> None:
        try:
            while not run.stop.is_set():
                run.progress["receive"] = self.clock()
                try:
                    frame = run.source.receive(100)
                except InputError as err:   # a message was taken and refused: received and rejected
                    self.stats.reject(err.reason)
                    self._tell("rejected", err.reason, None)
                    self.rlog.warning(err.reason, f"rejected frame: {err}")
                    continue
                except Exception as err:  # the adapter itself failed; no message was taken
                    self.stats.count("input_errors")
                    self.rlog.warning("input_error", f"input error: {err!r}")
                    time.sleep(0.1)
                    continue
                if frame is None:
                    continue
                # The source stamps arrival on the monotonic clock; what the processor measures is on its
                # own clock (injected in tests), so the stamp is carried over, the decoding time kept.
                frame.received_at = self.clock() - (time.monotonic() - frame.received_at)
                self.stats.count("received")
                # Backpressure: wait for room (the sender's HWM then holds further frames).
                if not self._put(run, run.inq, frame, "receive", run.stop.is_set):
                    self.stats.count("discarded_on_stop")   # taken from the input: never lost silently
                    return
        finally:
            if run.abandoned:
                run.source.close()

    def _put(self, run: _Run, q: queue.Queue, item, stage: str, give_up: Callable[[], bool]) -> bool:
        """Wait for room in ``q``, staying responsive; False once ``give_up()`` (the caller counts the item)."""
        while True:
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                run.progress[stage] = self.clock()   # waiting on the next stage is not a hang of this one
                if give_up():
                    return False

    def _work_loop(self, run: _Run) -> None:
        while True:
            try:
                frame = run.inq.get(timeout=0.1)
            except queue.Empty:
                run.progress["work"] = self.clock()
                if run.stop.is_set() and not run.receiver.is_alive():
                    return
                continue
            run.progress["work"] = self.clock()
            with run.lock:
                if run.abandoned:
                    return
                run.busy = True
            # One consistent view per frame: both are immutable references swapped atomically.
            settings, pipeline = self._settings, self.pipeline
            self.last_shape = frame.image.shape
            try:
                result, reason, err = pipeline.process(frame, settings), None, None
            except InputError as e:
                result, reason, err = None, e.reason, e
            except Exception as e:
                result, reason, err = None, "processing_error", e
            run.progress["work"] = self.clock()
            with run.lock:
                if run.abandoned:   # stop() gave up on this frame, counted it as discarded and returned
                    return
                run.busy = False
                if result is None:
                    self.stats.reject(reason, received=False)
                else:
                    self.stats.processed(result)
            if result is None:
                self._tell("rejected", reason, frame)
            else:
                self._tell("result", result)
            if result is None:
                if reason == "processing_error":
                    log.error("pulse %s: processing failed: %r", frame.pulse_id, err, exc_info=err,
                              extra={"pulse_id": frame.pulse_id, "module_name": frame.module})
                else:
                    self.rlog.warning(reason, f"pulse {frame.pulse_id}: {err}", frame.pulse_id, frame.module)
                continue
            if self.store is not None:
                self._store(run, result)
            if self.block_output:
                if not self._put(run, run.outq, result, "work",
                                 lambda: run.stop.is_set() and not run.output.is_alive()):
                    self.stats.output(sent=False)
            else:
                try:
                    run.outq.put_nowait(result)
                except queue.Full:
                    self.stats.output(sent=False)

    def _tell(self, what: str, *args) -> None:
        for watcher in self.watchers:
            try:
                getattr(watcher, what)(*args)
            except Exception as err:   # a watcher is never worth a frame
                self.rlog.warning("watch_error", f"{type(watcher).__name__} failed: {err!r}")

    def _store(self, run: _Run, result: Result) -> None:
        """Hand the result to the store writer, waiting for room (a result is never dropped for the store)."""
        def keep_waiting() -> bool:
            run.progress["work"] = self.clock()   # waiting on the writer is the writer's to answer for
            return not (run.stop.is_set() and time.monotonic() > run.deadline)
        try:
            if not self.store.submit(result, keep_waiting):
                self.stats.count("not_stored")
                log.error("pulse %s: not stored: the store queue stayed full past the stop deadline",
                          result.frame.pulse_id)
        except Exception as err:
            self.stats.count("not_stored")
            self.rlog.warning("store_error", f"pulse {result.frame.pulse_id}: not stored: {err}")

    def _output_loop(self, run: _Run) -> None:
        while True:
            try:
                result = run.outq.get(timeout=0.1)
            except queue.Empty:
                run.progress["output"] = self.clock()
                if run.stop.is_set() and not run.worker.is_alive():
                    return
                continue
            ok = True
            for out in self.outputs:
                try:
                    ok = out(result) and ok
                except Exception as err:
                    ok = False
                    self.rlog.warning("output_error", f"output failed: {err!r}")
            run.progress["output"] = self.clock()
            self.stats.output(ok, self.clock() - result.frame.received_at)

    # ------------------------------------------------------------------ reporting
    def statistics(self) -> dict:
        s = self.stats.snapshot()
        s["state"] = self.state
        run = self._run
        s["queues"] = {"input": run.inq.qsize() if run else 0, "input_size": self.queue_size,
                       "output": run.outq.qsize() if run else 0, "output_size": self.output_queue_size}
        s["model_id"] = self.pipeline.model.model_id
        s["roi"] = self._settings.roi or []
        if self.store is not None:
            s["store"] = self.store.statistics()
        return s

    def healthy(self, max_age: float = 20.0) -> bool:
        """Progress, for the systemd watchdog: every stage of a running processor has moved a frame
        or found nothing waiting within ``max_age`` s, and the store writer (stopped or not) too."""
        if self.store is not None and not self.store.healthy(max_age):
            return False
        run = self._run
        if self.state != PROCESSING or run is None:
            return True
        now = self.clock()
        return all(t.is_alive() for t in run.threads()) and \
            all(now - t < max_age for t in run.progress.values())


def _drain(q: queue.Queue) -> int:
    n = 0
    while True:
        try:
            q.get_nowait()
            n += 1
        except queue.Empty:
            return n


class Watcher(Protocol):
    """What the processor tells the live monitor (:class:`vi_stream.web.live.Live`); both must return at once."""

    def result(self, result: Result) -> None: ...
    def rejected(self, reason: str, frame: Frame | None) -> None: ...


class StoreSink(Protocol):
    """What the processor needs of the store writer."""

    def submit(self, result: Result, keep_waiting: Callable[[], bool]) -> bool: ...
    def statistics(self) -> dict: ...
    def healthy(self, max_age: float) -> bool: ...
