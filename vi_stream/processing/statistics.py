"""The processor's counters, rates and latencies, behind methods (callers never take its lock)."""
from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Callable

from vi_stream.frame import Result


class Statistics:
    """Counters of one daemon's life. Callers use the methods; the lock is private.

    The identity it keeps (checked by the tests): every frame taken from the input is
    ``received`` and then exactly one of processed, rejected (by reason) or discarded on
    stop; every processed frame's output is then sent or dropped.
    """

    # upper bounds (s) of the cumulative latency histogram (receive -> output handed to ZMQ)
    LATENCY_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
    COUNTERS = ("received", "processed", "anomalous", "sent", "dropped_output", "discarded_on_stop",
                "not_stored", "input_errors")

    def __init__(self, clock: Callable[[], float] = time.monotonic, window: float = 10.0):
        self.clock = clock
        self.window = window
        self._lock = threading.Lock()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._n = dict.fromkeys(self.COUNTERS, 0)
        self._rejected: dict[str, int] = {}
        self.last_pulse_id: int | None = None
        self.last_frame_time: float | None = None
        self.last_score: float | None = None
        self._done: deque[tuple[float, int]] = deque()
        self._latency: deque[float] = deque(maxlen=2000)
        self._lat_buckets = [0] * (len(self.LATENCY_BOUNDS) + 1)   # the last: above every bound
        self._lat_sum = 0.0

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._n[name] += n

    def reject(self, reason: str, received: bool = True) -> None:
        """A frame refused for ``reason``; ``received`` unless it was counted as received already."""
        with self._lock:
            self._rejected[reason] = self._rejected.get(reason, 0) + 1
            self._n["received"] += int(received)

    def processed(self, r: Result) -> None:
        """A frame scored (whatever then happens to its output)."""
        now = self.clock()
        with self._lock:
            self._n["processed"] += 1
            self._n["anomalous"] += int(r.is_anomalous)
            self.last_pulse_id = r.frame.pulse_id
            self.last_frame_time = r.frame.timestamp
            self.last_score = r.score
            self._done.append((now, int(r.image.shape[0] * r.image.shape[1])))
            while self._done and now - self._done[0][0] > self.window:
                self._done.popleft()

    def output(self, sent: bool, latency: float | None = None) -> None:
        """A processed frame's output handed to the stream (``sent``) or not; latency receive -> sent."""
        with self._lock:
            self._n["sent" if sent else "dropped_output"] += 1
            if latency is not None:
                self._latency.append(latency)
                self._lat_buckets[bisect.bisect_left(self.LATENCY_BOUNDS, latency)] += 1
                self._lat_sum += latency

    def snapshot(self) -> dict:
        now = self.clock()
        with self._lock:
            while self._done and now - self._done[0][0] > self.window:
                self._done.popleft()
            span = (now - self._done[0][0]) if len(self._done) > 1 else 0.0
            n = len(self._done) - 1 if len(self._done) > 1 else 0
            px = sum(p for _t, p in list(self._done)[1:])
            lat = sorted(self._latency)
            c = self._n
            return {
                "start_time": self.started_at,
                "frames_received": c["received"],
                "frames_processed": c["processed"],
                "frames_anomalous": c["anomalous"],
                "frames_rejected": dict(self._rejected),
                "frames_rejected_total": sum(self._rejected.values()),
                "frames_discarded_on_stop": c["discarded_on_stop"],
                "input_errors": c["input_errors"],
                "output_sent": c["sent"],
                "output_dropped": c["dropped_output"],
                "not_stored": c["not_stored"],
                "last_pulse_id": self.last_pulse_id,
                "last_frame_time": self.last_frame_time,
                "last_score": self.last_score,
                "interval_s": round(span, 3),
                "frames_per_s": round(n / span, 3) if span > 0 else 0.0,
                "megapixels_per_s": round(px / span / 1e6, 3) if span > 0 else 0.0,
                "latency_ms": {"p50": round(_pct(lat, 50) * 1e3, 2) if lat else None,
                               "p99": round(_pct(lat, 99) * 1e3, 2) if lat else None,
                               "samples": len(lat)},
                # since start, cumulative per upper bound (Prometheus' histogram): count <= le
                "latency_histogram": {"le": list(self.LATENCY_BOUNDS),
                                      "count_le": list(itertools.accumulate(self._lat_buckets))[:-1],
                                      "count": sum(self._lat_buckets), "sum_s": round(self._lat_sum, 6)},
            }


def _pct(sorted_vals: list[float], p: float) -> float:
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]
