"""The monitor's trends: 10 s bins kept in memory for the live page, and written to the store so they
survive a restart.

* :class:`Trends` bins the scored frames of the last hour (frames, anomalous, rejected, score
  quantiles, latency p99, the model and threshold that judged them); the processor's worker adds
  to it under a lock held for microseconds.
* :class:`TrendRecorder` writes each bin once it is closed, and each chunk the drift watch judged,
  as trend points (:class:`vi_stream.store.protocols.TrendPoints`), from the live feed's own tick
  thread, never the processor's. A store that is down is retried at the next tick (bins stay in
  memory for an hour); points older than ``retention_s`` are pruned once an hour. It answers
  ``GET /api/trends`` for any time range: stored points, then the bins not written yet, merged
  into at most :data:`MAX_POINTS` so a week reads as fast as an hour.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from vi_stream.errors import StoreUnavailable

log = logging.getLogger("vi_stream.live")

TREND_BIN_S = 10.0        # trends: one bin per 10 s ...
TREND_BINS = 360          # ... for the last hour in memory
RETENTION_S = 30 * 86400  # points kept in the store: 30 days (259,200 bins of 10 s per daemon)
MAX_POINTS = 720          # a range read answers at most this many bins (merged when longer)
_SAMPLES = 256            # scores/latencies kept per bin for its quantiles
_PRUNE_EVERY_S = 3600.0


class Trends:
    """The last hour in bins of ``bin_s``: frames, anomalous, rejected, score quantiles, latency p99."""

    def __init__(self, bin_s: float = TREND_BIN_S, bins: int = TREND_BINS, clock: Callable[[], float] = time.time):
        self.bin_s, self.clock = bin_s, clock
        self._bins: deque[dict] = deque(maxlen=bins)
        self._lock = threading.Lock()

    def _current(self) -> dict:
        start = self.clock() // self.bin_s * self.bin_s
        if not self._bins or self._bins[-1]["t"] != start:
            self._bins.append({"t": start, "n": 0, "anomalous": 0, "rejected": 0, "scores": [], "latency": [],
                               "model_id": None, "model_version": None, "threshold": None})
        return self._bins[-1]

    def add(self, score: float, anomalous: bool, latency_s: float, model_id: str | None = None,
            model_version: str | None = None, threshold: float | None = None) -> None:
        with self._lock:
            b = self._current()
            b["n"] += 1
            b["anomalous"] += int(anomalous)
            b["model_id"], b["model_version"], b["threshold"] = model_id, model_version, threshold
            _keep(b["scores"], score, b["n"])
            _keep(b["latency"], latency_s, b["n"])

    def reject(self) -> None:
        with self._lock:
            self._current()["rejected"] += 1

    def summary(self, since: float | None = None) -> list[dict]:
        """Per bin: start time (epoch s), frames/s, fraction anomalous, score p50/p90/max, latency p99 (ms),
        and the model and threshold of its last frame."""
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
                        "latency_p99_ms": None if not lat.size else round(_q(lat, 0.99) * 1e3, 1),
                        "model_id": b["model_id"], "model_version": b["model_version"], "threshold": b["threshold"]})
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


_DRIFT_FIELDS = ("state", "frames", "ks", "ks_critical", "wasserstein", "anomalous_fraction", "model_version")


class TrendRecorder:
    """Closed bins and judged drift chunks to the store's trend points (``points``: None keeps nothing)."""

    def __init__(self, points: Any, source: str, chunks: Callable[[], list[dict]] = list,
                 retention_s: float = RETENTION_S, clock: Callable[[], float] = time.time):
        self.points, self.source, self.chunks = points, source, chunks
        self.retention_s, self.clock = retention_s, clock
        self._last_bin = self._last_chunk = -1.0
        self._pruned_at = 0.0
        self.written = self.failures = 0
        self.last_error: str | None = None

    def tick(self, trends: Trends) -> None:
        """Write what closed since the last tick (the live feed's thread, once a second)."""
        if self.points is None:
            return
        now = self.clock()
        open_bin = now // trends.bin_s * trends.bin_s
        bins = [dict(b, kind="bin", source=self.source, bin_s=trends.bin_s) for b in trends.summary()
                if self._last_bin < b["t"] < open_bin]
        chunks = [{**{k: c.get(k) for k in _DRIFT_FIELDS}, "kind": "drift", "source": self.source,
                   "t": float(c["at"])} for c in self.chunks() if float(c.get("at", 0)) > self._last_chunk]
        try:
            if bins or chunks:
                self.points.put_trend_points(bins + chunks)
                self.written += len(bins) + len(chunks)
            if now - self._pruned_at >= _PRUNE_EVERY_S:
                self.points.prune_trend_points(now - self.retention_s)
                self._pruned_at = now
        except Exception as err:   # the store is down (or refuses): the next tick tries again
            self.failures += 1
            if self.last_error is None:
                say = log.info if isinstance(err, StoreUnavailable) else log.warning
                say("trend points not stored yet (retried every second): %s", err)
            self.last_error = str(err)
            return
        self.last_error = None
        if bins:
            self._last_bin = bins[-1]["t"]
        if chunks:
            self._last_chunk = chunks[-1]["t"]

    def read(self, trends: Trends, since: float, until: float) -> dict:
        """Bins and drift chunks in [since, until): stored ones, then those in memory not stored yet."""
        bins: list[dict] = []
        drift: list[dict] = []
        stored = self.points is not None
        if stored:
            try:
                for p in self.points.trend_points(self.source, since, until):
                    (bins if p.get("kind") == "bin" else drift).append(p)
            except StoreUnavailable:
                stored = False
        last_bin = bins[-1]["t"] if bins else -1.0
        bins += [b for b in trends.summary(since) if b["t"] > last_bin and b["t"] < until]
        last_chunk = drift[-1]["t"] if drift else -1.0
        drift += [{**{k: c.get(k) for k in _DRIFT_FIELDS}, "t": float(c["at"])} for c in self.chunks()
                  if last_chunk < float(c["at"]) and since <= float(c["at"]) < until]
        merged, bin_s = merge_bins(bins, trends.bin_s, since, until)
        return {"bin_s": bin_s, "bins": merged, "drift": drift[-MAX_POINTS:], "from": since, "to": until,
                "stored": stored}


def merge_bins(bins: list[dict], bin_s: float, since: float, until: float,
               max_points: int = MAX_POINTS) -> tuple[list[dict], float]:
    """Bins merged into wider ones when the range holds more than ``max_points``: frames and rejects
    add up, rates and fractions are frame-weighted, p50/p90 the frame-weighted mean of the bins', max and
    latency p99 the largest; a bin keeps the model and threshold of its last part."""
    width = bin_s
    while (until - since) / width > max_points:
        width *= 2
    if width == bin_s:
        return [{k: v for k, v in b.items() if k not in ("kind", "source", "bin_s")} for b in bins], bin_s
    groups: dict[float, list[dict]] = {}
    for b in bins:
        groups.setdefault(b["t"] // width * width, []).append(b)
    out = []
    for t, g in sorted(groups.items()):
        n = sum(b["frames"] for b in g)

        def mean(k: str, g: list[dict] = g) -> float | None:
            w = [(b[k], b["frames"]) for b in g if b.get(k) is not None and b["frames"]]
            return round(sum(v * f for v, f in w) / sum(f for _, f in w), 5) if w else None

        def top(k: str, g: list[dict] = g) -> float | None:
            v = [b[k] for b in g if b.get(k) is not None]
            return max(v) if v else None
        out.append({"t": t, "frames": n, "rejected": sum(b["rejected"] for b in g), "fps": round(n / width, 3),
                    "anomalous_fraction": mean("anomalous_fraction"), "score_p50": mean("score_p50"),
                    "score_p90": mean("score_p90"), "score_max": top("score_max"),
                    "latency_p99_ms": top("latency_p99_ms"), "model_id": g[-1].get("model_id"),
                    "model_version": g[-1].get("model_version"), "threshold": g[-1].get("threshold")})
    return out, width
