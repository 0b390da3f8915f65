"""Shadow mode: a candidate scores every N-th frame beside production, changing no verdict.

The processor tells this watcher of every result (cheap: every N-th is queued, and when
the shadow thread is still busy the frame is skipped and counted, so production never
waits). A low-priority thread scores the frame's image with the candidate at the
candidate's own threshold and compares its verdict with production's. Counts of
agreement go to ``/statistics`` and the page; every comparison where the two disagree is
kept in the store's shadow records (``put_shadow``) with both verdicts, scores and versions, so a person can
look at exactly the frames the candidate would have judged differently.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque

from vi_stream.store import record as rec
from vi_stream.store.protocols import ShadowRecords
from vi_stream.threads import lower_priority

log = logging.getLogger("vi_stream.shadow")


class ShadowWatch:
    def __init__(self, every: int, prefix: str, records: ShadowRecords | None = None, keep: int = 50,
                 nice: int = 10):
        self.every, self.prefix, self.records, self.nice = every, prefix, records, nice
        self.model = None
        self.version: str | None = None
        self.seen = self.compared = self.agreed = self.skipped = self.errors = 0
        self.both_anomalous = self.only_production = self.only_candidate = 0
        self.recent: deque[dict] = deque(maxlen=keep)
        self._q: queue.Queue = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set_model(self, model, doc: dict) -> None:
        """The candidate to compare with (the shadow's follower calls this when its alias moves)."""
        with self._lock:
            self.model, self.version = model, f"{doc['name']}@{doc['version']}"

    # ------------------------------------------------------------------ watcher
    def result(self, result) -> None:
        self.seen += 1
        if self.model is None or self.seen % self.every:
            return
        try:
            self._q.put_nowait(result)
        except queue.Full:
            self.skipped += 1       # still busy with the last one: production never waits

    def rejected(self, reason: str, frame=None) -> None:
        pass

    # ------------------------------------------------------------------ thread
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="shadow", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        lower_priority(self.nice)
        while not self._stop.is_set():
            try:
                result = self._q.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.compare(result)
            except Exception as err:   # the shadow is never worth the daemon
                self.errors += 1
                log.warning("shadow scoring of pulse %s failed: %r", result.frame.pulse_id, err)

    def compare(self, result) -> dict:
        with self._lock:
            model, version = self.model, self.version
        started = time.perf_counter()
        r = model.score(result.image)
        f, p = result.frame, result.parameters
        doc = {"at": rec.now_iso(), "pulse_id": int(f.pulse_id), "module": f.module, "side": f.side,
               "result_id": rec.result_id(self.prefix, f.module, f.side, f.pulse_id, f.sec, f.ns),
               "production": {"version": p.get("model_version") or p.get("model_id"), "score": float(result.score),
                              "threshold": p.get("threshold"), "is_anomalous": bool(result.is_anomalous)},
               "candidate": {"version": version, "score": float(r.score), "threshold": r.threshold,
                             "is_anomalous": bool(r.is_anomalous)},
               "seconds": round(time.perf_counter() - started, 3)}
        agree = doc["production"]["is_anomalous"] == doc["candidate"]["is_anomalous"]
        # Stored before it is counted: a status that counts a disagreement finds it in the store.
        if not agree and self.records is not None:
            try:
                self.records.put_shadow(doc)
            except Exception as err:   # kept in memory; the store may be down
                log.warning("shadow comparison of pulse %s not stored: %r", f.pulse_id, err)
        with self._lock:
            self.compared += 1
            self.agreed += agree
            self.both_anomalous += doc["production"]["is_anomalous"] and doc["candidate"]["is_anomalous"]
            self.only_production += doc["production"]["is_anomalous"] and not agree
            self.only_candidate += doc["candidate"]["is_anomalous"] and not agree
            if not agree:
                self.recent.append(doc)
        return doc

    def status(self) -> dict:
        with self._lock:
            return {"candidate": self.version, "every": self.every, "frames_seen": self.seen,
                    "compared": self.compared, "agreed": self.agreed,
                    "agreement": round(self.agreed / self.compared, 4) if self.compared else None,
                    "both_anomalous": self.both_anomalous, "only_production_anomalous": self.only_production,
                    "only_candidate_anomalous": self.only_candidate, "skipped_busy": self.skipped,
                    "errors": self.errors, "disagreements": list(self.recent)[-10:]}
