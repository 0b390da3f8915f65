"""The drift watch: are today's images still like the ones the model was fitted on?

Per chunk of frames (``chunk`` scored frames, or ``window_s`` seconds with at least
``min_frames``), the image scores are compared with the model's reference: the scores
of its good images scored out of fold or held out (``calibration_scores`` in the model file, the same images
that set its threshold). Three measures, written here in numpy:

* the two-sample Kolmogorov-Smirnov statistic D (the largest gap between the two
  cumulative distributions), judged against its critical value for the two sample sizes;
* the Wasserstein-1 distance between the two, divided by the reference's spread
  (its standard deviation), so 1.0 means "moved by one spread";
* the fraction of frames above the threshold and the fraction of frames rejected.

The chunk's state is the worst of (limits in :class:`Limits`, documented in README):
green, yellow, red. The journal gets one line when the state changes, never one per frame.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger("vi_stream.drift")

STATES = ("green", "yellow", "red")


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov D = sup |F_a - F_b| over both samples' values."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    x = np.concatenate([a, b])
    fa = np.searchsorted(a, x, side="right") / a.size
    fb = np.searchsorted(b, x, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def ks_critical(n: int, m: int, alpha: float) -> float:
    """D beyond which two samples of n and m differ at level ``alpha`` (asymptotic)."""
    return math.sqrt(-0.5 * math.log(alpha / 2.0)) * math.sqrt((n + m) / (n * m))


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance between two empirical distributions: the area between their CDFs."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    x = np.sort(np.concatenate([a, b]))
    dx = np.diff(x)
    fa = np.searchsorted(a, x[:-1], side="right") / a.size
    fb = np.searchsorted(b, x[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * dx))


@dataclass(frozen=True)
class Limits:
    """Where yellow and red start (any one measure suffices)."""

    ks_alpha_yellow: float = 0.01        # KS D above its critical value at this level
    ks_alpha_red: float = 0.001
    wasserstein_yellow: float = 1.0      # in reference spreads
    wasserstein_red: float = 3.0
    anomalous_yellow: float = 0.2        # fraction of the chunk's frames above the threshold
    anomalous_red: float = 0.5
    rejected_yellow: float = 0.05        # fraction of the chunk's frames refused
    rejected_red: float = 0.2


def judge(scores: np.ndarray, reference: np.ndarray, threshold: float, rejected: int,
          limits: Limits = Limits()) -> dict:
    """One chunk's measures and state."""
    n, m = scores.size, reference.size
    d = ks_statistic(scores, reference)
    spread = float(np.std(reference)) or max(abs(float(np.mean(reference))) * 0.05, 1e-9)
    w = wasserstein(scores, reference) / spread
    anomalous = float(np.mean(scores > threshold))
    rej = rejected / (n + rejected) if n + rejected else 0.0
    red = (d > ks_critical(n, m, limits.ks_alpha_red) and w > limits.wasserstein_red) \
        or anomalous > limits.anomalous_red or rej > limits.rejected_red
    yellow = d > ks_critical(n, m, limits.ks_alpha_yellow) or w > limits.wasserstein_yellow \
        or anomalous > limits.anomalous_yellow or rej > limits.rejected_yellow
    q = np.quantile(scores, [0.1, 0.5, 0.9])
    return {"state": "red" if red else "yellow" if yellow else "green", "frames": int(n), "rejected": int(rejected),
            "ks": round(d, 4), "ks_critical": round(ks_critical(n, m, limits.ks_alpha_yellow), 4),
            "wasserstein": round(w, 4), "anomalous_fraction": round(anomalous, 4),
            "rejected_fraction": round(rej, 4), "score_p10_p50_p90": [round(float(v), 5) for v in q],
            "reference_p10_p50_p90": [round(float(v), 5) for v in np.quantile(reference, [0.1, 0.5, 0.9])]}


class DriftWatch:
    """A processor watcher (``result``/``rejected``, both cheap) that judges each chunk."""

    def __init__(self, reference: list[float], threshold: float, chunk: int = 50, window_s: float = 600.0,
                 min_frames: int = 10, limits: Limits = Limits(), keep: int = 48, version: str | None = None):
        self.chunk, self.window_s, self.min_frames, self.limits = chunk, window_s, min_frames, limits
        self.history: deque[dict] = deque(maxlen=keep)
        self.state = "green"
        self.judged = 0                      # chunks judged since start (the page refetches when it moves)
        self._lock = threading.Lock()
        self.set_reference(reference, threshold, version)

    def set_reference(self, reference: list[float], threshold: float, version: str | None = None) -> None:
        """A new model: its own reference, a fresh chunk; the state stays until that chunk is judged."""
        with self._lock:
            self.reference = np.asarray([float(v) for v in reference or []], np.float64)
            self.threshold, self.version = float(threshold), version
            self._scores: list[float] = []
            self._rejected = 0
            self._since = time.monotonic()

    def result(self, result) -> None:
        self._add(float(result.score))

    def rejected(self, reason: str, frame=None) -> None:
        with self._lock:
            self._rejected += 1

    def _add(self, score: float) -> None:
        with self._lock:
            self._scores.append(score)
            due = len(self._scores) >= self.chunk or (
                len(self._scores) >= self.min_frames and time.monotonic() - self._since >= self.window_s)
            if not due or self.reference.size < 2:
                return
            scores, rejected = np.asarray(self._scores), self._rejected
            self._scores, self._rejected, self._since = [], 0, time.monotonic()
            verdict = judge(scores, self.reference, self.threshold, rejected, self.limits)
            verdict.update(at=time.time(), model_version=self.version)
            self.history.append(verdict)
            self.judged += 1
            before, self.state = self.state, verdict["state"]
        if verdict["state"] != before:
            say = log.info if verdict["state"] == "green" else log.warning
            say("drift %s -> %s: KS %.3f (critical %.3f), Wasserstein %.2f spreads, %.0f%% above threshold, "
                "%.0f%% rejected", before, verdict["state"], verdict["ks"], verdict["ks_critical"],
                verdict["wasserstein"], 100 * verdict["anomalous_fraction"], 100 * verdict["rejected_fraction"])

    def status(self) -> dict:
        with self._lock:
            last = self.history[-1] if self.history else None
            return {"state": self.state, "judged": self.judged, "chunk": self.chunk, "window_s": self.window_s,
                    "reference_scores": int(self.reference.size), "pending_frames": len(self._scores),
                    "model_version": self.version, "last": last, "limits": asdict(self.limits)}

    def chunks(self) -> list[dict]:
        with self._lock:
            return list(self.history)
