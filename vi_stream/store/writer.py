"""The store writer: results reach the store off the processing path, and none is lost.

    worker --submit--> bounded queue --> writer thread: render PNGs, write a batch
                                              |  store refuses (StoreUnavailable)
                                              v
                                         on-disk spool --replay in order, with backoff--> store

Order is kept: while anything waits in the spool, new records go behind it, and the
spool is replayed oldest first. Replays are idempotent (deterministic ids), so a
record written just before a crash and replayed after it is not duplicated.

``submit`` waits when the queue is full (backpressure on the input, as with
``--block``): a result is never dropped for the store's sake. The spool is local
disk, so the queue only fills if rendering (PNG encoding) cannot keep up.

Longer than 300 lines: the writer thread, its spool replay and its books share one lock and one
promise (order kept, nothing lost); the spool's file format is apart (vi_stream.store.spool).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

from vi_stream.errors import InputError, ServiceError, StoreUnavailable
from vi_stream.frame import Result
from vi_stream.store.spool import Spool
from vi_stream.ratelog import RateLimitedLog
from vi_stream.store.record import Record
from vi_stream.store.protocols import Store
from vi_stream.threads import lower_priority

log = logging.getLogger("vi_stream.store")


class StoreWriter:
    def __init__(self, store: Store, spool: Spool, render: Callable[[Result], Record], queue_size: int = 8,
                 batch: int = 4, retry: tuple[float, float] = (0.5, 30.0), max_attempts: int = 3,
                 clock: Callable[[], float] = time.monotonic, nice: int = 10):
        self.store = store
        self.nice = nice
        self.spool = spool
        self.render = render
        self.batch = batch
        self.retry_min, self.retry_max = retry
        self.max_attempts = max_attempts
        self.clock = clock
        self._q: queue.Queue = queue.Queue(queue_size)
        self.queue_size = queue_size
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held: list[Record] = []          # rendered but neither stored nor spooled yet (disk refused)
        self._attempts: dict[int, int] = {}   # spool seq -> failed non-transient attempts
        self._backoff = self.retry_min
        self._next_retry = 0.0
        self.up = True
        self.lock = threading.Lock()
        self.stored = self.spooled_total = self.errors = self.set_aside = self.lost = self.render_failed = 0
        self.submitted = self.carried_over = 0
        self.waits = 0
        self._progress = clock()               # last time a result moved, the store was tried, or nothing waited
        self._deadline = float("inf")
        self.last_error: str | None = None
        self.down_reason: str | None = None    # why the store is down now (None while up)
        self._next_probe = 0.0
        self._down_by_probe = False
        self._logged_down = False
        self.rlog = RateLimitedLog(log, interval=30.0)

    # ------------------------------------------------------------------ lifetime
    def start(self) -> "StoreWriter":
        self.spool.open()
        with self.lock:
            self.carried_over += self.spool.pending
        if self.spool.pending:
            log.warning("%d result(s) waiting in the spool %s from an earlier run: replaying them first",
                        self.spool.pending, self.spool.folder)
        self._stop.clear()
        self._deadline = float("inf")
        self._progress = self.clock()
        self._thread = threading.Thread(target=self._loop, name="vi-store", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 15.0) -> None:
        """Finish what was submitted (to the store, or to the spool once ``timeout`` runs short)."""
        self._deadline = self.clock() + timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)
            if self._thread.is_alive():
                n = self._q.qsize() + len(self._held)
                with self.lock:
                    self.lost += n
                log.error("store writer did not finish within %.0f s: %d result(s) not stored", timeout, n)
            self._thread = None
        self.spool.close()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def healthy(self, max_age: float = 20.0) -> bool:
        """Progress, for the watchdog: within ``max_age`` s (plus the longest back-off) a result was
        stored or spooled, the store was tried, or nothing was waiting. A loop that can no longer
        reach the store while results wait is not healthy."""
        if self._thread is None:
            return True
        return self.alive() and self.clock() - self._progress < max_age + self.retry_max

    # ------------------------------------------------------------------ producer side
    def submit(self, result: Result, keep_waiting: Callable[[], bool] = lambda: True) -> bool:
        """Queue ``result``, waiting while the queue is full and ``keep_waiting()`` (asked every 0.1 s)
        says so; False if it said stop. ServiceError if the writer thread is gone."""
        waited = False
        while True:
            if not self.alive():
                raise ServiceError("the store writer is not running")
            try:
                self._q.put(result, timeout=0.1)
                with self.lock:
                    self.submitted += 1
                    self.waits += int(waited)
                return True
            except queue.Full:
                waited = True
                if not keep_waiting():
                    return False

    # ------------------------------------------------------------------ writer thread
    def _loop(self) -> None:
        lower_priority(self.nice)
        while True:
            stopping = self._stop.is_set()
            if self._held and not self._unblock(stopping):
                if stopping and self.clock() > self._deadline:
                    return
                self._stop.wait(min(0.5, self._backoff))
                continue
            replay_now = self.spool.pending and self._retry_due(stopping)
            results = self._take(0.0 if replay_now else 0.2)
            if not results and stopping:
                return
            if not results and not self.spool.pending:
                self._progress = self.clock()   # nothing waiting
                self._probe()
            records = self._render(results)
            if records:
                late = stopping and self.clock() > self._deadline - 2.0
                if self.spool.pending or not self._retry_due(late) or late:
                    self._held.extend(records)
                    self._spool_held()
                else:
                    self._write_direct(records)
            if self.spool.pending and self._retry_due(stopping):
                self._replay()

    def _unblock(self, stopping: bool) -> bool:
        """Results are held in memory because the spool disk refused them. Whichever frees first
        gets them out: the spool disk, or the store (the spool is replayed first, which keeps the
        order and frees spool space, then the held results go straight to the store). True once
        nothing is held."""
        if self._spool_held():
            return True
        if not self._retry_due(stopping):
            return False
        if self.spool.pending:
            self._replay()
        if not self.spool.pending and self._held:
            held, self._held = self._held, []
            self._write_direct(held)
        return not self._held

    def _take(self, wait: float) -> list[Result]:
        out = []
        try:
            out.append(self._q.get(timeout=wait) if wait > 0 else self._q.get_nowait())
        except queue.Empty:
            return out
        while len(out) < self.batch:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                break
        return out

    def _render(self, results: list[Result]) -> list[Record]:
        records = []
        for r in results:
            try:
                records.append(self.render(r))
            except Exception as err:  # a bug: say which frame, leave a note for a person, keep going
                with self.lock:
                    self.render_failed += 1
                f = r.frame
                reason = (f"pulse {f.pulse_id} of module {f.module!r} {f.side} (timestamp {f.sec}.{f.ns:09d}) "
                          f"could not be rendered for the store: {err!r}")
                try:
                    self.spool.note_unrenderable(f"unrenderable-{f.pulse_id}-{time.time_ns()}", reason)
                except OSError as os_err:
                    self._note_error(f"spool: {os_err}")
                log.exception("%s", reason)
        return records

    def _probe(self, every: float = 1.0) -> None:
        """Idle: ask the store whether it is still there (a store that can tell, as the local one whose
        folder may be removed), so /status says it is down before a result finds out. Only a probe's
        own "down" is cleared by a probe; a refused write is cleared by a write."""
        check = getattr(self.store, "check", None)
        if check is None or self.clock() < self._next_probe or not (self.up or self._down_by_probe):
            return
        if not self._retry_due(False):
            return
        self._next_probe = self.clock() + every
        try:
            check()
        except StoreUnavailable as err:
            self._failed_attempt(err)
            self._down_by_probe = True
            return
        self._recovered()

    def _retry_due(self, stopping: bool) -> bool:
        return self.up or (not stopping and self.clock() >= self._next_retry)

    def _note_error(self, message: str) -> None:
        with self.lock:
            self.errors += 1
            self.last_error = message

    def _failed_attempt(self, err: Exception) -> None:
        self._note_error(str(err))
        self._down_by_probe = False
        if self.up or not self._logged_down:
            log.error("store %s unavailable, results go to the spool %s: %s", self.store.description,
                      self.spool.folder, err)
            self._logged_down = True
        with self.lock:
            self.up, self.down_reason = False, str(err)
        self._next_retry = self.clock() + self._backoff
        self._backoff = min(self.retry_max, self._backoff * 2)

    def _recovered(self) -> None:
        if not self.up:
            log.warning("store %s is back: replaying %d spooled result(s)", self.store.description,
                        self.spool.pending)
        with self.lock:
            self.up, self.down_reason = True, None
        self._logged_down = False
        self._backoff = self.retry_min

    def _write_direct(self, records: list[Record]) -> None:
        self._progress = self.clock()
        try:
            self.store.write(records)
        except StoreUnavailable as err:
            self._failed_attempt(err)
            self._held.extend(records)
            self._spool_held()
            return
        except Exception as err:  # not transient: spool them; the replay isolates the record at fault
            self._note_error(repr(err))
            log.error("store %s refused a batch (%r): spooled, will retry each result", self.store.description, err)
            self._held.extend(records)
            self._spool_held()
            return
        self._recovered()
        with self.lock:
            self.stored += len(records)

    def _spool_held(self) -> bool:
        while self._held:
            try:
                self.spool.append(self._held[0])
            except OSError as err:
                self._note_error(f"spool: {err}")
                self.rlog.warning("spool_write", f"cannot write to the spool {self.spool.folder} "
                                  f"({err.strerror or err}): {len(self._held)} result(s) held in memory, "
                                  "input will back up")
                return False
            self._held.pop(0)
            self._progress = self.clock()
            with self.lock:
                self.spooled_total += 1
        return True

    def _replay(self) -> None:
        self._progress = self.clock()
        head = self.spool.head(self.batch)
        gone = self.spool.take_vanished()
        if gone:
            with self.lock:
                self.lost += gone         # removed from the spool folder by hand: the books say so
            log.error("%d spooled result(s) vanished from %s (the folder or its files were removed): lost",
                      gone, self.spool.folder)
        for seq, r in head:
            if isinstance(r, InputError):
                self._set_aside(seq, str(r))
                continue
            try:
                self.store.write([r])
            except StoreUnavailable as err:
                self._failed_attempt(err)
                return
            except Exception as err:
                n = self._attempts.get(seq, 0) + 1
                self._attempts[seq] = n
                self._note_error(repr(err))
                if n >= self.max_attempts:
                    self._set_aside(seq, f"refused {n} times by {self.store.description}: {err!r}")
                    continue
                self._next_retry = self.clock() + self._backoff
                with self.lock:
                    self.up, self.down_reason = False, f"refused a spooled result: {err!r}"
                return
            self.spool.remove(seq)
            self._attempts.pop(seq, None)
            self._recovered()
            with self.lock:
                self.stored += 1

    def _set_aside(self, seq: int, reason: str) -> None:
        path = self.spool.set_aside(seq, reason)
        self._attempts.pop(seq, None)
        with self.lock:
            self.set_aside += 1
        log.error("spooled result %d set aside in %s: %s", seq, path, reason)

    # ------------------------------------------------------------------ reporting
    def statistics(self) -> dict:
        with self.lock:
            return {
                "store": self.store.description,
                "up": self.up,
                "down_reason": self.down_reason,
                "submitted": self.submitted,
                "carried_over": self.carried_over,
                "set_aside": self.set_aside,
                "stored": self.stored,
                "spooled": self.spool.pending,
                "spooled_bytes": self.spool.bytes,
                "spooled_total": self.spooled_total,
                "failed": self.spool.failed(),      # in spool/failed/, this run and earlier ones
                "errors": self.errors,
                "render_failed": self.render_failed,
                "lost": self.lost,
                "queue": self._q.qsize(),
                "queue_size": self.queue_size,
                "held_in_memory": len(self._held),
                "submit_waits": self.waits,
                "last_error": self.last_error,
            }
